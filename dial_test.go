package tcpkit

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit/internal/testenv"
	"golang.org/x/net/dns/dnsmessage"
)

// A dialInbox collects what a dialled connection receives.
type dialInbox struct {
	mu   sync.Mutex
	data []byte
	more chan struct{} // poked after each data event
}

func newDialInbox() *dialInbox { return &dialInbox{more: make(chan struct{}, 1)} }

// handler is a Dial handler that records the connection's data; then runs
// extra, if not nil.
func (in *dialInbox) handler(extra func(c *Conn)) Handler {
	return func(c *Conn) {
		c.OnData(func(p []byte) {
			in.mu.Lock()
			in.data = append(in.data, p...)
			in.mu.Unlock()
			select {
			case in.more <- struct{}{}:
			default:
			}
		})
		if extra != nil {
			extra(c)
		}
	}
}

// wait waits until exactly want has been received, failing the test if
// something else arrives or nothing does within 5s.
func (in *dialInbox) wait(t *testing.T, want string) {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		in.mu.Lock()
		got := string(in.data)
		in.mu.Unlock()
		switch {
		case got == want:
			return
		case !strings.HasPrefix(want, got):
			t.Fatalf("received %q, want %q", got, want)
		}
		select {
		case <-in.more:
		case <-deadline.C:
			t.Fatalf("timed out with %q received, want %q", got, want)
		}
	}
}

// closeWhenDone closes a dialled connection when the test ends, and waits
// for its close event.
func closeWhenDone(t *testing.T, c *Conn) {
	t.Cleanup(func() {
		c.Close()
		waitFor(t, c.Done(), 10*time.Second, "the dialled connection's Done")
	})
}

// greetingEchoServer starts a server that greets each connection with
// "hello\r\n" and then echoes, and returns its address.
func greetingEchoServer(t *testing.T, e engine, addr string) string {
	t.Helper()
	s := &Server{Logger: failOnPanicLogger(t), Handler: func(c *Conn) {
		c.WriteString("hello\r\n")
		Pipe(c, c)
	}}
	return startServer(t, e, s, addr)
}

// dialAndTalk dials addr, checks that the greeting reaches the OnData
// listener the handler registered and that an echo comes back, and returns
// the connection, which is closed when the test ends.
func dialAndTalk(t *testing.T, d *Dialer, addr string) *Conn {
	t.Helper()
	in := newDialInbox()
	handlerRan := make(chan struct{})
	c, err := d.Dial(context.Background(), addr, in.handler(func(*Conn) { close(handlerRan) }))
	if err != nil {
		t.Fatalf("Dial(%q): %v", addr, err)
	}
	closeWhenDone(t, c)
	waitFor(t, handlerRan, 5*time.Second, "the Dial handler")
	// The server writes its greeting as soon as it accepts: only a handler
	// that runs before the first data event sees it.
	in.wait(t, "hello\r\n")
	if _, err := c.WriteString("ping\n"); err != nil {
		t.Fatalf("Write: %v", err)
	}
	in.wait(t, "hello\r\nping\n")
	return c
}

func TestDialConnects(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		bound := greetingEchoServer(t, e, addr)
		forms := []string{bound}
		if path, ok := strings.CutPrefix(bound, "unix:"); ok {
			forms = append(forms, path) // a path with a '/' needs no prefix
		}
		for _, form := range forms {
			t.Run(form, func(t *testing.T) {
				c := dialAndTalk(t, e.dialer(), form)
				if got, want := addrString(c.RemoteAddr()), bound; got != want {
					t.Errorf("RemoteAddr %q, want %q", got, want)
				}
				if err := c.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				waitFor(t, c.Done(), 5*time.Second, "Done after Close")
				if err := c.Err(); err != nil {
					t.Errorf("close error %v, want nil", err)
				}
			})
		}
	})
}

func TestDialIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		testenv.SkipUnlessCI(t, "no IPv6 loopback: %v", err)
	}
	ln.Close()
	forEachEngine(t, func(t *testing.T, e engine) {
		bound := greetingEchoServer(t, e, "[::1]:0")
		if !strings.HasPrefix(bound, "[::1]:") {
			t.Fatalf("server bound to %q, want [::1]:port", bound)
		}
		dialAndTalk(t, e.dialer(), bound)
	})
}

