package tcpkit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A recorder registers a listener for every event of a Conn and keeps the
// sequence. Consecutive data events are recorded as one "data" entry, since
// TCP may split or merge them; their bytes are kept in data.
type recorder struct {
	mu     sync.Mutex
	events []string
	data   bytes.Buffer
	err    error
	closed chan struct{}
	signal chan string // every event name, for tests that wait on one
}

func newRecorder() *recorder {
	return &recorder{closed: make(chan struct{}), signal: make(chan string, 1024)}
}

// attach registers the recorder on c, recording first as the opening event
// ("open" for a server's handler, "connect" for a Dial's).
func (r *recorder) attach(c *Conn, first string) {
	r.add(first)
	c.OnData(func(p []byte) {
		r.mu.Lock()
		r.data.Write(p)
		r.mu.Unlock()
		r.add("data")
	})
	c.OnEnd(func() { r.add("end") })
	c.OnDrain(func() { r.add("drain") })
	c.OnTimeout(func() { r.add("timeout") })
	c.OnError(func(err error) { r.add("error") })
	c.OnClose(func(err error) {
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
		r.add("close")
		close(r.closed)
	})
}

func (r *recorder) add(ev string) {
	r.mu.Lock()
	if ev != "data" || len(r.events) == 0 || r.events[len(r.events)-1] != "data" {
		r.events = append(r.events, ev)
	}
	r.mu.Unlock()
	select {
	case r.signal <- ev:
	default:
	}
}

// waitEvent waits for the next occurrence of ev.
func (r *recorder) waitEvent(t *testing.T, ev string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case got := <-r.signal:
			if got == ev {
				return
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %q; events so far %v", ev, r.seq())
		}
	}
}

func (r *recorder) seq() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.data.Bytes())
}

// check waits for the close event and compares the sequence.
func (r *recorder) check(t *testing.T, want ...string) {
	t.Helper()
	waitFor(t, r.closed, 10*time.Second, "close event")
	if got := r.seq(); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func (r *recorder) closeErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// recordingServer starts a server whose handler records each connection's
// events and then calls h, and returns the server's address and a channel
// of recorders, one per connection.
func recordingServer(t *testing.T, e engine, addr string, cfg ConnConfig, h Handler) (string, <-chan *recorder) {
	t.Helper()
	recs := make(chan *recorder, 16)
	s := &Server{ConnConfig: cfg, Handler: func(c *Conn) {
		r := newRecorder()
		r.attach(c, "open")
		recs <- r
		if h != nil {
			h(c)
		}
	}}
	return startServer(t, e, s, addr), recs
}

func TestEventsNormalExchange(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		addr, recs := recordingServer(t, e, addr, ConnConfig{}, func(c *Conn) {
			c.WriteString("hello\r\n")
			c.OnData(func(p []byte) { c.Write(bytes.ToUpper(p)) })
		})
		client := newRecorder()
		c, err := e.dial(addr, func(c *Conn) {
			client.attach(c, "connect")
			c.OnData(func(p []byte) {
				if strings.Contains(string(client.bytes()), "WORLD!") {
					c.End()
				}
			})
			c.WriteString("world!\r\n")
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := waitFor(t, recs, 5*time.Second, "server connection")
		srv.check(t, "open", "data", "end", "close")
		client.check(t, "connect", "data", "end", "close")
		waitFor(t, c.Done(), 10*time.Second, "close event")
		if got := string(srv.bytes()); got != "world!\r\n" {
			t.Errorf("server received %q", got)
		}
		if got := string(client.bytes()); got != "hello\r\nWORLD!\r\n" {
			t.Errorf("client received %q", got)
		}
		if srv.closeErr() != nil || client.closeErr() != nil {
			t.Errorf("close errors: server %v, client %v", srv.closeErr(), client.closeErr())
		}
		if c.BytesRead() != 15 || c.BytesWritten() != 8 {
			t.Errorf("client BytesRead %d BytesWritten %d, want 15 and 8", c.BytesRead(), c.BytesWritten())
		}
	})
}

func TestEventsPeerHalfClose(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		t.Run("default", func(t *testing.T) {
			addr, recs := recordingServer(t, e, addr, ConnConfig{}, func(c *Conn) {
				// Writing inside the end event still works, as in Node.
				c.OnEnd(func() { c.WriteString("bye") })
			})
			nc := dialRaw(t, addr)
			closeWrite(t, nc)
			got, err := io.ReadAll(nc)
			if err != nil || string(got) != "bye" {
				t.Errorf("client read %q, %v; want \"bye\" then EOF", got, err)
			}
			waitFor(t, recs, 5*time.Second, "server connection").check(t, "open", "end", "close")
		})
		t.Run("AllowHalfOpen", func(t *testing.T) {
			ended := make(chan *Conn, 1)
			addr, recs := recordingServer(t, e, addr, ConnConfig{AllowHalfOpen: true}, func(c *Conn) {
				c.OnEnd(func() { ended <- c })
			})
			nc := dialRaw(t, addr)
			closeWrite(t, nc)
			c := waitFor(t, ended, 5*time.Second, "end event")
			r := waitFor(t, recs, 5*time.Second, "server connection")
			// The connection stays open and writable until End.
			for i := range 3 {
				if _, err := fmt.Fprintf(c, "line %d\n", i); err != nil {
					t.Fatalf("write after the peer's FIN: %v", err)
				}
			}
			select {
			case <-r.closed:
				t.Fatal("half-open connection closed before End")
			case <-time.After(50 * time.Millisecond):
			}
			c.End()
			got, err := io.ReadAll(nc)
			if err != nil || string(got) != "line 0\nline 1\nline 2\n" {
				t.Errorf("client read %q, %v", got, err)
			}
			r.check(t, "open", "end", "close")
		})
	})
}

