package tcpkit

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit/internal/testenv"
)

// Tests here follow the checklist of Node's own test-net-*.js suite, where
// tcpkit has the same behaviour.

// server-pause-on-connect: nothing is read until Resume.
func TestConnPauseOnConnect(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		conns := make(chan *Conn, 1)
		got := make(chan string, 1)
		s := &Server{ConnConfig: ConnConfig{PauseOnConnect: true}, Handler: func(c *Conn) {
			c.OnData(func(p []byte) { got <- string(p) })
			conns <- c
		}}
		addr = startServer(t, e, s, addr)
		nc := dialRaw(t, addr)
		io.WriteString(nc, "queued")
		c := waitFor(t, conns, 5*time.Second, "connection")
		time.Sleep(30 * time.Millisecond) // give a wrongly unpaused read the chance to happen
		if n := c.BytesRead(); n != 0 || !c.Paused() {
			t.Fatalf("BytesRead %d, Paused %v before Resume; want 0, true", n, c.Paused())
		}
		c.Resume()
		if p := waitFor(t, got, 5*time.Second, "data after Resume"); p != "queued" {
			t.Errorf("data %q after Resume", p)
		}
	})
}

// socket-destroy-twice, error-twice: one close event, and at most one error.
func TestConnCloseTwiceOneEvent(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		var closes, errs atomic.Int32
		done := make(chan *Conn, 1)
		s := &Server{Handler: func(c *Conn) {
			c.OnError(func(error) { errs.Add(1) })
			c.OnClose(func(error) { closes.Add(1) })
			c.Close()
			c.Close()
			c.Reset()
			done <- c
		}}
		addr = startServer(t, e, s, addr)
		dialRaw(t, addr)
		c := waitFor(t, done, 5*time.Second, "connection")
		waitFor(t, c.Done(), 10*time.Second, "close event")
		if closes.Load() != 1 || errs.Load() != 0 {
			t.Errorf("%d close and %d error events after Close, Close, Reset; want 1 and 0", closes.Load(), errs.Load())
		}
		// after-close: accessors still answer.
		if c.RemoteAddr() == nil || c.LocalAddr() == nil || c.Buffered() != 0 || c.Err() != nil {
			t.Errorf("after close: RemoteAddr %v, LocalAddr %v, Buffered %d, Err %v",
				c.RemoteAddr(), c.LocalAddr(), c.Buffered(), c.Err())
		}
		// A listener added after close still runs, at once.
		ran := false
		c.OnClose(func(error) { ran = true })
		if !ran {
			t.Error("OnClose added after the close event did not run")
		}
	})
}

// socket-reset-send: the peer gets ECONNRESET; a later write fails.
func TestConnResetSendsRST(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		done := make(chan *Conn, 1)
		s := &Server{Handler: func(c *Conn) {
			c.WriteString("partial")
			c.OnData(func([]byte) { c.Reset(); done <- c })
		}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		io.ReadFull(nc, make([]byte, 7))
		io.WriteString(nc, "go")
		c := waitFor(t, done, 5*time.Second, "reset")
		if _, err := io.ReadAll(nc); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("peer read after Reset: %v, want ECONNRESET", err)
		}
		if _, err := c.WriteString("x"); !errors.Is(err, net.ErrClosed) {
			t.Errorf("write after Reset: %v, want net.ErrClosed", err)
		}
	})
}

// reconnect: 50 reconnects, each greeted, each closing cleanly.
func TestConnReconnect(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		s := &Server{Handler: func(c *Conn) { c.WriteString("hello\r\n"); c.End() }}
		addr = startServer(t, e, s, addr)
		for i := range 50 {
			var got []byte
			c, err := e.dial(addr, func(c *Conn) {
				c.OnData(func(p []byte) { got = append(got, p...) })
			})
			if err != nil {
				t.Fatalf("reconnect %d: %v", i, err)
			}
			waitFor(t, c.Done(), 10*time.Second, "close event")
			if string(got) != "hello\r\n" || c.Err() != nil {
				t.Fatalf("reconnect %d: got %q, close error %v", i, got, c.Err())
			}
		}
	})
}

