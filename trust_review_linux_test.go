//go:build linux

package tcpkit

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit/internal/fault"
)

// Regression tests for what a hostile review of issue 17's fixes found.
// Each failed before its fix.

// EpollEngine.Close from a connection's callback (say, OnClose of the last
// connection) waited for its own loop, which could not exit while the
// callback ran: the engine froze.
func TestEpollCloseFromCallbackReturns(t *testing.T) {
	e, err := NewEpollEngine(EpollConfig{Loops: 1, Logger: failOnPanicLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln := mustListen(t, "127.0.0.1:0")
	defer ln.Close()
	go func() {
		if nc, err := ln.Accept(); err == nil {
			nc.Close()
		}
	}()
	returned := make(chan struct{})
	c, err := (&Dialer{Engine: e}).Dial(context.Background(), ln.Addr().String(), func(c *Conn) {
		c.OnClose(func(error) {
			e.Close()
			close(returned)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, returned, 5*time.Second, "EpollEngine.Close called from OnClose")
	waitFor(t, c.Done(), 5*time.Second, "the connection's close")
	done := make(chan struct{})
	go func() { e.Close(); close(done) }() // from elsewhere: waits for the loop, which has stopped
	waitFor(t, done, 5*time.Second, "a second Close")
}

// A TLS Dial from a callback on the same epoll engine: its handshake needs
// the loop the Dial holds up, and the handshake timeout runs on that loop
// too. It hung the loop for good; it is an error now.
func TestTLSDialFromOwnLoopIsAnError(t *testing.T) {
	e := newSoloEpoll(t)
	target := startServer(t, engines[0], &Server{TLS: testServerTLS(), Logger: discardLogger(),
		Handler: func(c *Conn) { Pipe(c, c) }}, "127.0.0.1:0")
	dialErr := make(chan error, 1)
	front := startServer(t, e, &Server{Logger: discardLogger(), Handler: func(c *Conn) {
		d := &Dialer{Engine: e.get(), TLS: testClientTLS()}
		up, err := d.Dial(context.Background(), target, nil)
		dialErr <- err
		if err == nil {
			up.Close()
		}
		c.Close()
	}}, "127.0.0.1:0")
	nc := dialRaw(t, front)
	err := waitFor(t, dialErr, 5*time.Second, "the Dial from the loop's callback")
	if err == nil || !strings.Contains(err.Error(), "from one of its own callbacks") {
		t.Errorf("TLS Dial from a callback of its own epoll engine: %v; want the error that says why", err)
	}
	if err := readErr(t, nc, 5*time.Second); err != io.EOF {
		t.Errorf("client: %v, want the end: the loop goes on", err)
	}
}

// serveOneHandshake serves s on e and starts a TLS client's handshake with
// it, returning once s's GetCertificate has sent to entered; Serve's error
// comes on the channel it returns.
func serveOneHandshake(t *testing.T, e engine, s *Server, entered <-chan struct{}) <-chan error {
	t.Helper()
	e.apply(s)
	ln := mustListen(t, "127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	nc := dialRaw(t, ln.Addr().String())
	go tls.Client(nc, testClientTLS()).Handshake()
	waitFor(t, entered, 5*time.Second, "GetCertificate")
	return served
}

// Shutdown waited without bound for a handshake goroutine stuck in a
// tls.Config callback (an ACME call that hangs), ignoring its ctx.
func TestShutdownHonoursCtxDuringSlowHandshake(t *testing.T) {
	forEachSoloEngine(t, func(t *testing.T, e engine) {
		release := make(chan struct{})
		var once sync.Once
		t.Cleanup(func() { once.Do(func() { close(release) }) })
		entered := make(chan struct{}, 1)
		cfg := testServerTLS()
		cert := testCert()
		cfg.Certificates = nil
		cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			entered <- struct{}{}
			<-release
			return &cert, nil
		}
		s := &Server{TLS: cfg, ShutdownIdle: 10 * time.Millisecond, Logger: discardLogger()}
		served := serveOneHandshake(t, e, s, entered)

		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- s.Shutdown(ctx) }()
		if err := waitFor(t, done, 5*time.Second, "Shutdown with a 300ms context"); err != context.DeadlineExceeded {
			t.Errorf("Shutdown: %v, want its context's error", err)
		}
		once.Do(func() { close(release) })
		waitFor(t, served, 5*time.Second, "Serve")
		// The handshake goroutine returns once its callback does.
		waitGroup(t, &s.handlers, 5*time.Second, "the handshake goroutine")
	})
}

// Input read just as the handshake finished on its goroutine was taken in
// place, as after the handshake, but in the TLS stage, which never copied
// it out of the loop's shared buffer: other connections' reads overwrote
// it. A slow read site (the fault seam) and a paused Handler widen the
// window.
func TestTLSInputCopiedAsHandshakeEnds(t *testing.T) {
	e := newSoloEpoll(t)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 16)
	var bad atomic.Int64
	s := &Server{TLS: testServerTLS(), Logger: discardLogger(),
		ConnConfig: ConnConfig{PauseOnConnect: true, ReadBufferSize: 16},
		Handler: func(c *Conn) {
			var got []byte
			c.OnData(func(p []byte) {
				got = append(got, p...)
				if len(got) == len(payload) {
					if !bytes.Equal(got, payload) {
						bad.Add(1)
					}
					c.WriteString("OK")
				}
			})
			time.AfterFunc(30*time.Millisecond, c.Resume)
		}}
	addr := startServer(t, e, s, "127.0.0.1:0")
	fault.Set(func(site fault.Site, fd int) fault.Fault {
		if site == fault.Read {
			time.Sleep(300 * time.Microsecond) // a busy or preempted loop
		}
		return fault.Fault{}
	})
	defer fault.Set(nil)
	const n = 30
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range n {
		wg.Go(func() {
			nc, err := net.DialTimeout("tcp", strings.TrimPrefix(addr, "tcp:"), 5*time.Second)
			if err != nil {
				failed.Add(1)
				return
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			tc := tls.Client(nc, testClientTLS())
			if err := tc.Handshake(); err != nil {
				failed.Add(1)
				return
			}
			tc.Write(payload)
			buf := make([]byte, 2)
			if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "OK" {
				failed.Add(1)
			}
		})
		time.Sleep(2 * time.Millisecond)
	}
	waitGroup(t, &wg, 20*time.Second, "the clients")
	if failed.Load() > 0 || bad.Load() > 0 {
		t.Errorf("%d of %d clients never got their answer, %d payloads corrupted", failed.Load(), n, bad.Load())
	}
}

// An emptied write queue, sliced forward as it was written, kept the whole
// of its buffer: after a burst, every idle connection held a megabyte.
func TestIdleConnectionKeepsNoBurstBuffer(t *testing.T) {
	e := newSoloEpoll(t)
	const conns, burst = 16, 1 << 20
	var mu sync.Mutex
	var server []*Conn
	s := &Server{Logger: discardLogger(), ConnConfig: ConnConfig{SendBuffer: 4096},
		Handler: func(c *Conn) {
			mu.Lock()
			i := len(server)
			server = append(server, c)
			mu.Unlock()
			c.Write(make([]byte, burst+i*1531))
		}}
	addr := startServer(t, e, s, "127.0.0.1:0")
	var clients []net.Conn
	for range conns {
		clients = append(clients, dialRaw(t, addr))
	}
	time.Sleep(100 * time.Millisecond) // the queues build up: nobody reads yet
	for _, nc := range clients {
		go io.Copy(io.Discard, nc)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		queued, n := 0, len(server)
		for _, c := range server {
			queued += c.Buffered()
		}
		mu.Unlock()
		if n == conns && queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queues not drained: %d bytes left", queued)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, c := range server {
		c.mu.Lock()
		held := cap(c.wq)
		c.mu.Unlock()
		if held != 0 {
			t.Errorf("connection %d, its queue empty, holds a buffer with room for %d bytes", i, held)
		}
	}
	runtime.KeepAlive(clients)
}

// The peer sent data, FIN, then RST before the loop read the FIN (the
// connection was paused): the read of the FIN cleared the readiness that
// the RST's edge had brought with it, and the half-open connection stayed
// open for ever, its reset unreported.
func TestResetBeforeFINIsReadIsReported(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		closed := make(chan error, 1)
		got := make(chan *Conn, 1)
		s := &Server{ConnConfig: ConnConfig{AllowHalfOpen: true, PauseOnConnect: true}, Logger: discardLogger(),
			Handler: func(c *Conn) {
				c.OnData(func([]byte) {})
				c.OnClose(func(err error) { closed <- err })
				got <- c
			}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		c := waitFor(t, got, 5*time.Second, "handler")
		nc.Write([]byte("hello"))
		nc.(*net.TCPConn).CloseWrite()
		time.Sleep(20 * time.Millisecond)
		resetConn(nc)
		time.Sleep(50 * time.Millisecond)
		c.Resume()
		wantReset(t, "close error", waitFor(t, closed, 5*time.Second, "the close of a connection whose peer sent FIN, then RST"))
	})
}

// EpollEngine.Close from an OnClose listener while another Close runs
// (the first Close's last turn runs the listener) waited in sync.Once for
// the first, which waited for this loop. And a Close after one made from a
// callback returned before the loops had finished.
func TestEpollCloseDuringCloseAndAfterCallbackClose(t *testing.T) {
	e, err := NewEpollEngine(EpollConfig{Loops: 1, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ln := mustListen(t, "127.0.0.1:0")
	defer ln.Close()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			defer nc.Close()
		}
	}()
	release := make(chan struct{})
	slow, err := (&Dialer{Engine: e}).Dial(context.Background(), ln.Addr().String(), func(c *Conn) {
		c.OnClose(func(error) {
			e.Close() // from the loop, during the Close below
			<-release
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	returned := make(chan struct{})
	go func() { e.Close(); close(returned) }()
	select {
	case <-returned:
		t.Error("EpollEngine.Close returned while a close event still ran on its loop")
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	waitFor(t, returned, 5*time.Second, "EpollEngine.Close")
	select {
	case <-slow.Done():
	default:
		t.Error("EpollEngine.Close returned before its connections' close events had run")
	}
}

// A "no timeout" of math.MaxInt64 overflowed into a deadline in the past:
// on the epoll engine the timer fired again and again, spinning the loop;
// on the goroutine engine the read deadline was always past, and the
// connection never read again; every TLS handshake failed at once.
func TestHugeTimeoutsMeanNever(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		fired := make(chan struct{}, 1)
		s := &Server{ConnConfig: ConnConfig{IdleTimeout: math.MaxInt64}, TLS: testServerTLS(),
			HandshakeTimeout: math.MaxInt64, Logger: discardLogger(), Handler: func(c *Conn) {
				c.SetTimeout(math.MaxInt64)
				c.OnTimeout(func() {
					select {
					case fired <- struct{}{}:
					default:
					}
				})
				Pipe(c, c)
			}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		tc := tls.Client(dialRaw(t, addr), testClientTLS())
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake with HandshakeTimeout math.MaxInt64: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
		tc.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "ping" {
			t.Errorf("echo with timeouts of math.MaxInt64: %q, %v", buf, err)
		}
		select {
		case <-fired:
			t.Error("OnTimeout fired for a timeout of math.MaxInt64")
		default:
		}
		tc.Close()
	})
}

// A TLS client's usual goodbye (close_notify, then close its socket) made
// its kernel answer our close_notify with a reset, and shutdown(2) then
// failed with ENOTCONN: a clean close reported as ECONNRESET, at random.
func TestCleanTLSCloseIsClean(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		const n = 20
		errs := make(chan error, n)
		s := &Server{TLS: testServerTLS(), Logger: discardLogger(), Handler: func(c *Conn) {
			c.OnData(func(p []byte) { c.Write(p) })
			c.OnClose(func(err error) { errs <- err })
		}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		for range n {
			tc := tls.Client(dialRaw(t, addr), testClientTLS())
			tc.Write([]byte("hi"))
			if _, err := io.ReadFull(tc, make([]byte, 2)); err != nil {
				t.Fatal(err)
			}
			tc.Close()
		}
		for range n {
			if err := waitFor(t, errs, 5*time.Second, "a close"); err != nil {
				t.Errorf("a clean TLS close ended with %v", err)
			}
		}
	})
}

// When ctx ended first (the handshaking connection not idle yet), Shutdown
// reset the connections and then waited, without bound, for a handshake
// goroutine stuck in GetCertificate. And the handshake's context was never
// cancelled: a GetCertificate that heeds ClientHelloInfo.Context was not
// told that its connection had gone.
func TestShutdownCtxPathAndHandshakeContext(t *testing.T) {
	forEachSoloEngine(t, func(t *testing.T, e engine) {
		for _, heeds := range []bool{false, true} {
			release := make(chan struct{})
			var once sync.Once
			t.Cleanup(func() { once.Do(func() { close(release) }) })
			entered := make(chan struct{}, 1)
			left := make(chan struct{})
			cfg := testServerTLS()
			cert := testCert()
			cfg.Certificates = nil
			cfg.GetCertificate = func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
				entered <- struct{}{}
				defer close(left)
				var cancelled <-chan struct{}
				if heeds {
					cancelled = hi.Context().Done()
				}
				select {
				case <-release:
				case <-cancelled:
					return nil, hi.Context().Err()
				}
				return &cert, nil
			}
			s := &Server{TLS: cfg, ShutdownIdle: time.Minute, Logger: discardLogger()}
			served := serveOneHandshake(t, e, s, entered)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			done := make(chan error, 1)
			go func() { done <- s.Shutdown(ctx) }()
			if heeds {
				waitFor(t, left, 3*time.Second, "GetCertificate, told by its context that the connection has gone")
			}
			if err := waitFor(t, done, 5*time.Second, "Shutdown with a 300ms context"); err != context.DeadlineExceeded {
				t.Errorf("Shutdown: %v", err)
			}
			cancel()
			once.Do(func() { close(release) })
			waitFor(t, served, 5*time.Second, "Serve")
			waitGroup(t, &s.handlers, 5*time.Second, "the handshake goroutine")
		}
	})
}
