package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit"
)

// dial connects a plain net.Conn to addr, in tcpkit's grammar; it is
// closed when the test ends.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	network, address, err := tcpkit.ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.DialTimeout(network, address, waitLimit)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	nc.SetDeadline(time.Now().Add(waitLimit))
	t.Cleanup(func() { nc.Close() })
	return nc
}

// exchange sends data to addr, half-closes, and returns all that comes back
// until the server closes.
func exchange(t *testing.T, addr string, data []byte) []byte {
	t.Helper()
	nc := dial(t, addr)
	errc := make(chan error, 1)
	go func() {
		_, err := nc.Write(data)
		if err == nil {
			err = nc.(interface{ CloseWrite() error }).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(nc)
	if err != nil {
		t.Fatalf("reading from %s: %v", addr, err)
	}
	if err := await(t, errc, waitLimit, "writing to "+addr); err != nil {
		t.Fatalf("writing to %s: %v", addr, err)
	}
	return got
}

// readN reads exactly n bytes from nc.
func readN(t *testing.T, nc net.Conn, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(nc, b); err != nil {
		t.Fatalf("reading %d bytes: %v (got %q)", n, err, b)
	}
	return b
}

// TestEchoViaRun drives the command through run, as main does, and reads the
// bound address from the "listening" log line.
func TestEchoViaRun(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var stderr syncBuffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan int, 1)
			go func() {
				done <- run(ctx, []string{"echo", "--log-format", format, "127.0.0.1:0"}, strings.NewReader(""), io.Discard, &stderr)
			}()
			waitContains(t, &stderr, "listening")
			addr := listeningAddr(t, format, stderr.String())

			if got := string(exchange(t, addr, []byte("world!\r\n"))); got != "hello\r\nworld!\r\n" {
				t.Errorf("got %q", got)
			}
			waitContains(t, &stderr, "client disconnected")
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Fatalf("exit code %d:\n%s", code, stderr.String())
				}
			case <-time.After(waitLimit):
				t.Fatal("tcpkit echo did not stop")
			}
			checkLog(t, format, stderr.String())
		})
	}
}

// listeningAddr finds the bound address in the log.
func listeningAddr(t *testing.T, format, log string) string {
	t.Helper()
	if format == "json" {
		var rec struct{ Msg, Addr string }
		line, _, _ := strings.Cut(log, "\n")
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Msg != "listening" {
			t.Fatalf("first log line %q: %v", line, err)
		}
		return rec.Addr
	}
	m := regexp.MustCompile(`level=INFO msg=listening addr=(\S+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no listening line in:\n%s", log)
	}
	return m[1]
}

// checkLog checks the events of one connection in a log: one line each, with
// the fields the issue asks for.
func checkLog(t *testing.T, format, log string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	var msgs []string
	for _, l := range lines {
		rec := parseLogLine(t, format, l)
		msg, _ := rec["msg"].(string)
		msgs = append(msgs, msg)
		var want []string
		switch msg {
		case "listening":
			want = []string{"addr"}
		case "client connected":
			want = []string{"conn", "remote"}
		case "client disconnected":
			want = []string{"conn", "remote", "bytes_in", "bytes_out", "duration"}
			if format == "json" && (rec["bytes_in"] != 8.0 || rec["bytes_out"] != 15.0) {
				t.Errorf("bytes in %v, out %v; want 8 and 15", rec["bytes_in"], rec["bytes_out"])
			}
			if format == "text" && (rec["bytes_in"] != "8" || rec["bytes_out"] != "15") {
				t.Errorf("bytes in %v, out %v; want 8 and 15", rec["bytes_in"], rec["bytes_out"])
			}
		}
		for _, k := range want {
			if _, ok := rec[k]; !ok {
				t.Errorf("log line %q has no %s", l, k)
			}
		}
	}
	want := []string{"listening", "client connected", "client disconnected", "shutting down", "stopped"}
	if strings.Join(msgs, "|") != strings.Join(want, "|") {
		t.Errorf("log events %q, want %q; log:\n%s", msgs, want, log)
	}
}

// parseLogLine returns the fields of one log line in format, text or json.
// A text value is a string, with its quotes removed; a JSON value is what
// encoding/json makes of it.
func parseLogLine(t *testing.T, format, line string) map[string]any {
	t.Helper()
	rec := map[string]any{}
	if format == "json" {
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		return rec
	}
	for _, m := range regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`).FindAllStringSubmatch(line, -1) {
		rec[m[1]] = strings.Trim(m[2], `"`)
	}
	return rec
}

