package tcpkit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit/internal/testenv"
)

// unixSocketPath returns a path for a Unix socket in a fresh directory under
// t.TempDir().
func unixSocketPath(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sock")
	if len(path) > maxUnixPath {
		t.Fatalf("temporary directory too deep for a Unix socket: %s", path)
	}
	return path
}

// socketFileInfo checks that a Unix socket file is at path and returns its
// details.
func socketFileInfo(t *testing.T, path string) fs.FileInfo {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("socket file: %v", err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		t.Fatalf("%s has mode %v, want a socket", path, fi.Mode())
	}
	return fi
}

// checkNoFile checks that nothing is at path.
func checkNoFile(t *testing.T, path string) {
	t.Helper()
	if fi, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		if err == nil {
			t.Fatalf("%s is still there (mode %v), want it removed", path, fi.Mode())
		}
		t.Fatalf("Lstat(%s): %v, want not-exist", path, err)
	}
}

// sameFile checks that the file at path is still the one described by
// before: same inode, same modification time.
func sameFile(t *testing.T, path string, before fs.FileInfo) {
	t.Helper()
	after, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("the file at %s was touched: %v", path, err)
	}
	if !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) || after.Mode() != before.Mode() {
		t.Fatalf("the file at %s was replaced or changed: mode %v -> %v, mtime %v -> %v",
			path, before.Mode(), after.Mode(), before.ModTime(), after.ModTime())
	}
}

// acceptOne accepts one connection on ln, writes greeting on it and closes
// it. It returns the Accept error through the channel.
func acceptOne(ln net.Listener, greeting string) <-chan error {
	ch := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, err = io.WriteString(c, greeting)
			c.Close()
		}
		ch <- err
	}()
	return ch
}

// readGreeting reads one line from a fresh plain connection to addr.
func readGreeting(t *testing.T, addr string) string {
	t.Helper()
	nc := dialRaw(t, addr)
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil {
		t.Fatalf("reading from %s: %v (got %q)", addr, err, line)
	}
	return line
}

// checkErrorSays checks that err wraps errno and that its message contains
// each of parts.
func checkErrorSays(t *testing.T, err error, errno syscall.Errno, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one wrapping %v", errno)
	}
	if !errors.Is(err, errno) {
		t.Errorf("error %q does not wrap %v (%#v)", err, errno, errno)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
}

func TestListenUnixCreatesAndRemovesSocket(t *testing.T) {
	for _, form := range []struct {
		name   string
		prefix string
	}{
		{name: "PATH", prefix: ""},
		{name: "unix:PATH", prefix: "unix:"},
	} {
		t.Run(form.name, func(t *testing.T) {
			path := unixSocketPath(t)
			ln, err := Listen(context.Background(), form.prefix+path)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			socketFileInfo(t, path)
			if a := ln.Addr(); a.Network() != "unix" || a.String() != path {
				t.Errorf("Addr() = %s %q, want unix %q", a.Network(), a, path)
			}

			accepted := acceptOne(ln, "hi\n")
			if got := readGreeting(t, path); got != "hi\n" {
				t.Errorf("read %q, want %q", got, "hi\n")
			}
			if err := waitFor(t, accepted, 5*time.Second, "Accept"); err != nil {
				t.Fatalf("Accept: %v", err)
			}

			if err := ln.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			checkNoFile(t, path)
		})
	}
}

func TestListenUnixLiveSocketIsLeftAlone(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		path := unixSocketPath(t)
		s := &Server{Handler: func(c *Conn) { c.WriteString("first\n") }, Logger: failOnPanicLogger(t)}
		addr := startServer(t, e, s, path)
		before := socketFileInfo(t, path)

		ln, err := Listen(context.Background(), path)
		if err == nil {
			ln.Close()
			t.Fatal("a second Listen on a live socket succeeded")
		}
		checkErrorSays(t, err, syscall.EADDRINUSE, path, "a server is accepting connections", "left untouched")
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "listen" {
			t.Errorf("error %v is a %T, want a *net.OpError for listen", err, err)
		}

		sameFile(t, path, before)
		if got := readGreeting(t, addr); got != "first\n" {
			t.Errorf("the first server answered %q, want %q", got, "first\n")
		}
		sameFile(t, path, before)
	})
}

