package tcpkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit/internal/streamtest"
)

// TestShutdownUnderLoad: clients stream megabytes with pauses between some
// writes; Shutdown starts half way, with a generous deadline. Every stream
// must come back whole, new connections must be refused at once, and
// Shutdown must return nil only after the last client has finished.
func TestShutdownUnderLoad(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		const clients, size, chunk = 16, 2 << 20, 32 << 10
		cut := make(chan error, clients)
		opened := make(chan struct{}, clients)
		s := &Server{Handler: func(c *Conn) {
			opened <- struct{}{}
			c.OnClose(func(err error) {
				if err != nil {
					cut <- err
				}
			})
			Pipe(c, c)
		}}
		addr, served := serveOn(t, e, s, addr)
		conns := make([]net.Conn, clients)
		for i := range conns {
			conns[i] = dialRaw(t, addr)
		}
		streams := streamtest.Start(conns, size, chunk)
		for range clients {
			waitFor(t, opened, 10*time.Second, "every connection accepted")
			waitFor(t, streams.Half, 30*time.Second, "every client half way")
		}
		shut := make(chan error, 1)
		var shutAt time.Time // when Shutdown returned
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		go func() {
			err := s.Shutdown(ctx)
			shutAt = time.Now()
			shut <- err
		}()
		waitFor(t, served, 5*time.Second, "Serve to return")
		network, address, _ := ParseAddr(addr)
		if nc, err := net.DialTimeout(network, address, time.Second); err == nil {
			nc.Close()
			t.Error("a new connection was accepted during Shutdown")
		}
		lastEnd, errs, ok := streams.Wait(60 * time.Second)
		if !ok {
			t.Fatal("the clients did not finish within 60s")
		}
		for _, err := range errs {
			t.Error(err)
		}
		if err := waitFor(t, shut, 10*time.Second, "Shutdown"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if shutAt.Before(lastEnd) {
			t.Errorf("Shutdown returned %v before the last client finished sending", lastEnd.Sub(shutAt))
		}
		close(cut)
		for err := range cut {
			t.Errorf("a connection closed with %v", err)
		}
	})
}

// TestShutdownIdleThreshold: a client pausing for less than ShutdownIdle
// between writes is not ended; an idle client is, once idle that long.
func TestShutdownIdleThreshold(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		const idle = 500 * time.Millisecond
		s := &Server{ShutdownIdle: idle, Handler: func(c *Conn) { Pipe(c, c) }}
		addr, served := serveOn(t, e, s, addr)
		busy, quiet := dialRaw(t, addr), dialRaw(t, addr)
		for _, nc := range []net.Conn{busy, quiet} {
			io.WriteString(nc, "x")
			io.ReadFull(nc, make([]byte, 1))
		}
		start := time.Now()
		shut := shutdownAsync(s, context.Background())
		quietEnd := make(chan error, 1)
		go func() {
			b, err := io.ReadAll(quiet)
			if err == nil && len(b) > 0 {
				err = fmt.Errorf("read %q", b)
			}
			quietEnd <- err
		}()
		// The busy client pauses 100ms, a fifth of ShutdownIdle, between
		// writes, for 1.5s: three ShutdownIdle periods.
		buf := make([]byte, 1)
		for i := range 15 {
			time.Sleep(idle / 5)
			if _, err := busy.Write([]byte{byte('a' + i)}); err != nil {
				t.Fatalf("busy client, write %d: %v", i, err)
			}
			if _, err := io.ReadFull(busy, buf); err != nil || buf[0] != byte('a'+i) {
				t.Fatalf("busy client was ended during a pause: echo %d: %q, %v", i, buf, err)
			}
		}
		if err := waitFor(t, quietEnd, 5*time.Second, "the idle client's end"); err != nil {
			t.Errorf("idle client: %v, want a clean end", err)
		}
		quiet.Close()
		if d := time.Since(start); d < idle-50*time.Millisecond {
			t.Errorf("the idle client was ended after %v, before ShutdownIdle (%v)", d, idle)
		}
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned %v while a client was still busy", err)
		default:
		}
		closeWrite(t, busy)
		if b, err := io.ReadAll(busy); err != nil || len(b) != 0 {
			t.Errorf("busy client's end: %q, %v", b, err)
		}
		if err := waitFor(t, shut, 5*time.Second, "Shutdown"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		waitFor(t, served, 10*time.Second, "Serve to return")
	})
}