func TestDialLocalAddr(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		bound := greetingEchoServer(t, e, "127.0.0.1:0")
		local := net.IPv4(127, 0, 0, 2)
		d := e.dialer()
		d.LocalAddr = &net.TCPAddr{IP: local}
		c := dialAndTalk(t, d, bound)
		if la, ok := c.LocalAddr().(*net.TCPAddr); !ok || !la.IP.Equal(local) {
			t.Errorf("LocalAddr %v, want %v", c.LocalAddr(), local)
		}
	})
}

// fakeResolver is a Resolver that answers from names, in the order given,
// through a DNS server of its own on an in-memory connection; other names
// do not exist. It counts the questions it is asked, by type.
type fakeResolver struct {
	names   map[string][]netip.Addr // fully qualified: "dual.test."
	mu      sync.Mutex
	queries map[dnsmessage.Type]int
}

func (f *fakeResolver) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		client, server := net.Pipe() // a stream: DNS over TCP framing
		go f.serve(server)
		return client, nil
	}}
}

// serve answers the questions that arrive on c until it is closed.
func (f *fakeResolver) serve(c net.Conn) {
	defer c.Close()
	for {
		var size [2]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return
		}
		req := make([]byte, binary.BigEndian.Uint16(size[:]))
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		var m dnsmessage.Message
		if err := m.Unpack(req); err != nil || len(m.Questions) != 1 {
			return
		}
		q := m.Questions[0]
		f.mu.Lock()
		f.queries[q.Type]++
		f.mu.Unlock()
		m.Header.Response, m.Header.Authoritative = true, true
		addrs, ok := f.names[q.Name.String()]
		if !ok {
			m.Header.RCode = dnsmessage.RCodeNameError
		}
		for _, a := range addrs {
			h := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
			switch {
			case q.Type == dnsmessage.TypeA && a.Is4():
				h.Type = dnsmessage.TypeA
				m.Answers = append(m.Answers, dnsmessage.Resource{Header: h, Body: &dnsmessage.AResource{A: a.As4()}})
			case q.Type == dnsmessage.TypeAAAA && a.Is6():
				h.Type = dnsmessage.TypeAAAA
				m.Answers = append(m.Answers, dnsmessage.Resource{Header: h, Body: &dnsmessage.AAAAResource{AAAA: a.As16()}})
			}
		}
		resp, err := m.Pack()
		if err != nil {
			return
		}
		if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(resp))), resp...)); err != nil {
			return
		}
	}
}

// TestDialHappyEyeballs dials a name that resolves to ::1 and 127.0.0.1,
// ::1 first, at a server that listens on 127.0.0.1 only, as localhost
// does on many machines. The refused ::1 attempt must hand over to
// 127.0.0.1 at once rather than after FallbackDelay (Node 17 and later
// fail outright here: nodejs/node#40702).
func TestDialHappyEyeballs(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		testenv.SkipUnlessCI(t, "no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	forEachEngine(t, func(t *testing.T, e engine) {
		bound := greetingEchoServer(t, e, "127.0.0.1:0")
		_, port, err := net.SplitHostPort(bound)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			name   string
			dialer Dialer
			within time.Duration
		}{
			// A long FallbackDelay: any wait for it shows.
			{name: "long fallback delay", dialer: Dialer{FallbackDelay: 20 * time.Second}, within: 5 * time.Second},
			{name: "default", dialer: Dialer{}, within: 5 * time.Second},
			{name: "no fallback race", dialer: Dialer{FallbackDelay: -1}, within: 5 * time.Second},
		} {
			t.Run(tt.name, func(t *testing.T) {
				f := &fakeResolver{
					names:   map[string][]netip.Addr{"dual.test.": {netip.IPv6Loopback(), netip.MustParseAddr("127.0.0.1")}},
					queries: map[dnsmessage.Type]int{},
				}
				tt.dialer.Resolver = f.resolver()
				tt.dialer.Engine = e.get()
				start := time.Now()
				c := dialAndTalk(t, &tt.dialer, "dual.test:"+port)
				if el := time.Since(start); el > tt.within {
					t.Errorf("connecting and one round trip took %v, want well under %v", el, tt.within)
				}
				if ra := c.RemoteAddr().(*net.TCPAddr); !ra.IP.Equal(net.IPv4(127, 0, 0, 1)) {
					t.Errorf("connected to %v, want 127.0.0.1", ra)
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				if f.queries[dnsmessage.TypeA] == 0 || f.queries[dnsmessage.TypeAAAA] == 0 {
					t.Errorf("DNS questions %v: the dial did not look up both families", f.queries)
				}
			})
		}
	})
}

