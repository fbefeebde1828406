package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcpkit/tcpkit"
)

// TestMain fails the run if any test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// networks are the transports the tests run over.
var networks = []struct {
	name string
	addr func(t *testing.T) string
}{
	{name: "tcp", addr: func(*testing.T) string { return "127.0.0.1:0" }},
	{name: "unix", addr: func(t *testing.T) string { return filepath.Join(t.TempDir(), "chat.sock") }},
}

// forEachNetwork runs f as a subtest over each transport.
func forEachNetwork(t *testing.T, f func(t *testing.T, addr string)) {
	for _, n := range networks {
		t.Run(n.name, func(t *testing.T) { f(t, n.addr(t)) })
	}
}

// quiet is a logger that drops everything.
var quiet = slog.New(slog.DiscardHandler)

// startRoom serves a room on addr until the test ends, and returns the
// room and the address to dial.
func startRoom(t *testing.T, addr string, maxLine, maxBuffered int) (*Room, net.Addr) {
	t.Helper()
	return startRoomLog(t, addr, maxLine, maxBuffered, quiet)
}

// startRoomLog is startRoom with the room logging to log.
func startRoomLog(t *testing.T, addr string, maxLine, maxBuffered int, log *slog.Logger) (*Room, net.Addr) {
	t.Helper()
	room := NewRoom(maxLine, log)
	srv := room.Server(addr, maxBuffered)
	ln, err := tcpkit.Listen(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return room, ln.Addr()
}

// timeout bounds every wait of the tests: a read, a write, a goroutine.
const timeout = 5 * time.Second

// A client is a chat client on a real socket.
//
// Its methods take the *testing.T of the test or subtest they run in, and
// must be called from that test's goroutine: they may call t.Fatal.
type client struct {
	nc   net.Conn
	r    *bufio.Reader
	name string // as the welcome line gave it
}

// connect joins the room at addr and reads the welcome line. The
// connection is closed when t ends.
func connect(t *testing.T, addr net.Addr) *client {
	t.Helper()
	nc, err := net.DialTimeout(addr.Network(), addr.String(), timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &client{nc: nc, r: bufio.NewReader(nc)}
	welcome := c.line(t)
	rest, ok := strings.CutPrefix(welcome, "* welcome, you are ")
	name, _, ok2 := strings.Cut(rest, ";")
	if !ok || !ok2 {
		t.Fatalf("welcome line %q", welcome)
	}
	c.name = name
	return c
}

// line reads one line, without its LF, within timeout.
func (c *client) line(t *testing.T) string {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	s, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("%s: reading a line: %q, %v", c.name, s, err)
	}
	return strings.TrimSuffix(s, "\n")
}

// expect reads len(want) lines and checks they are want.
func (c *client) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		if got := c.line(t); got != w {
			t.Fatalf("%s got %q, want %q", c.name, got, w)
		}
	}
}

// send writes each chunk in a Write of its own, each within timeout,
// pausing in between so that the server is likely to read each chunk on
// its own.
func (c *client) send(t *testing.T, chunks ...string) {
	t.Helper()
	for i, s := range chunks {
		if i > 0 {
			time.Sleep(2 * time.Millisecond)
		}
		c.nc.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := c.nc.Write([]byte(s)); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
}

// sync makes sure every line sent to c before now has been read: another
// client says something and c reads up to it. Nothing else may come first.
func (c *client) sync(t *testing.T, other *client, token string) {
	t.Helper()
	other.send(t, token+"\n")
	c.expect(t, other.name+": "+token)
}

// eof checks that the server has ended the connection, after exactly the
// lines want.
func (c *client) eof(t *testing.T, want ...string) {
	t.Helper()
	c.expect(t, want...)
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	rest, err := io.ReadAll(c.r)
	if err != nil || len(rest) > 0 {
		t.Fatalf("%s: after the last line: %q, %v; want EOF", c.name, rest, err)
	}
}

// closeWrite half-closes c's connection: the server sees the end of its
// input.
func (c *client) closeWrite(t *testing.T) {
	t.Helper()
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("%T cannot half-close", c.nc)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
}

// waitAll waits for wg, for at most d. Past it, it calls stop, which must
// make the goroutines return (closing their connections does), and fails
// the test.
func waitAll(t *testing.T, wg *sync.WaitGroup, d time.Duration, stop func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(d):
	}
	stop()
	select {
	case <-done:
		t.Errorf("goroutines still running after %v; stopped", d)
	case <-time.After(timeout):
		t.Fatalf("goroutines still running after %v, and %v after they were told to stop", d, timeout)
	}
}