// logLine waits until the log b has a line that contains want and
// returns the first such line.
func logLine(t *testing.T, b *syncBuffer, want string) string {
	t.Helper()
	waitContains(t, b, want)
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, want) {
			return l
		}
	}
	panic("unreachable")
}

func TestEchoGreeting(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // the greeting
	}{
		{name: "default", want: "hello\r\n"},
		{name: "none", args: []string{"--greeting", ""}, want: ""},
		{name: "seed's second server", args: []string{"--greeting", `good\r\n`}, want: "good\r\n"},
		{name: "escapes", args: []string{"--greeting", `\x1b[1mhi\x1b[0m\t\\\n`}, want: "\x1b[1mhi\x1b[0m\t\\\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startEcho(t, append(tt.args, "127.0.0.1:0")...)
			got := exchange(t, e.addr(), []byte("ping\n"))
			if string(got) != tt.want+"ping\n" {
				t.Errorf("got %q, want %q", got, tt.want+"ping\n")
			}
		})
	}
}

// TestEchoLocalhost checks that localhost is served on both loopback
// addresses, so a client that tries ::1 first connects at once.
func TestEchoLocalhost(t *testing.T) {
	e := startEcho(t, "localhost:0")
	want := 1
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		want = 2
	}
	if len(e.addrs) != want {
		t.Fatalf("listening on %q, want %d addresses", e.addrs, want)
	}
	var ports []string
	for _, a := range e.addrs {
		host, port, _ := net.SplitHostPort(a)
		if !net.ParseIP(host).IsLoopback() {
			t.Errorf("%s is not a loopback address", a)
		}
		ports = append(ports, port)
		if got := string(exchange(t, a, []byte("x"))); got != "hello\r\nx" {
			t.Errorf("%s: got %q", a, got)
		}
	}
	if want == 2 && ports[0] != ports[1] {
		t.Errorf("the listeners have different ports: %q", e.addrs)
	}
}

func TestEchoUnixSocketRemovedOnShutdown(t *testing.T) {
	path := sockPath(t)
	e := startEcho(t, path)
	if e.addr() != path {
		t.Errorf("bound %q, want %q", e.addr(), path)
	}
	if got := string(exchange(t, path, []byte("over unix"))); got != "hello\r\nover unix" {
		t.Errorf("got %q", got)
	}
	if !strings.Contains(e.stderr.String(), `remote="unix (unnamed)"`) {
		t.Errorf("log does not describe the Unix client:\n%s", e.stderr.String())
	}
	e.stop(t)
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file still there after shutdown: %v", err)
	}
}

