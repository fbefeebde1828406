package tcpkit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// eventLog checks, as events arrive, the ordering rules that the package
// documentation promises for every connection, whatever happens to it.
type eventLog struct {
	mu       sync.Mutex
	events   []string
	problems []string
	errErr   error // the error event's error
	closeErr error // the close event's error
}

func (l *eventLog) add(ev string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev := func(e string) bool { return slices.Contains(l.events, e) }
	switch {
	case prev("close"):
		l.problems = append(l.problems, ev+" after close")
	case ev == "end" && prev("end"):
		l.problems = append(l.problems, "second end")
	case ev == "data" && prev("end"):
		l.problems = append(l.problems, "data after end")
	case ev == "error" && prev("error"):
		l.problems = append(l.problems, "second error")
	case ev != "close" && len(l.events) > 0 && l.events[len(l.events)-1] == "error":
		l.problems = append(l.problems, ev+" between error and close")
	}
	l.events = append(l.events, ev)
}

func (l *eventLog) attach(c *Conn) {
	c.OnData(func([]byte) { l.add("data") })
	c.OnEnd(func() { l.add("end") })
	c.OnDrain(func() { l.add("drain") })
	c.OnTimeout(func() { l.add("timeout") })
	c.OnError(func(err error) {
		l.mu.Lock()
		l.errErr = err
		l.mu.Unlock()
		l.add("error")
	})
	c.OnClose(func(err error) {
		l.mu.Lock()
		l.closeErr = err
		l.mu.Unlock()
		if err != nil && (len(l.events) == 0 || l.events[len(l.events)-1] != "error") {
			l.add("close-without-error-event")
		}
		l.add("close")
	})
}

func (l *eventLog) check(t *testing.T, who string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := countOf(l.events, "close"); n != 1 {
		l.problems = append(l.problems, fmt.Sprintf("%d close events", n))
	}
	if slices.Contains(l.events, "close-without-error-event") {
		l.problems = append(l.problems, "close with an error but no error event")
	}
	if slices.Contains(l.events, "error") && l.errErr != l.closeErr {
		l.problems = append(l.problems, fmt.Sprintf("error event with %v, close event with %v", l.errErr, l.closeErr))
	}
	if !expectedCloseError(l.closeErr) {
		l.problems = append(l.problems, fmt.Sprintf("unexpected close error %v (%T)", l.closeErr, l.closeErr))
	}
	if len(l.problems) > 0 {
		t.Errorf("%s: %v in %v", who, l.problems, compact(l.events))
	}
}

// expectedCloseError reports whether err is a close error that random
// actions by both sides can cause: none, a reset or broken pipe from the
// peer's Close or Reset, or a queue over MaxBuffered. A *PanicError, from
// tcpkit's own code, is never expected.
func expectedCloseError(err error) bool {
	var pe *PanicError
	switch {
	case err == nil:
		return true
	case errors.As(err, &pe):
		return false
	}
	return errors.Is(err, ErrSlowConsumer) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func countOf(s []string, v string) (n int) {
	for _, e := range s {
		if e == v {
			n++
		}
	}
	return n
}

func compact(evs []string) []string {
	var out []string
	for _, e := range evs {
		if len(out) == 0 || out[len(out)-1] != e {
			out = append(out, e)
		}
	}
	return out
}

// act does one random thing to c.
func act(rng *rand.Rand, c *Conn) {
	switch rng.IntN(20) {
	case 0:
		c.End()
	case 1:
		c.Close()
	case 2:
		c.Reset()
	case 3:
		c.Pause()
	case 4, 5:
		c.Resume()
	case 6:
		c.SetTimeout(time.Duration(rng.IntN(3)) * time.Millisecond)
	default:
		c.Write(make([]byte, 1+rng.IntN(64<<10)))
	}
}

func TestEventInvariantsUnderRandomActions(t *testing.T) {
	const scenarios = 60
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		cfg := ConnConfig{HighWater: 16 << 10, MaxBuffered: 256 << 10, Timeout: time.Millisecond}
		type pair struct {
			log  *eventLog
			conn *Conn
		}
		accepted := make(chan pair, scenarios)
		s := &Server{ConnConfig: cfg, Logger: failOnPanicLogger(t), Handler: func(c *Conn) {
			l := &eventLog{}
			l.attach(c)
			accepted <- pair{l, c}
		}}
		addr = startServer(t, e, s, addr)
		d := Dialer{ConnConfig: cfg, Engine: e.get()}
		for i := range scenarios {
			seed := uint64(i)
			rng := rand.New(rand.NewPCG(seed, 1))
			cl := &eventLog{}
			client, err := d.Dial(context.Background(), addr, cl.attach)
			if err != nil {
				t.Fatal(err)
			}
			srv := waitFor(t, accepted, 5*time.Second, "accepted connection")
			// Both sides act at once, from several goroutines, a bounded
			// number of times, then each is closed for sure.
			var wg sync.WaitGroup
			for g := range 4 {
				c := client
				if g%2 == 1 {
					c = srv.conn
				}
				r := rand.New(rand.NewPCG(seed, uint64(g+2)))
				wg.Go(func() {
					for range 1 + r.IntN(12) {
						act(r, c)
						if r.IntN(4) == 0 {
							time.Sleep(time.Duration(r.IntN(300)) * time.Microsecond)
						}
					}
				})
			}
			waitGroup(t, &wg, 30*time.Second, "the goroutines")
			if rng.IntN(2) == 0 {
				client.Close()
				srv.conn.Close()
			} else {
				client.End()
				srv.conn.End()
				client.Resume()
				srv.conn.Resume()
				time.AfterFunc(20*time.Millisecond, func() { client.Close(); srv.conn.Close() })
			}
			waitFor(t, client.Done(), 10*time.Second, fmt.Sprintf("scenario %d: client close", i))
			waitFor(t, srv.conn.Done(), 10*time.Second, fmt.Sprintf("scenario %d: server close", i))
			cl.check(t, fmt.Sprintf("scenario %d client", i))
			srv.log.check(t, fmt.Sprintf("scenario %d server", i))
			if b := client.Buffered() + srv.conn.Buffered(); b != 0 {
				t.Errorf("scenario %d: %d bytes still queued after close", i, b)
			}
		}
	})
}
