package tcpkit

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The schedule test's driver (see schedule_sim_test.go): the Conn's driver
// over the simulated socket, an Engine for a Server's own accounting, and
// the two engine loops, shaped as the epoll engine's stepOnce and the
// goroutine engine's serve.

// simDriver is the Conn's driver over the simulated socket.
type simDriver struct{ w *simWorld }

func (d simDriver) wake() {
	w := d.w
	w.mu.Lock()
	w.woken = true
	w.kickLocked()
	w.mu.Unlock()
	w.yield()
}

func (d simDriver) setTimer(deadline time.Time) {
	w := d.w
	w.mu.Lock()
	if w.finished {
		w.lateCalls = append(w.lateCalls, "setTimer")
	}
	if !w.free && w.cur != w.loop {
		w.contract = append(w.contract, "setTimer off the event goroutine (by "+w.cur.name+")")
	}
	w.timer = deadline
	w.kickLocked()
	w.mu.Unlock()
	if !deadline.IsZero() {
		w.tracef("setTimer(+%v)", time.Until(deadline))
	}
}

// write is the direct write of Write: c.mu held, the queue empty, no flush.
func (d simDriver) write(p []byte) (int, error) {
	w := d.w
	if !w.free {
		c := w.c
		if c.mu.TryLock() {
			c.mu.Unlock()
			w.contract = append(w.contract, "write without c.mu")
		} else if c.writing || len(c.wq) > 0 {
			w.contract = append(w.contract, "direct write with a flush running or bytes queued")
		}
	}
	w.noteLate("write")
	return w.sockWrite(p, "direct")
}

// flushWrite is the write the loop's flushNow (c.mu held) and the
// writer's writeLoop (c.mu not held) use.
func (d simDriver) flushWrite(p []byte) (int, error) {
	w := d.w
	w.noteLate("flush write")
	if !w.free {
		held := !w.goEngine
		w.checkDrainPosted(held)
	}
	return w.sockWrite(p, "flush")
}

// checkDrainPosted checks, between the writes of a flush, that a queue
// armed for OnDrain is above LowWater: at or below it, the drain must
// have been posted (and the arm cleared). Scheduled mode.
func (w *simWorld) checkDrainPosted(held bool) {
	c := w.c
	if !held {
		c.mu.Lock()
	}
	armed, queued, closing := c.overHigh, c.bufferedLocked(), c.closing
	if !held {
		c.mu.Unlock()
	}
	if armed && !closing && queued <= w.cfg.LowWater {
		w.mu.Lock()
		w.contract = append(w.contract, fmt.Sprintf("the queue fell to %d (LowWater %d) and no drain was posted", queued, w.cfg.LowWater))
		w.mu.Unlock()
	}
}

func (d simDriver) startFlush() {
	w := d.w
	w.noteLate("startFlush")
	w.tracef("startFlush")
	if !w.goEngine {
		w.mu.Lock()
		w.flushWanted = true
		w.woken = true
		w.kickLocked()
		w.mu.Unlock()
		return
	}
	w.mu.Lock()
	w.writers++
	w.mu.Unlock()
	w.spawn("writer", func(p *simPart) {
		w.c.writeLoop(d.blockingWrite)
		w.mu.Lock()
		w.writers--
		w.kickLocked()
		w.mu.Unlock()
	})
}

// blockingWrite is the goroutine engine's write: it waits while the socket
// is full.
func (d simDriver) blockingWrite(p []byte) (int, error) {
	w := d.w
	for {
		n, err := d.flushWrite(p)
		if n > 0 || err != nil {
			return n, err
		}
		w.block(w.sock.writableLocked, false)
	}
}

func (d simDriver) closeWrite() error {
	w := d.w
	w.noteLate("closeWrite")
	w.mu.Lock()
	s := &w.sock
	var err error
	switch {
	case s.closed:
		err = w.c.opError("shutdown", net.ErrClosed)
	case s.peerRST:
		s.enotconn = true
		err = w.c.opError("shutdown", os.NewSyscallError("shutdown", syscall.ENOTCONN))
	default:
		s.finOut, s.shutWR = true, true
		if len(s.snd) == 0 && s.peerEnd == "" {
			s.peerEnd = "FIN"
		}
	}
	w.kickLocked()
	w.mu.Unlock()
	w.tracef("closeWrite = %v", err)
	return err
}

