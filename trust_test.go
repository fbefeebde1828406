package tcpkit

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Regression tests for the defects an outside review of the engines found
// (issue 17), numbered as the review numbers them. Each failed before its
// fix. The epoll engine's own are in trust_linux_test.go.

// readErr reads from nc until an error, within d, and returns it.
func readErr(t *testing.T, nc net.Conn, d time.Duration) error {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, nc)
	if err == nil {
		err = io.EOF // io.Copy reports the end as nil
	}
	return err
}

// wantReset fails t unless err is a reset (ECONNRESET), as a client sees
// one.
func wantReset(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("%s: got %v, want a reset (ECONNRESET)", what, err)
	}
}

// resetConn closes nc with an RST.
func resetConn(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	nc.Close()
}

// 1. A TLS client that connects and stays silent looks idle to Shutdown.
// Ending it asked crypto/tls for its state, which waited for the handshake
// goroutine, which waited for input only the blocked event goroutine could
// read: Shutdown never returned, and on epoll the whole loop froze. It is
// reset now, and the other connections of its loop are served meanwhile.
func TestShutdownResetsHandshakingTLSClient(t *testing.T) {
	forEachSoloEngine(t, func(t *testing.T, e engine) {
		s := &Server{TLS: testServerTLS(), ShutdownIdle: 50 * time.Millisecond, Logger: discardLogger(),
			Handler: func(c *Conn) { Pipe(c, c) }}
		e.apply(s)
		ln := mustListen(t, "127.0.0.1:0")
		served := make(chan error, 1)
		go func() { served <- s.Serve(ln) }()
		addr := ln.Addr().String()

		silent := dialRaw(t, addr) // connects, sends nothing
		partial := dialRaw(t, addr)
		partial.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // the start of a ClientHello, then nothing
		busy := dialTLS(t, addr, testClientTLS())
		time.Sleep(150 * time.Millisecond) // the silent clients look idle

		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			shut <- s.Shutdown(ctx)
		}()
		wantReset(t, "silent client", readErr(t, silent, 5*time.Second))
		wantReset(t, "client with half a ClientHello", readErr(t, partial, 5*time.Second))
		// The client that finished its handshake is ended, in TLS's way.
		if err := readErr(t, busy, 5*time.Second); err != io.EOF {
			t.Errorf("client past its handshake: %v, want close_notify and the end", err)
		}
		busy.Close()
		if err := waitFor(t, shut, 10*time.Second, "Shutdown"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		waitFor(t, served, 5*time.Second, "Serve")
		if st := s.Stats(); st.Closed.Shutdown != 2 || st.Closed.Clean != 1 {
			t.Errorf("closed %+v; want 2 cut by the shutdown, 1 clean", st.Closed)
		}
	})
}

// 2. After the peer's FIN, a half-open connection reads no more, and a
// read would return 0 again whatever follows: the reset that the peer
// sends later was never seen. The connection stayed open for ever, and
// through a Pipe the other side saw a clean end.
func TestResetAfterPeerEndIsReported(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		closed := make(chan error, 1)
		ended := make(chan struct{})
		s := &Server{ConnConfig: ConnConfig{AllowHalfOpen: true}, Logger: failOnPanicLogger(t),
			Handler: func(c *Conn) {
				c.OnEnd(func() { close(ended) })
				c.OnClose(func(err error) { closed <- err })
			}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		nc.Write([]byte("x"))
		closeWrite(t, nc)
		waitFor(t, ended, 5*time.Second, "OnEnd")
		resetConn(nc)
		err := waitFor(t, closed, 5*time.Second, "the close of a half-open connection whose peer reset")
		wantReset(t, "close error", err)
	})
}

// 2. shutdown(2) fails with ENOTCONN once the peer has reset the
// connection; that was taken for a clean end. It is the reset it is.
func TestEndAfterResetIsNoCleanEnd(t *testing.T) {
	c, d := newFakeConn(t, ConnConfig{AllowHalfOpen: true}, nil)
	d.closeWriteErr = &net.OpError{Op: "shutdown", Err: syscall.ENOTCONN}
	errs := recordEvents(c)
	c.onRead(nil, io.EOF)
	wantAction(t, c, actWatch)
	c.End()
	wantAction(t, c, actClosed)
	c.finish()
	if err := c.Err(); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("close error %v, want ECONNRESET; events %v", err, *errs)
	}
}