// closedTCPAddr returns a loopback address that nothing listens on.
func closedTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// staleSocket leaves a socket file at path that nothing listens on, as a
// crashed server does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}

func TestDialErrors(t *testing.T) {
	tests := []struct {
		name  string
		addr  func(t *testing.T) string // sets up the target, returns the address to dial
		errno syscall.Errno             // what the error must wrap
		says  []string                  // what its message must say, besides the address
	}{
		{
			name:  "refused",
			addr:  closedTCPAddr,
			errno: syscall.ECONNREFUSED,
			says:  []string{"dial tcp", "connection refused"},
		},
		{
			name:  "no such path",
			addr:  unixSocketPath,
			errno: syscall.ENOENT,
			says:  []string{"dial unix", "no such file or directory"},
		},
		{
			name: "regular file",
			addr: func(t *testing.T) string {
				path := unixSocketPath(t)
				if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
					t.Fatal(err)
				}
				return path
			},
			errno: syscall.ENOTSOCK,
			says:  []string{"dial unix", "not a socket: the file there is a regular file"},
		},
		{
			name: "directory",
			addr: func(t *testing.T) string {
				path := unixSocketPath(t)
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
				return path
			},
			errno: syscall.ENOTSOCK,
			says:  []string{"dial unix", "not a socket: the file there is a directory"},
		},
		{
			name: "stale socket",
			addr: func(t *testing.T) string {
				path := unixSocketPath(t)
				staleSocket(t, path)
				return "unix:" + path
			},
			errno: syscall.ECONNREFUSED,
			says:  []string{"dial unix", "connection refused", "no server is accepting", "stale socket"},
		},
		{
			name: "full backlog",
			addr: func(t *testing.T) string {
				path := unixSocketPath(t)
				rawListener(t, syscall.AF_UNIX, &syscall.SockaddrUnix{Name: path})
				fillUnixBacklog(t, path)
				return path
			},
			errno: syscall.EAGAIN,
			says:  []string{"dial unix", "the server's listen backlog is full"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr(t)
			c, err := Dial(context.Background(), addr, func(*Conn) { t.Error("the handler ran for a failed Dial") })
			if err == nil {
				closeWhenDone(t, c)
				t.Fatalf("Dial(%q) succeeded", addr)
			}
			if c != nil {
				t.Errorf("Dial returned a connection with its error")
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "dial" {
				t.Errorf("error %v is a %T, want a *net.OpError for dial", err, err)
			}
			checkErrorSays(t, err, tt.errno, append(tt.says, strings.TrimPrefix(addr, "unix:"))...)
		})
	}
}

func TestDialBadArguments(t *testing.T) {
	t.Run("bad address", func(t *testing.T) {
		_, err := Dial(context.Background(), "localhost", nil)
		var ae *AddrError
		if !errors.As(err, &ae) || ae.Addr != "localhost" || !strings.Contains(err.Error(), "missing port") {
			t.Fatalf("Dial(\"localhost\"): %v (%T), want an *AddrError about the missing port", err, err)
		}
	})
	t.Run("bad ConnConfig", func(t *testing.T) {
		d := Dialer{ConnConfig: ConnConfig{HighWater: 10, LowWater: 20}}
		_, err := d.Dial(context.Background(), closedTCPAddr(t), nil)
		if err == nil || !strings.Contains(err.Error(), "LowWater (20) is above HighWater (10)") {
			t.Fatalf("Dial with LowWater over HighWater: %v, want an error saying so", err)
		}
	})
}

