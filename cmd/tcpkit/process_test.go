package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// process is the tcpkit command running as a real process: the test binary
// re-executed as main, so that it gets real signals.
type process struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	lines  chan string // its stderr, line by line
	exited chan struct{}
	code   int       // the exit status, once exited is closed
	at     time.Time // when it exited
}

// startProcess runs `tcpkit args...` as a process and kills it, if it is
// still running, when the test ends.
func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	return startProcessWith(t, nil, nil, args...)
}

// startProcessWith is startProcess with files passed as descriptors 3 and
// up, and more environment variables.
func startProcessWith(t *testing.T, files []*os.File, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	// A race found in the process makes it exit with status 66, which the
	// tests see; the race detector need not wait a second before exiting.
	cmd.Env = append(append(os.Environ(), asMainEnv+"=1", "GORACE=atexit_sleep_ms=100"), env...)
	cmd.ExtraFiles = files
	cmd.WaitDelay = 2 * time.Second
	p := &process{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, lines: make(chan string, 1000), exited: make(chan struct{})}
	cmd.Stdout = p.stdout
	pr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting tcpkit %v: %v", args, err)
	}
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.stderr.Write(append(sc.Bytes(), '\n'))
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		io.Copy(p.stderr, pr)
		err := cmd.Wait()
		p.at = time.Now()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
		case err != nil:
			p.code = -1
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	})
	return p
}

// line waits for the next stderr line that contains want.
func (p *process) line(t *testing.T, want string) string {
	t.Helper()
	return nextLine(t, p.lines, want, func() string { return "; stderr:\n" + p.stderr.String() })
}

// signal sends sig to the process.
func (p *process) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for the process to exit and returns its exit status.
func (p *process) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(waitLimit):
		t.Fatalf("tcpkit did not exit within %v; stderr:\n%s", waitLimit, p.stderr.String())
		panic("unreachable")
	}
}

// startEchoProcess starts `tcpkit echo args...` as a process and returns it
// with the address of its first "listening" line.
func startEchoProcess(t *testing.T, args ...string) (*process, string) {
	t.Helper()
	p := startProcess(t, append([]string{"echo"}, args...)...)
	l := p.line(t, "msg=listening")
	m := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(l)
	if m == nil {
		t.Fatalf("no address in %q", l)
	}
	return p, m[1]
}
