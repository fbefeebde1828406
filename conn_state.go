package tcpkit

import (
	"io"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"time"
)

// readState is the part of the event rules' state that only the event
// goroutine touches.
type readState struct {
	held    []byte // data read while paused, delivered on Resume
	fired   int64  // the activity stamp OnTimeout last fired for
	eof     bool   // the peer's FIN has been read
	endSent bool   // OnEnd has been delivered
	rearm   bool   // look at the timers again
}

// open runs the handler, before any other event. Event goroutine.
func (c *Conn) open(h Handler) {
	c.rs.fired, c.rs.rearm = -1, true
	c.touch()
	if c.edge != nil {
		c.beginEdge(h)
		return
	}
	if h != nil {
		h(c)
	}
}

// recoverPanic, deferred by an engine around the callbacks it runs on the
// event goroutine, turns a panic into the connection's close error, so
// that only this connection is lost.
func (c *Conn) recoverPanic() {
	if r := recover(); r != nil {
		pe := &PanicError{Value: r, Stack: debug.Stack()}
		c.logger().Error("tcpkit: panic in connection callback", "remote", c.RemoteAddr().String(),
			"panic", r, "stack", string(pe.Stack))
		c.fail(pe)
	}
}

// step applies the event rules, delivering what is due, until the
// connection needs input (actRead), has nothing to do but wait for a
// wake-up or its timer (actWait), or is closing (actClosed). The rules are
// checked in this order at each turn, so that events posted from other
// goroutines (drain, resume, FIN sent, close, SetTimeout) are seen between
// deliveries:
//
//  1. nothing is delivered once closing, not even an event already posted;
//  2. posted events first (drain, shutdown, idle check), then the timers;
//  3. after EndWithError, input is dropped unseen;
//  4. once both sides have ended, the connection closes cleanly;
//  5. data held while paused is delivered once resumed;
//  6. the peer's end is delivered once, after its data and not while
//     paused; then, unless AllowHalfOpen, the connection ends its side;
//  7. paused, or the peer ended: wait (after the peer's end, watching for
//     a reset); otherwise read.
func (c *Conn) step() action {
	rs := &c.rs
	for {
		c.mu.Lock()
		closing, paused, finSent, discard, endErr := c.closing, c.paused, c.finSent, c.discard, c.endErr
		c.mu.Unlock()
		if closing {
			return actClosed
		}
		if ev := c.events.Swap(0); ev != 0 || rs.rearm {
			if ev&evDrain != 0 {
				ls := c.listeners()
				c.emit(ls.drain, ls.extras().drain)
			}
			if ev&evShutdown != 0 && !c.isClosing() {
				ls := c.listeners()
				c.emit(ls.shutdown, ls.extras().shutdown)
			}
			if ev&evIdleCheck != 0 && rs.held == nil && c.srv != nil {
				c.endIfIdle(c.srv.shutdownIdle)
			}
			if !c.isClosing() {
				c.drv.setTimer(c.checkTimers(&rs.fired))
			}
			rs.rearm = false
			continue
		}
		if c.edge != nil && c.edge.stage != stageReady {
			if act, wait := c.edgeStep(); wait {
				return act
			}
			continue
		}
		if discard {
			rs.held, paused = nil, false // EndWithError: input is read to its end and dropped unseen
		}
		switch {
		case rs.endSent && finSent:
			c.closeWith(endErr) // both sides have ended: a clean close (nil but after EndWithError)
			return actClosed
		case !paused && rs.held != nil:
			p := rs.held
			rs.held = nil
			c.emitData(p)
			if e := c.edge; e != nil && e.tls != nil && !e.tls.more {
				e.tls.release()
			}
			continue
		case !paused && rs.eof && !rs.endSent:
			rs.endSent = true
			ls := c.listeners()
			c.emit(ls.end, ls.extras().end)
			if !c.cfg.AllowHalfOpen {
				c.End()
			}
			continue
		case paused:
			return actWait
		case rs.eof:
			return actWatch // nothing more to read, but a reset to report
		case c.edge != nil && c.edge.tls != nil && c.edge.tls.more:
			c.decryptInput() // TLS holds more plaintext than one buffer took
			continue
		}
		return actRead
	}
}

// onRead takes the outcome of a read made for actRead: p, which must stay
// untouched until step asks for the next read, and err, io.EOF at the
// peer's end.
func (c *Conn) onRead(p []byte, err error) {
	if c.edge != nil {
		c.edgeRead(p, err)
		return
	}
	if len(p) > 0 {
		c.bytesRead.Add(int64(len(p)))
		c.touch()
		c.rs.held = p
	}
	switch {
	case err == nil:
	case err == io.EOF:
		c.rs.eof = true
	default:
		c.fail(err) // a no-op if the error comes from our own Close
	}
}

