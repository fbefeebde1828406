//go:build linux

package tcpkit

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpkit/tcpkit/internal/epoll"
	"golang.org/x/sys/unix"
)

// The work one connection may do in one turn of its loop, so that a peer
// that sends (or reads) as fast as the loop can go holds up the loop's
// other connections for no longer than this: at most maxTurnReads reads
// and one read buffer's worth of bytes, at most maxTurnWrite bytes
// written, and maxTurnSteps rounds of posted events. A connection with
// more to do goes on in the next turn, after the loop's other ready
// connections, its inbox and its timers.
const (
	maxTurnReads = 8
	maxTurnWrite = 1 << 20
	maxTurnSteps = 16
)

// An epollLoop is one event loop: a goroutine, an epoll instance and the
// connections registered with it.
type epollLoop struct {
	e       *EpollEngine
	p       *epoll.Poller
	buf     []byte                  // the read buffer, shared by the loop's connections
	conns   map[uint64]*epollDriver // by token
	tokens  uint64
	timers  timerHeap
	due     []*epollDriver // ready this turn
	next    []*epollDriver // not done in their turn: go on in the next
	current atomic.Pointer[epollDriver]

	// The work of the connection being dispatched, this turn: see
	// maxTurnReads. Loop goroutine only.
	turnReads, turnRead, turnWritten int

	gid atomic.Uint64 // the loop goroutine's number (goroutineID)

	mu      sync.Mutex // guards inbox, closing and dead
	inbox   []*epollDriver
	closing bool // Close was called: reset every connection, then stop
	dead    bool // the loop has taken its last inbox: wake-ups go to orphan
	exited  chan struct{}

	// For Stats, written by the loop: its connections, its slow
	// callbacks, and the longest turn of the current and the previous
	// second (lagSec is the current one's number).
	nconns          atomic.Int64
	slow            atomic.Int64
	lagCur, lagPrev atomic.Int64
	lagSec          atomic.Int64
}

// run is the loop's goroutine.
func (l *epollLoop) run() {
	defer l.e.wg.Done()
	defer close(l.exited)
	l.gid.Store(goroutineID())
	var inbox []*epollDriver
	busy := false // the last wait found work
	for {
		timeout := time.Duration(-1)
		if at, ok := l.timers.next(); ok {
			timeout = max(at-monotime(), 0)
		}
		// After a turn with work, look again without blocking, and if
		// nothing is ready yet, yield to the Go scheduler before blocking
		// (as gnet does). Blocking at once after every turn costs about a
		// fifth more CPU per message at one connection, in the Go runtime
		// rather than in the loop (docs/BENCHMARKS.md). Connections
		// carried over from the last turn are due already: no blocking.
		if busy || len(l.due) > 0 {
			timeout = 0
		}
		n, _, err := l.p.Wait(timeout, l.ready)
		if err != nil {
			l.e.cfg.Logger.Error("tcpkit: epoll loop: wait failed", "err", err)
			time.Sleep(10 * time.Millisecond)
		}
		busy = n > 0
		if !busy && timeout == 0 && len(l.due) == 0 {
			runtime.Gosched()
		}
		l.mu.Lock()
		inbox, l.inbox = l.inbox, inbox[:0]
		closing := l.closing
		l.dead = closing // the last inbox: later wake-ups find no loop
		l.mu.Unlock()
		for _, d := range inbox {
			if !closing {
				d.queued.Store(false)
			}
			l.schedule(d)
		}
		if len(l.timers) > 0 { // the clock is read only with a timer set
			for now := monotime(); ; {
				d, ok := l.timers.popDue(now)
				if !ok {
					break
				}
				d.c.onTimer()
				l.schedule(d)
			}
		}
		if closing {
			for _, d := range l.conns {
				d.c.resetWith(errEngineClosed) // the peer is told it was cut off
				l.schedule(d)
			}
			for _, d := range inbox {
				d.c.resetWith(errEngineClosed) // the peer is told it was cut off
			}
		}
		clear(inbox) // the array keeps no closed connection reachable
		if len(l.due) > 0 {
			start := monotime()
			for i, d := range l.due {
				d.scheduled = false
				l.dispatch(d)
				l.due[i] = nil
			}
			l.due, l.next = l.next, l.due[:0]
			l.noteTurn(start, monotime())
		}
		if closing {
			return
		}
	}
}