// TestEchoMaxConns: with --max-conns 1, a second client is closed at once
// and one warning names it by its address, so an operator can tell who was
// turned away; the first client is served on.
func TestEchoMaxConns(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			e := startEcho(t, "--log-format", format, "--max-conns", "1", "127.0.0.1:0")
			first := dial(t, e.addr())
			readN(t, first, len("hello\r\n"))
			second := dial(t, e.addr())
			second.SetReadDeadline(time.Now().Add(5 * time.Second))
			if b, err := io.ReadAll(second); len(b) != 0 || err != nil {
				t.Errorf("second connection got %q, %v; want it closed at once", b, err)
			}
			line := logLine(t, e.stderr, "connection dropped")
			rec := parseLogLine(t, format, line)
			for k, want := range map[string]string{
				"level":     "WARN",
				"msg":       "connection dropped: --max-conns reached",
				"remote":    second.LocalAddr().String(), // the dropped client
				"max_conns": "1",
			} {
				if got, ok := rec[k]; !ok || fmt.Sprint(got) != want {
					t.Errorf("drop log line: %s is %v, want %q; line:\n%s", k, got, want, line)
				}
			}
			if n := strings.Count(e.stderr.String(), "connection dropped"); n != 1 {
				t.Errorf("%d drop lines, want 1:\n%s", n, e.stderr.String())
			}
			if _, err := first.Write([]byte("still here")); err != nil {
				t.Fatal(err)
			}
			if got := string(readN(t, first, len("still here"))); got != "still here" {
				t.Errorf("first connection got %q", got)
			}
		})
	}
}

func TestEchoIdleTimeout(t *testing.T) {
	e := startEcho(t, "--idle-timeout", "100ms", "127.0.0.1:0")
	nc := dial(t, e.addr())
	start := time.Now()
	b, err := io.ReadAll(nc)
	if string(b) != "hello\r\n" || err != nil {
		t.Fatalf("got %q, %v; want the greeting, then the server's close", b, err)
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", d)
	}
	waitContains(t, e.stderr, "idle timeout")
}

func TestEchoQuiet(t *testing.T) {
	e := startEcho(t, "--quiet", "--no-delay=false", "127.0.0.1:0")
	if got := string(exchange(t, e.addr(), []byte("x"))); got != "hello\r\nx" {
		t.Errorf("got %q", got)
	}
	e.stop(t)
	if log := e.stderr.String(); log != "" {
		t.Errorf("--quiet logged:\n%s", log)
	}
}

// TestEchoNoDelay checks that --no-delay, parsed by the real command,
// reaches the server that tcpkit echo runs and the sockets that server
// accepts: Nagle's algorithm is off (TCP_NODELAY set) unless
// --no-delay=false.
func TestEchoNoDelay(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		nagle bool // the wanted ConnConfig.Nagle; TCP_NODELAY is its opposite
	}{
		{name: "default", nagle: false},
		{name: "--no-delay", args: []string{"--no-delay"}, nagle: false},
		{name: "--no-delay=true", args: []string{"--no-delay=true"}, nagle: false},
		{name: "--no-delay=false", args: []string{"--no-delay=false"}, nagle: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The goroutine engine, so that the test can see the accepted
			// socket; the root package checks TCP_NODELAY on both engines.
			e := startEcho(t, append(tt.args, "--quiet", "--engine", "goroutine", "127.0.0.1:0")...)
			if got := e.srv.ConnConfig.Nagle; got != tt.nagle {
				t.Errorf("ConnConfig.Nagle = %v, want %v", got, tt.nagle)
			}
			if got := acceptedNoDelay(t, e); got != !tt.nagle {
				t.Errorf("TCP_NODELAY on an accepted socket = %v, want %v", got, !tt.nagle)
			}
		})
	}
}

// acceptedNoDelay serves e's server on one more loopback listener, whose
// accepted sockets the test can see, connects to it, and returns whether
// TCP_NODELAY is set on the server's side of the connection. It stops e.
func acceptedNoDelay(t *testing.T, e *echoServer) bool {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingListener{Listener: ln, accepted: make(chan net.Conn, 1)}
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(rec) }()
	nc := dial(t, ln.Addr().String())
	readN(t, nc, len("hello\r\n")) // the greeting: the socket options are set
	sc := await(t, rec.accepted, waitLimit, "the extra listener's accepted connection")
	raw, err := sc.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var opt int
	var optErr error
	if err := raw.Control(func(fd uintptr) {
		opt, optErr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
	}); err != nil || optErr != nil {
		t.Fatalf("reading TCP_NODELAY: %v, %v", err, optErr)
	}
	nc.Close()
	e.stop(t)
	if err := await(t, served, waitLimit, "Serve on the extra listener to return"); !errors.Is(err, tcpkit.ErrServerClosed) {
		t.Errorf("Serve on the extra listener returned %v, want ErrServerClosed", err)
	}
	return opt != 0
}

