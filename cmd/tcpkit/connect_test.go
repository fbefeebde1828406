package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit/internal/testenv"
)

// TestConnectEcho talks to the in-process echo server over each transport.
func TestConnectEcho(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			e := startEcho(t, "--quiet", tr.listen(t))
			in := binaryData(256 << 10)
			r := runCLI(t, bytes.NewReader(in), "connect", e.addr())
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit code %d, stderr %q", r.code, r.stderr)
			}
			if want := "hello\r\n" + string(in); r.stdout != want {
				t.Errorf("got %d bytes back, want %d, byte-exact", len(r.stdout), len(want))
			}
		})
	}
}

func TestConnectCRLF(t *testing.T) {
	e := startEcho(t, "--quiet", "--greeting", "", "127.0.0.1:0")
	r := runCLI(t, strings.NewReader("one\ntwo\r\nthree\n"), "connect", "-C", e.addr())
	if r.code != 0 || r.stdout != "one\r\ntwo\r\nthree\r\n" {
		t.Errorf("exit %d, got %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestConnectSendOnlyRecvOnly(t *testing.T) {
	e := startEcho(t, "127.0.0.1:0")
	r := runCLI(t, strings.NewReader("sent\n"), "connect", "--send-only", e.addr())
	if r.code != 0 || r.stdout != "" {
		t.Errorf("--send-only: exit %d, printed %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	waitContains(t, e.stderr, "bytes_in=5")

	// --recv-only does not read stdin, so it never half-closes: the
	// connection lasts until the idle timeout closes it.
	e2 := startEcho(t, "--idle-timeout", "100ms", "127.0.0.1:0")
	r = runCLI(t, strings.NewReader("never sent\n"), "connect", "--recv-only", e2.addr())
	if r.code != 0 || r.stdout != "hello\r\n" {
		t.Errorf("--recv-only: exit %d, printed %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	waitContains(t, e2.stderr, "bytes_in=0")
}

func TestConnectVerbose(t *testing.T) {
	e := startEcho(t, "--quiet", "127.0.0.1:0")
	r := runCLI(t, strings.NewReader("x"), "connect", "-v", e.addr())
	if r.code != 0 || !strings.Contains(r.stderr, "connected to "+e.addr()) || !strings.Contains(r.stderr, "1 bytes sent") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestConnectBackpressure sends more than the write queue may ever hold
// (MaxBuffered, 4 MiB) to a server that starts reading late. Without
// backpressure the queue would overflow and the connection would close with
// a slow-consumer error.
func TestConnectBackpressure(t *testing.T) {
	ln, err := net.Listen("unix", sockPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(waitLimit))
		time.Sleep(200 * time.Millisecond)
		n, err := io.Copy(io.Discard, nc)
		if err == nil {
			_, err = nc.Write([]byte(strconv.FormatInt(n, 10)))
		}
		served <- err
	}()
	const size = 8 << 20
	r := runCLI(t, bytes.NewReader(make([]byte, size)), "connect", "unix:"+ln.Addr().String())
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if err := await(t, served, waitLimit, "the server counting what tcpkit connect sent"); err != nil {
		t.Fatal(err)
	}
	if r.stdout != strconv.Itoa(size) {
		t.Errorf("server counted %q bytes, want %d", r.stdout, size)
	}
}

// TestConnectFailures checks the exit code and the one line of each way a
// connection can fail.
func TestConnectFailures(t *testing.T) {
	dir := t.TempDir()

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()

	// A socket file nothing listens on.
	stale := filepath.Join(dir, "stale.sock")
	uln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	uln.SetUnlinkOnClose(false)
	uln.Close()

	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		args  []string
		cause string
	}{
		{name: "refused", args: []string{refused}, cause: "cannot connect to " + refused + ": connection refused"},
		{name: "stale socket", args: []string{stale}, cause: "connection refused"},
		{name: "no such path", args: []string{filepath.Join(dir, "none.sock")}, cause: "no such file or directory"},
		{name: "not a socket", args: []string{regular}, cause: "not a socket"},
		{name: "a directory", args: []string{dir + "/"}, cause: "not a socket"},
		{name: "bad address", args: []string{"localhost"}, cause: "bad address"},
		{name: "timeout", args: []string{"-w", "200ms", fullBacklog(t)}, cause: "timed out after 200ms"},
		{name: "reset", args: []string{resetter(t)}, cause: "connection reset by peer"},
		{name: "idle timeout", args: []string{"--idle-timeout", "100ms", silent(t)}, cause: "no traffic for 100ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdin, w := io.Pipe() // stdin stays open, as a terminal's would
			defer w.Close()
			r := runCLI(t, stdin, append([]string{"connect"}, tt.args...)...)
			if r.code != exitError {
				t.Errorf("exit code %d, want %d", r.code, exitError)
			}
			if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "tcpkit connect: ") ||
				!strings.Contains(r.stderr, tt.cause) {
				t.Errorf("stderr %q, want one line with %q", r.stderr, tt.cause)
			}
		})
	}
}

// fullBacklog returns the address of a TCP socket whose listen backlog is
// full, so that a new connect waits for a reply that never comes.
func fullBacklog(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the backlog: connects succeed until it is full.
	for i := 0; i < 8; i++ {
		nc, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { nc.Close() })
	}
	testenv.SkipUnlessCI(t, "cannot fill a listen backlog on this system, so the timeout case goes untested")
	return ""
}

// resetter returns the address of a server that resets each connection.
func resetter(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); awaitClose(t, done, "the resetter's accept loop") })
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			nc.(*net.TCPConn).SetLinger(0)
			nc.Close()
		}
	}()
	return ln.Addr().String()
}

// silent returns the address of a server that accepts and then neither
// sends nor closes.
func silent(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		awaitClose(t, done, "the silent server's accept loop")
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, nc)
		}
	}()
	return ln.Addr().String()
}

// awaitClose waits, in a test's cleanup, for a goroutine to close done
// once its listener is closed, and fails the test if it does not.
func awaitClose(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(stopLimit):
		t.Errorf("%s did not end within %v of closing its listener", what, stopLimit)
	}
}
