//go:build linux

package tcpkit

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The epoll engine joins every server test. One engine, with two loops,
// serves them all; TestMain closes it before it looks for leaks.
var (
	testEpollOnce sync.Once
	testEpoll     *EpollEngine
)

func init() {
	engines = append(engines, engine{name: "epoll", get: func() Engine { return testEpollEngine() },
		apply: func(s *Server) { s.Engine = testEpollEngine() }})
	soloEngines = append(soloEngines, newSoloEpoll)
	afterTests = append(afterTests, func() {
		if testEpoll != nil {
			testEpoll.Close()
		}
	})
}

// newSoloEpoll makes an epoll engine with one loop for t, closed (within a
// bound) when t ends.
func newSoloEpoll(t *testing.T) engine {
	e, err := NewEpollEngine(EpollConfig{Loops: 1, Logger: failOnPanicLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		done := make(chan struct{})
		go func() { e.Close(); close(done) }()
		waitFor(t, done, 10*time.Second, "EpollEngine.Close")
	})
	return engine{name: "epoll", get: func() Engine { return e }, apply: func(s *Server) { s.Engine = e }}
}

func testEpollEngine() *EpollEngine {
	testEpollOnce.Do(func() {
		var err error
		testEpoll, err = NewEpollEngine(EpollConfig{Loops: 2, Logger: failOnPanicLogger(panicT{})})
		if err != nil {
			panic(err)
		}
	})
	return testEpoll
}

// panicT is a testing.TB for loggers outside any one test: it panics on
// an error, so that the run fails loudly.
type panicT struct{ testing.TB }

func (panicT) Errorf(format string, args ...any) { panic("tcpkit test: " + format) }
func (panicT) Logf(string, ...any)               {}
func (panicT) Helper()                           {}

// A listener without a file descriptor is a clear error on the epoll
// engine, not a silent fallback.
func TestEpollNeedsListenerWithFD(t *testing.T) {
	s := &Server{Engine: testEpollEngine()}
	err := s.Serve(noFDListener{mustListen(t, "127.0.0.1:0")})
	if err == nil || !strings.Contains(err.Error(), "epoll engine needs a listener with a file descriptor") {
		t.Errorf("Serve returned %v, want the epoll engine's clear error", err)
	}
}

type noFDListener struct{ net.Listener }