// noteTurn records a turn of the loop, from start to end, for Stats' Lag.
func (l *epollLoop) noteTurn(start, end time.Duration) {
	sec := int64(end / time.Second)
	if l.lagSec.Load() != sec {
		if l.lagSec.Load() == sec-1 {
			l.lagPrev.Store(l.lagCur.Load())
		} else {
			l.lagPrev.Store(0)
		}
		l.lagCur.Store(0)
		l.lagSec.Store(sec)
	}
	if d := int64(end - start); d > l.lagCur.Load() {
		l.lagCur.Store(d)
	}
}

// ready takes a descriptor's readiness from Wait.
func (l *epollLoop) ready(token uint64, ev uint32) {
	if token&listenerToken != 0 {
		l.e.listenerReady(token)
		return
	}
	d := l.conns[token]
	if d == nil {
		return
	}
	if ev&(epoll.Readable|epoll.PeerEnd|epoll.Hangup|epoll.Error|epoll.Urgent) != 0 {
		d.readable = true
	}
	if ev&(epoll.PeerEnd|epoll.Hangup|epoll.Error) != 0 {
		d.peerEnd = true // read to EOF, not to the first short read
	}
	if ev&epoll.Urgent != 0 {
		d.urgent = true // a read stops short at the urgent mark: read to EAGAIN
	}
	if ev&(epoll.Writable|epoll.Hangup|epoll.Error) != 0 {
		d.writable = true
	}
	l.schedule(d)
}

// schedule makes d due in this turn.
func (l *epollLoop) schedule(d *epollDriver) {
	if !d.scheduled {
		d.scheduled = true
		l.due = append(l.due, d)
	}
}

// carry makes d, which has spent its turn with work left, due in the next.
func (l *epollLoop) carry(d *epollDriver) {
	if !d.scheduled {
		d.scheduled = true
		l.next = append(l.next, d)
	}
}

// dispatch runs d's event rules until they have nothing more to do now, or
// d has done a turn's work (see maxTurnReads): then d goes on in the next
// turn.
func (l *epollLoop) dispatch(d *epollDriver) {
	if d.released {
		return
	}
	// The clock is read only while the connection may still be reported:
	// dispatch runs for every readiness of every connection.
	t := l.e.cfg.BlockingThreshold
	watch := t > 0 && !d.slowReported
	var start time.Time
	if watch {
		start = time.Now()
	}
	l.turnReads, l.turnRead, l.turnWritten = 0, 0, 0
	for steps := 0; ; steps++ {
		if steps == maxTurnSteps {
			l.carry(d) // events keep coming: the rest next turn
			break
		}
		l.current.Store(d)
		more := false
		for {
			done, m := d.stepOnce()
			if done {
				more = m
				break
			}
		}
		l.current.Store(nil)
		if more {
			l.carry(d)
			break
		}
		// Wake-ups made while current was d were skipped: look again.
		if d.released || d.c.events.Load() == 0 && !(d.flushWanted.Load() && d.writable) {
			break
		}
	}
	if watch {
		if el := time.Since(start); el > t {
			d.slowReported = true
			l.e.slow.Add(1)
			l.slow.Add(1)
			l.e.cfg.Logger.Warn("tcpkit: a callback held its epoll loop; the loop's other connections waited",
				"held", el.String(), "local", d.c.LocalAddr().String(), "remote", d.c.RemoteAddr().String())
		}
	}
}

// release closes d's socket once its close event has been delivered.
func (l *epollLoop) release(d *epollDriver) {
	d.released = true
	d.gone.Store(true)
	l.timers.set(d, 0)
	if d.registered {
		l.p.Delete(d.fd)
		delete(l.conns, d.token)
		l.nconns.Add(-1)
	}
	if d.reset.Load() && d.tcp {
		unix.SetsockoptLinger(d.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	d.closeFd()
}
