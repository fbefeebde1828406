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
	n, err := c.rawWrite(p, false)
	c.bytesWritten.Add(int64(n))
	return n, err
}

// enqueueLocked appends p to the write queue and makes sure a writer
// goroutine is running. Called with c.mu held.
func (c *Conn) enqueueLocked(p []byte) error {
	queued := len(c.wq) + c.inflight
	if queued+len(p) > c.cfg.MaxBuffered {
		return fmt.Errorf("%w: writing %d bytes with %d queued would pass MaxBuffered (%d); the peer is not reading",
			ErrSlowConsumer, len(p), queued, c.cfg.MaxBuffered)
	}
	c.wq = append(c.wq, p...)
	if queued+len(p) > c.cfg.HighWater {
		c.overHigh = true
	}
	if !c.writing {
		c.writing = true
		c.writers.Add(1)
		go c.writeLoop()
	}
	return nil
}

// writeLoop runs while the queue is not empty. It takes the whole queue at
// once, writes it out while Write keeps appending to a fresh buffer, and
// sends the FIN that End deferred once the queue is empty.
func (c *Conn) writeLoop() {
	defer c.writers.Done()
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
		err = c.flush(out)
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
		c.closeWith(err)
	}
}

// flush writes all of out, waiting for the socket to become writable as
// needed, and keeps Buffered and the drain event up to date as it goes.
func (c *Conn) flush(out []byte) error {
	for len(out) > 0 {
		n, err := c.blockingWrite(out)
		if n > 0 {
			c.bytesWritten.Add(int64(n))
			c.touch()
			c.mu.Lock()
			c.inflight -= n
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

// blockingWrite writes some of p, waiting in the netpoller while the
// socket buffer is full.
func (c *Conn) blockingWrite(p []byte) (int, error) {
	if c.raw == nil {
		return c.nc.Write(p)
	}
	// With a small SO_SNDBUF, Linux serves one large write(2) slowly, a
	// little at a time as acknowledgements come in: hand it at most a send
	// buffer's worth per call instead.
	if limit := c.cfg.SendBuffer; limit > 0 && len(p) > limit {
		p = p[:limit]
	}
	return c.rawWrite(p, true)
}

// rawWrite calls write(2) on the socket, again after EINTR. If wait is set,
// it also waits in the netpoller while the socket buffer is full; if not, a
// full buffer returns 0, nil.
func (c *Conn) rawWrite(p []byte, wait bool) (int, error) {
	c.wp, c.wwait = p, wait
	err := c.raw.Write(c.writeFn)
	n, errno := c.wn, c.werr
	c.wp, c.wn, c.werr = nil, 0, nil
	switch {
	case err != nil:
		return 0, c.opError("write", err)
	case errno == syscall.EAGAIN:
		return 0, nil
	case errno != nil:
		return 0, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// writeSyscall is c.writeFn: the function the netpoller calls with the
// socket for rawWrite. It returns false to wait for the socket to become
// writable.
func (c *Conn) writeSyscall(fd uintptr) bool {
	for {
		n, err := syscall.Write(int(fd), c.wp)
		if err != syscall.EINTR {
			c.wn, c.werr = max(n, 0), err
			return !c.wwait || err != syscall.EAGAIN
		}
	}
}

// maybeDrainLocked posts the drain event once an armed queue has fallen to
// LowWater. Called with c.mu held.
func (c *Conn) maybeDrainLocked() {
	if c.overHigh && len(c.wq)+c.inflight <= c.cfg.LowWater {
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
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok {
		return nil
	}
	err := cw.CloseWrite()
	if errors.Is(err, syscall.ENOTCONN) {
		return nil // the peer has gone; the read side reports how
	}
	return err
}