func TestEventsLocalEnd(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		addr, recs := recordingServer(t, e, addr, ConnConfig{}, func(c *Conn) {
			c.WriteString("hello\r\n")
			c.End()
			if _, err := c.WriteString("too late"); !errors.Is(err, ErrWriteAfterEnd) {
				t.Errorf("write after End: %v, want ErrWriteAfterEnd", err)
			}
		})
		nc := dialRaw(t, addr)
		got, err := io.ReadAll(nc) // the server's FIN ends this
		if err != nil || string(got) != "hello\r\n" {
			t.Fatalf("client read %q, %v", got, err)
		}
		// Still readable after our End: the client's data arrives.
		io.WriteString(nc, "still here")
		closeWrite(t, nc)
		r := waitFor(t, recs, 5*time.Second, "server connection")
		r.check(t, "open", "data", "end", "close")
		if string(r.bytes()) != "still here" {
			t.Errorf("server received %q after its End", r.bytes())
		}
	})
}

func TestEventsPeerReset(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		addr, recs := recordingServer(t, e, "127.0.0.1:0", ConnConfig{}, nil)
		nc := dialRaw(t, addr)
		io.WriteString(nc, "x")
		r := waitFor(t, recs, 5*time.Second, "server connection")
		r.waitEvent(t, "data")
		nc.(*net.TCPConn).SetLinger(0)
		nc.Close()
		r.check(t, "open", "data", "error", "close")
		if err := r.closeErr(); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("close error %v, want ECONNRESET", err)
		}
	})
}

func TestEventsCloseDuringWrite(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		big := bytes.Repeat([]byte("x"), 8<<20)
		conns := make(chan *Conn, 1)
		addr, recs := recordingServer(t, e, addr, ConnConfig{MaxBuffered: 16 << 20}, func(c *Conn) {
			c.Write(big) // the client does not read: most of it stays queued
			conns <- c
		})
		dialRaw(t, addr)
		c := waitFor(t, conns, 5*time.Second, "server connection")
		if c.Buffered() == 0 {
			t.Fatal("nothing queued; the test needs a write in progress")
		}
		c.Close()
		r := waitFor(t, recs, 5*time.Second, "recorder")
		r.check(t, "open", "close")
		if r.closeErr() != nil || c.Buffered() != 0 {
			t.Errorf("close error %v, Buffered %d after Close; want nil, 0", r.closeErr(), c.Buffered())
		}
		if _, err := c.WriteString("more"); !errors.Is(err, net.ErrClosed) {
			t.Errorf("write after Close: %v, want net.ErrClosed", err)
		}
	})
}

func TestEventsTimeoutThenActivity(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		addr, recs := recordingServer(t, e, addr, ConnConfig{Timeout: 30 * time.Millisecond}, nil)
		nc := dialRaw(t, addr)
		r := waitFor(t, recs, 5*time.Second, "server connection")
		r.waitEvent(t, "timeout")
		// One timeout per idle period: none fires again until traffic.
		select {
		case ev := <-r.signal:
			t.Fatalf("got %q after a timeout with no traffic", ev)
		case <-time.After(100 * time.Millisecond):
		}
		io.WriteString(nc, "wake up")
		r.waitEvent(t, "data")
		r.waitEvent(t, "timeout")
		closeWrite(t, nc)
		r.check(t, "open", "timeout", "data", "timeout", "end", "close")
	})
}