// 9. Under ProxyOptional, only a client that has sent nothing may be served
// as one without a header: the start of a header that stops is refused,
// not handed to the Handler as the client's data.
func TestProxyOptionalPartialHeaderIsRefused(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		handled := make(chan []byte, 4)
		failures := make(chan *HandshakeError, 4)
		s := &Server{ProxyProtocol: ProxyOptional, ProxyHeaderTimeout: 200 * time.Millisecond, Logger: discardLogger(),
			Handler: func(c *Conn) {
				c.OnData(func(p []byte) { handled <- bytes.Clone(p) })
			},
			OnHandshakeError: func(err *HandshakeError) { failures <- err }}
		addr := startServer(t, e, s, "127.0.0.1:0")
		for _, part := range [][]byte{[]byte("PROXY TCP4 203.0.113.7 "), proxyV2Sig[:7]} {
			nc := dialRaw(t, addr)
			nc.Write(part)
			f := waitFor(t, failures, 5*time.Second, "the refusal")
			if f.Stage != "proxy" || !strings.Contains(f.Error(), "partial PROXY protocol header") {
				t.Errorf("failure %v", f)
			}
			wantReset(t, "client", readErr(t, nc, 5*time.Second))
		}
		select {
		case p := <-handled:
			t.Errorf("the Handler got %q as the client's data", p)
		default:
		}
		// A client that sends nothing is still served without a header.
		nc := dialRaw(t, addr)
		time.Sleep(400 * time.Millisecond)
		nc.Write([]byte("late"))
		if p := waitFor(t, handled, 5*time.Second, "data"); string(p) != "late" {
			t.Errorf("data %q", p)
		}
	})
}

// 10. A failed PROXY stage reset the client only... never: it ended with
// a FIN after its bytes had been acknowledged, as if they had been read.
// And a v2 header is refused at its length field when over the limit,
// rather than buffered up to 64 KiB and then refused by the parser.
func TestProxyFailureResets(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		ps := startProxyServer(t, e, "127.0.0.1:0", ProxyRequired)
		nc := dialRaw(t, ps.addr)
		nc.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		wantReset(t, "client without a header", readErr(t, nc, 5*time.Second))
		waitFor(t, ps.failures, 5*time.Second, "the failure")

		big := append(bytes.Clone(proxyV2Sig), 0x21, 0x11, 0, 0)
		binary.BigEndian.PutUint16(big[14:], 5000)
		nc = dialRaw(t, ps.addr)
		nc.Write(big) // the header's start alone: the rest never comes
		f := waitFor(t, ps.failures, time.Second, "the refusal of an oversized v2 header")
		if !strings.Contains(f.Error(), "over the limit of 4096") {
			t.Errorf("failure %v; want the limit named", f)
		}
		wantReset(t, "client with an oversized header", readErr(t, nc, 5*time.Second))
	})
}

// 11. Socket options on a closed connection fail with net.ErrClosed. On
// the epoll engine they went to the descriptor number, which the next
// connection may have been given.
func TestSocketOptionsAfterClose(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		conns := make(chan *Conn, 2)
		s := &Server{Logger: failOnPanicLogger(t), Handler: func(c *Conn) { conns <- c }}
		addr := startServer(t, e, s, "127.0.0.1:0")
		dialRaw(t, addr)
		a := waitFor(t, conns, 5*time.Second, "first connection")
		a.Close()
		waitFor(t, a.Done(), 5*time.Second, "close")
		dialRaw(t, addr)
		b := waitFor(t, conns, 5*time.Second, "second connection") // may have a's old descriptor
		for name, err := range map[string]error{
			"SetNoDelay":   a.SetNoDelay(false),
			"SetKeepAlive": a.SetKeepAlive(true, time.Second),
		} {
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s on a closed connection: %v, want net.ErrClosed", name, err)
			}
		}
		if !noDelay(t, b) {
			t.Errorf("the next connection's TCP_NODELAY is off: an option meant for a closed one reached it")
		}
		b.Close()
	})
}

// 13. Reset from another goroutine published closing before it recorded
// the reset, and the event goroutine could release the socket between
// the two: a FIN instead of an RST. A test hook holds Reset in that window,
// after waking the event goroutine, for long enough that it closes the
// socket first.
func TestResetFromAnotherGoroutineAlwaysResets(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		conns := make(chan *Conn, 1)
		s := &Server{Logger: failOnPanicLogger(t), Handler: func(c *Conn) { conns <- c }}
		addr := startServer(t, e, s, "127.0.0.1:0")
		hook := func(c *Conn) {
			c.post(evWake)
			time.Sleep(5 * time.Millisecond)
		}
		shutHook.Store(&hook)
		defer shutHook.Store(nil)
		const tries = 20
		fins := 0
		for range tries {
			nc := dialRaw(t, addr)
			c := waitFor(t, conns, 5*time.Second, "connection")
			done := make(chan struct{})
			go func() { c.Reset(); close(done) }()
			if err := readErr(t, nc, 5*time.Second); err == io.EOF {
				fins++
			} else if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("client: %v", err)
			}
			waitFor(t, done, 5*time.Second, "Reset")
			nc.Close()
		}
		if fins > 0 {
			t.Errorf("%d of %d Resets from another goroutine ended with a FIN, not an RST", fins, tries)
		}
	})
}

