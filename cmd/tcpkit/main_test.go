package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit"
	"github.com/tcpkit/tcpkit/internal/testenv"
	"go.uber.org/goleak"
)

// asMainEnv, set to 1, makes the test binary run as the tcpkit command, so
// that tests can start the real program and send it real signals.
const asMainEnv = "TCPKIT_TEST_AS_MAIN"

// TestMain fails the run if any test leaves a goroutine behind.
func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		main()
	}
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait in these tests.
const waitLimit = 20 * time.Second

// stopLimit bounds the waits of a test that has already failed, or is
// cleaning up, for something it has just stopped or killed.
const stopLimit = 5 * time.Second

// await waits for a value, or the close, of ch, and fails the test after
// limit with a message that names what it waited for.
func await[T any](t *testing.T, ch <-chan T, limit time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(limit):
		t.Fatalf("%s: still waiting after %v", what, limit)
		panic("unreachable")
	}
}

// syncBuffer is a bytes.Buffer that is safe for concurrent use: the
// command writes to it from its goroutines while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitContains polls b until it contains want, failing the test after
// waitLimit.
func waitContains(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q in:\n%s", want, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// result is the outcome of one run of the command.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the command line args to completion with stdin as standard
// input.
func runCLI(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- run(ctx, args, stdin, &stdout, &stderr) }()
	select {
	case code := <-done:
		return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	case <-time.After(waitLimit):
		cancel()
		stopped := "it stopped once cancelled"
		select {
		case <-done:
		case <-time.After(stopLimit):
			stopped = fmt.Sprintf("it did not stop within %v of being cancelled either", stopLimit)
		}
		t.Fatalf("tcpkit %s did not finish within %v (%s); stderr:\n%s", strings.Join(args, " "), waitLimit, stopped, stderr.String())
		panic("unreachable")
	}
}

// echoServer is a tcpkit echo server running in-process.
type echoServer struct {
	srv    *tcpkit.Server // the server that the flags built
	addrs  []string       // bound addresses, in tcpkit's grammar
	stderr *syncBuffer    // its log
	sigs   chan os.Signal
	cancel context.CancelFunc
	done   chan int // receives the exit code
	code   int
	exited bool
}

// startEcho runs `tcpkit echo args...` in-process and waits until it
// listens. It is stopped, as by a cancelled context, when the test ends.
func startEcho(t *testing.T, args ...string) *echoServer {
	t.Helper()
	return startCommand(t, "echo", args...)
}

// startCommand runs `tcpkit name args...`, a serving command, in-process
// and waits until it listens. It is stopped, as by a cancelled context,
// when the test ends.
func startCommand(t *testing.T, name string, args ...string) *echoServer {
	t.Helper()
	e := &echoServer{
		stderr: &syncBuffer{},
		sigs:   make(chan os.Signal, 2),
		done:   make(chan int, 1),
	}
	type listening struct {
		srv   *tcpkit.Server
		addrs []string
	}
	ready := make(chan listening, 1)
	a := &app{
		stdin:   strings.NewReader(""),
		stdout:  io.Discard,
		stderr:  e.stderr,
		signals: func() (<-chan os.Signal, func()) { return e.sigs, func() {} },
		ready:   func(srv *tcpkit.Server, addrs []string) { ready <- listening{srv, addrs} },
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- a.run(ctx, append([]string{name}, args...)) }()
	t.Cleanup(func() { e.stop(t) })
	select {
	case l := <-ready:
		e.srv, e.addrs = l.srv, l.addrs
	case code := <-e.done:
		e.code, e.exited = code, true
		t.Fatalf("tcpkit %s exited with %d before listening:\n%s", name, code, e.stderr.String())
	case <-time.After(waitLimit):
		t.Fatalf("tcpkit %s did not listen within %v:\n%s", name, waitLimit, e.stderr.String())
	}
	return e
}

// addr returns the first bound address.
func (e *echoServer) addr() string { return e.addrs[0] }

