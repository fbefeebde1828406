package loadgen

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// serviceTime is how long the slow server takes over each message.
const serviceTime = 20 * time.Millisecond

// startSlow starts a server that echoes each message of faultSize bytes
// serviceTime after reading it, one message at a time per connection: a
// connection serves at most 1/serviceTime messages a second, and what is
// sent faster queues up in the socket.
func startSlow(t *testing.T) string {
	return startRaw(t, func(c net.Conn) {
		buf := make([]byte, faultSize)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			time.Sleep(serviceTime)
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
}

// runSlow runs cfg for a second against a fresh slow server, on two
// connections, and expects no error.
func runSlow(t *testing.T, cfg Config) *Result {
	t.Helper()
	cfg.Addr = startSlow(t)
	cfg.Conns, cfg.Size = 2, faultSize
	cfg.Duration = time.Second
	cfg.Timeout = 5 * time.Second
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Errors.Total(); n != 0 {
		t.Fatalf("errors %v: %q", res.Errors, res.ErrorSamples)
	}
	if res.Latency == nil {
		t.Fatal("no latency")
	}
	t.Logf("rate %v: %.0f msgs/s, p50 %v p99 %v max %v, open %+v", cfg.Rate, res.MsgsPerSec,
		res.Latency.P50, res.Latency.P99, res.Latency.Max, res.Open)
	return res
}

// TestOpenLoopQueueing puts two connections to a server that takes 20ms a
// message (100 msgs/s in all) under 200 msgs/s open loop: the messages
// queue up, and the latency, counted from each message's schedule,
// grows by about 10ms a second per message... to about a second by the
// end. A closed loop on the same connections sees only the 20ms; an open
// loop under capacity, 20ms too.
func TestOpenLoopQueueing(t *testing.T) {
	t.Run("overloaded", func(t *testing.T) {
		res := runSlow(t, Config{Rate: 200})
		if l := res.Latency; l.P99 < 10*serviceTime || l.P50 < 5*serviceTime {
			t.Errorf("open loop over capacity: p50 %v, p99 %v; want queueing (p99 above %v)", l.P50, l.P99, 10*serviceTime)
		}
		o := res.Open
		switch {
		case o == nil:
			t.Fatal("no open-loop figures")
		case o.Requested != 200 || o.Sent < 150 || o.Sent > 220:
			t.Errorf("requested %v, sent %v msgs/s; want 200 and about 200", o.Requested, o.Sent)
		case res.MsgsPerSec < 50 || res.MsgsPerSec > 110:
			t.Errorf("achieved %v msgs/s, want the server's 100", res.MsgsPerSec)
		case o.Depth != DefaultRateDepth || o.Held != 0:
			t.Errorf("depth %d, held %d; want %d and 0", o.Depth, o.Held, DefaultRateDepth)
		}
	})
	t.Run("closed", func(t *testing.T) {
		res := runSlow(t, Config{})
		if l := res.Latency; l.P50 < serviceTime-time.Millisecond || l.P50 > serviceTime+15*time.Millisecond || l.P99 > 5*serviceTime {
			t.Errorf("closed loop: p50 %v, p99 %v; want about %v", l.P50, l.P99, serviceTime)
		}
		if res.Open != nil {
			t.Errorf("closed loop reported open-loop figures %+v", res.Open)
		}
	})
	t.Run("under-capacity", func(t *testing.T) {
		res := runSlow(t, Config{Rate: 40})
		if l := res.Latency; l.P50 < serviceTime-time.Millisecond || l.P50 > serviceTime+15*time.Millisecond || l.P99 > 5*serviceTime {
			t.Errorf("open loop under capacity: p50 %v, p99 %v; want about %v", l.P50, l.P99, serviceTime)
		}
		if res.MsgsPerSec < 30 || res.MsgsPerSec > 45 || res.Open.Sent < 30 || res.Open.Sent > 45 {
			t.Errorf("achieved %v, sent %v msgs/s; want about 40", res.MsgsPerSec, res.Open.Sent)
		}
	})
	t.Run("bound", func(t *testing.T) {
		// With 4 in flight per connection, messages wait for a slot,
		// and the wait still counts.
		res := runSlow(t, Config{Rate: 200, Depth: 4})
		if o := res.Open; o.Held == 0 || o.Depth != 4 || o.Sent > 120 {
			t.Errorf("depth 4: %+v; want messages held, and sent at about the server's rate", o)
		}
		if l := res.Latency; l.P99 < 10*serviceTime {
			t.Errorf("depth 4: p99 %v; want the waits counted (above %v)", l.P99, 10*serviceTime)
		}
	})
}

// TestOpenLoopEcho runs open loop against tcpkit's echo server over TCP
// and a Unix socket, with a rate low enough that connections sit idle
// past their read timeout, and one high enough to batch writes.
func TestOpenLoopEcho(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = unixAddr(t)
			}
			addr = startEcho(t, addr, "hi\n")
			for _, cfg := range []Config{
				{Rate: 5000, Conns: 3, Count: 3000, Warmup: 50 * time.Millisecond},
				{Rate: 20000, Mode: Pipeline, Conns: 2, Size: 256, Duration: 300 * time.Millisecond},
				{Rate: 4, Conns: 1, Duration: 700 * time.Millisecond, Timeout: 200 * time.Millisecond},
			} {
				cfg.Addr, cfg.Greeting = addr, []byte("hi\n")
				res, err := Run(context.Background(), cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				checkClean(t, res, 1)
				if res.Open == nil || res.Open.Requested != cfg.Rate || res.Open.Sent <= 0 {
					t.Errorf("rate %v: open-loop figures %+v", cfg.Rate, res.Open)
				}
				if len(res.Series) == 0 || len(res.Spectrum) == 0 {
					t.Errorf("rate %v: series %v, spectrum %v", cfg.Rate, res.Series, res.Spectrum)
				}
			}
		})
	}
}