// close is the Conn's close, from any goroutine. Like the epoll engine,
// the epoll-shaped loop only records the reset and closes the descriptor
// at release, after finish; the goroutine engine closes at once.
func (d simDriver) close(reset bool) error {
	w := d.w
	part, action := w.label()
	w.mu.Lock()
	w.closeCalls++
	if w.closeCalls == 1 {
		w.winner, w.winnerPart, w.closeAt, w.closeTraffic = action, part, w.now(), w.sock.lastTraffic
	}
	w.mu.Unlock()
	w.tracef("close(reset=%v) by %s/%s", reset, part, action)
	w.yield()
	w.mu.Lock()
	if reset {
		w.resetReq = true
	}
	if w.goEngine {
		w.closeFdLocked(reset)
	}
	w.kickLocked()
	w.mu.Unlock()
	return nil
}

func (d simDriver) quiesce() {
	w := d.w
	if w.goEngine {
		w.block(func() bool { return w.writers == 0 }, false)
	}
}

func (d simDriver) unread() int {
	w := d.w
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.sock.rcv)
}

// soError returns and clears the pending error (SO_ERROR).
func (d simDriver) soError() error {
	w := d.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if e := w.sock.pendErr; e != 0 {
		w.sock.pendErr = 0
		w.kickLocked()
		return e
	}
	return nil
}

var simAddr = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 7}

func (d simDriver) addrs() (net.Addr, net.Addr) { return simAddr, simAddr }

func (d simDriver) control(func(fd uintptr)) error { return net.ErrClosed }

func (d simDriver) setNoDelay(bool) error { return nil }

func (d simDriver) setKeepAlive(bool, time.Duration) error { return nil }

func (d simDriver) setBuffers(int, int) error { return nil }

func (w *simWorld) noteLate(call string) {
	w.mu.Lock()
	if w.finished {
		w.lateCalls = append(w.lateCalls, call)
	}
	w.mu.Unlock()
}

// simEngine is an Engine over the simulated socket, so that a Server's
// own startConn, connClosing and connDone account for the connection.
type simEngine struct{ w *simWorld }

func (e simEngine) String() string { return "sim" }

func (e simEngine) newConn(nc net.Conn, cfg *ConnConfig, srv *Server, log *slog.Logger) (*Conn, error) {
	c := newConn(simDriver{e.w}, cfg, srv, log)
	e.w.c = c
	return c, nil
}

func (e simEngine) start(c *Conn, h Handler) { e.w.startLoop(h) }

func (e simEngine) listener(ln net.Listener) (net.Listener, error) { return ln, nil }

// startLoop starts the connection's event goroutine.
func (w *simWorld) startLoop(h Handler) {
	w.mu.Lock()
	w.woken, w.writable = true, true
	w.mu.Unlock()
	if w.goEngine {
		w.spawn("loop", func(*simPart) { w.goroutineLoop(h) })
	} else {
		w.spawn("loop", func(*simPart) { w.epollLoop(h) })
	}
}

// epollLoop is the event goroutine shaped as the epoll engine's dispatch
// and stepOnce: flush when writable, step, read until EAGAIN.
func (w *simWorld) epollLoop(h Handler) {
	c := w.c
	opened := false
	for {
		w.block(w.epollReadyLocked, true)
		w.mu.Lock()
		w.woken = false
		due := w.timerDueLocked()
		if due {
			w.timer = time.Time{}
		}
		w.mu.Unlock()
		if due {
			w.tracef("loop: timer")
			c.onTimer()
		}
		for !w.epollStepOnce(h, &opened) {
		}
		if w.released {
			return
		}
	}
}

func (w *simWorld) epollReadyLocked() bool {
	s := &w.sock
	return w.woken || w.flushWanted && w.writable || w.wantRead && s.readableLocked() ||
		w.watching && (s.pendErr != 0 || s.closed) || w.timerDueLocked()
}

// epollStepOnce mirrors epollDriver.stepOnce. It reports false after a
// recovered panic, so that the loop steps again.
func (w *simWorld) epollStepOnce(h Handler, opened *bool) (done bool) {
	c := w.c
	defer c.recoverPanic()
	if !*opened {
		*opened = true
		c.open(h)
		w.yield()
	}
	w.mu.Lock()
	flush := w.writable && w.flushWanted
	if flush {
		w.flushWanted = false
	}
	edges := w.outEdges
	w.mu.Unlock()
	if flush {
		done := c.flushNow(simDriver{w}.flushWrite)
		if !w.free {
			w.checkDrainPosted(false)
		}
		if !done {
			w.mu.Lock()
			// Full: wait for the next EPOLLOUT edge, unless one came
			// during the flush (free mode), which epoll would report.
			w.flushWanted = true
			if w.outEdges == edges {
				w.writable = false
			}
			w.mu.Unlock()
		}
		w.yield()
	}
	for {
		a := c.step()
		w.yield()
		w.mu.Lock()
		w.wantRead, w.watching = false, false
		w.mu.Unlock()
		switch a {
		case actClosed:
			c.finish()
			w.release()
			return true
		case actWait:
			return true
		case actRead:
		default: // actWatch: the peer has ended; a reset shows in SO_ERROR
			w.mu.Lock()
			ready := w.sock.pendErr != 0
			w.watching = !ready
			w.mu.Unlock()
			if !ready {
				return true
			}
			if err := (simDriver{w}).soError(); err != nil {
				c.onRead(nil, c.opError("read", os.NewSyscallError("read", err)))
			}
			continue
		}
		w.poisonPrev()
		p, err, ok := w.sockRead(1 + w.loopRng().IntN(c.cfg.ReadBufferSize))
		if !ok {
			w.mu.Lock()
			w.wantRead = true
			w.mu.Unlock()
			return true
		}
		w.tracef("loop: read %d, %v", len(p), err)
		w.prevBuf = p
		c.onRead(p, err)
		w.yield()
	}
}

