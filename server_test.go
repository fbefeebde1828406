package tcpkit

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// serveOn serves s on a new listener at addr without the cleanup of
// startServer, for tests that drive Close and Shutdown themselves. It
// returns the bound address and Serve's result.
func serveOn(t *testing.T, e engine, s *Server, addr string) (string, <-chan error) {
	t.Helper()
	e.apply(s)
	ln, err := Listen(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	listening := make(chan struct{})
	s.OnListening = func(net.Addr) { close(listening) }
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	waitFor(t, listening, 5*time.Second, "listening event")
	return addrString(ln.Addr()), served
}

func TestServerCloseKeepsConnections(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		closed := make(chan struct{})
		s := &Server{Handler: func(c *Conn) { Pipe(c, c) }, OnClose: func() { close(closed) }}
		addr, served := serveOn(t, e, s, addr)
		nc := dialRaw(t, addr)
		io.WriteString(nc, "a")
		io.ReadFull(nc, make([]byte, 1)) // the connection is up and served

		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := waitFor(t, served, 5*time.Second, "Serve to return"); err != ErrServerClosed {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		// Stopped accepting at once.
		network, address, _ := ParseAddr(addr)
		if c, err := net.Dial(network, address); err == nil {
			c.Close()
			t.Error("a new connection was accepted after Close")
		}
		if network == "unix" {
			if _, err := os.Stat(address); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket file still there after Close: %v", err)
			}
		}
		// The open connection keeps working; close waits for it.
		io.WriteString(nc, "still echoing")
		buf := make([]byte, 13)
		if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != "still echoing" {
			t.Errorf("echo after Close: %q, %v", buf, err)
		}
		select {
		case <-closed:
			t.Fatal("server close event before its last connection closed")
		case <-time.After(20 * time.Millisecond):
		}
		closeWrite(t, nc)
		waitFor(t, closed, 5*time.Second, "server close event")
		waitFor(t, s.Done(), 10*time.Second, "server close event")
	})
}

func TestServerCloseWithoutConnections(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		var closes atomic.Int32
		s := &Server{OnClose: func() { closes.Add(1) }}
		_, served := serveOn(t, e, s, "127.0.0.1:0")
		s.Close()
		s.Close() // idempotent
		waitFor(t, s.Done(), 5*time.Second, "close event")
		waitFor(t, served, 10*time.Second, "Serve to return")
		if n := closes.Load(); n != 1 {
			t.Errorf("OnClose called %d times, want 1", n)
		}
		if err := s.Serve(mustListen(t, "127.0.0.1:0")); err != ErrServerClosed {
			t.Errorf("Serve after Close returned %v, want ErrServerClosed", err)
		}
	})
}

func mustListen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := Listen(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestServerShutdownEndsIdleConnections(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		s := &Server{ShutdownIdle: 100 * time.Millisecond, Handler: func(c *Conn) {
			c.WriteString("hello\r\n")
			Pipe(c, c)
		}}
		addr, served := serveOn(t, e, s, addr)
		const n = 5
		var clients []net.Conn
		for range n {
			nc := dialRaw(t, addr)
			io.ReadFull(nc, make([]byte, 7))
			clients = append(clients, nc)
		}
		done := make(chan error, 1)
		go func() { done <- s.Shutdown(context.Background()) }()
		// Each idle client gets the server's FIN, answers with its own, and
		// Shutdown returns once all are closed.
		var wg sync.WaitGroup
		for _, nc := range clients {
			wg.Go(func() {
				if b, err := io.ReadAll(nc); err != nil || len(b) != 0 {
					t.Errorf("idle client read %q, %v; want a clean end", b, err)
				}
				nc.Close()
			})
		}
		waitGroup(t, &wg, 30*time.Second, "the goroutines")
		if err := waitFor(t, done, 5*time.Second, "Shutdown"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		waitFor(t, served, 10*time.Second, "Serve to return")
		if s.NumConns() != 0 {
			t.Errorf("%d connections left after Shutdown", s.NumConns())
		}
	})
}