func TestEventsIdleTimeoutCloses(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		addr, recs := recordingServer(t, e, addr, ConnConfig{IdleTimeout: 50 * time.Millisecond}, nil)
		nc := dialRaw(t, addr)
		r := waitFor(t, recs, 5*time.Second, "server connection")
		r.check(t, "open", "error", "close")
		if !errors.Is(r.closeErr(), ErrIdleTimeout) {
			t.Errorf("close error %v, want ErrIdleTimeout", r.closeErr())
		}
		if _, err := io.ReadAll(nc); err != nil {
			t.Errorf("client read after the idle close: %v", err)
		}
	})
}

func TestEventsMaxConnectionsDrop(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		drops := make(chan Drop, 4)
		recs := make(chan *recorder, 4)
		s := &Server{
			MaxConnections: 1,
			OnDrop:         func(d Drop) { drops <- d },
			Handler: func(c *Conn) {
				r := newRecorder()
				r.attach(c, "open")
				recs <- r
				Pipe(c, c)
			},
		}
		addr = startServer(t, e, s, addr)
		first := dialRaw(t, addr)
		r := waitFor(t, recs, 5*time.Second, "first connection")
		second := dialRaw(t, addr)
		d := waitFor(t, drops, 5*time.Second, "drop event")
		if d.LocalAddr == nil || d.RemoteAddr == nil {
			t.Errorf("drop carries addresses %v, %v", d.LocalAddr, d.RemoteAddr)
		}
		if d.LocalAddr.Network() == "tcp" && d.RemoteAddr.String() != second.LocalAddr().String() {
			t.Errorf("drop remote address %v, want the second client's %v", d.RemoteAddr, second.LocalAddr())
		}
		if got, err := io.ReadAll(second); len(got) != 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("dropped client read %q, %v; want an immediate end", got, err)
		}
		// The first connection is unaffected.
		io.WriteString(first, "ping")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(first, buf); err != nil || string(buf) != "ping" {
			t.Errorf("first connection echo: %q, %v", buf, err)
		}
		closeWrite(t, first)
		r.check(t, "open", "data", "end", "close")
		if s.NumConns() != 0 {
			t.Errorf("NumConns = %d after the close", s.NumConns())
		}
	})
}

// One client's reset stays with its connection: the server and the other
// connections carry on (the seed's own Node server dies here).
func TestPeerResetIsolated(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		addr := echoServer(t, e, "127.0.0.1:0", ConnConfig{}, nil)
		var others []net.Conn
		for range 5 {
			others = append(others, dialRaw(t, addr))
		}
		for i := range 10 {
			nc := dialRaw(t, addr)
			io.WriteString(nc, "doomed")
			io.ReadFull(nc, make([]byte, 6))
			io.WriteString(nc, "unread") // unread data in flight makes the close an RST for sure
			nc.(*net.TCPConn).SetLinger(0)
			nc.Close()
			if err := echoOnce(addr, []byte(fmt.Sprintf("new client %d", i))); err != nil {
				t.Fatalf("after reset %d: %v", i, err)
			}
		}
		for i, nc := range others {
			msg := fmt.Sprintf("other %d", i)
			io.WriteString(nc, msg)
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != msg {
				t.Errorf("connection %d after the resets: %q, %v", i, buf, err)
			}
		}
	})
}

func TestEventsEndWithError(t *testing.T) {
	errBad := errors.New("bad request")
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		t.Run("peer ends", func(t *testing.T) {
			addr, recs := recordingServer(t, e, addr, ConnConfig{}, func(c *Conn) {
				c.Pause() // EndWithError reads on regardless, to see the FIN
				c.Resume()
				c.OnData(func(p []byte) {
					c.WriteString("error: bad request\n")
					c.EndWithError(errBad, 0)
					c.Pause()
				})
			})
			nc := dialRaw(t, addr)
			io.WriteString(nc, "bad")
			got, err := io.ReadAll(nc) // the reply, then the server's FIN
			if err != nil || string(got) != "error: bad request\n" {
				t.Fatalf("client read %q, %v", got, err)
			}
			io.WriteString(nc, "ignored") // dropped unseen
			closeWrite(t, nc)
			r := waitFor(t, recs, 5*time.Second, "server connection")
			r.check(t, "open", "data", "end", "error", "close")
			if r.closeErr() != errBad || string(r.bytes()) != "bad" {
				t.Errorf("close error %v, data %q; want the EndWithError error and only the first data", r.closeErr(), r.bytes())
			}
		})
		t.Run("peer does not end", func(t *testing.T) {
			addr, recs := recordingServer(t, e, addr, ConnConfig{}, func(c *Conn) {
				c.OnData(func(p []byte) {
					c.WriteString("go away\n")
					c.EndWithError(errBad, 100*time.Millisecond)
				})
			})
			nc := dialRaw(t, addr)
			io.WriteString(nc, "hello")
			start := time.Now()
			r := waitFor(t, recs, 5*time.Second, "server connection")
			waitFor(t, r.closed, 5*time.Second, "close after the timeout")
			if d := time.Since(start); d < 90*time.Millisecond {
				t.Errorf("closed after %v, before the 100ms timeout", d)
			}
			r.check(t, "open", "data", "error", "close")
			if r.closeErr() != errBad {
				t.Errorf("close error %v, want the EndWithError error", r.closeErr())
			}
			buf := make([]byte, 8)
			if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != "go away\n" {
				t.Errorf("client read %q, %v; want the reply", buf, err)
			}
		})
	})
}