// pingpong: 1000 round trips over TCP on 127.0.0.1 and ::1, and a Unix socket.
func TestConnPingPong(t *testing.T) {
	addrs := map[string]func(t *testing.T) string{
		"tcp4": func(*testing.T) string { return "127.0.0.1:0" },
		"tcp6": func(t *testing.T) string {
			if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
				testenv.SkipUnlessCI(t, "no IPv6 loopback here: %v", err)
			} else {
				ln.Close()
			}
			return "[::1]:0"
		},
		"unix": networks[1].addr,
	}
	forEachEngine(t, func(t *testing.T, e engine) {
		for name, addrFunc := range addrs {
			t.Run(name, func(t *testing.T) {
				var pings, pongBytes atomic.Int64 // counted by each side as it receives
				s := &Server{Handler: func(c *Conn) {
					c.OnData(func(p []byte) {
						pings.Add(int64(len(p)))
						for range p {
							c.WriteString("PONG")
						}
					})
				}}
				addr := startServer(t, e, s, addrFunc(t))
				const rounds = 1000
				done := make(chan struct{})
				count := 0
				var pending int
				c, err := e.dial(addr, func(c *Conn) {
					c.OnData(func(p []byte) {
						pongBytes.Add(int64(len(p)))
						pending += len(p)
						for ; pending >= 4; pending -= 4 {
							if count++; count == rounds {
								close(done)
								c.End()
								return
							}
							c.WriteString("p")
						}
					})
					c.WriteString("p")
				})
				if err != nil {
					t.Fatal(err)
				}
				waitFor(t, done, 20*time.Second, "1000 round trips")
				waitFor(t, c.Done(), 10*time.Second, "close event")
				if pings.Load() != rounds || pongBytes.Load() != 4*rounds {
					t.Errorf("server received %d pings, client %d bytes of pongs; want %d and %d",
						pings.Load(), pongBytes.Load(), rounds, 4*rounds)
				}
			})
		}
	})
}

// socket-setnodelay, server-nodelay: the default, the option, and both
// directions of SetNoDelay, read back from the socket.
func TestConnNoDelay(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		for _, nagle := range []bool{false, true} {
			conns := make(chan *Conn, 1)
			s := &Server{ConnConfig: ConnConfig{Nagle: nagle}, Handler: func(c *Conn) { conns <- c }}
			addr := startServer(t, e, s, "127.0.0.1:0")
			dialRaw(t, addr)
			c := waitFor(t, conns, 5*time.Second, "connection")
			if got := noDelay(t, c); got == nagle {
				t.Errorf("Nagle %v: TCP_NODELAY is %v", nagle, got)
			}
			for _, want := range []bool{!nagle, nagle} {
				if err := c.SetNoDelay(want); err != nil {
					t.Fatal(err)
				}
				if got := noDelay(t, c); got != want {
					t.Errorf("after SetNoDelay(%v), TCP_NODELAY is %v", want, got)
				}
			}
			c.Close()
		}
	})
}

func noDelay(t *testing.T, c *Conn) bool {
	t.Helper()
	var v int
	var serr error
	if err := c.drv.control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
	}); err != nil || serr != nil {
		t.Fatalf("getsockopt TCP_NODELAY: %v %v", err, serr)
	}
	return v != 0
}

