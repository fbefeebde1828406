package tcpkit

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeDriver is an engine without a socket, for tests of the event rules:
// the test plays the engine, calling step and feeding it reads. Its writes
// take at most take bytes at a time (all, if take is zero).
type fakeDriver struct {
	mu      sync.Mutex
	calls   []string // closeWrite, close, close(reset), startFlush
	written bytes.Buffer
	take    int  // the most one write takes; 0 for all
	full    bool // writes take nothing
	timer   time.Time
	wakes   int

	closeWriteErr error // what closeWrite returns
}

func (d *fakeDriver) record(call string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, call)
}

func (d *fakeDriver) log() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

func (d *fakeDriver) wake() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wakes++
}

func (d *fakeDriver) setTimer(deadline time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.timer = deadline
}

func (d *fakeDriver) write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := len(p)
	if d.full {
		return 0, nil
	}
	if d.take > 0 {
		n = min(n, d.take)
	}
	d.written.Write(p[:n])
	return n, nil
}

func (d *fakeDriver) startFlush()       { d.record("startFlush") }
func (d *fakeDriver) closeWrite() error { d.record("closeWrite"); return d.closeWriteErr }
func (d *fakeDriver) close(reset bool) error {
	if reset {
		d.record("close(reset)")
	} else {
		d.record("close")
	}
	return nil
}
func (d *fakeDriver) quiesce()                               {}
func (d *fakeDriver) addrs() (net.Addr, net.Addr)            { return fakeAddr, fakeAddr }
func (d *fakeDriver) unread() int                            { return 0 }
func (d *fakeDriver) soError() error                         { return nil }
func (d *fakeDriver) control(func(fd uintptr)) error         { return errors.New("no socket") }
func (d *fakeDriver) setNoDelay(bool) error                  { return nil }
func (d *fakeDriver) setKeepAlive(bool, time.Duration) error { return nil }
func (d *fakeDriver) setBuffers(int, int) error              { return nil }

var fakeAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}

// newFakeConn opens a Conn on a fake driver and runs h as its handler.
func newFakeConn(t *testing.T, cfg ConnConfig, h Handler) (*Conn, *fakeDriver) {
	t.Helper()
	cfg, err := cfg.resolve()
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDriver{}
	c := newConn(d, &cfg, nil, failOnPanicLogger(t))
	c.open(h)
	return c, d
}

// events registers a listener for every event and returns what they saw.
func recordEvents(c *Conn) *[]string {
	var evs []string
	c.OnData(func(p []byte) { evs = append(evs, "data "+string(p)) })
	c.OnEnd(func() { evs = append(evs, "end") })
	c.OnDrain(func() { evs = append(evs, "drain") })
	c.OnTimeout(func() { evs = append(evs, "timeout") })
	c.OnError(func(err error) { evs = append(evs, "error "+err.Error()) })
	c.OnClose(func(err error) { evs = append(evs, "close") })
	return &evs
}

func wantAction(t *testing.T, c *Conn, want action) {
	t.Helper()
	if got := c.step(); got != want {
		t.Fatalf("step() = %d, want %d", got, want)
	}
}

// The event rules over a fake engine: data, the peer's end, our end once
// the queue is empty, then a clean close, in that order.
func TestStateExchangeAndEnd(t *testing.T) {
	var evs *[]string
	c, d := newFakeConn(t, ConnConfig{}, func(c *Conn) {
		evs = recordEvents(c)
		c.WriteString("hi")
	})
	wantAction(t, c, actRead)
	c.onRead([]byte("abc"), nil)
	wantAction(t, c, actRead)
	c.onRead(nil, io.EOF)
	wantAction(t, c, actClosed)
	c.finish()
	if want := []string{"data abc", "end", "close"}; !slices.Equal(*evs, want) {
		t.Errorf("events %v, want %v", *evs, want)
	}
	if want := []string{"closeWrite", "close"}; !slices.Equal(d.log(), want) {
		t.Errorf("driver calls %v, want %v", d.log(), want)
	}
	if d.written.String() != "hi" || c.BytesRead() != 3 || c.BytesWritten() != 2 || c.Err() != nil {
		t.Errorf("wrote %q, read %d, written %d, close error %v", d.written.String(), c.BytesRead(), c.BytesWritten(), c.Err())
	}
}