// TestShutdownWaitsForCallback: a connection whose OnData is busy for
// longer than ShutdownIdle is not ended under it; its reply goes out whole.
func TestShutdownWaitsForCallback(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		inCallback := make(chan struct{})
		s := &Server{ShutdownIdle: 20 * time.Millisecond, Handler: func(c *Conn) {
			c.OnData(func(p []byte) {
				close(inCallback)
				time.Sleep(300 * time.Millisecond) // computing the answer
				c.WriteString("answer")
			})
		}}
		addr, served := serveOn(t, e, s, addr)
		nc := dialRaw(t, addr)
		io.WriteString(nc, "q")
		waitFor(t, inCallback, 5*time.Second, "the request")
		shut := shutdownAsync(s, context.Background())
		got, err := io.ReadAll(nc)
		if err != nil || string(got) != "answer" {
			t.Errorf("client read %q, %v; want the answer, then the end", got, err)
		}
		nc.Close()
		if err := waitFor(t, shut, 5*time.Second, "Shutdown"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		waitFor(t, served, 10*time.Second, "Serve to return")
	})
}

// writeUntilError writes to nc every 10ms, for at most 5s, until a write
// fails, and returns that error (nil if none did).
func writeUntilError(nc net.Conn) error {
	for range 500 {
		if _, err := nc.Write([]byte("more")); err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// isPeerCut reports whether err is what a peer sees of a connection reset
// under it: ECONNRESET, or EPIPE once it has read the FIN before the reset.
func isPeerCut(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// TestPipeResetsAfterEnd: a client that keeps sending after the server has
// ended its side gets a reset, never a clean close with its data gone; the
// server's close error says why.
func TestPipeResetsAfterEnd(t *testing.T) {
	for _, how := range []string{"End", "Shutdown"} {
		t.Run(how, func(t *testing.T) {
			forEachNetwork(t, func(t *testing.T, e engine, addr string) {
				closeErr := make(chan error, 1)
				s := &Server{ShutdownIdle: 10 * time.Millisecond, Handler: func(c *Conn) {
					c.OnClose(func(err error) { closeErr <- err })
					if how == "End" {
						c.End()
					}
					Pipe(c, c)
				}}
				addr, served := serveOn(t, e, s, addr)
				nc := dialRaw(t, addr)
				shut := make(chan error, 1)
				if how == "Shutdown" {
					io.WriteString(nc, "x")
					io.ReadFull(nc, make([]byte, 1))
					go func() { shut <- s.Shutdown(context.Background()) }()
				}
				if b, err := io.ReadAll(nc); err != nil || len(b) != 0 {
					t.Fatalf("before sending more: read %q, %v; want the server's end", b, err)
				}
				err := writeUntilError(nc)
				if !isPeerCut(err) {
					t.Errorf("client kept sending after the server's end: write error %v, want ECONNRESET or EPIPE", err)
				}
				cerr := waitFor(t, closeErr, 5*time.Second, "close event")
				var pe *PipeError
				if !errors.As(cerr, &pe) || !errors.Is(cerr, ErrWriteAfterEnd) {
					t.Errorf("server's close error %v, want a *PipeError wrapping ErrWriteAfterEnd", cerr)
				}
				if got := errors.Is(cerr, ErrServerClosed); got != (how == "Shutdown") {
					t.Errorf("errors.Is(%v, ErrServerClosed) = %v", cerr, got)
				}
				nc.Close()
				if how == "Shutdown" {
					if err := waitFor(t, shut, 5*time.Second, "Shutdown"); err != nil {
						t.Errorf("Shutdown: %v", err)
					}
				} else {
					s.Close()
				}
				waitFor(t, served, 10*time.Second, "Serve to return")
			})
		})
	}
}

// TestPipeResetsSourceWhenDestinationCloses: Pipe between two connections
// resets its source once the destination can take no more.
func TestPipeResetsSourceWhenDestinationCloses(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		conns := make(chan *Conn, 2)
		srcErr := make(chan error, 1)
		s := &Server{Handler: func(c *Conn) { conns <- c }, ConnConfig: ConnConfig{PauseOnConnect: true}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		a := dialRaw(t, addr)
		src := waitFor(t, conns, 5*time.Second, "first connection")
		b := dialRaw(t, addr)
		dst := waitFor(t, conns, 5*time.Second, "second connection")
		src.OnClose(func(err error) { srcErr <- err })
		dst.Close()
		waitFor(t, dst.Done(), 10*time.Second, "close event")
		Pipe(dst, src)
		src.Resume()
		err := writeUntilError(a)
		if !isPeerCut(err) {
			t.Errorf("source's peer: write error %v, want ECONNRESET or EPIPE", err)
		}
		cerr := waitFor(t, srcErr, 5*time.Second, "source's close")
		var pe *PipeError
		if !errors.As(cerr, &pe) || !errors.Is(cerr, net.ErrClosed) {
			t.Errorf("source's close error %v, want a *PipeError wrapping net.ErrClosed", cerr)
		}
		b.Close()
	})
}

// TestShutdownDeadlineResets: connections still open when Shutdown's
// context ends are reset, so their peers know they were cut off, and their
// close error wraps ErrServerClosed.
func TestShutdownDeadlineResets(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		closeErr := make(chan error, 1)
		opened := make(chan struct{})
		s := &Server{Handler: func(c *Conn) {
			c.OnClose(func(err error) { closeErr <- err })
			c.OnData(func(p []byte) { c.Write(p) })
			close(opened)
		}}
		addr, served := serveOn(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		waitFor(t, opened, 5*time.Second, "the connection")
		stop := make(chan struct{})
		pinged := make(chan error, 1)
		go func() { // busy: never idle long enough to be ended
			for range 1000 {
				select {
				case <-stop:
					pinged <- nil
					return
				case <-time.After(10 * time.Millisecond):
				}
				if _, err := io.WriteString(nc, "busy"); err != nil {
					pinged <- err
					return
				}
			}
			pinged <- nil
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown returned %v, want context.DeadlineExceeded", err)
		}
		close(stop)
		pingErr := waitFor(t, pinged, 10*time.Second, "pinged")
		cerr := waitFor(t, closeErr, 5*time.Second, "close event")
		if !errors.Is(cerr, ErrServerClosed) || cerr == ErrServerClosed {
			t.Errorf("close error %v, want one that wraps ErrServerClosed and says why", cerr)
		}
		// The kernel reports the reset once: to the pinger's write if it
		// came first, else to the read. (After a FIN, a write draws an RST
		// that reads as EPIPE, never ECONNRESET.)
		_, err := io.Copy(io.Discard, nc)
		told := errors.Is(err, syscall.ECONNRESET) || errors.Is(pingErr, syscall.ECONNRESET)
		if !told {
			t.Errorf("the peer of a connection cut by Shutdown read until %v and wrote until %v, want ECONNRESET", err, pingErr)
		}
		waitFor(t, served, 10*time.Second, "Serve to return")
	})
}

func TestShutdownIdleNegative(t *testing.T) {
	s := &Server{ShutdownIdle: -time.Second}
	if err := s.Serve(mustListen(t, "127.0.0.1:0")); err == nil || err == ErrServerClosed {
		t.Errorf("Serve with a negative ShutdownIdle returned %v, want a configuration error", err)
	}
}

// A paused connection is not ended by Shutdown, with input waiting or
// without: the handler paused it, and may have bytes for it elsewhere.
// Only the end of the grace period cuts it, with a reset.
func TestShutdownKeepsPausedConnection(t *testing.T) {
	for _, input := range []string{"", "waiting in the kernel"} {
		t.Run(fmt.Sprintf("input %d bytes", len(input)), func(t *testing.T) { testShutdownKeepsPaused(t, input) })
	}
}

func testShutdownKeepsPaused(t *testing.T, input string) {
	forEachEngine(t, func(t *testing.T, e engine) {
		opened := make(chan struct{}, 1)
		s := &Server{ShutdownIdle: 20 * time.Millisecond, ConnConfig: ConnConfig{PauseOnConnect: true},
			Handler: func(c *Conn) { Pipe(c, c); opened <- struct{}{} }}
		addr, served := serveOn(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		waitFor(t, opened, 5*time.Second, "connection")
		io.WriteString(nc, input)
		time.Sleep(100 * time.Millisecond) // idle for five ShutdownIdle periods
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		shut := shutdownAsync(s, ctx)
		if _, err := io.ReadAll(nc); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("paused connection: client read until %v, want ECONNRESET at the grace's end, not Shutdown's FIN", err)
		}
		waitFor(t, shut, 5*time.Second, "Shutdown")
		waitFor(t, served, 5*time.Second, "Serve to return")
	})
}

// A callback slower than ShutdownIdle, while the client keeps sending, does
// not make the connection look idle: the client's bytes wait unread in the
// kernel, and the stream completes whole.
func TestShutdownSlowCallbackWithInputWaiting(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		inSetup := make(chan struct{})
		closeErr := make(chan error, 1)
		s := &Server{ShutdownIdle: 100 * time.Millisecond, Handler: func(c *Conn) {
			Pipe(c, c)
			first := true
			c.OnData(func([]byte) {
				if first { // a one-off setup on the first bytes
					first = false
					close(inSetup)
					time.Sleep(300 * time.Millisecond)
				}
			})
			c.OnClose(func(err error) { closeErr <- err })
		}}
		addr, served := serveOn(t, e, s, addr)
		nc := dialRaw(t, addr)
		const ticks = 100
		sent := make(chan error, 1)
		go func() {
			for range ticks { // every 10ms for a second
				if _, err := io.WriteString(nc, "tick"); err != nil {
					sent <- err
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			sent <- nc.(interface{ CloseWrite() error }).CloseWrite()
		}()
		waitFor(t, inSetup, 5*time.Second, "the setup callback")
		shut := shutdownAsync(s, context.Background())
		got, err := io.ReadAll(nc)
		if werr := waitFor(t, sent, 10*time.Second, "the client's writes"); werr != nil || err != nil || len(got) != 4*ticks {
			t.Errorf("a client that never paused for 10ms: wrote %v, read %d of %d bytes, then %v", werr, len(got), 4*ticks, err)
		}
		if err := waitFor(t, closeErr, 5*time.Second, "close event"); err != nil {
			t.Errorf("close error %v, want a clean close", err)
		}
		waitFor(t, shut, 5*time.Second, "Shutdown")
		waitFor(t, served, 5*time.Second, "Serve to return")
	})
}

// Right after a busy callback that answered, the connection is not idle:
// a request sent at once is answered too.
func TestShutdownRecheckAfterBusyCallback(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		inCallback := make(chan struct{}, 1)
		s := &Server{ShutdownIdle: 50 * time.Millisecond, Handler: func(c *Conn) {
			first := true
			c.OnData(func(p []byte) {
				if first {
					first = false
					inCallback <- struct{}{}
					time.Sleep(200 * time.Millisecond)
				}
				c.WriteString("answer;")
			})
		}}
		addr, served := serveOn(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		io.WriteString(nc, "q1")
		waitFor(t, inCallback, 5*time.Second, "the first request")
		shut := shutdownAsync(s, context.Background())
		buf := make([]byte, len("answer;"))
		if _, err := io.ReadFull(nc, buf); err != nil {
			t.Fatal(err)
		}
		io.WriteString(nc, "q2") // at once: the connection was busy a moment ago
		if _, err := io.ReadFull(nc, buf); err != nil {
			t.Errorf("a request right after a busy callback: %v", err)
		}
		nc.Close()
		waitFor(t, shut, 5*time.Second, "Shutdown")
		waitFor(t, served, 5*time.Second, "Serve to return")
	})
}

