package tcpkit

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// The schedule test's simulation (see schedule_test.go): a simulated
// socket and its peer (Linux's semantics: a reset's error taken once by a
// read, a write or SO_ERROR; a read after the peer's FIN returns 0
// whatever follows; shutdown after a reset fails with ENOTCONN; a close
// with input unread sends an RST), and a scheduler that runs every
// goroutine of a connection one at a time, in an order drawn from the
// run's seed. The driver and the engine loops over this socket are in
// schedule_driver_test.go.
//
// In scheduled mode every participant (the event goroutine, the writer
// goroutine of the goroutine engine, the "foreign" goroutines that call the
// Conn's methods) is a real goroutine, but only one of them runs at a time:
// each hands control back to the coordinator (the test's own goroutine) at
// its yield points, which are the driver calls made without c.mu held, the
// boundaries between an engine's calls into the Conn, and each callback's
// start. The coordinator
// picks who runs next, or acts as the peer, or moves the clock, with the
// run's PCG. A run is thus a function of its seed alone. The clock is
// testing/synctest's: time moves only when the coordinator sleeps.
//
// In free mode (the race fuzz) the same participants run at once, as real
// goroutines do, and wait on the world's state with a broadcast channel.

// A simPart is one goroutine of a simulated connection.
type simPart struct {
	name   string
	run    chan struct{} // the coordinator's go-ahead
	ready  func() bool   // while parked: whether it can go on (called with w.mu held); nil for always
	done   bool
	action string     // the Conn method it is in, for the close's cause; "" for the engine's own work
	rng    *rand.Rand // its own choices (free mode); the world's in scheduled mode
}

// simSock is the simulated kernel socket and its peer. The peer's receive
// buffer and ours in flight are one queue, snd: what the peer application
// has not read yet.
type simSock struct {
	sndCap, rcvCap int

	snd           []byte // written, not yet read by the peer
	out           []byte // everything the kernel took, in order
	peerGot       []byte // what the peer application read
	finOut        bool   // our FIN is behind snd (shutdown, or a graceful close)
	shutWR        bool   // shutdown(SHUT_WR) succeeded
	rstOut        bool   // we sent an RST
	unreadAtClose bool   // input was left unread at close, which sends an RST
	peerEnd       string // what the peer application saw last: "", "FIN" or "RST"

	rcv       []byte // sent by the peer, not yet read by us
	in        []byte // everything the peer sent
	readTotal int
	peerFIN   bool
	peerRST   bool
	pendErr   syscall.Errno // SO_ERROR: ECONNRESET after the peer's RST, until a read, a write or soError takes it
	closed    bool          // our descriptor is closed

	lost          int  // bytes of ours that the peer's RST destroyed unread
	rstWhileOpen  bool // the peer's RST came before the connection was closing
	enotconn      bool // shutdown reported ENOTCONN (after a reset)
	lastTraffic   time.Duration
	writeAfterFIN bool
}

// simWorld is one run: a connection, its simulated socket and peer, its
// participants, and what the oracle records.
type simWorld struct {
	seed     uint64
	free     bool // real goroutines, for the race detector
	goEngine bool // the goroutine engine's shape: a writer goroutine, close at once; else the epoll engine's
	known    bool // leave the schedules that known bugs need unmasked
	rng      *rand.Rand
	tracing  bool
	trace    []string

	mu      sync.Mutex    // guards the socket, the loop's flags and the record in free mode
	changed chan struct{} // free mode: closed at each change of state

	back     chan struct{} // participant → coordinator: parked or done
	parts    []*simPart
	opts     []simOpt // the coordinator's choices, reused
	cur      *simPart
	aborting bool
	wg       sync.WaitGroup

	plan  schedPlan
	start time.Duration // the run's start, on the connection's clock
	c     *Conn
	cfg   ConnConfig
	srv   *Server
	loop  *simPart
	logs  *simLog

	// The engine loop's own state.
	woken, flushWanted, writable, wantRead, watching bool
	outEdges                                         int // EPOLLOUT edges so far
	timer                                            time.Time
	resetReq, released, finished                     bool
	writers                                          int
	prevBuf                                          []byte
	closeCalls                                       int
	closeAt, closeTraffic                            time.Duration // when close was first called, and the last traffic then
	winner, winnerPart                               string        // the action, and its participant, that closed the connection
	winnerWriteErr                                   error
	lateCalls                                        []string // driver calls after finish
	contract                                         []string // driver contract breaches

	sock simSock
	rec  schedRecord
}