// Writes from one goroutine keep their order, and Writes from many
// goroutines never interleave inside one another.
func TestConnConcurrentWritesKeepOrder(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		const writers, per = 8, 2000
		s := &Server{Handler: func(c *Conn) {
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					msg := make([]byte, 64) // big enough that interleaving would show
					for i := range per {
						binary.BigEndian.PutUint32(msg[0:], uint32(w))
						binary.BigEndian.PutUint32(msg[4:], uint32(i))
						if _, err := c.Write(msg); err != nil {
							t.Errorf("writer %d: %v", w, err)
							return
						}
					}
				})
			}
			go func() { wg.Wait(); c.End() }()
		}}
		addr = startServer(t, e, s, addr)
		nc := dialRaw(t, addr)
		data, err := io.ReadAll(nc)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) != writers*per*64 {
			t.Fatalf("read %d bytes, want %d", len(data), writers*per*64)
		}
		next := make([]uint32, writers)
		for off := 0; off < len(data); off += 64 {
			w, i := binary.BigEndian.Uint32(data[off:]), binary.BigEndian.Uint32(data[off+4:])
			if w >= writers || i != next[w] {
				t.Fatalf("at byte %d: writer %d message %d, want message %d", off, w, i, next[min(w, writers-1)])
			}
			next[w]++
		}
	})
}

// settimeout: 0 cancels the notification.
func TestConnSetTimeoutZeroCancels(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		timeouts := make(chan struct{}, 4)
		conns := make(chan *Conn, 1)
		s := &Server{ConnConfig: ConnConfig{Timeout: 40 * time.Millisecond}, Handler: func(c *Conn) {
			c.OnTimeout(func() { timeouts <- struct{}{} })
			c.SetTimeout(0)
			conns <- c
		}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		dialRaw(t, addr)
		c := waitFor(t, conns, 5*time.Second, "connection")
		select {
		case <-timeouts:
			t.Fatal("timeout fired after SetTimeout(0)")
		case <-time.After(150 * time.Millisecond):
		}
		c.SetTimeout(20 * time.Millisecond) // and it can be set again
		waitFor(t, timeouts, 5*time.Second, "timeout after SetTimeout")
	})
}

// SendBuffer and ReceiveBuffer reach the socket.
func TestConnSocketBuffers(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		conns := make(chan *Conn, 1)
		s := &Server{ConnConfig: ConnConfig{SendBuffer: 32 << 10, ReceiveBuffer: 48 << 10}, Handler: func(c *Conn) { conns <- c }}
		addr = startServer(t, e, s, addr)
		dialRaw(t, addr)
		c := waitFor(t, conns, 5*time.Second, "connection")
		for _, opt := range []struct {
			name string
			opt  int
			want int
		}{{"SO_SNDBUF", syscall.SO_SNDBUF, 32 << 10}, {"SO_RCVBUF", syscall.SO_RCVBUF, 48 << 10}} {
			var v int
			var serr error
			c.drv.control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, opt.opt) })
			// Linux doubles the value set, for its bookkeeping.
			if serr != nil || v != 2*opt.want {
				t.Errorf("%s = %d, %v; want %d", opt.name, v, serr, 2*opt.want)
			}
		}
		c.Close()
	})
}

// The read buffer grows, up to ReadBufferSize, for a connection that moves
// bulk data, and OnData never gets more than ReadBufferSize at once.
func TestConnReadBufferGrows(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		largest := make(chan int, 1)
		conns := make(chan *Conn, 1)
		s := &Server{ConnConfig: ConnConfig{PauseOnConnect: true}, Handler: func(c *Conn) {
			most := 0
			c.OnData(func(p []byte) { most = max(most, len(p)) })
			c.OnEnd(func() { largest <- most })
			conns <- c
		}}
		addr = startServer(t, e, s, addr)
		nc := dialRaw(t, addr)
		c := waitFor(t, conns, 5*time.Second, "connection")
		werr := sendAndEnd(nc, make([]byte, 4<<20))
		time.Sleep(20 * time.Millisecond) // let the kernel buffer plenty before reading starts
		c.Resume()
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		most := waitFor(t, largest, 10*time.Second, "end")
		if most <= initialReadBuffer || most > DefaultReadBufferSize {
			t.Errorf("largest OnData slice %d bytes; want more than the initial %d, at most ReadBufferSize %d",
				most, initialReadBuffer, DefaultReadBufferSize)
		}
	})
}