func TestListenUnixStaleSocketIsReplaced(t *testing.T) {
	path := unixSocketPath(t)
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false) // what a crash leaves behind
	old.Close()
	socketFileInfo(t, path)
	if _, err := net.Dial("unix", path); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dialling the stale socket: %v, want ECONNREFUSED", err)
	}

	ln, err := Listen(context.Background(), path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer ln.Close()
	socketFileInfo(t, path)

	accepted := acceptOne(ln, "new\n")
	if got := readGreeting(t, path); got != "new\n" {
		t.Errorf("read %q, want %q", got, "new\n")
	}
	if err := waitFor(t, accepted, 5*time.Second, "Accept"); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	ln.Close()
	checkNoFile(t, path)
}

func TestListenUnixNotASocket(t *testing.T) {
	tests := []struct {
		name string
		make func(path string) error
		kind string
	}{
		{name: "regular file", kind: "regular file", make: func(path string) error {
			return os.WriteFile(path, []byte("precious data\n"), 0o600)
		}},
		{name: "empty regular file", kind: "regular file", make: func(path string) error {
			return os.WriteFile(path, nil, 0o600)
		}},
		{name: "directory", kind: "directory", make: func(path string) error {
			if err := os.Mkdir(path, 0o700); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(path, "inside"), []byte("kept"), 0o600)
		}},
		{name: "named pipe", kind: "named pipe", make: func(path string) error {
			return syscall.Mkfifo(path, 0o600)
		}},
		{name: "symbolic link", kind: "symbolic link", make: func(path string) error {
			return os.Symlink(filepath.Join(filepath.Dir(path), "elsewhere"), path)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := unixSocketPath(t)
			if err := tt.make(path); err != nil {
				t.Fatalf("making a %s: %v", tt.kind, err)
			}
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			content := fileContent(t, path, before)

			ln, err := Listen(context.Background(), path)
			if err == nil {
				ln.Close()
				t.Fatalf("Listen over a %s succeeded", tt.kind)
			}
			checkErrorSays(t, err, syscall.EADDRINUSE,
				path, "the file there is a "+tt.kind+", not a socket", "left untouched")

			sameFile(t, path, before)
			if got := fileContent(t, path, before); got != content {
				t.Errorf("content changed from %q to %q", content, got)
			}
		})
	}
}

// fileContent returns the content of a regular file or the listing of a
// directory, and "" for anything else.
func fileContent(t *testing.T, path string, fi fs.FileInfo) string {
	t.Helper()
	switch {
	case fi.Mode().IsRegular():
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	case fi.IsDir():
		ents, err := os.ReadDir(path)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return strings.Join(names, ",")
	}
	return ""
}

func TestListenUnixBusySocketIsLeftAlone(t *testing.T) {
	path := unixSocketPath(t)
	rawListener(t, syscall.AF_UNIX, &syscall.SockaddrUnix{Name: path})
	fillUnixBacklog(t, path)
	before := socketFileInfo(t, path)

	ln, err := Listen(context.Background(), path)
	if err == nil {
		ln.Close()
		t.Fatal("Listen over a live socket with a full backlog succeeded")
	}
	checkErrorSays(t, err, syscall.EADDRINUSE, path, "a server is listening on this socket", "left untouched")
	sameFile(t, path, before)
}

// rawListener makes a listening socket with a backlog of 0 that nothing
// accepts on, closed when the test ends. Package net cannot set a backlog.
func rawListener(t *testing.T, family int, sa syscall.Sockaddr) int {
	t.Helper()
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, sa); err != nil {
		t.Fatalf("bind: %v", err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatalf("listen: %v", err)
	}
	return fd
}