// goroutineLoop is the event goroutine shaped as the goroutine engine's
// serve: step, block in read (a wake-up or the timer interrupt it), and
// finish, with the writer goroutine quiesced.
func (w *simWorld) goroutineLoop(h Handler) {
	c := w.c
	defer w.release()
	defer c.finish()
	defer c.recoverPanic()
	c.open(h)
	w.yield()
	interrupted := func() bool { // a wake-up or the timer: consumed
		w.mu.Lock()
		defer w.mu.Unlock()
		fired := w.woken || w.timerDueLocked()
		if w.timerDueLocked() {
			w.timer = time.Time{}
		}
		w.woken = false
		return fired
	}
	for {
		a := c.step()
		w.yield()
		switch a {
		case actClosed:
			return
		case actWait:
			w.block(func() bool { return w.woken || w.timerDueLocked() }, true)
			if interrupted() {
				c.onTimer()
			}
			continue
		case actRead:
		default: // actWatch
			w.block(func() bool { return w.woken || w.timerDueLocked() || w.sock.pendErr != 0 || w.sock.closed }, true)
			if interrupted() {
				c.onTimer()
				continue
			}
			w.mu.Lock()
			closed := w.sock.closed
			w.mu.Unlock()
			if closed {
				c.onRead(nil, c.opError("read", net.ErrClosed))
			} else if err := (simDriver{w}).soError(); err != nil {
				c.onRead(nil, c.opError("read", os.NewSyscallError("read", err)))
			}
			continue
		}
		if c.events.Load() != 0 {
			continue
		}
		w.poisonPrev()
		p, err, ok := w.sockRead(1 + w.loopRng().IntN(c.cfg.ReadBufferSize))
		if !ok {
			w.block(func() bool { return w.sock.readableLocked() || w.woken || w.timerDueLocked() }, true)
			w.mu.Lock()
			readable := w.sock.readableLocked()
			w.mu.Unlock()
			if !readable && interrupted() {
				c.onRead(nil, nil) // the read deadline passed: os.ErrDeadlineExceeded
				c.onTimer()
			}
			continue
		}
		w.tracef("loop: read %d, %v", len(p), err)
		w.prevBuf = p
		c.onRead(p, err)
		w.yield()
	}
}

func (w *simWorld) loopRng() *rand.Rand {
	if w.free {
		return w.loop.rng
	}
	return w.rng
}

// poisonPrev scribbles over the buffer of the previous read, which the
// rules must be done with once step asks for the next read.
func (w *simWorld) poisonPrev() {
	for i := range w.prevBuf {
		w.prevBuf[i] = 0xEE
	}
	w.prevBuf = nil
}

// release is the engine's release after finish. The epoll engine closes
// the descriptor now, with an RST if a reset was recorded by then; the
// goroutine engine's close has closed it, or is about to.
func (w *simWorld) release() {
	w.mu.Lock()
	w.finished, w.released = true, true
	reset := w.resetReq
	if !w.goEngine {
		w.closeFdLocked(reset)
	}
	w.kickLocked()
	w.mu.Unlock()
	w.tracef("loop: released (reset=%v)", reset)
}

// simLog counts the recovered panics that the connection logs.
type simLog struct {
	mu     sync.Mutex
	panics int
	lines  []string
}

func (l *simLog) logger() *slog.Logger { return slog.New(simLogHandler{l}) }

func (l *simLog) count() (int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.panics, append([]string(nil), l.lines...)
}

type simLogHandler struct{ l *simLog }

func (h simLogHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h simLogHandler) WithAttrs([]slog.Attr) slog.Handler { return h }

func (h simLogHandler) WithGroup(string) slog.Handler { return h }

func (h simLogHandler) Handle(_ context.Context, r slog.Record) error {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	if strings.Contains(r.Message, "panic") {
		h.l.panics++
	}
	h.l.lines = append(h.l.lines, r.Message)
	return nil
}