func (w *simWorld) tracef(format string, args ...any) {
	if !w.tracing {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.trace = append(w.trace, fmt.Sprintf("%8.3fms ", float64(w.now()-w.start)/1e6)+fmt.Sprintf(format, args...))
}

// now is the connection's clock (monotime, under synctest's fake time).
func (w *simWorld) now() time.Duration { return monotime() }

// kickLocked tells free-mode waiters that the state changed.
func (w *simWorld) kickLocked() {
	if w.free {
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

// spawn starts a participant. In scheduled mode it waits for its first
// turn; it may be called from a participant with c.mu held.
func (w *simWorld) spawn(name string, body func(p *simPart)) *simPart {
	p := &simPart{name: name, run: make(chan struct{})}
	w.mu.Lock()
	if w.free {
		p.rng = rand.New(rand.NewPCG(w.seed, uint64(len(w.parts))+100))
	} else {
		p.rng = w.rng
	}
	w.parts = append(w.parts, p)
	if name == "loop" {
		w.loop = p
	}
	w.mu.Unlock()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		if !w.free {
			<-p.run
			defer func() {
				w.mu.Lock()
				p.done = true
				w.mu.Unlock()
				w.back <- struct{}{}
			}()
			if w.aborting {
				return
			}
		} else {
			defer func() {
				w.mu.Lock()
				p.done = true
				w.kickLocked()
				w.mu.Unlock()
			}()
		}
		body(p)
	}()
	return p
}

// park hands control back to the coordinator until it resumes this
// participant, which it does only once ready reports true. Scheduled mode.
func (w *simWorld) park(ready func() bool) {
	p := w.cur
	p.ready = ready
	w.back <- struct{}{}
	<-p.run
	p.ready = nil
	if w.aborting {
		runtime.Goexit()
	}
}

// resume runs p until it parks or ends. Coordinator only.
func (w *simWorld) resume(p *simPart) {
	w.cur = p
	p.run <- struct{}{}
	<-w.back
	w.cur = nil
}

// runnable reports whether p may be resumed now.
func (w *simWorld) runnable(p *simPart) bool {
	if p.done {
		return false
	}
	if p.ready == nil {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return p.ready()
}

// yield is a point where another participant may run: in scheduled mode,
// if the running participant holds none of the Conn's locks (a participant
// parked with c.mu held would block the others for good).
func (w *simWorld) yield() {
	if w.free {
		runtime.Gosched()
		return
	}
	if w.cur == nil {
		return // the coordinator, setting up
	}
	if c := w.c; c != nil {
		if !c.mu.TryLock() {
			return
		}
		c.mu.Unlock()
		if !c.lsMu.TryLock() {
			return
		}
		c.lsMu.Unlock()
	}
	w.park(nil)
}

// block waits until ready (called with w.mu held) reports true; with timed,
// also wakes at the loop's timer (free mode; in scheduled mode the
// coordinator moves the clock).
func (w *simWorld) block(ready func() bool, timed bool) {
	if !w.free {
		w.park(ready)
		return
	}
	for {
		w.mu.Lock()
		if ready() {
			w.mu.Unlock()
			return
		}
		ch := w.changed
		var tc <-chan time.Time
		if timed && !w.timer.IsZero() {
			tc = time.After(time.Until(w.timer))
		}
		w.mu.Unlock()
		select {
		case <-ch:
		case <-tc:
		}
	}
}

func (w *simWorld) timerDueLocked() bool {
	return !w.timer.IsZero() && !time.Now().Before(w.timer)
}

// label names the running participant's current action, for the close.
func (w *simWorld) label() (part, action string) {
	if w.free || w.cur == nil {
		return "", ""
	}
	return w.cur.name, w.cur.action
}

// setAction sets the action of the running participant (scheduled mode).
func (w *simWorld) setAction(p *simPart, a string) {
	if !w.free {
		p.action = a
	}
}

// sockRead reads up to max bytes: ok is false when there is nothing
// (EAGAIN). After the peer's FIN a read returns 0 even with a reset
// pending (Linux's SOCK_DONE); after a reset whose error was taken, 0 too.
func (w *simWorld) sockRead(max int) (p []byte, err error, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.kickLocked()
	s := &w.sock
	switch {
	case s.closed:
		return nil, w.c.opError("read", net.ErrClosed), true
	case len(s.rcv) > 0:
		n := min(max, len(s.rcv))
		p = make([]byte, n)
		copy(p, s.rcv)
		s.rcv = s.rcv[n:]
		s.readTotal += n
		s.lastTraffic = w.now()
		return p, nil, true
	case s.peerFIN:
		return nil, io.EOF, true
	case s.pendErr != 0:
		e := s.pendErr
		s.pendErr = 0
		return nil, w.c.opError("read", os.NewSyscallError("read", e)), true
	case s.peerRST:
		// A read after a reset whose error a Write or End took: Linux
		// returns 0, and the engines ask the socket's state, which says
		// reset (endOrReset); so does this (maskWriteResetRace).
		if maskWriteResetRace {
			return nil, w.c.opError("read", os.NewSyscallError("read", syscall.ECONNRESET)), true
		}
		return nil, io.EOF, true
	}
	return nil, nil, false
}

// readableLocked reports whether a read would not find the socket empty.
func (s *simSock) readableLocked() bool {
	return s.closed || len(s.rcv) > 0 || s.peerFIN || s.pendErr != 0 || s.peerRST
}

// writableLocked reports whether a write would not find the socket full.
func (s *simSock) writableLocked() bool {
	return s.closed || s.pendErr != 0 || s.peerRST || s.finOut || len(s.snd) < s.sndCap
}

func (w *simWorld) sockWrite(p []byte, who string) (int, error) {
	w.mu.Lock()
	s := &w.sock
	var n int
	var err error
	switch {
	case s.closed:
		err = w.c.opError("write", net.ErrClosed)
	case s.pendErr != 0:
		e := s.pendErr
		s.pendErr = 0
		err = w.c.opError("write", os.NewSyscallError("write", e))
	case s.peerRST:
		err = w.c.opError("write", os.NewSyscallError("write", syscall.EPIPE))
	case s.finOut:
		s.writeAfterFIN = true
		err = w.c.opError("write", os.NewSyscallError("write", syscall.EPIPE))
	default:
		n = min(len(p), s.sndCap-len(s.snd))
		s.snd = append(s.snd, p[:n]...)
		s.out = append(s.out, p[:n]...)
		if n > 0 {
			s.lastTraffic = w.now()
		}
	}
	w.kickLocked()
	w.mu.Unlock()
	w.tracef("%s write(%d) = %d, %v", who, len(p), n, err)
	return n, err
}

// closeFdLocked closes our descriptor: an RST if asked, or if input is
// left unread (as Linux does), else a FIN behind what is queued.
func (w *simWorld) closeFdLocked(reset bool) {
	s := &w.sock
	if s.closed {
		return
	}
	s.closed = true
	w.timer = time.Time{}
	switch {
	case s.peerRST:
	case reset || len(s.rcv) > 0:
		s.rstOut = true
		s.unreadAtClose = !reset
		if s.peerEnd == "" {
			s.peerEnd = "RST"
		}
		s.snd = nil
	default:
		s.finOut = true
		if len(s.snd) == 0 && s.peerEnd == "" {
			s.peerEnd = "FIN"
		}
	}
	w.kickLocked()
}

func (w *simWorld) peerCanSend() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &w.sock
	return !s.peerFIN && !s.peerRST && !s.closed && s.peerEnd == "" && len(s.rcv) < s.rcvCap
}

func (w *simWorld) peerSend(rng *rand.Rand) {
	w.mu.Lock()
	s := &w.sock
	if s.peerFIN || s.peerRST || s.closed || s.peerEnd != "" || len(s.rcv) >= s.rcvCap {
		w.mu.Unlock()
		return
	}
	n := min(1+rng.IntN(24), s.rcvCap-len(s.rcv))
	for range n {
		b := byte(rng.Uint32())
		s.rcv = append(s.rcv, b)
		s.in = append(s.in, b)
	}
	w.kickLocked()
	w.mu.Unlock()
	w.tracef("peer: send %d", n)
}

func (w *simWorld) peerHasToRead() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &w.sock
	return s.peerEnd == "" && !s.peerRST && (len(s.snd) > 0 || s.finOut)
}

func (w *simWorld) peerRead(n int) {
	w.mu.Lock()
	s := &w.sock
	if s.peerEnd != "" || s.peerRST {
		w.mu.Unlock()
		return
	}
	k := min(n, len(s.snd))
	s.peerGot = append(s.peerGot, s.snd[:k]...)
	s.snd = s.snd[k:]
	if len(s.snd) == 0 && s.finOut {
		s.peerEnd = "FIN"
	}
	if k > 0 {
		w.writable = true // EPOLLOUT
		w.outEdges++
	}
	left := len(s.snd)
	w.kickLocked()
	w.mu.Unlock()
	w.tracef("peer: read %d (%d left)", k, left)
}

func (w *simWorld) peerSendFIN() {
	w.mu.Lock()
	s := &w.sock
	if s.peerFIN || s.peerRST || s.peerEnd == "RST" {
		w.mu.Unlock()
		return
	}
	s.peerFIN = true
	w.kickLocked()
	w.mu.Unlock()
	w.tracef("peer: FIN")
}

func (w *simWorld) peerCanRST() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &w.sock
	return !s.peerRST && !s.closed && s.peerEnd != "RST"
}

func (w *simWorld) peerSendRST() {
	if !w.peerCanRST() {
		return
	}
	closing := w.c.isClosing()
	w.mu.Lock()
	s := &w.sock
	s.peerRST = true
	s.pendErr = syscall.ECONNRESET
	s.lost += len(s.snd)
	s.snd = nil
	s.rstWhileOpen = !closing
	w.writable = true // EPOLLERR|EPOLLHUP
	w.outEdges++
	lost := s.lost
	w.kickLocked()
	w.mu.Unlock()
	w.tracef("peer: RST (%d bytes of ours lost, connection closing: %v)", lost, closing)
}

var runtimeGosched = runtime.Gosched
