package tcpkit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Regression tests for bugs found in review. Each failed before its fix.

// An OnClose added from another goroutine while the connection closes runs
// exactly once, and never before or alongside OnError.
func TestOnCloseAddedDuringCloseRuns(t *testing.T) {
	cfg, _ := ConnConfig{}.resolve()
	for i := range 2000 {
		a, b := net.Pipe()
		c := newGoroutineConn(a, &cfg, nil, failOnPanicLogger(t))
		var inError atomic.Bool
		go c.drv.(*goroutineDriver).serve(func(c *Conn) {
			c.OnError(func(error) { inError.Store(true); time.Sleep(time.Microsecond); inError.Store(false) })
		})
		var ran, overlapped atomic.Int32
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { <-start; c.CloseWithError(errors.New("boom")) })
		wg.Go(func() {
			<-start
			c.OnClose(func(error) {
				if inError.Load() {
					overlapped.Add(1)
				}
				ran.Add(1)
			})
		})
		close(start)
		waitGroup(t, &wg, 30*time.Second, "the goroutines")
		waitFor(t, c.Done(), 10*time.Second, "close event")
		b.Close()
		if ran.Load() != 1 || overlapped.Load() != 0 {
			t.Fatalf("try %d: late OnClose ran %d times, %d of them during OnError", i, ran.Load(), overlapped.Load())
		}
	}
}

// NumConns no longer counts a connection inside its own OnClose, and a
// slow OnClose does not hold a MaxConnections slot.
func TestNumConnsInOnClose(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		inClose := make(chan int, 1)
		var s *Server
		s = &Server{Handler: func(c *Conn) {
			c.OnClose(func(error) { inClose <- s.NumConns() })
			c.Close()
		}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		dialRaw(t, addr)
		if n := waitFor(t, inClose, 5*time.Second, "close"); n != 0 {
			t.Errorf("NumConns() = %d inside the connection's own OnClose, want 0", n)
		}
	})
}

// Pipe with a HighWater near the default MaxBuffered applies backpressure
// rather than closing with ErrSlowConsumer.
func TestPipeLargeHighWater(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		addr := echoServer(t, e, "127.0.0.1:0", ConnConfig{HighWater: DefaultMaxBuffered}, nil)
		want := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
		if err := echoOnce(addr, want); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := (ConnConfig{HighWater: 1 << 20, MaxBuffered: 1 << 20}).resolve(); err == nil {
		t.Error("MaxBuffered == HighWater accepted; Pipe needs room for one more read")
	}
}

// Write allocates nothing, queued or not.
func TestWriteAllocs(t *testing.T) {
	conns := make(chan *Conn, 1)
	addr := startServer(t, engines[0], &Server{Handler: func(c *Conn) { conns <- c }}, "127.0.0.1:0")
	nc := dialRaw(t, addr)
	go io.Copy(io.Discard, nc)
	c := waitFor(t, conns, 5*time.Second, "connection")
	msg := []byte("hello, world\n")
	if a := testing.AllocsPerRun(1000, func() { c.Write(msg) }); a > 0 {
		t.Errorf("Write: %.1f allocs per call, want 0", a)
	}
	c.Close()
}

// No event fires after Close, not even one already due.
func TestNoTimeoutAfterClose(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		var closed, late atomic.Bool
		conns := make(chan *Conn, 1)
		s := &Server{Handler: func(c *Conn) {
			c.OnTimeout(func() {
				if closed.Load() {
					late.Store(true)
				}
			})
			c.OnData(func([]byte) {
				c.SetTimeout(time.Nanosecond)
				closed.Store(true)
				c.Close()
			})
			conns <- c
		}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		io.WriteString(nc, "x")
		c := waitFor(t, conns, 5*time.Second, "connection")
		waitFor(t, c.Done(), 10*time.Second, "close event")
		if late.Load() {
			t.Error("OnTimeout fired after Close")
		}
	})
}

// SetTimeout restarts the notification's idle period but is not traffic:
// IdleTimeout still closes a connection with none.
func TestSetTimeoutIsNotTraffic(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		conns := make(chan *Conn, 1)
		s := &Server{ConnConfig: ConnConfig{IdleTimeout: 100 * time.Millisecond}, Handler: func(c *Conn) { conns <- c }}
		addr := startServer(t, e, s, "127.0.0.1:0")
		dialRaw(t, addr)
		c := waitFor(t, conns, 5*time.Second, "connection")
		stop := time.After(5 * time.Second)
	loop:
		for range 250 {
			c.SetTimeout(time.Hour)
			select {
			case <-c.Done():
				break loop
			case <-stop:
				break loop
			case <-time.After(20 * time.Millisecond):
			}
		}
		select {
		case <-c.Done():
			if !errors.Is(c.Err(), ErrIdleTimeout) {
				t.Errorf("close error %v, want ErrIdleTimeout", c.Err())
			}
		default:
			t.Error("SetTimeout calls kept an idle connection open past IdleTimeout")
			c.Close()
		}
	})
}

// Errors keep what net.Error and errors.As callers look for.
func TestErrorValues(t *testing.T) {
	var ne net.Error
	if !errors.As(ErrIdleTimeout, &ne) || !ne.Timeout() {
		t.Error("ErrIdleTimeout is not a net.Error timeout")
	}
	cause := errors.New("cause")
	if pe := (&PanicError{Value: cause}); !errors.Is(pe, cause) {
		t.Error("a PanicError does not unwrap to the error passed to panic")
	}
	path := t.TempDir() + "/file"
	os.WriteFile(path, nil, 0o600)
	_, err := Dial(context.Background(), path, nil)
	var se *os.SyscallError
	if !errors.As(err, &se) || !errors.Is(err, syscall.ENOTSOCK) {
		t.Errorf("dial to a regular file: %v; want an *os.SyscallError wrapping ENOTSOCK", err)
	}
}
