//go:build linux

package tcpkit

import (
	"container/heap"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/tcpkit/tcpkit/internal/epoll"
	"golang.org/x/sys/unix"
)

// EpollConfig holds the settings of an epoll engine. Its zero value is
// ready to use.
type EpollConfig struct {
	// Loops is the number of event loops, each a goroutine with an epoll
	// instance of its own. Default runtime.GOMAXPROCS(0).
	Loops int

	// ReadBufferSize is the size of each loop's read buffer, shared by its
	// connections: a connection holds no read buffer of its own. A
	// connection's reads are also capped by its ConnConfig.ReadBufferSize.
	// Default DefaultReadBufferSize (64 KiB).
	ReadBufferSize int

	// BlockingThreshold is how long a callback may hold its loop before it
	// is reported: once per connection, in the log, with the connection's
	// addresses, and in SlowCallbacks. Default 100ms; negative turns the
	// report off.
	BlockingThreshold time.Duration

	// Logger receives the engine's reports. Default slog.Default().
	Logger *slog.Logger
}

// An EpollEngine runs connections on a few event loops over epoll (Linux
// only); see Engine for when to choose it. One engine may serve several
// Servers and Dialers. Close it once they are done: a Serve still running
// on it then returns an error.
//
// From a *net.TCPListener or *net.UnixListener, a Server on this engine
// accepts with accept4(2) on the listening socket, woken by a loop, and
// hands the new socket straight to a loop. Any other listener with a file
// descriptor (one that wraps those, say) is served through its own
// Accept, and the engine takes over each socket it returns.
type EpollEngine struct {
	cfg   EpollConfig
	loops []*epollLoop
	next  atomic.Uint32
	slow  atomic.Int64
	wg    sync.WaitGroup
	once  sync.Once

	closed chan struct{} // closed by Close: listeners stop accepting
	lnMu   sync.Mutex
	lns    map[uint64]*epollListener // by token
	lnSeq  uint64
}

// errEngineClosed is the close error of connections still open when their
// engine is closed; they are reset, so that their peers know.
var errEngineClosed = errors.New("tcpkit: engine closed")