func TestServerShutdownWaitsForBusyConnection(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		s := &Server{Handler: func(c *Conn) { Pipe(c, c) }}
		addr, served := serveOn(t, e, s, addr)
		nc := dialRaw(t, addr)
		done := make(chan error, 1)
		// The client keeps talking for a while: it is not idle, so Shutdown
		// must wait, and nothing it sends is lost.
		io.WriteString(nc, "0")
		io.ReadFull(nc, make([]byte, 1))
		go func() { done <- s.Shutdown(context.Background()) }()
		buf := make([]byte, 1)
		for i := range 20 {
			time.Sleep(5 * time.Millisecond)
			if _, err := nc.Write([]byte{byte('a' + i)}); err != nil {
				t.Fatalf("write %d during Shutdown: %v", i, err)
			}
			if _, err := io.ReadFull(nc, buf); err != nil || buf[0] != byte('a'+i) {
				t.Fatalf("echo %d during Shutdown: %q, %v", i, buf, err)
			}
		}
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v while the connection was busy", err)
		default:
		}
		closeWrite(t, nc)
		io.ReadAll(nc)
		if err := waitFor(t, done, 5*time.Second, "Shutdown"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		waitFor(t, served, 10*time.Second, "Serve to return")
	})
}

func TestServerShutdownContextExpires(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		closeErrs := make(chan error, 1)
		opened := make(chan struct{})
		s := &Server{
			// Half-open: after the server's FIN the connection stays until
			// the peer ends, which this peer never does.
			ConnConfig: ConnConfig{AllowHalfOpen: true},
			Handler: func(c *Conn) {
				c.OnClose(func(err error) { closeErrs <- err })
				c.OnData(func(p []byte) {}) // a peer that keeps sending keeps it busy
				close(opened)
			},
		}
		addr, served := serveOn(t, e, s, addr)
		nc := dialRaw(t, addr)
		waitFor(t, opened, 5*time.Second, "connection")
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for range 2000 { // bounded: about 10s at most
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				if _, err := io.WriteString(nc, "busy"); err != nil {
					return
				}
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := s.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown returned %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Shutdown took %v after its context expired", d)
		}
		if err := waitFor(t, closeErrs, time.Second, "close event"); !errors.Is(err, ErrServerClosed) {
			t.Errorf("close error of a connection cut by Shutdown: %v, want ErrServerClosed", err)
		}
		waitFor(t, served, 10*time.Second, "Serve to return")
		waitFor(t, s.Done(), 10*time.Second, "server close event")
	})
}

// flakyListener returns EMFILE from Accept a set number of times, then
// hands on to the real listener. Failures armed by failNext while Accept is
// already waiting on the real listener are served after that Accept returns
// a connection, which is held back until they are spent; so a run of
// failures always happens before the next connection is served.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
	held  net.Conn
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if c, ok, err := l.next(); ok {
		return c, err
	}
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fails > 0 {
		l.held = c
		l.fails--
		return nil, emfile()
	}
	return c, nil
}

// next returns a failure or a held connection, if one is due.
func (l *flakyListener) next() (net.Conn, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fails > 0 {
		l.fails--
		return nil, true, emfile()
	}
	if c := l.held; c != nil {
		l.held = nil
		return c, true, nil
	}
	return nil, false, nil
}

func emfile() error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
}

// SyscallConn hands on the real listener's, so that the epoll engine, which
// needs a listener with a file descriptor, serves this one too.
func (l *flakyListener) SyscallConn() (syscall.RawConn, error) {
	return l.Listener.(syscall.Conn).SyscallConn()
}

func (l *flakyListener) failNext(n int) {
	l.mu.Lock()
	l.fails = n
	l.mu.Unlock()
}