// wait waits for the server to exit and returns its exit code.
func (e *echoServer) wait(t *testing.T) int {
	t.Helper()
	if e.exited {
		return e.code
	}
	select {
	case e.code = <-e.done:
		e.exited = true
		return e.code
	case <-time.After(waitLimit):
		t.Fatalf("tcpkit echo did not exit within %v:\n%s", waitLimit, e.stderr.String())
		panic("unreachable")
	}
}

// stop stops the server gracefully and checks that it exited cleanly.
func (e *echoServer) stop(t *testing.T) {
	t.Helper()
	if e.exited {
		return
	}
	e.cancel()
	if code := e.wait(t); code != 0 {
		t.Errorf("tcpkit echo exited with %d:\n%s", code, e.stderr.String())
	}
}

// runPeer runs an external program to completion with stdin as its input
// and returns its standard output. It fails the test if the program fails or
// runs longer than waitLimit (it is then killed).
func runPeer(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	path := testenv.LookPath(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstderr: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// program is an external program running in the background.
type program struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *syncBuffer
	stderr *syncBuffer
	lines  chan string   // lines of the stream chosen by startPeer
	exited chan struct{} // closed once it has exited
	err    error         // what cmd.Wait returned, once exited is closed
}

// startPeer starts an external program and kills it when the test ends.
// The lines of its standard output (or, with linesFromStderr, of its
// standard error) are also sent, one by one, on the peer's lines channel.
func startPeer(t *testing.T, linesFromStderr bool, name string, args ...string) *program {
	t.Helper()
	path := testenv.LookPath(t, name)
	cmd := exec.Command(path, args...)
	cmd.WaitDelay = 2 * time.Second
	p := &program{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, lines: make(chan string, 100), exited: make(chan struct{})}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = stdin
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var tee io.Writer = p.stdout
	cmd.Stdout, cmd.Stderr = pw, p.stderr
	if linesFromStderr {
		tee = p.stderr
		cmd.Stdout, cmd.Stderr = p.stdout, pw
	}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	pw.Close()
	go func() {
		defer close(p.exited)
		p.err = cmd.Wait()
	}()
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			tee.Write(append(sc.Bytes(), '\n'))
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		io.Copy(tee, pr)
	}()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Signal(syscall.SIGKILL)
		for _, w := range []struct {
			done <-chan struct{}
			what string
		}{{p.exited, "had not exited"}, {scanned, "still held its output open"}} {
			select {
			case <-w.done:
			case <-time.After(stopLimit):
				t.Errorf("%s %s %v after it was killed", name, w.what, stopLimit)
			}
		}
	})
	return p
}

// wait waits for the peer to exit and returns what cmd.Wait returned.
func (p *program) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(waitLimit):
		t.Fatalf("%s did not exit within %v; stdout:\n%s\nstderr:\n%s",
			p.cmd.Path, waitLimit, p.stdout.String(), p.stderr.String())
		panic("unreachable")
	}
}

// line waits for the next line from the peer that contains want.
func (p *program) line(t *testing.T, want string) string {
	t.Helper()
	return nextLine(t, p.lines, want, func() string {
		return fmt.Sprintf("from %s; stdout:\n%s\nstderr:\n%s", p.cmd.Path, p.stdout.String(), p.stderr.String())
	})
}

// nextLine waits, for at most waitLimit, for the next of lines that
// contains want; failing, it says what else there is to know with more.
func nextLine(t *testing.T, lines <-chan string, want string, more func() string) string {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, want) {
				return l
			}
		case <-timeout:
			t.Fatalf("no line with %q within %v %s", want, waitLimit, more())
		}
	}
}

// sockPath returns a fresh Unix socket path under t.TempDir().
func sockPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "echo.sock")
}

// binaryData returns n bytes that cover every byte value, CR and LF
// included, in a pattern that shows misplaced bytes.
func binaryData(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		if i < 256 {
			b[i] = byte(i)
			continue
		}
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// serverEngines are the engines of the serving commands (--engine); their
// tests run on each.
var serverEngines = []string{"epoll", "goroutine"}

// forEachEngine runs f as a subtest on each of serverEngines.
func forEachEngine(t *testing.T, f func(t *testing.T, engine string)) {
	t.Helper()
	for _, engine := range serverEngines {
		t.Run(engine, func(t *testing.T) { f(t, engine) })
	}
}