// NewEpollEngine starts an epoll engine's loops.
func NewEpollEngine(cfg EpollConfig) (*EpollEngine, error) {
	if cfg.Loops <= 0 {
		cfg.Loops = runtime.GOMAXPROCS(0)
	}
	if cfg.ReadBufferSize <= 0 {
		cfg.ReadBufferSize = DefaultReadBufferSize
	}
	if cfg.BlockingThreshold == 0 {
		cfg.BlockingThreshold = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &EpollEngine{cfg: cfg, closed: make(chan struct{})}
	for range cfg.Loops {
		p, err := epoll.New(256)
		if err != nil {
			e.Close()
			return nil, err
		}
		l := &epollLoop{e: e, p: p, buf: make([]byte, cfg.ReadBufferSize), conns: make(map[uint64]*epollDriver)}
		e.loops = append(e.loops, l)
		e.wg.Add(1)
		go l.run()
	}
	return e, nil
}

func (e *EpollEngine) String() string { return "epoll" }

// SlowCallbacks returns how many times a callback held its loop for longer
// than BlockingThreshold.
func (e *EpollEngine) SlowCallbacks() int64 { return e.slow.Load() }

// Close stops the loops, resetting any connection still open on them
// (its close error says the engine closed), and waits for them to finish.
func (e *EpollEngine) Close() error {
	e.once.Do(func() {
		close(e.closed)
		for _, l := range e.loops {
			l.mu.Lock()
			l.closing = true
			l.mu.Unlock()
			l.p.Wake()
		}
		e.wg.Wait()
		for _, l := range e.loops {
			l.p.Close()
		}
	})
	return nil
}

func (e *EpollEngine) listener(ln net.Listener) (net.Listener, error) {
	switch l := ln.(type) {
	case *net.TCPListener:
		return e.listen(ln, l)
	case *net.UnixListener:
		return e.listen(ln, l)
	case syscall.Conn:
		return ln, nil // its own Accept, which may do more than accept; newConn takes the socket over
	}
	return nil, fmt.Errorf("tcpkit: the epoll engine needs a listener with a file descriptor (a *net.TCPListener or *net.UnixListener); %T has none", ln)
}

func (e *EpollEngine) newConn(nc net.Conn, cfg *ConnConfig, srv *Server, log *slog.Logger) (*Conn, error) {
	if a, ok := nc.(*acceptedSocket); ok {
		return e.adopt(a, cfg, srv, log), nil
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("tcpkit: the epoll engine needs a connection with a file descriptor; %T has none", nc)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("fcntl", derr)
	}
	_, tcp := nc.(*net.TCPConn)
	d := &epollDriver{fd: fd, tcp: tcp}
	d.keepAddrs(nc.LocalAddr(), nc.RemoteAddr())
	nc.Close() // the duplicate keeps the socket, still non-blocking
	return e.attach(d, cfg, srv, log), nil
}

// attach puts d on the next of e's loops and makes its Conn.
func (e *EpollEngine) attach(d *epollDriver, cfg *ConnConfig, srv *Server, log *slog.Logger) *Conn {
	d.l = e.loops[int(e.next.Add(1))%len(e.loops)]
	d.c = newConn(d, cfg, srv, log)
	return d.c
}

// adopt makes a Conn on a loop of e for a socket fresh from an
// epollListener, with the kernel's defaults: Go's net would have set
// TCP_NODELAY on it, and so does adopt, unless cfg asks for Nagle.
func (e *EpollEngine) adopt(a *acceptedSocket, cfg *ConnConfig, srv *Server, log *slog.Logger) *Conn {
	d := &epollDriver{fd: a.fd, tcp: a.tcp}
	d.keepAliveOff.Store(true)
	if a.tcp {
		d.localAP, d.remoteAP = a.localAP, a.remoteAP
		if !cfg.Nagle {
			d.setNoDelay(true)
		}
	} else {
		d.addr.Store(&connAddrs{a.local, a.remote})
	}
	*a = acceptedSocket{}
	acceptedSockets.Put(a)
	return e.attach(d, cfg, srv, log)
}

func (e *EpollEngine) start(c *Conn, h Handler) {
	d := c.drv.(*epollDriver)
	d.h = h
	d.started.Store(true)
	d.wake()
}

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
	current atomic.Pointer[epollDriver]

	mu      sync.Mutex // guards inbox and closing
	inbox   []*epollDriver
	closing bool

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
	var inbox []*epollDriver
	busy := false // the last wait found work
	for {
		timeout := time.Duration(-1)
		if at, ok := l.timers.next(); ok {
			timeout = max(time.Until(at), 0)
		}
		// After a turn with work, look again without blocking, and if
		// nothing is ready yet, yield to the Go scheduler before blocking
		// (as gnet does). Blocking at once after every turn costs about a
		// fifth more CPU per message at one connection, in the Go runtime
		// rather than in the loop (docs/BENCHMARKS.md).
		if busy {
			timeout = 0
		}
		n, _, err := l.p.Wait(timeout, l.ready)
		if err != nil {
			l.e.cfg.Logger.Error("tcpkit: epoll loop: wait failed", "err", err)
			time.Sleep(10 * time.Millisecond)
		}
		busy = n > 0
		if !busy && timeout == 0 {
			runtime.Gosched()
		}
		l.mu.Lock()
		inbox, l.inbox = l.inbox, inbox[:0]
		closing := l.closing
		l.mu.Unlock()
		for _, d := range inbox {
			d.queued.Store(false)
			l.schedule(d)
		}
		if l.timers.Len() > 0 { // the clock is read only with a timer set
			for now := time.Now(); ; {
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
		if len(l.due) > 0 {
			start := monotime()
			for i, d := range l.due {
				d.scheduled = false
				l.dispatch(d)
				l.due[i] = nil
			}
			l.due = l.due[:0]
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

// loopStats describes the engine's loops, for Server.Stats.
func (e *EpollEngine) loopStats() []LoopStats {
	now := int64(monotime() / time.Second)
	out := make([]LoopStats, len(e.loops))
	for i, l := range e.loops {
		var lag int64
		switch l.lagSec.Load() {
		case now:
			lag = max(l.lagCur.Load(), l.lagPrev.Load())
		case now - 1:
			lag = l.lagCur.Load()
		}
		out[i] = LoopStats{Conns: int(l.nconns.Load()), Lag: time.Duration(lag), SlowCallbacks: l.slow.Load()}
	}
	return out
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
	if ev&(epoll.Readable|epoll.PeerEnd|epoll.Hangup|epoll.Error) != 0 {
		d.readable = true
	}
	if ev&(epoll.PeerEnd|epoll.Hangup|epoll.Error) != 0 {
		d.peerEnd = true // read to EOF, not to the first short read
	}
	if ev&(epoll.Writable|epoll.Hangup|epoll.Error) != 0 {
		d.writable = true
	}
	l.schedule(d)
}

func (l *epollLoop) schedule(d *epollDriver) {
	if !d.scheduled {
		d.scheduled = true
		l.due = append(l.due, d)
	}
}

// dispatch runs d's event rules until they have nothing more to do now.
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
	for {
		l.current.Store(d)
		for !d.stepOnce() {
		}
		l.current.Store(nil)
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
	if d.registered {
		l.p.Delete(d.fd)
		delete(l.conns, d.token)
		l.nconns.Add(-1)
	}
	if d.reset.Load() && d.tcp {
		unix.SetsockoptLinger(d.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	unix.Close(d.fd)
}

// epollDriver is a connection's side of the epoll engine.
type epollDriver struct {
	c            *Conn
	l            *epollLoop
	fd           int
	tcp          bool
	keepAliveOff atomic.Bool // keep-alive is off, as accept4 leaves it: turning it off needs no call
	h            Handler     // until open

	// A TCP connection's addresses are kept as values, and made into
	// net.Addrs only when asked: most connections never are.
	localAP, remoteAP netip.AddrPort
	addr              atomic.Pointer[connAddrs] // the net.Addrs, once made

	started     atomic.Bool // start was called: the loop owns the socket
	queued      atomic.Bool // in the loop's inbox
	flushWanted atomic.Bool // the queue has bytes the socket did not take
	reset       atomic.Bool // close with an RST

	// The loop's own state of the connection.
	token        uint64
	registered   bool
	opened       bool
	released     bool
	scheduled    bool
	readable     bool // the socket may have input: read until EAGAIN
	peerEnd      bool
	writable     bool
	slowReported bool
	timerSeq     uint64        // the live heap entry's seq; older entries are stale
	timerAt      time.Duration // the live entry's time, as monotime counts it; 0 for none
}

// stepOnce runs the event rules once, reading while the socket has input.
// It reports false if a callback panicked, so that dispatch steps again
// (now to close the connection).
func (d *epollDriver) stepOnce() (done bool) {
	c, l := d.c, d.l
	defer c.recoverPanic()
	if !d.registered {
		d.l.tokens++
		d.token = d.l.tokens
		if err := l.p.Add(d.fd, d.token); err != nil {
			c.closeWith(err)
		} else {
			d.registered = true
			l.conns[d.token] = d
			l.nconns.Add(1)
		}
	}
	if !d.opened {
		d.opened = true
		h := d.h
		d.h = nil
		c.open(h) // first of all events, even if the connection is closing already
	}
	if d.writable && d.flushWanted.Load() {
		// Cleared first: a Write that queues after flushNow has emptied
		// the queue sets it again, and must not be overwritten.
		d.flushWanted.Store(false)
		if !c.flushNow(d.write) {
			d.flushWanted.Store(true)
			d.writable = false
		}
	}
	for {
		switch c.step() {
		case actClosed:
			c.finish()
			l.release(d)
			return true
		case actWait:
			// Paused with input in hand: it lives in the loop's buffer,
			// which the next read reuses.
			if h := c.rs.held; len(h) > 0 && &h[0] == &l.buf[0] {
				c.rs.held = append([]byte(nil), h...)
			}
			return true
		}
		if !d.readable {
			return true
		}
		buf := l.buf[:min(len(l.buf), c.cfg.ReadBufferSize)]
		n, err := loopRead(d.fd, buf)
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			d.readable = false
			return true
		case err != nil:
			c.onRead(nil, c.opError("read", os.NewSyscallError("read", err)))
		case n == 0:
			d.readable = false
			c.onRead(nil, io.EOF)
		default:
			if n < len(buf) && !d.peerEnd {
				d.readable = false // drained: the next input brings a new edge
			}
			c.onRead(buf[:n], nil)
		}
	}
}

func (d *epollDriver) wake() {
	if !d.started.Load() || d.l.current.Load() == d {
		return // not yet started, or its dispatch looks again before it ends
	}
	if d.queued.CompareAndSwap(false, true) {
		l := d.l
		l.mu.Lock()
		l.inbox = append(l.inbox, d)
		l.mu.Unlock()
		l.p.Wake()
	}
}

func (d *epollDriver) setTimer(deadline time.Time) {
	var at time.Duration // 0: none
	if !deadline.IsZero() {
		at = deadline.Sub(epoch)
	}
	if at == d.timerAt {
		return // armed already: the heap needs no second entry
	}
	d.timerSeq++
	d.timerAt = at
	if !deadline.IsZero() {
		heap.Push(&d.l.timers, timerEntry{at: deadline, d: d, seq: d.timerSeq})
	}
}

func (d *epollDriver) write(p []byte) (int, error) {
	for {
		n, err := loopWrite(d.fd, p)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, nil
		}
		return 0, d.c.opError("write", os.NewSyscallError("write", err))
	}
}

func (d *epollDriver) startFlush() {
	d.flushWanted.Store(true)
	d.wake()
}

func (d *epollDriver) closeWrite() error {
	if err := unix.Shutdown(d.fd, unix.SHUT_WR); err != nil {
		return d.c.opError("shutdown", os.NewSyscallError("shutdown", err))
	}
	return nil
}

// close closes the socket, or, once the loop owns it, leaves that to the
// loop, which closes it after the close event: a descriptor closed under
// the loop could be reused by the next accept while the loop still knows
// the old one.
func (d *epollDriver) close(reset bool) error {
	if !d.started.Load() {
		return unix.Close(d.fd) // never started: dropped, or the server closed
	}
	if reset {
		d.reset.Store(true)
	}
	return nil
}

func (d *epollDriver) quiesce() {}

// connAddrs holds a connection's addresses.
type connAddrs struct{ local, remote net.Addr }

// keepAddrs records a new connection's addresses: as values for TCP, as
// they are otherwise.
func (d *epollDriver) keepAddrs(local, remote net.Addr) {
	l, lok := local.(*net.TCPAddr)
	r, rok := remote.(*net.TCPAddr)
	if !lok || !rok {
		d.addr.Store(&connAddrs{local, remote})
		return
	}
	d.localAP, d.remoteAP = l.AddrPort(), r.AddrPort()
}

func (d *epollDriver) addrs() (local, remote net.Addr) {
	a := d.addr.Load()
	if a == nil {
		a = &connAddrs{net.TCPAddrFromAddrPort(d.localAP), net.TCPAddrFromAddrPort(d.remoteAP)}
		if !d.addr.CompareAndSwap(nil, a) {
			a = d.addr.Load() // made by another caller: every caller sees the same
		}
	}
	return a.local, a.remote
}

func (d *epollDriver) unread() int { return unreadBytes(uintptr(d.fd)) }

func (d *epollDriver) control(f func(fd uintptr)) error {
	f(uintptr(d.fd))
	return nil
}

func (d *epollDriver) setNoDelay(noDelay bool) error {
	if !d.tcp {
		return nil
	}
	v := 0
	if noDelay {
		v = 1
	}
	return os.NewSyscallError("setsockopt", unix.SetsockoptInt(d.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, v))
}

func (d *epollDriver) setKeepAlive(enable bool, period time.Duration) error {
	if !d.tcp || !enable && d.keepAliveOff.Load() {
		return nil
	}
	d.keepAliveOff.Store(false)
	on := 0
	if enable {
		on = 1
	}
	if err := unix.SetsockoptInt(d.fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, on); err != nil || !enable || period <= 0 {
		return os.NewSyscallError("setsockopt", err)
	}
	secs := max(int((period+time.Second-1)/time.Second), 1)
	return os.NewSyscallError("setsockopt", errors.Join(
		unix.SetsockoptInt(d.fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, secs),
		unix.SetsockoptInt(d.fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, secs)))
}

func (d *epollDriver) setBuffers(send, receive int) error {
	var err error
	if send > 0 {
		err = unix.SetsockoptInt(d.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, send)
	}
	if receive > 0 {
		err = errors.Join(err, unix.SetsockoptInt(d.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, receive))
	}
	return os.NewSyscallError("setsockopt", err)
}

// loopRead and loopWrite read and write a non-blocking socket without
// telling the Go scheduler, as a call that may block must: they return at
// once, and the scheduler's bookkeeping is a cost per message; worse, a
// loop seen in system calls keeps the runtime's monitor thread waking
// every 20µs on the loop's CPU. Errors are bare unix.Errno values.
func loopRead(fd int, p []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func loopWrite(fd int, p []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// A timerEntry is a connection's timer in its loop's heap. Entries are not
// removed when a timer is reset: a stale one (seq behind) is skipped.
type timerEntry struct {
	at  time.Time
	d   *epollDriver
	seq uint64
}

type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = timerEntry{}
	*h = old[:len(old)-1]
	return e
}

// live drops stale entries from the top and reports whether one is left.
func (h *timerHeap) live() bool {
	for h.Len() > 0 {
		top := (*h)[0]
		if top.seq == top.d.timerSeq && !top.d.released {
			return true
		}
		heap.Pop(h)
	}
	return false
}

// next returns the time of the earliest live timer.
func (h *timerHeap) next() (time.Time, bool) {
	if !h.live() {
		return time.Time{}, false
	}
	return (*h)[0].at, true
}

// popDue removes and returns the connection of the earliest live timer if
// it is due at now.
func (h *timerHeap) popDue(now time.Time) (*epollDriver, bool) {
	if !h.live() || (*h)[0].at.After(now) {
		return nil, false
	}
	e := heap.Pop(h).(timerEntry)
	e.d.timerSeq++ // fired: a later setTimer arms it again
	e.d.timerAt = 0
	return e.d, true
}