// onTimer tells step that the timer set with setTimer has passed.
func (c *Conn) onTimer() { c.rs.rearm = true }

// checkTimers fires OnTimeout or closes an idle connection when their time
// has come, and returns the next deadline (zero for none). fired holds the
// activity stamp that OnTimeout last fired for, so that it fires once per
// idle period.
func (c *Conn) checkTimers(fired *int64) time.Time {
	timeout, idle, endBy := c.timeout.Load(), int64(c.cfg.IdleTimeout), c.endBy.Load()
	edgeBy := c.edgeDeadline()
	if timeout <= 0 && idle <= 0 && endBy == 0 && edgeBy == 0 {
		return time.Time{}
	}
	// The notification's idle period also restarts at SetTimeout, which is
	// not traffic: IdleTimeout and Shutdown look at traffic alone.
	last, now := c.lastAct.Load(), int64(monotime())
	since := max(last, c.timeoutSet.Load())
	if timeout > 0 && *fired != since && now-since >= timeout {
		*fired = since
		ls := c.listeners()
		c.emit(ls.timeout, ls.extras().timeout)
		last, now = c.lastAct.Load(), int64(monotime())
		since, timeout = max(last, c.timeoutSet.Load()), c.timeout.Load()
	}
	if idle > 0 && now-last >= idle {
		c.shut(ErrIdleTimeout, c.Buffered() > 0) // a reset if what was queued for the peer is lost
		return time.Time{}
	}
	if endBy != 0 && now >= endBy {
		c.mu.Lock()
		err := c.endErr
		c.mu.Unlock()
		c.closeWith(err) // EndWithError's peer did not end in time
		return time.Time{}
	}
	next := int64(math.MaxInt64)
	switch {
	case timeout > 0 && *fired != since:
		next = addSat(since, timeout)
	case timeout > 0:
		next = addSat(now, timeout) // look again then: traffic starts a new period
	}
	if idle > 0 {
		next = min(next, addSat(last, idle))
	}
	if endBy != 0 {
		next = min(next, endBy)
	}
	if edgeBy != 0 {
		next = min(next, edgeBy)
	}
	if next == math.MaxInt64 {
		return time.Time{}
	}
	return epoch.Add(time.Duration(next))
}

// peerReset turns what resetAfterEnd found on the socket into the error to
// report: nil if it found nothing, or if the socket's end is our own FIN
// acknowledged, or a reset after a TLS peer's close_notify, which loses
// nothing. Event goroutine.
func (c *Conn) peerReset(found error) error {
	if found == nil || c.sentFIN() || !c.resetIsNews() {
		return nil
	}
	return c.opError("read", os.NewSyscallError("read", found))
}

// sentFIN reports whether our FIN has gone out.
func (c *Conn) sentFIN() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.finSent
}

// addSat returns a + b for times and durations, as monotime counts them,
// saturating rather than overflowing: a timeout of math.MaxInt64 means
// never, not a deadline in the past.
func addSat(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func (c *Conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// finish delivers the error and close events, once the engine's writer has
// stopped, and tells the server.
func (c *Conn) finish() {
	c.closeWith(nil) // however the loop ended, the socket is closed from here on
	c.drv.quiesce()
	c.mu.Lock()
	c.err = c.closeErr
	c.mu.Unlock()
	if c.edge != nil {
		c.finishEdge(c.err)
	}
	if c.srv != nil {
		c.srv.connClosing(c) // NumConns no longer counts it, in OnClose already
	}
	if c.err != nil {
		ls := c.listeners()
		if ls.err != nil {
			c.safely(func() { ls.err(c.err) })
		}
		for _, f := range ls.extras().err {
			c.safely(func() { f(c.err) })
		}
	}
	// Close listeners run in rounds: one added while a round runs, from
	// another goroutine, runs in the next, here, after the others.
	for n := 0; ; n++ {
		c.lsMu.Lock()
		f := c.listeners().closeListener(n)
		if f == nil {
			c.closeSent = true
		}
		c.lsMu.Unlock()
		if f == nil {
			break
		}
		c.safely(func() { f(c.err) })
	}
	c.mu.Lock()
	c.finished = true
	done := c.done
	c.mu.Unlock()
	if done != nil {
		close(done)
	}
	if c.srv != nil {
		c.srv.connDone()
	}
}

// safely runs f, logging rather than propagating a panic: the close event
// must reach every listener and the server.
func (c *Conn) safely(f func()) {
	defer func() {
		if r := recover(); r != nil {
			c.logger().Error("tcpkit: panic in close callback", "remote", c.RemoteAddr().String(),
				"panic", r, "stack", string(debug.Stack()))
		}
	}()
	f()
}

func (c *Conn) logger() *slog.Logger {
	if c.log != nil {
		return c.log
	}
	return slog.Default()
}
