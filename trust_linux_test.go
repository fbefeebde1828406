//go:build linux

package tcpkit

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"weak"
)

// Regression tests for the defects of issue 17 that concern a loop shared
// by many connections, or Linux's sockets; see trust_test.go.

// 5. A connection that closes in its handshake while a tls.Config callback
// runs (here GetCertificate, for 2s) held its event goroutine, and on
// epoll its whole loop, until the callback returned: the event goroutine
// waited for the handshake goroutine. Another connection's echo must come
// back meanwhile.
func TestSlowTLSCallbackDoesNotHoldTheLoop(t *testing.T) {
	forEachSoloEngine(t, func(t *testing.T, e engine) {
		inCallback := make(chan struct{}, 1)
		release := make(chan struct{})
		var once sync.Once
		t.Cleanup(func() { once.Do(func() { close(release) }) })
		cfg := testServerTLS()
		cert := testCert()
		cfg.Certificates = nil
		cfg.GetCertificate = func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if hi.ServerName == "slow.example" {
				inCallback <- struct{}{}
				select {
				case <-release:
				case <-time.After(2 * time.Second):
				}
			}
			return &cert, nil
		}
		s := &Server{TLS: cfg, Logger: discardLogger(), Handler: func(c *Conn) { Pipe(c, c) }}
		addr := startServer(t, e, s, "127.0.0.1:0")
		fast := dialTLS(t, addr, testClientTLS())

		slow := dialRaw(t, addr)
		slowCfg := testClientTLS()
		slowCfg.ServerName = "slow.example"
		go tls.Client(slow, slowCfg).Handshake() // fails once slow is reset below
		waitFor(t, inCallback, 5*time.Second, "GetCertificate")
		resetConn(slow) // the server's read fails: the connection closes in its handshake
		// It closes at once, while the callback still runs: no event
		// goroutine waits for the handshake goroutine.
		reset := time.Now()
		for s.NumConns() > 1 && time.Since(reset) < time.Second {
			time.Sleep(5 * time.Millisecond)
		}
		if n := s.NumConns(); n > 1 {
			t.Errorf("%v after its reset, a connection in a slow GetCertificate is still open: its event goroutine waits for the callback",
				time.Since(reset).Round(time.Millisecond))
		}

		start := time.Now()
		fast.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fast.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(fast, buf); err != nil || string(buf) != "ping\n" {
			t.Fatalf("echo: %q, %v", buf, err)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("the echo took %v while another connection's GetCertificate ran: its loop waited", el)
		}
		once.Do(func() { close(release) })
		fast.Close()
	})
}