// 14. A connection refused by a limit after its PROXY header was counted
// as dropped while it was still open: Accepted = Open + Dropped + Closed
// broke until it closed.
func TestStatsInvariantWhileProxyDropCloses(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		var s *Server
		var broken atomic.Value
		dropped := make(chan struct{}, 1)
		s = &Server{ProxyProtocol: ProxyRequired, Logger: failOnPanicLogger(t), Handler: func(c *Conn) {},
			Deny: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")},
			OnDrop: func(Drop) {
				st := s.Stats() // on the refused connection's event goroutine, before it closes
				if int64(st.Open)+st.Dropped.Total()+st.Closed.Total() != st.Accepted {
					broken.Store(st)
				}
				dropped <- struct{}{}
			}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		nc.Write(formatHeader(t, header(t, 2, "203.0.113.9:1", "192.0.2.1:80")))
		waitFor(t, dropped, 5*time.Second, "the drop")
		if st := broken.Load(); st != nil {
			t.Errorf("Accepted != Open + Dropped + Closed during the drop: %+v", st)
		}
		wantReset(t, "refused client", readErr(t, nc, 5*time.Second))
		deadline := time.Now().Add(5 * time.Second)
		for st := s.Stats(); st.Dropped.Denied != 1 || st.Open != 0; st = s.Stats() {
			if time.Now().After(deadline) {
				t.Fatalf("stats %+v; want the connection counted once, as denied", st)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// A bare TCP probe (connect, close, as a health checker does) to a PROXY
// or TLS port is logged at DEBUG; WARN is for headers and handshakes that
// went wrong.
func TestBareProbeIsNoWarning(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		for _, tlsOn := range []bool{false, true} {
			var logs logBuffer
			s := &Server{ProxyProtocol: ProxyRequired, Logger: logs.logger(), Handler: func(c *Conn) {}}
			if tlsOn {
				s.ProxyProtocol, s.TLS = ProxyOff, testServerTLS()
			}
			addr := startServer(t, e, s, "127.0.0.1:0")
			for range 3 {
				nc := dialRaw(t, addr)
				nc.Close()
			}
			deadline := time.Now().Add(5 * time.Second)
			for s.HandshakeErrors() < 3 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if n := s.HandshakeErrors(); n != 3 {
				t.Fatalf("TLS %v: %d handshake errors counted, want 3", tlsOn, n)
			}
			if strings.Contains(logs.String(), "WARN") {
				t.Errorf("TLS %v: probes logged a warning:\n%s", tlsOn, logs.String())
			}
			nc := dialRaw(t, addr)
			nc.Write([]byte("garbage that is neither a header nor TLS\r\n"))
			readErr(t, nc, 5*time.Second)
			for !strings.Contains(logs.String(), "WARN") && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if !strings.Contains(logs.String(), "WARN") {
				t.Errorf("TLS %v: a failed handshake was not logged at WARN:\n%s", tlsOn, logs.String())
			}
		}
	})
}

// 1, 5. Conn.TLS from another goroutine does not wait for a handshake in
// progress (which may be waiting for that very goroutine): it returns nil
// until the handshake is done.
func TestTLSStateDuringHandshakeIsNil(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		var conn atomic.Pointer[Conn]
		s := &Server{TLS: testServerTLS(), Logger: discardLogger(), Handler: func(c *Conn) { Pipe(c, c) }}
		e.apply(s)
		ln := mustListen(t, "127.0.0.1:0")
		go s.Serve(ln)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s.Shutdown(ctx)
		})
		nc := dialRaw(t, ln.Addr().String())
		deadline := time.Now().Add(5 * time.Second)
		for conn.Load() == nil && time.Now().Before(deadline) {
			if s.NumConns() > 0 { // s.init has run (its sync.Once): s.conns may be read
				for _, c := range s.openConns() {
					conn.Store(c)
				}
			}
			time.Sleep(time.Millisecond)
		}
		c := conn.Load()
		if c == nil {
			t.Fatal("no connection")
		}
		got := make(chan *tls.ConnectionState, 1)
		go func() { got <- c.TLS() }()
		if st := waitFor(t, got, 2*time.Second, "Conn.TLS during the handshake"); st != nil {
			t.Errorf("TLS() = %+v during the handshake, want nil", st)
		}
		nc.Close()
	})
}
