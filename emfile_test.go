package tcpkit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// emfileChildEnv makes the test binary run emfileChild instead of the
// tests, on the engine it names.
const emfileChildEnv = "TCPKIT_TEST_EMFILE_CHILD"

// TestAcceptRealEMFILE runs a server in a child process whose file
// descriptors are all in use, so that accept4 really fails with EMFILE. The
// server must back off, report the error once, and serve the waiting client
// once descriptors are free again.
func TestAcceptRealEMFILE(t *testing.T) {
	forEachEngine(t, testAcceptRealEMFILE)
}

func testAcceptRealEMFILE(t *testing.T, e engine) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), emfileChildEnv+"="+e.name)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	readLine := func(prefix string) string {
		t.Helper()
		got := make(chan string, 1)
		go func() {
			for lines.Scan() {
				if s, ok := strings.CutPrefix(lines.Text(), prefix); ok {
					got <- s
					return
				}
			}
			close(got)
		}()
		s, ok := <-got
		if !ok {
			t.Fatalf("child exited before printing %q", prefix)
		}
		return s
	}
	addr := readLine("listening ")
	nc := dialRaw(t, addr) // the kernel completes it; accept4 fails in the child
	io.WriteString(nc, "after EMFILE")
	closeWrite(t, nc)
	got, err := io.ReadAll(nc)
	if err != nil || string(got) != "after EMFILE" {
		t.Fatalf("echo through the child: %q, %v", got, err)
	}
	report := readLine("result ")
	if report != "errors=1 emfile=true" {
		t.Errorf("child reported %q; want one error event, for EMFILE", report)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("child: %v", err)
	}
}

// emfileChild is the child side of TestAcceptRealEMFILE.
func emfileChild() {
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "emfile child: "+format+"\n", args...)
		os.Exit(2)
	}
	var errs atomic.Int32
	var sawEMFILE atomic.Bool
	firstErr := make(chan struct{}, 1)
	done := make(chan struct{})
	s := &Server{
		Handler: func(c *Conn) {
			Pipe(c, c)
			c.OnClose(func(error) { close(done) })
		},
		OnError: func(err error) {
			errs.Add(1)
			sawEMFILE.Store(strings.Contains(err.Error(), "too many open files"))
			select {
			case firstErr <- struct{}{}:
			default:
			}
		},
	}
	if os.Getenv(emfileChildEnv) == "epoll" {
		e, err := NewEpollEngine(EpollConfig{Loops: 1})
		if err != nil {
			fail("%v", err)
		}
		defer e.Close()
		s.Engine = e
	}
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		fail("%v", err)
	}
	// Lower the limit to what is open now plus a few, then use them all.
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		fail("%v", err)
	}
	lim := syscall.Rlimit{Cur: uint64(len(entries) + 16), Max: uint64(len(entries) + 16)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fail("setrlimit: %v", err)
	}
	go s.Serve(ln)
	var filler []*os.File
	for range 64 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		filler = append(filler, f)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	select {
	case <-firstErr:
	case <-time.After(10 * time.Second):
		fail("no accept error within 10s")
	}
	time.Sleep(100 * time.Millisecond) // several retries fail meanwhile
	for _, f := range filler {
		f.Close()
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		fail("the client was not served within 10s of freeing descriptors")
	}
	s.Close()
	fmt.Printf("result errors=%d emfile=%v\n", errs.Load(), sawEMFILE.Load())
}