// A callback that holds its loop is reported once per connection, with
// the connection's addresses, and counted.
func TestEpollReportsBlockingCallback(t *testing.T) {
	var log logBuffer
	e, err := NewEpollEngine(EpollConfig{Loops: 1, BlockingThreshold: 20 * time.Millisecond, Logger: log.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := &Server{Engine: e, Handler: func(c *Conn) {
		c.OnData(func(p []byte) {
			time.Sleep(50 * time.Millisecond) // blocks the loop
			c.Write(p)
		})
	}}
	addr, served := serveOn(t, engine{name: "epoll", get: func() Engine { return e }, apply: func(*Server) {}}, s, "127.0.0.1:0")
	nc := dialRaw(t, addr)
	for range 3 {
		io.WriteString(nc, "x")
		io.ReadFull(nc, make([]byte, 1))
	}
	if n := e.SlowCallbacks(); n != 1 {
		t.Errorf("SlowCallbacks() = %d after three slow callbacks on one connection, want 1 (once per connection)", n)
	}
	if l := log.String(); strings.Count(l, "held its epoll loop") != 1 || !strings.Contains(l, "remote="+nc.LocalAddr().String()) {
		t.Errorf("want one report naming the connection; log:\n%s", l)
	}
	nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Shutdown(ctx)
	waitFor(t, served, 5*time.Second, "Serve to return")
}

// Re-arming a timer at the time it is armed for adds nothing to the
// loop's heap, so that busy connections with timeouts do not grow it.
func TestEpollTimerHeapStaysSmall(t *testing.T) {
	l := &epollLoop{} // not running: the test plays its goroutine
	d := &epollDriver{l: l}
	at := time.Now().Add(time.Hour)
	for range 100 {
		d.setTimer(at)
	}
	if n := l.timers.Len(); n != 1 {
		t.Errorf("100 identical setTimer calls left %d heap entries, want 1", n)
	}
	d.setTimer(at.Add(time.Second))
	d.setTimer(time.Time{})
	if _, ok := l.timers.next(); ok {
		t.Error("a timer turned off is still live")
	}
}

// Closing the engine under an open connection resets it: its peer learns
// that it was cut off, and the close error says why.
func TestEpollCloseResetsOpenConnections(t *testing.T) {
	e, err := NewEpollEngine(EpollConfig{Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan *Conn, 1)
	s := &Server{Engine: e, Handler: func(c *Conn) { Pipe(c, c); conns <- c }}
	addr, served := serveOn(t, engine{name: "epoll", get: func() Engine { return e }, apply: func(*Server) {}}, s, "127.0.0.1:0")
	nc := dialRaw(t, addr)
	c := waitFor(t, conns, 5*time.Second, "connection")
	io.WriteString(nc, "x")
	io.ReadFull(nc, make([]byte, 1))
	s.Close()
	waitFor(t, served, 5*time.Second, "Serve to return")
	e.Close()
	if _, err := io.ReadAll(nc); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("peer of a connection cut by the engine's Close read until %v, want ECONNRESET", err)
	}
	if !errors.Is(c.Err(), errEngineClosed) {
		t.Errorf("close error %v, want errEngineClosed", c.Err())
	}
}

// Closing the engine under a Server that still serves on it ends Serve
// with an error that says so, rather than leaving Accept waiting for a
// loop that is gone.
func TestEpollCloseEndsServe(t *testing.T) {
	e, err := NewEpollEngine(EpollConfig{Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Engine: e, Handler: func(c *Conn) { Pipe(c, c) }}
	addr, served := serveOn(t, engine{name: "epoll", get: func() Engine { return e }, apply: func(*Server) {}}, s, "127.0.0.1:0")
	if err := echoOnce(addr, []byte("before")); err != nil {
		t.Fatal(err)
	}
	e.Close()
	if err := waitFor(t, served, 5*time.Second, "Serve to return"); !errors.Is(err, errEngineClosed) {
		t.Errorf("Serve returned %v, want an error wrapping errEngineClosed", err)
	}
	s.Close()
}

// Callers that ask for a connection's addresses at the same moment, the
// first time, all get the same values: the one made first.
func TestEpollAddrsSameForEveryCaller(t *testing.T) {
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 2}
	for range 3000 {
		d := &epollDriver{tcp: true}
		d.keepAddrs(local, remote)
		got := make(chan net.Addr, 8)
		var start sync.WaitGroup
		start.Add(1)
		for range 8 {
			go func() {
				start.Wait()
				_, r := d.addrs()
				got <- r
			}()
		}
		start.Done()
		first := <-got
		for range 7 {
			if r := <-got; r != first {
				t.Fatalf("two callers got different remote addresses, %p and %p", r, first)
			}
		}
		if first.String() != remote.String() {
			t.Fatalf("remote %v, want %v", first, remote)
		}
	}
}

// A listener closed by its owner directly, not through the Server, ends
// Serve with an error wrapping net.ErrClosed, as on the goroutine engine,
// though the socket leaves the loop's epoll instance without an event.
func TestEpollServeEndsWhenListenerClosedDirectly(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		s := &Server{Handler: func(c *Conn) { Pipe(c, c) }}
		e.apply(s)
		ln, err := Listen(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- s.Serve(ln) }()
		if err := echoOnce(addrString(ln.Addr()), []byte("before")); err != nil {
			t.Fatal(err)
		}
		ln.Close()
		if err := waitFor(t, served, 5*time.Second, "Serve to return"); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve returned %v, want an error wrapping net.ErrClosed", err)
		}
		s.Close()
	})
}