// sockopt reads an integer socket option of c.
func sockopt(t *testing.T, c *Conn, level, opt int) int {
	t.Helper()
	var v int
	var serr error
	if err := c.drv.control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), level, opt) }); err != nil || serr != nil {
		t.Fatalf("getsockopt(%d, %d): %v %v", level, opt, err, serr)
	}
	return v
}

// TCP keep-alive is on by default, every 15s (DefaultKeepAlive), for
// accepted and dialled connections; a negative KeepAlive turns it off;
// SetKeepAlive changes it per connection.
func TestConnKeepAlive(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		for _, tt := range []struct {
			name      string
			keepAlive time.Duration
			on        bool
			period    int // seconds
		}{
			{name: "default", keepAlive: 0, on: true, period: 15},
			{name: "set", keepAlive: 40 * time.Second, on: true, period: 40},
			{name: "off", keepAlive: -1, on: false},
		} {
			t.Run(tt.name, func(t *testing.T) {
				cfg := ConnConfig{KeepAlive: tt.keepAlive}
				conns := make(chan *Conn, 1)
				addr := startServer(t, e, &Server{ConnConfig: cfg, Handler: func(c *Conn) { conns <- c }}, "127.0.0.1:0")
				d := Dialer{ConnConfig: cfg, Engine: e.get()}
				dialled, err := d.Dial(context.Background(), addr, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer dialled.Close()
				accepted := waitFor(t, conns, 5*time.Second, "connection")
				for side, c := range map[string]*Conn{"accepted": accepted, "dialled": dialled} {
					on := sockopt(t, c, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) != 0
					if on != tt.on {
						t.Errorf("%s: SO_KEEPALIVE %v, want %v", side, on, tt.on)
					}
					if !tt.on {
						continue
					}
					idle := sockopt(t, c, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
					intvl := sockopt(t, c, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL)
					if idle != tt.period || intvl != tt.period {
						t.Errorf("%s: keep-alive idle %ds, interval %ds; want %ds both", side, idle, intvl, tt.period)
					}
				}
				if tt.on {
					// Turning it on with no period keeps the period.
					accepted.SetKeepAlive(true, 0)
					if idle := sockopt(t, accepted, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE); idle != tt.period {
						t.Errorf("after SetKeepAlive(true, 0): idle %ds, want %ds as before", idle, tt.period)
					}
				}
				accepted.SetKeepAlive(true, 7*time.Second)
				if idle := sockopt(t, accepted, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE); idle != 7 {
					t.Errorf("after SetKeepAlive(true, 7s): idle %ds", idle)
				}
				accepted.SetKeepAlive(false, 0)
				if sockopt(t, accepted, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) != 0 {
					t.Error("SetKeepAlive(false) left keep-alive on")
				}
				accepted.Close()
			})
		}
	})
}

// IdleTimeout counts traffic in either direction: a connection that only
// writes, or only reads, is not idle. Once both stop, it closes.
func TestConnIdleTimeoutCountsBothDirections(t *testing.T) {
	const idle = 300 * time.Millisecond
	for _, dir := range []string{"server writes", "server reads"} {
		t.Run(dir, func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, e engine) {
				closed := make(chan error, 1)
				stop := make(chan struct{})
				var talking sync.WaitGroup
				s := &Server{ConnConfig: ConnConfig{IdleTimeout: idle}, Handler: func(c *Conn) {
					c.OnClose(func(err error) { closed <- err })
					if dir != "server writes" {
						return
					}
					talking.Go(func() {
						for range 100 { // 5s at most, as 100 ticks of idle/6
							select {
							case <-stop:
								return
							case <-time.After(idle / 6):
							}
							if _, err := c.WriteString("tick"); err != nil {
								return
							}
						}
					})
				}}
				addr := startServer(t, e, s, "127.0.0.1:0")
				nc := dialRaw(t, addr)
				go io.Copy(io.Discard, nc) // reads whatever comes, until closed
				if dir == "server reads" {
					talking.Go(func() {
						for range 100 {
							select {
							case <-stop:
								return
							case <-time.After(idle / 6):
							}
							if _, err := io.WriteString(nc, "tock"); err != nil {
								return
							}
						}
					})
				}
				select {
				case err := <-closed:
					t.Fatalf("closed (%v) while traffic flowed one way", err)
				case <-time.After(3 * idle):
				}
				close(stop)
				waitGroup(t, &talking, 5*time.Second, "the talking side to stop")
				if err := waitFor(t, closed, 5*time.Second, "idle close"); !errors.Is(err, ErrIdleTimeout) {
					t.Errorf("close error %v, want ErrIdleTimeout", err)
				}
			})
		})
	}
}