// Bytes in flight in the goroutine engine's writer, with an empty queue,
// keep the connection from being ended too.
func TestShutdownKeepsConnectionWithBytesInFlight(t *testing.T) {
	cfg := ConnConfig{HighWater: 8 << 10, ReadBufferSize: 8 << 10, MaxBuffered: 1 << 20, SendBuffer: 4 << 10}
	conns := make(chan *Conn, 1)
	s := &Server{ConnConfig: cfg, ShutdownIdle: 20 * time.Millisecond, Handler: func(c *Conn) { conns <- c }}
	addr, served := serveOn(t, engines[0], s, "127.0.0.1:0")
	nc := dialRaw(t, addr)
	nc.(*net.TCPConn).SetReadBuffer(4 << 10)
	c := waitFor(t, conns, 5*time.Second, "connection")
	fillKernel(t, c) // the writer holds the bytes; the queue is empty
	c.mu.Lock()
	wq, inflight := len(c.wq), c.inflight
	c.mu.Unlock()
	if wq != 0 || inflight == 0 {
		t.Fatalf("setup: queue %d bytes, in flight %d; want only bytes in flight", wq, inflight)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.Sleep(100 * time.Millisecond)
	shut := shutdownAsync(s, ctx)
	time.Sleep(150 * time.Millisecond)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Errorf("Shutdown ended a connection with bytes in flight: Write: %v", err)
	}
	cancel()
	waitFor(t, shut, 5*time.Second, "Shutdown")
	waitFor(t, served, 5*time.Second, "Serve to return")
}