// 3. An EpollEngine after Close: a Dial is refused, and a connection that
// reaches a loop after the loop's last turn is still closed: its Handler
// runs, Done fires, its close error says the engine closed, and its peer
// is reset. It lay in a dead loop before, never closed.
func TestEpollClosedEngineLeavesNothingBehind(t *testing.T) {
	e, err := NewEpollEngine(EpollConfig{Loops: 1, Logger: failOnPanicLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln := mustListen(t, "127.0.0.1:0")
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := ConnConfig{}.resolve()
	c, err := e.newConn(nc, &cfg, nil, failOnPanicLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	handled := make(chan struct{})
	e.start(c, func(*Conn) { close(handled) })
	waitFor(t, handled, 5*time.Second, "the Handler of a connection started on a closed engine")
	waitFor(t, c.Done(), 5*time.Second, "its close")
	if err := c.Err(); !errors.Is(err, errEngineClosed) {
		t.Errorf("close error %v, want the engine's", err)
	}
	wantReset(t, "its peer", readErr(t, client, 5*time.Second))

	if _, err := (&Dialer{Engine: e}).Dial(context.Background(), ln.Addr().String(), nil); !errors.Is(err, errEngineClosed) {
		t.Errorf("Dial on a closed engine: %v, want errEngineClosed", err)
	}
	if err := (&Server{Engine: e}).Serve(mustListen(t, "127.0.0.1:0")); !errors.Is(err, errEngineClosed) {
		t.Errorf("Serve on a closed engine: %v", err)
	}
	var zero EpollEngine
	if _, err := (&Dialer{Engine: &zero}).Dial(context.Background(), ln.Addr().String(), nil); err == nil || !strings.Contains(err.Error(), "NewEpollEngine") {
		t.Errorf("Dial on a zero EpollEngine: %v", err)
	}
	zero.Close()
}

// 4. One loop, two connections with plenty to read: the loop takes a
// turn's share (one read buffer) of each in turn, rather than reading one
// until it is drained while the other waits. Without the bound, the first
// connection's input, refilled by its sender as fast as it is read, was
// delivered whole before the second's first byte.
func TestEpollTurnsAreShared(t *testing.T) {
	e := newSoloEpoll(t)
	{
		const each = 4 << 20
		var mu sync.Mutex
		var order []int // which connection each delivery was, with its size
		var sizes []int
		conns := make(chan *Conn, 2)
		accepted := 0
		var firstConn *Conn
		ended := make(chan struct{}, 2)
		s := &Server{ConnConfig: ConnConfig{PauseOnConnect: true}, Logger: failOnPanicLogger(t), Handler: func(c *Conn) {
			id := accepted // the loop's goroutine: no lock needed
			accepted++
			if id == 0 {
				firstConn = c
			} else {
				// Both are resumed at once, from the loop itself, once
				// both socket buffers are full.
				c.SetTimeout(20 * time.Millisecond)
				c.OnTimeout(func() {
					if firstConn.drv.unread() < 32<<10 || c.drv.unread() < 32<<10 {
						c.SetTimeout(20 * time.Millisecond) // not yet: look again
						return
					}
					c.SetTimeout(0)
					firstConn.Resume()
					c.Resume()
				})
			}
			c.OnData(func(p []byte) {
				mu.Lock()
				order = append(order, id)
				sizes = append(sizes, len(p))
				mu.Unlock()
			})
			c.OnEnd(func() { ended <- struct{}{} })
			conns <- c
		}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		var wg sync.WaitGroup
		for range 2 {
			nc := dialRaw(t, addr)
			wg.Go(func() {
				nc.Write(bytes.Repeat([]byte("f"), each))
				nc.(*net.TCPConn).CloseWrite()
			})
		}
		waitFor(t, conns, 5*time.Second, "first")
		waitFor(t, conns, 5*time.Second, "second")
		waitGroup(t, &wg, 20*time.Second, "the senders")
		waitFor(t, ended, 20*time.Second, "the first connection's end")
		waitFor(t, ended, 20*time.Second, "the second connection's end")
		mu.Lock()
		defer mu.Unlock()
		total := 0
		for _, n := range sizes {
			total += n
		}
		if total != 2*each {
			t.Fatalf("%d bytes delivered, want %d", total, 2*each)
		}
		// Before the other connection's first delivery, one connection had
		// at most a turn's share: a read buffer, DefaultReadBufferSize.
		first, run := order[0], 0
		for i, id := range order {
			if id != first {
				break
			}
			run += sizes[i]
		}
		if run > 2*DefaultReadBufferSize {
			t.Errorf("connection %d delivered %d bytes before connection %d delivered any: one connection held the loop", first, run, 1-first)
		}
	}
}

// 6. Closed connections leave nothing in their loop's timer heap, however
// often they re-armed their timers: the heap held stale entries below a
// live one, and with them the closed Conns.
func TestEpollTimerHeapForgetsClosedConns(t *testing.T) {
	e := newSoloEpoll(t)
	{
		const n = 100
		conns := make(chan *Conn, n+1)
		s := &Server{Logger: failOnPanicLogger(t), Handler: func(c *Conn) { conns <- c }}
		addr := startServer(t, e, s, "127.0.0.1:0")
		neighbour := dialRaw(t, addr)
		nb := waitFor(t, conns, 5*time.Second, "neighbour")
		nb.SetTimeout(time.Minute) // a live timer, earlier than the others'
		var weaks []weak.Pointer[Conn]
		for range n {
			dialRaw(t, addr)
			c := waitFor(t, conns, 5*time.Second, "connection")
			for i := range 50 { // re-armed again and again
				c.SetTimeout(time.Hour + time.Duration(i)*time.Second)
				c.Pause()
				c.Resume()
			}
			weaks = append(weaks, weak.Make(c))
			c.Close()
			waitFor(t, c.Done(), 5*time.Second, "close")
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			runtime.GC()
			alive := 0
			for _, w := range weaks {
				if w.Value() != nil {
					alive++
				}
			}
			if alive == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d closed connections are still reachable beside one open neighbour", alive, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		neighbour.Close()
	}
}

// 7. On the epoll engine, Close served the connections waiting in the
// accept queue only through a wrapped listener; a plain *net.TCPListener,
// which the engine accepts from itself, hid the socket, and they were
// reset. The loop is held by a slow callback, so that the epoll listener
// cannot accept while the clients queue up.
func TestEpollCloseServesAcceptQueue(t *testing.T) {
	e := newSoloEpoll(t)
	{
		hold := make(chan struct{})
		held := make(chan struct{})
		first := true
		s := &Server{ShutdownIdle: 100 * time.Millisecond, Logger: discardLogger(), Handler: func(c *Conn) {
			if first {
				first = false
				close(held)
				<-hold // holds the only loop
				c.Close()
				return
			}
			c.WriteString("hello\r\n")
			Pipe(c, c)
		}}
		e.apply(s)
		ln := mustListen(t, "127.0.0.1:0")
		served := make(chan error, 1)
		go func() { served <- s.Serve(ln) }()
		addr := ln.Addr().String()
		dialRaw(t, addr)
		waitFor(t, held, 5*time.Second, "the first connection")
		time.Sleep(50 * time.Millisecond) // Accept waits for the loop's word now
		const clients = 4
		var ncs []net.Conn
		for range clients {
			nc := dialRaw(t, addr)
			nc.Write([]byte("ping\n"))
			ncs = append(ncs, nc)
		}
		closed := make(chan error, 1)
		go func() { closed <- s.Close() }()
		waitFor(t, closed, 5*time.Second, "Close")
		close(hold)
		for i, nc := range ncs {
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, len("hello\r\nping\n"))
			if _, err := io.ReadFull(nc, got); err != nil || string(got) != "hello\r\nping\n" {
				t.Errorf("client %d queued at Close: %q, %v; want served", i, got, err)
			}
			nc.Close()
		}
		waitFor(t, served, 5*time.Second, "Serve")
	}
}

// 8. TCP urgent data: a read stops short at the urgent mark, and the epoll
// engine took the short read for "drained", so the bytes after the mark
// waited for the peer's next send. As with Go's net and Node, the urgent
// byte itself is not part of the stream (SO_OOBINLINE is off).
func TestUrgentDataDoesNotStall(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		s := &Server{Logger: failOnPanicLogger(t), Handler: func(c *Conn) { Pipe(c, c) }}
		addr := startServer(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		raw, _ := nc.(*net.TCPConn).SyscallConn()
		var serr error
		raw.Write(func(fd uintptr) bool {
			if serr = syscall.Sendto(int(fd), []byte("abc"), 0, nil); serr == nil {
				if serr = syscall.Sendto(int(fd), []byte("!"), syscall.MSG_OOB, nil); serr == nil {
					serr = syscall.Sendto(int(fd), []byte("def"), 0, nil)
				}
			}
			return true
		})
		if serr != nil {
			t.Fatal(serr)
		}
		nc.SetReadDeadline(time.Now().Add(3 * time.Second))
		got := make([]byte, 6)
		if _, err := io.ReadFull(nc, got); err != nil || string(got) != "abcdef" {
			t.Errorf("echo %q, %v; want %q, the urgent byte out of the stream", got, err, "abcdef")
		}
	})
}