// Paused, data read is held and the end waits; Resume delivers both, in
// order. With AllowHalfOpen the connection stays open after the end.
func TestStatePauseHoldsDataAndEnd(t *testing.T) {
	var evs *[]string
	c, d := newFakeConn(t, ConnConfig{AllowHalfOpen: true}, func(c *Conn) { evs = recordEvents(c) })
	wantAction(t, c, actRead)
	c.onRead([]byte("x"), nil)
	c.Pause()
	wantAction(t, c, actWait)
	if len(*evs) != 0 {
		t.Fatalf("events while paused: %v", *evs)
	}
	c.Resume()
	wantAction(t, c, actRead)
	c.onRead(nil, io.EOF)
	c.Pause()
	wantAction(t, c, actWait)
	c.Resume()
	wantAction(t, c, actWatch) // half-open: nothing to read, but a reset to watch for
	if want := []string{"data x", "end"}; !slices.Equal(*evs, want) {
		t.Errorf("events %v, want %v", *evs, want)
	}
	if slices.Contains(d.log(), "closeWrite") {
		t.Error("AllowHalfOpen, yet the connection ended its side")
	}
	c.End()
	wantAction(t, c, actClosed)
	c.finish()
	if want := []string{"data x", "end", "close"}; !slices.Equal(*evs, want) {
		t.Errorf("events %v, want %v", *evs, want)
	}
}

// A Write the driver cannot take whole is queued and flushed; the FIN of an
// End waits for the flush.
func TestStateQueueAndFlush(t *testing.T) {
	c, d := newFakeConn(t, ConnConfig{}, nil)
	d.take = 2
	if n, err := c.WriteString("hello"); n != 5 || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if c.Buffered() != 3 || !slices.Equal(d.log(), []string{"startFlush"}) {
		t.Fatalf("Buffered %d, driver calls %v; want 3 queued and a flush started", c.Buffered(), d.log())
	}
	c.End()
	if slices.Contains(d.log(), "closeWrite") {
		t.Fatal("FIN sent before the queue was flushed")
	}
	c.writeLoop(d.write)
	if d.written.String() != "hello" || c.Buffered() != 0 {
		t.Errorf("wrote %q, %d still queued", d.written.String(), c.Buffered())
	}
	if want := []string{"startFlush", "closeWrite"}; !slices.Equal(d.log(), want) {
		t.Errorf("driver calls %v, want %v", d.log(), want)
	}
	c.Close()
	wantAction(t, c, actClosed)
	c.finish()
}

// OnTimeout fires once per idle period, and IdleTimeout closes, on the
// timer the rules ask the engine for; on a fake clock.
func TestStateTimers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var evs *[]string
		c, d := newFakeConn(t, ConnConfig{Timeout: time.Second, IdleTimeout: 3 * time.Second},
			func(c *Conn) { evs = recordEvents(c) })
		start := time.Now()
		wantAction(t, c, actRead)
		if d.timer.Sub(start) != time.Second {
			t.Fatalf("timer at +%v, want +1s", d.timer.Sub(start))
		}
		time.Sleep(time.Second)
		c.onTimer()
		wantAction(t, c, actRead)
		if want := []string{"timeout"}; !slices.Equal(*evs, want) {
			t.Fatalf("events %v, want %v", *evs, want)
		}
		time.Sleep(time.Second) // traffic now starts a new idle period
		c.onRead([]byte("x"), nil)
		c.onTimer()
		wantAction(t, c, actRead)
		if d.timer.Sub(start) != 3*time.Second {
			t.Fatalf("after traffic at +2s, timer at +%v, want +3s", d.timer.Sub(start))
		}
		time.Sleep(3 * time.Second) // idle for IdleTimeout
		c.onTimer()
		wantAction(t, c, actClosed)
		c.finish()
		if !errors.Is(c.Err(), ErrIdleTimeout) {
			t.Errorf("close error %v, want ErrIdleTimeout", c.Err())
		}
		if want := []string{"timeout", "data x", "timeout", "error " + ErrIdleTimeout.Error(), "close"}; !slices.Equal(*evs, want) {
			t.Errorf("events %v, want %v", *evs, want)
		}
	})
}

// After EndWithError, input is dropped unseen, and the peer's end closes
// the connection with the error.
func TestStateEndWithErrorDiscards(t *testing.T) {
	var evs *[]string
	protoErr := errors.New("bad frame")
	c, d := newFakeConn(t, ConnConfig{}, func(c *Conn) { evs = recordEvents(c) })
	wantAction(t, c, actRead)
	c.EndWithError(protoErr, time.Minute)
	wantAction(t, c, actRead)
	c.onRead([]byte("more"), nil)
	wantAction(t, c, actRead)
	c.onRead(nil, io.EOF)
	wantAction(t, c, actClosed)
	c.finish()
	if want := []string{"end", "error bad frame", "close"}; !slices.Equal(*evs, want) {
		t.Errorf("events %v, want %v", *evs, want)
	}
	if c.Err() != protoErr || !slices.Contains(d.log(), "closeWrite") {
		t.Errorf("close error %v, driver calls %v", c.Err(), d.log())
	}
}