// A negative KeepAlive turns keep-alive off even on a listener from package
// net, which turns it on for every connection it accepts.
func TestConnKeepAliveOffOnStdListener(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		conns := make(chan *Conn, 1)
		s := &Server{ConnConfig: ConnConfig{KeepAlive: -1}, Handler: func(c *Conn) { conns <- c }}
		e.apply(s)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- s.Serve(ln) }()
		defer func() {
			s.Close()
			waitFor(t, served, 5*time.Second, "Serve to return")
		}()
		dialRaw(t, ln.Addr().String())
		c := waitFor(t, conns, 5*time.Second, "connection")
		defer c.Close()
		if sockopt(t, c, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) != 0 {
			t.Error("KeepAlive -1, yet keep-alive is on")
		}
	})
}

// After a flush, the goroutine engine keeps the emptied queue buffer for
// reuse only if it is small: an idle connection holds no large buffer
// after a burst.
func TestConnKeepsOnlySmallSpareBuffer(t *testing.T) {
	conns := make(chan *Conn, 1)
	s := &Server{ConnConfig: ConnConfig{SendBuffer: 4 << 10, MaxBuffered: 16 << 20}, Handler: func(c *Conn) { conns <- c }}
	addr := startServer(t, engines[0], s, "127.0.0.1:0")
	nc := dialRaw(t, addr)
	c := waitFor(t, conns, 5*time.Second, "connection")
	var read int64 // by the client so far
	spare := func(write int) int {
		t.Helper()
		fillKernel(t, c)
		c.Write(make([]byte, write))
		total := c.BytesWritten() + int64(c.Buffered()) // all the server took
		n, err := io.CopyN(io.Discard, nc, total-read)  // let it all drain
		read += n
		if err != nil {
			t.Fatalf("reading the burst: %v", err)
		}
		for i := 0; c.Buffered() != 0; i++ {
			if i == 500 {
				t.Fatalf("the queue did not drain: %d bytes left", c.Buffered())
			}
			time.Sleep(10 * time.Millisecond)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return cap(c.spare)
	}
	if got := spare(1 << 10); got == 0 || got > maxSpare {
		t.Errorf("after a small burst, spare buffer of %d bytes, want one kept, at most %d", got, maxSpare)
	}
	if got := spare(1 << 20); got > maxSpare {
		t.Errorf("after a 1 MiB burst, spare buffer of %d bytes, want at most %d", got, maxSpare)
	}
	c.Close()
}

// The goroutine engine's read buffer grows only when reads fill it: after
// many short reads, a burst is still read 16 KiB at a time at first.
func TestConnReadBufferStaysSmallForShortReads(t *testing.T) {
	first := make(chan int, 1)
	conns := make(chan *Conn, 1)
	s := &Server{Handler: func(c *Conn) {
		pings := 0
		c.OnData(func(p []byte) {
			if pings < 20 {
				pings += len(p)
				c.Write(p)
				return
			}
			select {
			case first <- len(p):
			default:
			}
		})
		conns <- c
	}}
	addr := startServer(t, engines[0], s, "127.0.0.1:0")
	nc := dialRaw(t, addr)
	c := waitFor(t, conns, 5*time.Second, "connection")
	for range 20 { // twenty short reads
		io.WriteString(nc, "p")
		io.ReadFull(nc, make([]byte, 1))
	}
	c.Pause()
	time.Sleep(20 * time.Millisecond) // paused before the burst arrives
	if _, err := nc.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	c.Resume()
	if n := waitFor(t, first, 5*time.Second, "the burst"); n > initialReadBuffer {
		t.Errorf("first read of a burst after short reads: %d bytes, want at most the initial %d", n, initialReadBuffer)
	}
	c.Close()
}

// Zero SendBuffer and ReceiveBuffer leave the kernel's sizes alone, rather
// than asking for none (which the kernel rounds up to its tiny minimum).
func TestConnSocketBuffersDefault(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		conns := make(chan *Conn, 1)
		addr := startServer(t, e, &Server{Handler: func(c *Conn) { conns <- c }}, "127.0.0.1:0")
		dialRaw(t, addr)
		c := waitFor(t, conns, 5*time.Second, "connection")
		for name, opt := range map[string]int{"SO_SNDBUF": syscall.SO_SNDBUF, "SO_RCVBUF": syscall.SO_RCVBUF} {
			if v := sockopt(t, c, syscall.SOL_SOCKET, opt); v < 16<<10 {
				t.Errorf("%s = %d with the zero ConnConfig; want the kernel's default (16 KiB or more)", name, v)
			}
		}
		c.Close()
	})
}

