//go:build linux

package tcpkit

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
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
		e.apply(s)
		ln := mustListen(t, "127.0.0.1:0")
		served := make(chan error, 1)
		go func() { served <- s.Serve(ln) }()
		nc := dialRaw(t, ln.Addr().String())
		go tls.Client(nc, testClientTLS()).Handshake()
		waitFor(t, entered, 5*time.Second, "GetCertificate")

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