// recordingListener passes on each connection it accepts, as it is, and
// sends the first on accepted.
type recordingListener struct {
	net.Listener
	accepted chan net.Conn
}

func (l *recordingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err == nil {
		select {
		case l.accepted <- nc:
		default:
		}
	}
	return nc, err
}

// TestEchoBindFailure checks that a failed bind exits 1 with one line that
// names the address and the cause.
func TestEchoBindFailure(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	live := startEcho(t, "--quiet", sockPath(t))
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		addr  string
		cause string
	}{
		{name: "TCP port in use", addr: taken.Addr().String(), cause: "address already in use"},
		{name: "live Unix socket", addr: live.addr(), cause: "address already in use"},
		{name: "regular file at the path", addr: file, cause: "not a socket"},
		{name: "missing directory", addr: filepath.Join(dir, "no", "such.sock"), cause: "no such file or directory"},
		{name: "port out of range", addr: "127.0.0.1:65536", cause: "out of range"},
		{name: "IPv6 without brackets", addr: "::1:8124", cause: "brackets"},
		{name: "address not on this machine", addr: "192.0.2.1:0", cause: "cannot assign requested address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, "echo", tt.addr)
			if r.code != exitError {
				t.Errorf("exit code %d, want %d", r.code, exitError)
			}
			if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "tcpkit echo: ") {
				t.Errorf("stderr is not one line: %q", r.stderr)
			}
			if !strings.Contains(r.stderr, tt.addr) || !strings.Contains(r.stderr, tt.cause) {
				t.Errorf("stderr %q does not name %q and %q", r.stderr, tt.addr, tt.cause)
			}
		})
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("the regular file was touched: %q, %v", b, err)
	}
}

// TestEchoGracefulShutdown checks the first signal: idle connections are
// ended, the server waits for the clients to close, and exits 0.
func TestEchoGracefulShutdown(t *testing.T) {
	for _, how := range []string{"signal", "context"} {
		t.Run(how, func(t *testing.T) {
			path := sockPath(t)
			e := startEcho(t, path)
			nc := dial(t, path)
			readN(t, nc, len("hello\r\n"))
			if how == "signal" {
				e.sigs <- syscall.SIGTERM
			} else {
				e.cancel()
			}
			// The server ends the idle connection; the client sees EOF,
			// then closes, and the server exits.
			if b, err := io.ReadAll(nc); err != nil || len(b) != 0 {
				t.Errorf("after shutdown began, read %q, %v; want EOF", b, err)
			}
			select {
			case code := <-e.done:
				t.Fatalf("exited (%d) before the client closed", code)
			case <-time.After(50 * time.Millisecond):
			}
			nc.Close()
			if code := e.wait(t); code != 0 {
				t.Errorf("exit code %d:\n%s", code, e.stderr.String())
			}
			if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("socket file still there: %v", err)
			}
			if _, err := net.DialTimeout("unix", path, time.Second); err == nil {
				t.Errorf("still accepting after shutdown")
			}
			log := e.stderr.String()
			if !strings.Contains(log, "shutting down") || !strings.Contains(log, "stopped") ||
				strings.Contains(log, "grace period over") {
				t.Errorf("log:\n%s", log)
			}
		})
	}
}