// Reset asks the engine for an RST; nothing is delivered after Close.
func TestStateResetAndNothingAfterClose(t *testing.T) {
	var evs *[]string
	c, d := newFakeConn(t, ConnConfig{}, func(c *Conn) { evs = recordEvents(c) })
	wantAction(t, c, actRead)
	c.onRead([]byte("late"), nil)
	c.Reset()
	wantAction(t, c, actClosed)
	c.finish()
	if want := []string{"close"}; !slices.Equal(*evs, want) {
		t.Errorf("events %v, want %v", *evs, want)
	}
	if want := []string{"close(reset)"}; !slices.Equal(d.log(), want) {
		t.Errorf("driver calls %v, want %v", d.log(), want)
	}
}

// A listener that closes the connection stops the listeners after it, for
// data and for the other events alike.
func TestStateCloseInListenerStopsTheRest(t *testing.T) {
	for _, ev := range []string{"data", "end"} {
		t.Run(ev, func(t *testing.T) {
			var calls []string
			c, _ := newFakeConn(t, ConnConfig{}, func(c *Conn) {
				first := func() { calls = append(calls, "first"); c.Close() }
				second := func() { calls = append(calls, "second") }
				if ev == "data" {
					c.OnData(func([]byte) { first() })
					c.OnData(func([]byte) { second() })
				} else {
					c.OnEnd(first)
					c.OnEnd(second)
				}
			})
			wantAction(t, c, actRead)
			if ev == "data" {
				c.onRead([]byte("x"), nil)
			} else {
				c.onRead(nil, io.EOF)
			}
			wantAction(t, c, actClosed)
			c.finish()
			if want := []string{"first"}; !slices.Equal(calls, want) {
				t.Errorf("listeners called %v, want %v", calls, want)
			}
		})
	}
}

// The drain event fires once the queue, having gone over HighWater, falls
// to LowWater exactly, not only below it.
func TestStateDrainAtLowWater(t *testing.T) {
	c, d := newFakeConn(t, ConnConfig{HighWater: 100, LowWater: 25, ReadBufferSize: 100, MaxBuffered: 1000}, nil)
	d.full = true
	if _, err := c.Write(make([]byte, 150)); err != nil || c.Buffered() != 150 {
		t.Fatalf("Write: %v, queued %d", err, c.Buffered())
	}
	took := 0
	c.flushNow(func(p []byte) (int, error) { // the socket takes 125 bytes, then is full
		n := min(len(p), 125-took)
		took += n
		return n, nil
	})
	if c.Buffered() != 25 || c.drainCount() != 1 {
		t.Errorf("queue %d bytes (LowWater 25), %d drain events; want one", c.Buffered(), c.drainCount())
	}
	c.Close()
	wantAction(t, c, actClosed)
	c.finish()
}

// Every event delivers to all its listeners, in the order they were added:
// the first is held apart from the others, so the second and third of each
// kind are where a slip would show. A listener added while earlier ones are
// published takes nothing from them.
func TestStateSeveralListenersOfEachEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var evs []string
		tagged := func(c *Conn, tag string) {
			c.OnData(func(p []byte) { evs = append(evs, "data"+tag) })
			c.OnEnd(func() { evs = append(evs, "end"+tag) })
			c.OnDrain(func() { evs = append(evs, "drain"+tag) })
			c.OnTimeout(func() { evs = append(evs, "timeout"+tag) })
			c.OnShutdown(func() { evs = append(evs, "shutdown"+tag) })
			c.OnError(func(error) { evs = append(evs, "error"+tag) })
			c.OnClose(func(error) { evs = append(evs, "close"+tag) })
		}
		c, _ := newFakeConn(t, ConnConfig{Timeout: time.Second, AllowHalfOpen: true}, func(c *Conn) {
			tagged(c, "1")
			tagged(c, "2")
		})
		published := c.listeners()
		tagged(c, "3")
		if published.more == nil || len(published.more.data) != 1 || published.close == nil {
			t.Fatalf("the listeners published before the third of each were changed: %+v", published)
		}
		step := func(want ...string) {
			t.Helper()
			evs = nil
			c.step()
			if !slices.Equal(evs, want) {
				t.Fatalf("events %v, want %v", evs, want)
			}
		}
		c.onRead([]byte("x"), nil)
		step("data1", "data2", "data3")
		c.post(evDrain)
		step("drain1", "drain2", "drain3")
		c.post(evShutdown)
		step("shutdown1", "shutdown2", "shutdown3")
		time.Sleep(time.Second)
		c.onTimer()
		step("timeout1", "timeout2", "timeout3")
		c.onRead(nil, io.EOF)
		step("end1", "end2", "end3")
		c.onRead(nil, errors.New("boom"))
		evs = nil
		wantAction(t, c, actClosed)
		c.finish()
		if want := []string{"error1", "error2", "error3", "close1", "close2", "close3"}; !slices.Equal(evs, want) {
			t.Errorf("events %v, want %v", evs, want)
		}
	})
}