func TestServerAcceptBackoff(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		var mu sync.Mutex
		var reported []error
		s := &Server{
			Handler: func(c *Conn) { Pipe(c, c) },
			OnError: func(err error) { mu.Lock(); reported = append(reported, err); mu.Unlock() },
		}
		e.apply(s)
		ln := &flakyListener{Listener: mustListen(t, "127.0.0.1:0"), fails: 5}
		served := make(chan error, 1)
		go func() { served <- s.Serve(ln) }()
		addr := ln.Addr().String()
		// The server backs off through five EMFILEs (5+10+20+40+80 ms), then
		// serves as usual.
		if err := echoOnce(addr, []byte("after EMFILE")); err != nil {
			t.Fatal(err)
		}
		ln.failNext(3)
		if err := echoOnce(addr, []byte("after more EMFILE")); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-served; err != ErrServerClosed {
			t.Errorf("Serve returned %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(reported) != 2 {
			t.Fatalf("OnError called %d times for two runs of EMFILE, want once per run: %v", len(reported), reported)
		}
		for _, err := range reported {
			if !errors.Is(err, syscall.EMFILE) {
				t.Errorf("reported %v, want EMFILE", err)
			}
		}
	})
}

// brokenListener fails Accept with an error that is not temporary.
type brokenListener struct{ net.Listener }

// SyscallConn hands on the real listener's, so that the epoll engine serves
// this one too.
func (l brokenListener) SyscallConn() (syscall.RawConn, error) {
	return l.Listener.(syscall.Conn).SyscallConn()
}

func (l brokenListener) Accept() (net.Conn, error) {
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EINVAL)}
}

func TestServerServeReturnsPermanentAcceptError(t *testing.T) {
	s := &Server{}
	err := s.Serve(brokenListener{mustListen(t, "127.0.0.1:0")})
	if !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Serve returned %v, want the EINVAL from Accept", err)
	}
	s.Close()
}

func TestServerPanicClosesOnlyThatConnection(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		closeErrs := make(chan error, 2)
		var log logBuffer
		s := &Server{
			Logger: log.logger(),
			Handler: func(c *Conn) {
				c.OnClose(func(err error) { closeErrs <- err })
				c.OnData(func(p []byte) {
					if string(p) == "panic" {
						panic("boom")
					}
					c.Write(p)
				})
			},
		}
		addr = startServer(t, e, s, addr)
		good, bad := dialRaw(t, addr), dialRaw(t, addr)
		io.WriteString(bad, "panic")
		var pe *PanicError
		if err := waitFor(t, closeErrs, 5*time.Second, "close of the panicking connection"); !errors.As(err, &pe) || pe.Value != "boom" {
			t.Fatalf("close error %v, want a *PanicError for boom", err)
		}
		if l := log.String(); !strings.Contains(l, `msg="tcpkit: panic in connection callback"`) ||
			!strings.Contains(l, "panic=boom") || strings.Count(l, "panic in") != 1 {
			t.Errorf("want one log line for the panic, with its value; log:\n%s", l)
		}
		io.WriteString(good, "fine")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(good, buf); err != nil || string(buf) != "fine" {
			t.Errorf("other connection after a panic: %q, %v", buf, err)
		}
	})
}

func TestServerConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  ConnConfig
	}{
		{name: "LowWater above HighWater", cfg: ConnConfig{HighWater: 10, LowWater: 20}},
		{name: "MaxBuffered below HighWater", cfg: ConnConfig{HighWater: 100, MaxBuffered: 10}},
		{name: "negative size", cfg: ConnConfig{ReadBufferSize: -1}},
		{name: "negative timeout", cfg: ConnConfig{IdleTimeout: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{ConnConfig: tt.cfg}
			if err := s.Serve(mustListen(t, "127.0.0.1:0")); err == nil || err == ErrServerClosed {
				t.Errorf("Serve with %+v returned %v, want a configuration error", tt.cfg, err)
			}
			if _, err := Dial(context.Background(), "127.0.0.1:1", nil); err == nil {
				t.Error("Dial to a closed port succeeded")
			}
			d := Dialer{ConnConfig: tt.cfg}
			if _, err := d.Dial(context.Background(), "127.0.0.1:1", nil); err == nil || errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("Dial with %+v returned %v, want a configuration error", tt.cfg, err)
			}
		})
	}
}