// OnEnd fires for a connection that listens for nothing else: reading goes
// on, and the end is seen, without a data listener.
func TestEventsEndWithoutDataListener(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		ended := make(chan struct{})
		s := &Server{Handler: func(c *Conn) { c.OnEnd(func() { close(ended) }) }}
		addr = startServer(t, e, s, addr)
		nc := dialRaw(t, addr)
		io.WriteString(nc, "ignored")
		closeWrite(t, nc)
		waitFor(t, ended, 5*time.Second, "end event with no data listener")
		if b, err := io.ReadAll(nc); err != nil || len(b) != 0 {
			t.Errorf("after the end, client read %q, %v; want the server's end", b, err)
		}
	})
}

// OnEnd waits for Resume, as the data before it does: a paused connection
// delivers neither, and after Resume the data comes first.
func TestEventsEndWaitsForResume(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		conns := make(chan *Conn, 1)
		events := make(chan string, 16)
		s := &Server{ConnConfig: ConnConfig{PauseOnConnect: true}, Handler: func(c *Conn) {
			c.OnData(func(p []byte) { events <- "data " + string(p) })
			c.OnEnd(func() { events <- "end" })
			conns <- c
		}}
		addr = startServer(t, e, s, addr)
		nc := dialRaw(t, addr)
		io.WriteString(nc, "abc")
		closeWrite(t, nc)
		c := waitFor(t, conns, 5*time.Second, "connection")
		select {
		case ev := <-events:
			t.Fatalf("%q while paused", ev)
		case <-time.After(100 * time.Millisecond):
		}
		c.Pause() // a second Pause changes nothing
		c.Resume()
		if ev := waitFor(t, events, 5*time.Second, "data after Resume"); ev != "data abc" {
			t.Errorf("first event after Resume %q, want the data", ev)
		}
		if ev := waitFor(t, events, 5*time.Second, "end after the data"); ev != "end" {
			t.Errorf("second event after Resume %q, want the end", ev)
		}
	})
}

// OnError and OnClose get the very same error, whatever closed the
// connection.
func TestEventsErrorAndCloseGetTheSameError(t *testing.T) {
	protoErr := errors.New("protocol error")
	for _, tt := range []struct {
		name string
		act  func(c *Conn, nc net.Conn)
	}{
		{"CloseWithError", func(c *Conn, nc net.Conn) { c.CloseWithError(protoErr) }},
		{"peer reset", func(c *Conn, nc net.Conn) { nc.(*net.TCPConn).SetLinger(0); nc.Close() }},
		{"EndWithError", func(c *Conn, nc net.Conn) { c.EndWithError(protoErr, 0); nc.Close() }},
		{"slow consumer", func(c *Conn, nc net.Conn) {
			for range 1000 { // 1 GiB at most; MaxBuffered is 4 MiB
				if _, err := c.Write(make([]byte, 1<<20)); err != nil {
					return
				}
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, e engine) {
				type pair struct{ onError, onClose error }
				got := make(chan pair, 1)
				conns := make(chan *Conn, 1)
				s := &Server{Handler: func(c *Conn) {
					var p pair
					c.OnError(func(err error) { p.onError = err })
					c.OnClose(func(err error) { p.onClose = err; got <- p })
					conns <- c
				}}
				addr := startServer(t, e, s, "127.0.0.1:0")
				nc := dialRaw(t, addr)
				tt.act(waitFor(t, conns, 5*time.Second, "connection"), nc)
				p := waitFor(t, got, 10*time.Second, "close event")
				if p.onClose == nil || p.onError != p.onClose {
					t.Errorf("OnError got %v, OnClose got %v; want the same non-nil error", p.onError, p.onClose)
				}
			})
		})
	}
}
