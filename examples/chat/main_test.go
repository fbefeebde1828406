package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
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
		<-served
	})
	return room, ln.Addr()
}

// A client is a chat client on a real socket.
type client struct {
	t    *testing.T
	nc   net.Conn
	r    *bufio.Reader
	name string // as the welcome line gave it
}

// connect joins the room at addr and reads the welcome line.
func connect(t *testing.T, addr net.Addr) *client {
	t.Helper()
	nc, err := net.DialTimeout(addr.Network(), addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &client{t: t, nc: nc, r: bufio.NewReader(nc)}
	welcome := c.line()
	rest, ok := strings.CutPrefix(welcome, "* welcome, you are ")
	name, _, ok2 := strings.Cut(rest, ";")
	if !ok || !ok2 {
		t.Fatalf("welcome line %q", welcome)
	}
	c.name = name
	return c
}

// line reads one line, without its LF, within 10 seconds.
func (c *client) line() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading a line: %q, %v", s, err)
	}
	return strings.TrimSuffix(s, "\n")
}

// expect reads len(want) lines and checks they are want.
func (c *client) expect(want ...string) {
	c.t.Helper()
	for _, w := range want {
		if got := c.line(); got != w {
			c.t.Fatalf("%s got %q, want %q", c.name, got, w)
		}
	}
}

// send writes each chunk in a Write of its own, pausing in between so that
// the server is likely to read each chunk on its own.
func (c *client) send(chunks ...string) {
	c.t.Helper()
	for i, s := range chunks {
		if i > 0 {
			time.Sleep(2 * time.Millisecond)
		}
		if _, err := c.nc.Write([]byte(s)); err != nil {
			c.t.Fatal(err)
		}
	}
}

// sync makes sure every line sent to c before now has been read: another
// client says something and c reads up to it. Nothing else may come first.
func (c *client) sync(other *client, token string) {
	c.t.Helper()
	other.send(token + "\n")
	c.expect(other.name + ": " + token)
}

// eof checks that the server has ended the connection, after exactly the
// lines want.
func (c *client) eof(want ...string) {
	c.t.Helper()
	c.expect(want...)
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(c.r)
	if err != nil || len(rest) > 0 {
		c.t.Fatalf("%s: after the last line: %q, %v; want EOF", c.name, rest, err)
	}
}