// listen-close-server: Close from inside a server callback must not hang.
func TestServerCloseFromOnListening(t *testing.T) {
	s := &Server{}
	s.OnListening = func(net.Addr) { s.Close() }
	served := make(chan error, 1)
	go func() { served <- s.Serve(mustListen(t, "127.0.0.1:0")) }()
	if err := waitFor(t, served, 5*time.Second, "Serve to return"); err != ErrServerClosed {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	waitFor(t, s.Done(), 5*time.Second, "close event")
}

func TestServerShutdownEvent(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		// The protocol answers each request after a delay, on another
		// goroutine; Shutdown must not cut an answer off.
		var work sync.WaitGroup
		defer work.Wait()
		received := make(chan struct{}, 1)
		s := &Server{Handler: func(c *Conn) {
			var pending atomic.Int32
			var shuttingDown atomic.Bool
			c.OnShutdown(func() {
				shuttingDown.Store(true)
				if pending.Load() == 0 {
					c.End()
				}
			})
			c.OnData(func(p []byte) {
				pending.Add(1)
				received <- struct{}{}
				req := string(p)
				work.Go(func() {
					time.Sleep(100 * time.Millisecond)
					c.WriteString("answer to " + req)
					if pending.Add(-1) == 0 && shuttingDown.Load() {
						c.End()
					}
				})
			})
		}}
		addr, served := serveOn(t, e, s, addr)
		nc := dialRaw(t, addr)
		io.WriteString(nc, "q")
		waitFor(t, received, 5*time.Second, "the request") // in; its answer not yet
		done := make(chan error, 1)
		go func() { done <- s.Shutdown(context.Background()) }()
		got, err := io.ReadAll(nc)
		if err != nil || string(got) != "answer to q" {
			t.Errorf("client read %q, %v; want the whole answer, then the end", got, err)
		}
		nc.Close()
		if err := waitFor(t, done, 5*time.Second, "Shutdown"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		waitFor(t, served, 10*time.Second, "Serve to return")
	})
}

func TestConnCloseWithError(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		protoErr := errors.New("bad request")
		addr, recs := recordingServer(t, e, "127.0.0.1:0", ConnConfig{}, func(c *Conn) {
			c.OnData(func([]byte) { c.CloseWithError(protoErr) })
		})
		nc := dialRaw(t, addr)
		io.WriteString(nc, "junk")
		r := waitFor(t, recs, 5*time.Second, "connection")
		r.check(t, "open", "data", "error", "close")
		if r.closeErr() != protoErr {
			t.Errorf("close error %v, want the handler's", r.closeErr())
		}
	})
}

// A peer that stops reading while the server keeps queueing is idle: bytes
// that only reach the queue are not traffic.
func TestConnIdleTimeoutWithStuckPeer(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		stop := make(chan struct{})
		var writer sync.WaitGroup
		defer writer.Wait()
		defer close(stop)
		// Small socket buffers fill at once, and the queue stays small, so
		// that the handler's writes come evenly, every 10ms.
		cfg := ConnConfig{IdleTimeout: 100 * time.Millisecond, MaxBuffered: 32 << 20, SendBuffer: 4 << 10}
		addr, recs := recordingServer(t, e, "127.0.0.1:0", cfg,
			func(c *Conn) {
				writer.Go(func() {
					for range 1000 { // 10s at most; the connection should close long before
						select {
						case <-stop:
							return
						case <-time.After(10 * time.Millisecond):
						}
						if _, err := c.Write(make([]byte, 16<<10)); err != nil {
							return
						}
					}
				})
			})
		nc := dialRaw(t, addr) // never reads
		nc.(*net.TCPConn).SetReadBuffer(4 << 10)
		r := waitFor(t, recs, 5*time.Second, "connection")
		// Idle once the kernel's buffers are full: well within 3s, while
		// the handler is still writing.
		waitFor(t, r.closed, 3*time.Second, "idle close while the handler still writes")
		if !errors.Is(r.closeErr(), ErrIdleTimeout) {
			t.Errorf("close error %v, want ErrIdleTimeout", r.closeErr())
		}
	})
}

