package tcpkit

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// maxSpare is the largest emptied queue buffer a connection keeps for reuse;
// larger ones go back to the garbage collector, so an idle connection holds
// little memory whatever its past bursts were.
const maxSpare = 64 << 10

// tryWrite makes one non-blocking write of p and reports how much the
// kernel took. A full socket buffer is not an error: it returns 0, nil.
// Called with c.mu held and the queue empty.
func (c *Conn) tryWrite(p []byte) (int, error) {
	n, err := c.drv.write(p)
	c.bytesWritten.Add(int64(n))
	c.sentLocked(n)
	return n, err
}

// bufferedLocked is Buffered with c.mu held: the bytes queued or in flight,
// counted as plaintext on a TLS connection.
func (c *Conn) bufferedLocked() int {
	if e := c.edge; e != nil && e.tls != nil {
		return e.tls.plainQueued
	}
	return len(c.wq) + c.inflight
}

// sentLocked tells a TLS connection's accounting that n more bytes of its
// records have gone to the kernel. Called with c.mu held.
func (c *Conn) sentLocked(n int) {
	if e := c.edge; e != nil && e.tls != nil && n > 0 {
		e.tls.sentLocked(n)
	}
}

// enqueueLocked appends p to the write queue and makes sure a flush is
// running. Called with c.mu held.
func (c *Conn) enqueueLocked(p []byte) error {
	queued := len(c.wq) + c.inflight
	if queued+len(p) > c.cfg.MaxBuffered {
		return fmt.Errorf("%w: writing %d bytes with %d queued would pass MaxBuffered (%d); the peer is not reading",
			ErrSlowConsumer, len(p), queued, c.cfg.MaxBuffered)
	}
	c.wq = append(c.wq, p...)
	if c.bufferedLocked() > c.cfg.HighWater {
		c.overHigh = true
	}
	if !c.writing {
		c.writing = true
		c.drv.startFlush()
	}
	return nil
}

// writeLoop is the flush of an engine whose writes may block, run on a
// goroutine of its own while the queue is not empty. It takes the whole
// queue at once, writes it out with write while Write keeps appending to a
// fresh buffer, and sends the FIN that End deferred once the queue is
// empty.
func (c *Conn) writeLoop(write func(p []byte) (int, error)) {
	var err error
	c.mu.Lock()
	for !c.closing {
		if len(c.wq) == 0 {
			if c.ending && !c.finSent {
				err = c.sendFINLocked()
			}
			break
		}
		out := c.wq
		c.wq, c.spare = c.spare[:0], nil
		c.inflight = len(out)
		c.mu.Unlock()
		err = c.flush(out, write)
		c.mu.Lock()
		c.inflight = 0
		if err != nil {
			break
		}
		if cap(out) <= maxSpare && !c.closing {
			c.spare = out[:0]
		}
	}
	c.writing = false
	c.mu.Unlock()
	if err != nil {
		c.fail(err)
	}
}

// flush writes all of out with write, which waits for the socket to take
// more, and keeps Buffered and the drain event up to date as it goes.
func (c *Conn) flush(out []byte, write func(p []byte) (int, error)) error {
	for len(out) > 0 {
		n, err := write(out)
		if n > 0 {
			c.bytesWritten.Add(int64(n))
			c.touch()
			c.mu.Lock()
			c.inflight -= n
			c.sentLocked(n)
			c.maybeDrainLocked()
			c.mu.Unlock()
			out = out[n:]
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// maybeDrainLocked posts the drain event once an armed queue has fallen to
// LowWater. Called with c.mu held.
func (c *Conn) maybeDrainLocked() {
	if c.overHigh && c.bufferedLocked() <= c.cfg.LowWater {
		c.overHigh = false
		c.drainGen++
		c.post(evDrain)
	}
}

// sendFINLocked half-closes the socket. Called with c.mu held, once the
// queue is empty.
func (c *Conn) sendFINLocked() error {
	c.finSent = true
	c.post(evWake)
	err := c.drv.closeWrite()
	if errors.Is(err, syscall.ENOTCONN) {
		if !c.resetIsNews() {
			return nil // TLS's goodbye answered with a reset: nothing lost
		}
		// The socket is no longer connected: the peer reset it, so what
		// was sent last may never have arrived. That is no clean end:
		// report the reset, which the socket's pending error names.
		serr := c.drv.soError()
		if serr == nil {
			serr = syscall.ECONNRESET // read already, or timed out: gone all the same
		}
		return c.opError("shutdown", os.NewSyscallError("shutdown", serr))
	}
	return err
}

// flushNow is the flush of an engine whose writes do not wait, run on the
// connection's event loop when the socket is writable: it writes the queue
// until it is empty or the socket is full, and reports whether it is
// empty (and the FIN sent, if End deferred it). The queue is written under
// c.mu, so Write appends behind it without a second buffer.
func (c *Conn) flushNow(write func(p []byte) (int, error)) (done bool) {
	var err error
	c.mu.Lock()
	for !c.closing && len(c.wq) > 0 {
		var n int
		n, err = write(c.wq)
		if n > 0 {
			c.bytesWritten.Add(int64(n))
			c.touch()
			c.wq = c.wq[n:] // no compaction: append moves what is left when it must grow
			c.sentLocked(n)
			c.maybeDrainLocked()
		}
		if err != nil || n == 0 {
			break
		}
	}
	switch {
	case c.closing || err != nil:
		c.writing = false
		done = true
	case len(c.wq) > 0:
		c.mu.Unlock()
		return false // full: again when writable
	default:
		c.writing = false
		done = true
		// Emptied by slicing forward, c.wq is the end of its buffer, and
		// would keep the whole of it: let it go, however large it was.
		c.wq = nil
		if c.ending && !c.finSent {
			err = c.sendFINLocked()
		}
	}
	c.mu.Unlock()
	if err != nil {
		c.fail(err)
	}
	return done
}