// A connection that listens for the shutdown event is left to end itself,
// however long its answer takes; and a Write after Shutdown's end closed
// the connection says why.
func TestShutdownEventWithSlowWorker(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		var work sync.WaitGroup
		defer waitGroup(t, &work, 5*time.Second, "the worker")
		received := make(chan struct{}, 1)
		s := &Server{ShutdownIdle: 20 * time.Millisecond, Handler: func(c *Conn) {
			var pending, shutting atomic.Bool
			c.OnShutdown(func() {
				shutting.Store(true)
				if !pending.Load() {
					c.End()
				}
			})
			c.OnData(func(p []byte) {
				pending.Store(true)
				received <- struct{}{}
				work.Go(func() {
					time.Sleep(200 * time.Millisecond) // ten ShutdownIdle periods
					c.WriteString("answer")
					pending.Store(false)
					if shutting.Load() {
						c.End()
					}
				})
			})
		}}
		addr, served := serveOn(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		io.WriteString(nc, "q")
		waitFor(t, received, 5*time.Second, "the request")
		shut := shutdownAsync(s, context.Background())
		if got, err := io.ReadAll(nc); err != nil || string(got) != "answer" {
			t.Errorf("client read %q, %v; want the answer, then the end", got, err)
		}
		nc.Close()
		waitFor(t, shut, 5*time.Second, "Shutdown")
		waitFor(t, served, 5*time.Second, "Serve to return")
	})
}