// TestSeries checks the per-second series of a closed-loop run: a point a
// second, whose counts add up to the messages.
func TestSeries(t *testing.T) {
	addr := startEcho(t, "127.0.0.1:0", "")
	res, err := Run(context.Background(), Config{Addr: addr, Conns: 2, Duration: 2500 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Series) != 3 {
		t.Fatalf("%d seconds in the series of a 2.5s run: %+v", len(res.Series), res.Series)
	}
	var n int64
	for i, s := range res.Series {
		n += s.Messages
		if s.T != time.Duration(i)*time.Second || s.Messages == 0 || s.MsgsPerSec <= 0 || s.P99 <= 0 || s.P50 > s.P99 || s.P99 > s.Max {
			t.Errorf("second %d: %+v", i, s)
		}
	}
	if n != res.Messages {
		t.Errorf("the series counts %d messages, the result %d", n, res.Messages)
	}
	if last := res.Series[2]; last.MsgsPerSec < float64(last.Messages) {
		t.Errorf("the last, half, second's rate %v is not counted over its half: %+v", last.MsgsPerSec, last)
	}
	sp := res.Spectrum
	if len(sp) != len(spectrumPercentiles) || sp[0].Percentile != 0 || sp[len(sp)-1].Percentile != 100 ||
		sp[len(sp)-1].Latency != res.Latency.Max {
		t.Errorf("spectrum %+v", sp)
	}
	for i := 1; i < len(sp); i++ {
		if sp[i].Percentile <= sp[i-1].Percentile || sp[i].Latency < sp[i-1].Latency {
			t.Errorf("spectrum out of order at %d: %+v", i, sp)
		}
	}
}

// TestOpenLoopFaults checks that open loop catches what closed loop
// catches: a damaged echo, a connection closed with messages outstanding,
// and one closed in the middle of an echo.
func TestOpenLoopFaults(t *testing.T) {
	t.Run("corrupt", func(t *testing.T) {
		res := runFaulty(t, Config{Rate: 4000, Conns: 2}, func(c net.Conn) {
			const at = 50*faultSize + 30
			echoWith(c, func(p []byte, off int) ([]byte, bool) {
				if off <= at && at < off+len(p) {
					p[at-off] ^= 0x10
				}
				return p, false
			})
		})
		wantOnly(t, res, Corrupt, "payload byte 30 of message 50")
	})
	t.Run("lost", func(t *testing.T) {
		res := runFaulty(t, Config{Rate: 4000, Conns: 1}, func(c net.Conn) {
			echoWith(c, func(p []byte, off int) ([]byte, bool) {
				// Echo 20 messages, then swallow the rest and close.
				if end := 20 * faultSize; off+len(p) > end {
					return p[:max(end-off, 0)], true
				}
				return p, false
			})
		})
		reset := Reset
		wantMostly(t, res, Lost, &reset, "not echoed")
	})
	t.Run("short", func(t *testing.T) {
		res := runFaulty(t, Config{Rate: 4000, Conns: 1}, func(c net.Conn) {
			echoWith(c, func(p []byte, off int) ([]byte, bool) {
				// Echo 20 and a half messages, then close.
				if end := 20*faultSize + faultSize/2; off+len(p) > end {
					return p[:max(end-off, 0)], true
				}
				return p, false
			})
		})
		reset := Reset
		wantMostly(t, res, Short, &reset, "of the 64 bytes of an echo")
	})
}