// fillUnixBacklog connects to the Unix socket at path until the kernel
// refuses with EAGAIN, which it does once the backlog is full.
func fillUnixBacklog(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < 16 && time.Now().Before(deadline); i++ {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			continue
		}
		if errors.Is(err, syscall.EAGAIN) {
			return
		}
		t.Fatalf("filling the backlog of %s: %v", path, err)
	}
	t.Fatalf("the backlog of %s never filled", path)
}

func TestListenUnixSocketMode(t *testing.T) {
	for _, mode := range []fs.FileMode{0o600, 0o660, 0o666, 0o777} {
		t.Run(fmt.Sprintf("%04o", uint32(mode)), func(t *testing.T) {
			path := unixSocketPath(t)
			lc := ListenConfig{SocketMode: mode}
			ln, err := lc.Listen(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if got := socketFileInfo(t, path).Mode().Perm(); got != mode {
				t.Errorf("socket mode %04o, want %04o", uint32(got), uint32(mode))
			}
			ln.Close()
			checkNoFile(t, path)
		})
	}
}

func TestListenUnixAbstract(t *testing.T) {
	name := fmt.Sprintf("unix:@tcpkit-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	ln, err := Listen(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := acceptOne(ln, "abstract\n")
	if got := readGreeting(t, name); got != "abstract\n" {
		t.Errorf("read %q, want %q", got, "abstract\n")
	}
	if err := waitFor(t, accepted, 5*time.Second, "Accept"); err != nil {
		t.Fatalf("Accept: %v", err)
	}

	ln2, err := Listen(context.Background(), name)
	if err == nil {
		ln2.Close()
		t.Fatal("a second Listen on a bound abstract name succeeded")
	}
	checkErrorSays(t, err, syscall.EADDRINUSE, "another socket is bound to this abstract name")
}

func TestListenUnixServerRemovesSocket(t *testing.T) {
	stops := []struct {
		name string
		stop func(s *Server) error
	}{
		{name: "Close", stop: func(s *Server) error { return s.Close() }},
		{name: "Shutdown", stop: func(s *Server) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return s.Shutdown(ctx)
		}},
	}
	for _, st := range stops {
		t.Run(st.name, func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, e engine) {
				path := unixSocketPath(t)
				listening := make(chan net.Addr, 1)
				opened := make(chan struct{}, 1)
				s := &Server{
					Addr:         path,
					SocketMode:   0o640,
					ShutdownIdle: 50 * time.Millisecond,
					Logger:       failOnPanicLogger(t),
					Handler:      func(c *Conn) { opened <- struct{}{} },
					OnListening:  func(a net.Addr) { listening <- a },
				}
				e.apply(s)
				var serveErr error
				served := make(chan struct{})
				go func() {
					serveErr = s.ListenAndServe()
					close(served)
				}()
				t.Cleanup(func() { // for a test that failed half-way
					s.Close()
					waitFor(t, served, 10*time.Second, "ListenAndServe to return")
				})

				a := waitFor(t, listening, 5*time.Second, "the listening event")
				if a.Network() != "unix" || a.String() != path {
					t.Errorf("OnListening got %s %q, want unix %q", a.Network(), a, path)
				}
				if got := socketFileInfo(t, path).Mode().Perm(); got != 0o640 {
					t.Errorf("socket mode %04o, want 0640 from Server.SocketMode", uint32(got))
				}

				// A connection stays open across Close, as in Node; the file
				// goes at once all the same.
				nc := dialRaw(t, path)
				waitFor(t, opened, 5*time.Second, "the connection to open")
				drained := make(chan struct{})
				go func() {
					io.Copy(io.Discard, nc) // until Shutdown ends it, or the test closes it
					nc.Close()
					close(drained)
				}()

				if err := st.stop(s); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				checkNoFile(t, path)
				waitFor(t, served, 5*time.Second, "ListenAndServe to return")
				if serveErr != ErrServerClosed {
					t.Errorf("ListenAndServe returned %v, want ErrServerClosed", serveErr)
				}
				nc.Close()
				waitFor(t, drained, 5*time.Second, "the client to finish")
				waitFor(t, s.Done(), 5*time.Second, "the server's Done")
				checkNoFile(t, path)
			})
		})
	}
}

