package tcpkit

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// Every counter of Stats moves as the traffic says it must: a clean
// close, a reset by the peer, an idle timeout, a slow consumer, a panic,
// a denied client, bytes both ways, and bytes queued while a peer does
// not read.
func TestServerStats(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		s := &Server{
			Logger:     discardLogger(), // the panic is on purpose
			Deny:       []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
			ConnConfig: ConnConfig{IdleTimeout: 500 * time.Millisecond, HighWater: 16 << 10, MaxBuffered: 256 << 10, SendBuffer: 4 << 10},
			Handler: func(c *Conn) {
				c.OnData(func(p []byte) {
					switch string(p) {
					case "panic":
						panic("on purpose")
					case "flood":
						for c.Write(make([]byte, 32<<10)); c.Buffered() < 128<<10; {
							if _, err := c.Write(make([]byte, 32<<10)); err != nil {
								return
							}
						}
						return
					}
					c.Write(p)
				})
			}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		waitStats := func(what string, ok func(Stats) bool) Stats {
			t.Helper()
			deadline := time.Now().Add(5 * time.Second)
			for {
				st := s.Stats()
				if ok(st) {
					return st
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: stats %+v", what, st)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}

		// A clean exchange: 100 bytes each way, then both ends.
		clean := dialRaw(t, addr)
		msg := bytes.Repeat([]byte("x"), 100)
		clean.Write(msg)
		io.ReadFull(clean, make([]byte, 100))
		closeWrite(t, clean)
		io.ReadAll(clean)
		waitStats("clean close", func(st Stats) bool { return st.Closed.Clean == 1 })

		// A peer that resets.
		rst := dialRaw(t, addr)
		rst.Write([]byte("hi"))
		io.ReadFull(rst, make([]byte, 2))
		rst.(*net.TCPConn).SetLinger(0)
		rst.Close()
		waitStats("reset", func(st Stats) bool { return st.Closed.PeerReset == 1 })

		// A panic, and a denied client.
		p := dialRaw(t, addr)
		p.Write([]byte("panic"))
		dialFrom(t, "127.0.0.2", addr)
		waitStats("panic and deny", func(st Stats) bool { return st.Closed.Panic == 1 && st.Dropped.Denied == 1 })

		// A peer that does not read: bytes queue up, then the slow-consumer
		// cut.
		flood := dialRaw(t, addr)
		flood.(*net.TCPConn).SetReadBuffer(4 << 10)
		flood.Write([]byte("flood"))
		st := waitStats("queued", func(st Stats) bool { return st.Queued >= 64<<10 })
		if st.Open != 1 {
			t.Errorf("Open = %d with one connection open", st.Open)
		}
		// The flood's writer stops once over 128 KiB queued, and the idle
		// timeout (no traffic while the peer does not read) closes it, as
		// it does a connection that sends nothing.
		dialRaw(t, addr)
		st = waitStats("idle timeout", func(st Stats) bool { return st.Closed.IdleTimeout >= 1 && st.Open == 0 })

		if st.Accepted != 6 {
			t.Errorf("Accepted = %d, want 6", st.Accepted)
		}
		if got := int64(st.Open) + st.Dropped.Total() + st.Closed.Total(); got != st.Accepted {
			t.Errorf("open + dropped + closed = %d, accepted %d: %+v", got, st.Accepted, st)
		}
		if st.BytesIn < 100+2+5+5 || st.BytesOut < 100+2+64<<10 {
			t.Errorf("bytes in %d, out %d", st.BytesIn, st.BytesOut)
		}
		if st.Closed.Other != 0 || st.AcceptErrors != 0 {
			t.Errorf("unexpected: %+v", st)
		}
		if e.name == "epoll" && len(st.Loops) == 0 || e.name == "goroutine" && st.Loops != nil {
			t.Errorf("Loops = %+v on the %s engine", st.Loops, e.name)
		}
	})
}

// A connection whose queue would pass MaxBuffered is counted as a slow
// consumer.
func TestServerStatsSlowConsumer(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		s := &Server{Logger: failOnPanicLogger(t),
			ConnConfig: ConnConfig{HighWater: 16 << 10, MaxBuffered: 96 << 10, SendBuffer: 4 << 10},
			Handler: func(c *Conn) {
				c.OnData(func([]byte) {
					for range 64 {
						if _, err := c.Write(make([]byte, 32<<10)); err != nil {
							return
						}
					}
				})
			}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		nc.(*net.TCPConn).SetReadBuffer(4 << 10)
		nc.Write([]byte("go"))
		deadline := time.Now().Add(5 * time.Second)
		for s.Stats().Closed.SlowConsumer != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("stats %+v", s.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}