// A connection's addresses are the socket's, seen from our side: the
// server's local address is the client's remote one and the other way
// round, with Go's types, and the same values after close. On TCP they are
// also checked over IPv6 and from a wildcard listener.
func TestConnAddrs(t *testing.T) {
	check := func(t *testing.T, e engine, addr string) {
		type pair struct{ local, remote net.Addr }
		got := make(chan pair, 1)
		var srvConn *Conn
		s := &Server{Handler: func(c *Conn) {
			srvConn = c
			got <- pair{c.LocalAddr(), c.RemoteAddr()}
			c.End()
		}}
		addr, served := serveOn(t, e, s, addr)
		nc := dialRaw(t, addr)
		p := waitFor(t, got, 5*time.Second, "the connection")
		if p.local.Network() != nc.RemoteAddr().Network() || p.local.String() != nc.RemoteAddr().String() {
			t.Errorf("LocalAddr %s %v, want the client's remote address %s %v", p.local.Network(), p.local, nc.RemoteAddr().Network(), nc.RemoteAddr())
		}
		if nc.LocalAddr().Network() == "tcp" {
			if _, ok := p.remote.(*net.TCPAddr); !ok || p.remote.String() != nc.LocalAddr().String() {
				t.Errorf("RemoteAddr %T %v, want the client's local address %v", p.remote, p.remote, nc.LocalAddr())
			}
		} else if _, ok := p.remote.(*net.UnixAddr); !ok {
			t.Errorf("RemoteAddr of a Unix connection is %T %v, want a *net.UnixAddr", p.remote, p.remote)
		}
		io.Copy(io.Discard, nc)
		nc.Close()
		waitFor(t, srvConn.Done(), 5*time.Second, "close")
		if srvConn.LocalAddr() != p.local || srvConn.RemoteAddr() != p.remote {
			t.Errorf("after close: %v %v, want the same values as before, %v %v", srvConn.LocalAddr(), srvConn.RemoteAddr(), p.local, p.remote)
		}
		s.Close()
		waitFor(t, served, 5*time.Second, "Serve to return")
	}
	forEachNetwork(t, check)
	t.Run("more", func(t *testing.T) {
		forEachEngine(t, func(t *testing.T, e engine) {
			t.Run("wildcard", func(t *testing.T) { check(t, e, "0.0.0.0:0") })
			if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
				ln.Close()
				t.Run("ipv6", func(t *testing.T) { check(t, e, "[::1]:0") })
			}
		})
	})
}