// TestEchoSecondSignal checks that a second signal closes everything at
// once and exits with the signal's status.
func TestEchoSecondSignal(t *testing.T) {
	path := sockPath(t)
	e := startEcho(t, "--grace", "1m", path)
	nc := dial(t, path)
	rd := bufio.NewReader(nc)
	if _, err := rd.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	e.sigs <- os.Interrupt
	waitContains(t, e.stderr, "shutting down")
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	e.sigs <- os.Interrupt
	if code := e.wait(t); code != 130 {
		t.Errorf("exit code %d, want 130:\n%s", code, e.stderr.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to exit after the second signal", d)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file still there: %v", err)
	}
	waitContains(t, e.stderr, "second signal")
}

// TestEchoEngine checks --engine: epoll by default on Linux, named in the
// listening line, and both engines echo.
func TestEchoEngine(t *testing.T) {
	for _, tt := range []struct{ args, want string }{
		{"", "engine=" + defaultEngine},
		{"epoll", "engine=epoll"},
		{"goroutine", "engine=goroutine"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			args := []string{"127.0.0.1:0"}
			if tt.args != "" {
				args = append([]string{"--engine", tt.args}, args...)
			}
			e := startEcho(t, args...)
			if got := string(exchange(t, e.addr(), []byte("x"))); got != "hello\r\nx" {
				t.Errorf("got %q", got)
			}
			waitContains(t, e.stderr, tt.want)
		})
	}
	if r := runCLI(t, nil, "echo", "--engine", "threads"); r.code != exitUsage || !strings.Contains(r.stderr, "--engine") {
		t.Errorf("--engine threads: exit %d, stderr %q; want a usage error naming the flag", r.code, r.stderr)
	}
}

// TestEchoAdmissionLimits: --deny refuses a client by address and
// --max-conns-per-ip caps one client's connections; each refusal is a
// warning that names the client and the limit, and the others are served.
func TestEchoAdmissionLimits(t *testing.T) {
	e := startEcho(t, "--deny", "127.0.0.2", "--max-conns-per-ip", "1", "127.0.0.1:0")
	from := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		nc, err := d.Dial("tcp", e.addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		return nc
	}
	first := from("127.0.0.1")
	readN(t, first, len("hello\r\n"))
	for _, tt := range []struct{ src, msg string }{
		{"127.0.0.2", "connection dropped: client not allowed (--allow, --deny)"},
		{"127.0.0.1", "connection dropped: --max-conns-per-ip reached"},
	} {
		nc := from(tt.src)
		if b, err := io.ReadAll(nc); len(b) != 0 || err != nil {
			t.Errorf("from %s: got %q, %v; want the connection closed at once", tt.src, b, err)
		}
		line := logLine(t, e.stderr, tt.msg)
		if !strings.Contains(line, "remote="+nc.LocalAddr().String()) {
			t.Errorf("drop line %q does not name the client %s", line, nc.LocalAddr())
		}
	}
	if got := string(readN(t, from("127.0.0.3"), len("hello\r\n"))); got != "hello\r\n" {
		t.Errorf("a third client got %q, want the greeting", got)
	}
}

// Two tcpkit echo with --reuse-port share one port.
func TestEchoReusePort(t *testing.T) {
	forEachEngine(t, echoReusePort)
}

func echoReusePort(t *testing.T, engine string) {
	a := startEcho(t, "--engine", engine, "--reuse-port", "--greeting", `a\n`, "127.0.0.1:0")
	b := startEcho(t, "--engine", engine, "--reuse-port", "--greeting", `b\n`, a.addr())
	if b.addr() != a.addr() {
		t.Fatalf("second server on %s, want %s", b.addr(), a.addr())
	}
	seen := map[string]bool{}
	for i := 0; i < 64 && len(seen) < 2; i++ {
		c, err := net.DialTimeout("tcp", a.addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(waitLimit))
		g := make([]byte, 2)
		if _, err := io.ReadFull(c, g); err != nil {
			t.Fatal(err)
		}
		seen[string(g)] = true
		c.Close()
	}
	if !seen["a\n"] || !seen["b\n"] {
		t.Errorf("greetings seen: %v; want both servers", seen)
	}
}