func TestDialContextDone(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		bound := greetingEchoServer(t, e, addr)

		t.Run("canceled", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			c, err := Dial(ctx, bound, nil)
			if err == nil {
				closeWhenDone(t, c)
				t.Fatal("Dial with a canceled context succeeded")
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error %v does not wrap context.Canceled", err)
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("error %v reports a timeout for a cancellation", err)
			}
			if !strings.Contains(err.Error(), "operation was canceled") {
				t.Errorf("error %q does not say it was canceled", err)
			}
		})

		t.Run("deadline passed", func(t *testing.T) {
			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			defer cancel()
			c, err := Dial(ctx, bound, nil)
			if err == nil {
				closeWhenDone(t, c)
				t.Fatal("Dial with an expired context succeeded")
			}
			checkTimeout(t, err)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
			}
		})
	})
}

// checkTimeout checks that err is a net.Error that reports a timeout.
func checkTimeout(t *testing.T, err error) {
	t.Helper()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("error %v (%T) is not a net.Error with Timeout() true", err, err)
	}
	if !strings.Contains(err.Error(), "i/o timeout") {
		t.Errorf("error %q does not say i/o timeout", err)
	}
}

// TestDialConnectTimeout dials a loopback listener whose backlog is full, so
// that the kernel drops the SYNs and connect blocks, until ConnectTimeout or
// the context's deadline ends the wait.
func TestDialConnectTimeout(t *testing.T) {
	fd := rawListener(t, syscall.AF_INET, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))

	const timeout = 100 * time.Millisecond
	// The first connections fill the backlog and succeed; keep them open so
	// it stays full.
	blocked := false
	for i := 0; i < 16 && !blocked; i++ {
		d := Dialer{ConnectTimeout: timeout}
		start := time.Now()
		c, err := d.Dial(context.Background(), addr, nil)
		if err == nil {
			closeWhenDone(t, c)
			continue
		}
		blocked = true
		checkTimeout(t, err)
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("error %q does not name %s", err, addr)
		}
		if el := time.Since(start); el < timeout/2 || el > 5*time.Second {
			t.Errorf("timed out after %v, want about %v", el, timeout)
		}
	}
	if !blocked {
		t.Fatalf("no Dial to %s blocked: the backlog never filled", addr)
	}

	t.Run("context deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := Dial(ctx, addr, nil)
		if err == nil {
			closeWhenDone(t, c)
			t.Fatal("Dial to a full backlog succeeded")
		}
		checkTimeout(t, err)
		// Package net reports a deadline that passes in connect as
		// context.DeadlineExceeded or as os.ErrDeadlineExceeded, depending
		// on which of its two timers fires first.
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("error %v wraps neither context.DeadlineExceeded nor os.ErrDeadlineExceeded", err)
		}
	})

	t.Run("canceled while connecting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Dial cannot say when it is blocked in connect, so cancel it from
		// a timer: whether it is in connect or not yet, it must return a
		// cancellation and no connection.
		stop := time.AfterFunc(timeout, cancel)
		defer stop.Stop()
		c, err := Dial(ctx, addr, nil)
		if err == nil {
			closeWhenDone(t, c)
			t.Fatal("Dial to a full backlog succeeded")
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v does not wrap context.Canceled", err)
		}
	})
}

// TestDialErrorIsNotExplainedTwice checks that an explained error keeps one
// copy of the address, as package net prints it.
func TestDialErrorIsNotExplainedTwice(t *testing.T) {
	path := unixSocketPath(t)
	staleSocket(t, path)
	_, err := Dial(context.Background(), path, nil)
	if err == nil {
		t.Fatal("Dial to a stale socket succeeded")
	}
	if n := strings.Count(err.Error(), path); n != 1 {
		t.Errorf("error %q names the path %d times, want once", err, n)
	}
}
