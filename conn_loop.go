package tcpkit

import (
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"time"
)

// serve runs the connection's event goroutine under the goroutine engine:
// it calls the handler, then reads and delivers events until the
// connection closes, and finally delivers the close event. Every callback
// of the connection runs here.
func (c *Conn) serve(h Handler) {
	defer c.finish()
	defer func() {
		if r := recover(); r != nil {
			pe := &PanicError{Value: r, Stack: debug.Stack()}
			c.logger().Error("tcpkit: panic in connection callback", "remote", c.remote.String(),
				"panic", r, "stack", string(pe.Stack))
			c.closeWith(pe)
		}
	}()
	c.touch()
	if h != nil {
		h(c)
	}
	c.loop()
}

// loop is the read loop. It is written as a state machine checked at the
// top of each turn, so that events posted from other goroutines (drain,
// resume, FIN sent, close, SetTimeout) are seen between reads.
func (c *Conn) loop() {
	buf := make([]byte, min(initialReadBuffer, c.cfg.ReadBufferSize))
	grow := false // the last read filled buf
	var (
		held     []byte    // data read while paused, delivered on Resume
		eof      bool      // the peer's FIN has been read
		endSent  bool      // OnEnd has been delivered
		deadline time.Time // the idle deadline now armed
		fired    int64     = -1
		rearm              = true // recompute the idle deadline
	)
	for {
		c.mu.Lock()
		closing, paused, finSent, discard, endErr := c.closing, c.paused, c.finSent, c.discard, c.endErr
		c.mu.Unlock()
		if closing {
			return // no event after Close, not even one already posted
		}
		if ev := c.events.Swap(0); ev != 0 || rearm {
			if ev&evDrain != 0 {
				c.emit(c.ls.Load().drain)
			}
			if ev&evShutdown != 0 && !c.isClosing() {
				c.emit(c.ls.Load().shutdown)
			}
			if ev&evIdleCheck != 0 && held == nil && c.srv != nil {
				c.endIfIdle(c.srv.shutdownIdle)
			}
			if !c.isClosing() {
				deadline = c.checkTimers(&fired)
				c.nc.SetReadDeadline(deadline)
			}
			rearm = false
			continue
		}
		if discard {
			held, paused = nil, false // EndWithError: input is read to its end and dropped unseen
		}
		switch {
		case endSent && finSent:
			c.closeWith(endErr) // both sides have ended: a clean close (nil but after EndWithError)
			return
		case !paused && held != nil:
			p := held
			held = nil
			for i, f := range c.ls.Load().data {
				if i > 0 && c.isClosing() { // checked above for the first
					break
				}
				f(p)
			}
			continue
		case !paused && eof && !endSent:
			endSent = true
			c.emit(c.ls.Load().end)
			if !c.cfg.AllowHalfOpen {
				c.End()
			}
			continue
		case paused || eof:
			rearm = c.wait(deadline)
			continue
		}

		if grow { // held is nil here: the old buffer has been delivered
			buf = make([]byte, min(2*len(buf), c.cfg.ReadBufferSize))
			grow = false
		}
		c.reading.Store(true)
		if c.events.Load() != 0 {
			c.reading.Store(false)
			continue
		}
		n, err := c.nc.Read(buf)
		c.reading.Store(false)
		grow = n == len(buf) && n < c.cfg.ReadBufferSize
		if n > 0 {
			c.bytesRead.Add(int64(n))
			c.touch()
			held = buf[:n]
		}
		switch {
		case err == nil:
		case err == io.EOF:
			eof = true
		case errors.Is(err, os.ErrDeadlineExceeded):
			rearm = true
		default:
			c.closeWith(err) // a no-op if the error comes from our own Close
		}
	}
}

// wait blocks until something is posted or the idle deadline passes, and
// reports the latter.
func (c *Conn) wait(deadline time.Time) bool {
	if deadline.IsZero() {
		<-c.wake
		return false
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c.wake:
		return false
	case <-t.C:
		return true
	}
}

// checkTimers fires OnTimeout or closes an idle connection when their time
// has come, and returns the next deadline (zero for none). fired holds the
// activity stamp that OnTimeout last fired for, so that it fires once per
// idle period.
func (c *Conn) checkTimers(fired *int64) time.Time {
	timeout, idle, endBy := c.timeout.Load(), int64(c.cfg.IdleTimeout), c.endBy.Load()
	if timeout <= 0 && idle <= 0 && endBy == 0 {
		return time.Time{}
	}
	// The notification's idle period also restarts at SetTimeout, which is
	// not traffic: IdleTimeout and Shutdown look at traffic alone.
	last, now := c.lastAct.Load(), int64(time.Since(c.start))
	since := max(last, c.timeoutSet.Load())
	if timeout > 0 && *fired != since && now-since >= timeout {
		*fired = since
		c.emit(c.ls.Load().timeout)
		last, now = c.lastAct.Load(), int64(time.Since(c.start))
		since, timeout = max(last, c.timeoutSet.Load()), c.timeout.Load()
	}
	if idle > 0 && now-last >= idle {
		c.closeWith(ErrIdleTimeout)
		return time.Time{}
	}
	if endBy > 0 && now >= endBy {
		c.mu.Lock()
		err := c.endErr
		c.mu.Unlock()
		c.closeWith(err) // EndWithError's peer did not end in time
		return time.Time{}
	}
	next := int64(math.MaxInt64)
	switch {
	case timeout > 0 && *fired != since:
		next = since + timeout
	case timeout > 0:
		next = now + timeout // look again then: traffic starts a new period
	}
	if idle > 0 {
		next = min(next, last+idle)
	}
	if endBy > 0 {
		next = min(next, endBy)
	}
	if next == math.MaxInt64 {
		return time.Time{}
	}
	return c.start.Add(time.Duration(next))
}

// emit calls listeners of an event in turn, stopping if one closes the
// connection.
func (c *Conn) emit(fs []func()) {
	for i, f := range fs {
		if i > 0 && c.isClosing() { // the loop checked before the first
			return
		}
		f()
	}
}

func (c *Conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// finish delivers the error and close events, once the writer goroutine has
// stopped, and tells the server.
func (c *Conn) finish() {
	c.closeWith(nil) // however the loop ended, the socket is closed from here on
	c.writers.Wait()
	c.mu.Lock()
	c.err = c.closeErr
	c.mu.Unlock()
	if c.srv != nil {
		c.srv.connClosing(c) // NumConns no longer counts it, in OnClose already
	}
	if c.err != nil {
		for _, f := range c.ls.Load().err {
			c.safely(func() { f(c.err) })
		}
	}
	// Close listeners run in rounds: one added while a round runs, from
	// another goroutine, runs in the next, here, after the others.
	for n := 0; ; {
		c.lsMu.Lock()
		ls := c.ls.Load().close
		if n == len(ls) {
			c.closeSent = true
			c.lsMu.Unlock()
			break
		}
		c.lsMu.Unlock()
		for _, f := range ls[n:] {
			c.safely(func() { f(c.err) })
		}
		n = len(ls)
	}
	close(c.done)
	if c.srv != nil {
		c.srv.connDone()
	}
}

// safely runs f, logging rather than propagating a panic: the close event
// must reach every listener and the server.
func (c *Conn) safely(f func()) {
	defer func() {
		if r := recover(); r != nil {
			c.logger().Error("tcpkit: panic in close callback", "remote", c.remote.String(),
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