// A connection with bytes queued is not idle for Shutdown, however long
// its peer has not read: ending it is left to the grace period.
func TestShutdownKeepsConnectionWithQueuedBytes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		cfg := ConnConfig{HighWater: 8 << 10, ReadBufferSize: 8 << 10, MaxBuffered: 1 << 20, SendBuffer: 4 << 10}
		conns := make(chan *Conn, 1)
		s := &Server{ConnConfig: cfg, ShutdownIdle: 20 * time.Millisecond, Handler: func(c *Conn) { conns <- c }}
		addr, served := serveOn(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		nc.(*net.TCPConn).SetReadBuffer(4 << 10)
		c := waitFor(t, conns, 5*time.Second, "connection")
		fillKernel(t, c)
		// As much again as the writer holds: the queue and the bytes in
		// flight are then equal.
		c.Write(make([]byte, c.Buffered()))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		time.Sleep(100 * time.Millisecond) // idle for five ShutdownIdle periods
		shut := make(chan error, 1)
		go func() { shut <- s.Shutdown(ctx) }()
		time.Sleep(150 * time.Millisecond)
		if _, err := c.Write([]byte("still open")); err != nil {
			t.Errorf("Shutdown ended a connection with bytes queued: Write: %v", err)
		}
		cancel()
		if err := waitFor(t, shut, 5*time.Second, "Shutdown"); !errors.Is(err, context.Canceled) {
			t.Errorf("Shutdown: %v, want its context's end", err)
		}
		waitFor(t, served, 5*time.Second, "Serve to return")
	})
}

// A failing listener among several closes the server, and its error is
// returned, not dropped.
func TestServerServeAllReturnsEveryError(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		s := &Server{Logger: failOnPanicLogger(t)}
		e.apply(s)
		good := mustListen(t, "127.0.0.1:0")
		bad := brokenListener{mustListen(t, "127.0.0.1:0")}
		errc := make(chan error, 1)
		go func() { errc <- s.serveAll([]net.Listener{good, bad}) }()
		err := waitFor(t, errc, 5*time.Second, "serveAll to return")
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("serveAll returned %v, want the broken listener's EINVAL", err)
		}
		if _, derr := net.DialTimeout("tcp", good.Addr().String(), time.Second); derr == nil {
			t.Error("the other listener still accepts after one failed")
		}
		waitFor(t, s.Done(), 5*time.Second, "server close event")
	})
}

// The server's close event waits for the close events of its connections
// to return, even when Close comes while one is running.
func TestServerCloseEventAfterConnectionCloseEvents(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		var mu sync.Mutex
		var order []string
		record := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
		inClose := make(chan struct{})
		s := &Server{
			Handler: func(c *Conn) {
				c.OnClose(func(error) {
					close(inClose)
					time.Sleep(200 * time.Millisecond)
					record("connection closed")
				})
			},
			OnClose: func() { record("server closed") },
		}
		addr, served := serveOn(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		nc.Close() // the connection closes; its close event takes a while
		waitFor(t, inClose, 5*time.Second, "the connection's close event")
		s.Close()
		waitFor(t, served, 5*time.Second, "Serve to return")
		waitFor(t, s.Done(), 5*time.Second, "server close event")
		mu.Lock()
		defer mu.Unlock()
		if want := []string{"connection closed", "server closed"}; !slices.Equal(order, want) {
			t.Errorf("events %v, want %v", order, want)
		}
	})
}

// closeFailListener fails its Close, once it has really closed.
type closeFailListener struct{ net.Listener }

func (l closeFailListener) SyscallConn() (syscall.RawConn, error) {
	return l.Listener.(syscall.Conn).SyscallConn()
}

func (l closeFailListener) Close() error {
	l.Listener.Close()
	return errors.New("close failed")
}

// Close returns a listener's Close error, other than net.ErrClosed.
func TestServerCloseReturnsListenerError(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		s := &Server{}
		e.apply(s)
		ln := closeFailListener{mustListen(t, "127.0.0.1:0")}
		listening := make(chan struct{})
		s.OnListening = func(net.Addr) { close(listening) }
		served := make(chan error, 1)
		go func() { served <- s.Serve(ln) }()
		waitFor(t, listening, 5*time.Second, "listening event")
		if err := s.Close(); err == nil || err.Error() != "close failed" {
			t.Errorf("Close returned %v, want the listener's error", err)
		}
		waitFor(t, served, 5*time.Second, "Serve to return")
	})
}