// A late Write to a connection that Shutdown ended and that has since
// closed returns an error that says the server shut it down.
func TestShutdownLateWriteSaysWhy(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		conns := make(chan *Conn, 1)
		s := &Server{ShutdownIdle: 20 * time.Millisecond, Handler: func(c *Conn) { conns <- c }}
		addr, served := serveOn(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		c := waitFor(t, conns, 5*time.Second, "connection")
		shut := shutdownAsync(s, context.Background())
		io.ReadAll(nc) // the server's end
		nc.Close()
		waitFor(t, c.Done(), 5*time.Second, "close event")
		_, err := c.WriteString("too late")
		if !errors.Is(err, net.ErrClosed) || !errors.Is(err, ErrServerClosed) {
			t.Errorf("late Write: %v, want an error wrapping net.ErrClosed and ErrServerClosed", err)
		}
		if c.Err() != nil {
			t.Errorf("close error %v, want nil: the connection drained cleanly", c.Err())
		}
		waitFor(t, shut, 5*time.Second, "Shutdown")
		waitFor(t, served, 5*time.Second, "Serve to return")
	})
}

// shutdownAsync runs s.Shutdown(ctx) on a goroutine of its own; its result
// comes on the channel.
func shutdownAsync(s *Server, ctx context.Context) <-chan error {
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()
	return shut
}