func TestListenTCP(t *testing.T) {
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ta, ok := ln.Addr().(*net.TCPAddr)
	if !ok || ta.Port == 0 || !ta.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("Addr() = %#v, want 127.0.0.1 and a port", ln.Addr())
	}
	accepted := acceptOne(ln, "tcp\n")
	if got := readGreeting(t, ln.Addr().String()); got != "tcp\n" {
		t.Errorf("read %q, want %q", got, "tcp\n")
	}
	if err := waitFor(t, accepted, 5*time.Second, "Accept"); err != nil {
		t.Fatalf("Accept: %v", err)
	}
}

func TestListenTCPIPv6(t *testing.T) {
	ln, err := Listen(context.Background(), "[::1]:0")
	if err != nil {
		testenv.SkipUnlessCI(t, "no IPv6 loopback: %v", err)
	}
	defer ln.Close()
	if ta := ln.Addr().(*net.TCPAddr); ta.Port == 0 || !ta.IP.Equal(net.IPv6loopback) {
		t.Fatalf("Addr() = %v, want [::1] and a port", ta)
	}
}

func TestListenTCPPortInUse(t *testing.T) {
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()

	ln2, err := Listen(context.Background(), addr)
	if err == nil {
		ln2.Close()
		t.Fatalf("a second Listen on %s succeeded", addr)
	}
	checkErrorSays(t, err, syscall.EADDRINUSE, addr, "address already in use")
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "listen" {
		t.Errorf("error %v is a %T, want a *net.OpError for listen", err, err)
	}
}

func TestListenBadAddress(t *testing.T) {
	tests := []struct{ name, addr string }{
		{name: "empty", addr: ""},
		{name: "port out of range", addr: "127.0.0.1:65536"},
		{name: "missing port", addr: "localhost"},
		{name: "IPv4 in brackets", addr: "[1.2.3.4]:80"},
		{name: "empty unix path", addr: "unix:"},
		{name: "unbracketed IPv6", addr: "::1"},
	}
	for _, tt := range tests {
		addr := tt.addr
		t.Run(tt.name, func(t *testing.T) {
			ln, err := Listen(context.Background(), addr)
			if err == nil {
				ln.Close()
				t.Fatalf("Listen(%q) succeeded", addr)
			}
			var ae *AddrError
			if !errors.As(err, &ae) || ae.Addr != addr {
				t.Fatalf("Listen(%q): %v (%T), want an *AddrError for it", addr, err, err)
			}
		})
	}
}

func TestListenUnixMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "s.sock")
	ln, err := Listen(context.Background(), path)
	if err == nil {
		ln.Close()
		t.Fatal("Listen in a missing directory succeeded")
	}
	checkErrorSays(t, err, syscall.ENOENT, path)
}

// With ReusePort, two listeners share one address and port; without it the
// second bind fails.
func TestListenReusePort(t *testing.T) {
	lc := ListenConfig{ReusePort: true}
	a, err := lc.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := lc.Listen(context.Background(), a.Addr().String())
	if err != nil {
		t.Fatalf("second listener with ReusePort: %v", err)
	}
	defer b.Close()
	if _, err := Listen(context.Background(), a.Addr().String()); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("a listener without ReusePort on the same port: %v, want EADDRINUSE", err)
	}
	// Both take connections.
	seen := map[net.Listener]bool{}
	for i := 0; i < 64 && len(seen) < 2; i++ {
		c, err := net.Dial("tcp", a.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		for _, ln := range []net.Listener{a, b} {
			ln.(*net.TCPListener).SetDeadline(time.Now().Add(20 * time.Millisecond))
			if s, err := ln.Accept(); err == nil {
				seen[ln] = true
				s.Close()
			}
		}
		c.Close()
	}
	if len(seen) != 2 {
		t.Errorf("connections went to %d of the 2 listeners", len(seen))
	}
}
