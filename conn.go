package tcpkit

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// A Handler is a connection listener, Node's net.createServer(listener) and
// net.connect's connect listener in one type. It is called once for each
// connection, before any other event of that connection, on the goroutine
// that will run all of the connection's callbacks. It sets the callbacks
// (OnData, OnEnd, ...) and may write. Per-connection state lives in the
// closures it creates, as in Node: no global map or lock is needed.
type Handler func(c *Conn)

// A Conn is one TCP or Unix-socket connection, accepted by a Server or made
// by a Dialer. Its events reach the callbacks registered with its On
// methods; see the package documentation for their order and goroutine.
//
// All methods are safe for concurrent use by multiple goroutines. Listeners
// added from the Handler see every event; a listener added later, from
// another goroutine, sees the events after it was added.
type Conn struct {
	drv driver      // the engine's side of the connection
	cfg *ConnConfig // resolved, shared with the other connections of its Server
	srv *Server     // the accepting server; nil for a dialled connection
	log *slog.Logger
	rs  readState // the event rules' own state; event goroutine only
	// edge runs the PROXY header and TLS stages before the Handler, and
	// keeps what they leave (addresses, TLS); nil for a plain connection.
	edge *connEdge

	ls   atomic.Pointer[listeners] // copied on write, so events read it without a lock
	lsMu sync.Mutex                // serialises the writers of ls
	// closeSent is set, under lsMu, once finish has called every close
	// listener, those added while it was calling them included.
	closeSent bool

	events       atomic.Uint32 // evDrain | evWake | ..., for the event goroutine
	lastAct      atomic.Int64  // time of the last traffic, as monotime counts it
	timeout      atomic.Int64  // SetTimeout's duration
	timeoutSet   atomic.Int64  // when SetTimeout was last called, as lastAct counts time
	endBy        atomic.Int64  // EndWithError's deadline, as lastAct counts time; 0 for none
	bytesRead    atomic.Int64
	bytesWritten atomic.Int64

	mu       sync.Mutex // guards the fields below
	wq       []byte     // output not yet taken by a flush
	spare    []byte     // an emptied queue buffer, kept for reuse
	inflight int        // bytes taken by the writer and not yet written
	drainGen uint64     // counts OnDrain events posted; see Pipe
	endCause error      // what Write returns after End: ErrWriteAfterEnd, or errShutdownEnded
	endErr   error      // EndWithError's error: the close error of a clean close
	closeErr error
	done     chan struct{} // made when Done is first called; closed after the OnClose callbacks returned
	err      error         // the close error, set before finished
	// The flags, side by side so that they share one word.
	writing  bool // a flush of the queue is running
	overHigh bool // the queue went over HighWater; OnDrain is armed
	ending   bool // End was called
	discard  bool // EndWithError was called: drop input unseen
	finSent  bool // our FIN has gone out
	paused   bool
	closing  bool
	finished bool // the OnClose callbacks have returned
}

// Event bits posted to the event goroutine.
const (
	evDrain     uint32 = 1 << iota // fire OnDrain
	evWake                         // state changed: look again (resume, FIN sent, close, SetTimeout)
	evShutdown                     // fire OnShutdown
	evIdleCheck                    // Server.Shutdown: end the connection if it is still idle
)

// newConn makes a Conn on an engine's driver and sets its socket options
// from cfg.
func newConn(drv driver, cfg *ConnConfig, srv *Server, log *slog.Logger) *Conn {
	c := &Conn{
		drv:    drv,
		cfg:    cfg,
		srv:    srv,
		log:    log,
		paused: cfg.PauseOnConnect,
	}
	c.timeout.Store(int64(cfg.Timeout))
	c.touch() // a new connection is not idle, even before its goroutine runs
	c.timeoutSet.Store(c.lastAct.Load())
	drv.setBuffers(cfg.SendBuffer, cfg.ReceiveBuffer)
	if cfg.Nagle { // Go sets TCP_NODELAY on every TCP connection already
		drv.setNoDelay(false)
	}
	drv.setKeepAlive(cfg.KeepAlive > 0, cfg.KeepAlive)
	return c
}

// OnData adds a listener for the data event: p holds bytes as they arrived.
// TCP keeps no message boundaries: one Write by the peer may arrive as
// several OnData calls, and several Writes as one, so a protocol must frame
// its messages itself. p is valid only until the listener returns; copy
// what you keep.
func (c *Conn) OnData(f func(p []byte)) {
	c.addListener(func(l *listeners) {
		if l.data == nil {
			l.data = f
		} else {
			m := l.addMore()
			m.data = append(m.data, f)
		}
	})
}

// OnEnd adds a listener for the end event: the peer has half-closed its side
// (it sent FIN) and every byte it sent has been delivered. Unless
// ConnConfig.AllowHalfOpen is set, the connection then ends its own side
// once its write queue is flushed, and closes.
func (c *Conn) OnEnd(f func()) {
	c.addListener(func(l *listeners) {
		if l.end == nil {
			l.end = f
		} else {
			m := l.addMore()
			m.end = append(m.end, f)
		}
	})
}

// OnDrain adds a listener for the drain event: the write queue, having gone
// over HighWater, has fallen to LowWater or below.
func (c *Conn) OnDrain(f func()) {
	c.addListener(func(l *listeners) {
		if l.drain == nil {
			l.drain = f
		} else {
			m := l.addMore()
			m.drain = append(m.drain, f)
		}
	})
}

// OnTimeout adds a listener for the timeout event: the connection has been
// idle for the duration set by ConnConfig.Timeout or SetTimeout. It is a
// notification only; the connection stays open unless the listener closes
// it.
func (c *Conn) OnTimeout(f func()) {
	c.addListener(func(l *listeners) {
		if l.timeout == nil {
			l.timeout = f
		} else {
			m := l.addMore()
			m.timeout = append(m.timeout, f)
		}
	})
}

// OnError adds a listener for the error event. It fires at most once, just
// before OnClose, with the same error: a reset by the peer, a failed write,
// ErrSlowConsumer, ErrIdleTimeout, or a *PanicError.
func (c *Conn) OnError(f func(err error)) {
	c.addListener(func(l *listeners) {
		if l.err == nil {
			l.err = f
		} else {
			m := l.addMore()
			m.err = append(m.err, f)
		}
	})
}

// OnClose adds a listener for the close event, which fires exactly once and
// always last. err is nil after a clean close (both sides ended, or Close
// or Reset was called) and the error that closed the connection otherwise.
//
// A listener added while the close event is being delivered runs after the
// others, on the event goroutine; one added after that runs at once, on the
// caller's goroutine. Either way cleanup tied to a connection always runs.
func (c *Conn) OnClose(f func(err error)) {
	c.lsMu.Lock()
	if c.closeSent {
		c.lsMu.Unlock()
		f(c.err)
		return
	}
	c.addListenerLocked(func(l *listeners) {
		if l.close == nil {
			l.close = f
		} else {
			m := l.addMore()
			m.close = append(m.close, f)
		}
	})
	c.lsMu.Unlock()
}

// OnShutdown adds a listener for the shutdown event, which Server.Shutdown
// delivers once to each connection that has such a listener. Such a
// connection is left to end itself, typically by calling End once the
// request in progress is answered, rather than being ended by Shutdown
// when it looks idle. Dialled connections never get this event.
func (c *Conn) OnShutdown(f func()) {
	c.addListener(func(l *listeners) {
		if l.shutdown == nil {
			l.shutdown = f
		} else {
			m := l.addMore()
			m.shutdown = append(m.shutdown, f)
		}
	})
}

// Write queues p to be sent and returns len(p), nil: it never blocks. If the
// queue is empty, Write first tries to hand p to the kernel directly, so the
// common case costs one system call and no copy. Each Write's bytes go out
// whole, never interleaved with another Write's, and Writes go out in the
// order they were made: from one goroutine, or from several whose Writes
// are ordered by a lock or channel.
//
// Write returns an error, and sends nothing, after End (ErrWriteAfterEnd) or
// once the connection is closing (net.ErrClosed). If the queue would go over
// MaxBuffered, Write closes the connection with ErrSlowConsumer and returns
// that error. If the direct write fails, for example because the peer has
// reset the connection, Write closes the connection and returns that error,
// a *net.OpError.
func (c *Conn) Write(p []byte) (int, error) {
	n, _, _, err := c.write(p)
	return n, err
}

// write is Write, also reporting, as of the same moment, whether the queue
// is over HighWater and how many drain events have been posted (see Pipe).
func (c *Conn) write(p []byte) (n int, over bool, drains uint64, err error) {
	if e := c.edge; e != nil && e.tls != nil {
		return c.writeTLS(p)
	}
	return c.writeRaw(p)
}

// writeTLS is write on a TLS connection: p is encrypted, and the records
// queued.
func (c *Conn) writeTLS(p []byte) (n int, over bool, drains uint64, err error) {
	if len(p) == 0 {
		return 0, false, 0, nil
	}
	c.mu.Lock()
	err = c.writableLocked()
	c.mu.Unlock()
	if err != nil {
		return 0, false, 0, err
	}
	n, over, drains, err = c.edge.tls.write(p)
	if err != nil {
		c.mu.Lock()
		if werr := c.writableLocked(); werr != nil {
			err = werr // ended or closed meanwhile: say so, not what TLS makes of it
		}
		c.mu.Unlock()
	}
	return n, over, drains, err
}

// writeRaw writes p to the socket, or queues it: the bytes of a plain
// connection, the records of a TLS one.
func (c *Conn) writeRaw(p []byte) (n int, over bool, drains uint64, err error) {
	if len(p) == 0 {
		return 0, false, 0, nil
	}
	c.mu.Lock()
	if err := c.writableLocked(); err != nil {
		c.mu.Unlock()
		return 0, false, 0, err
	}
	if e := c.edge; e != nil && e.tls != nil {
		e.tls.recordLocked(len(p)) // before any of it is sent
	}
	if !c.writing && len(c.wq) == 0 {
		n, err = c.tryWrite(p)
	}
	if err == nil && n < len(p) {
		err = c.enqueueLocked(p[n:])
	}
	if n > 0 {
		c.touch() // traffic, under c.mu so that Shutdown's idle check sees it; bytes merely queued are not
	}
	over, drains = c.overHigh, c.drainGen
	c.mu.Unlock()
	if err != nil {
		c.fail(err) // the write failed, or the queue would pass MaxBuffered: bytes are lost
		return n, false, drains, err
	}
	return len(p), over, drains, nil
}

// WriteString is Write for a string, without copying it first.
func (c *Conn) WriteString(s string) (int, error) {
	return c.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// End half-closes the connection: once everything queued has been sent, it
// sends FIN (shutdown(SHUT_WR)). The connection stays readable. It closes
// when the peer has ended too. Calling End again does nothing; after the
// connection has closed, End returns an error wrapping net.ErrClosed.
func (c *Conn) End() error { return c.end(ErrWriteAfterEnd) }

// end is End, with cause as what later Writes return.
func (c *Conn) end(cause error) error {
	if e := c.edge; e != nil && e.tls != nil {
		e.tls.closeNotify() // before the FIN, after what is queued
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return c.opError("end", net.ErrClosed)
	}
	err := c.endLocked(cause)
	c.mu.Unlock()
	if err != nil {
		c.fail(err)
	}
	return err
}

// endLocked is end with c.mu held, once not closing; the caller closes the
// connection with the error it returns, if any.
func (c *Conn) endLocked(cause error) error {
	if c.ending {
		return nil
	}
	c.ending, c.endCause = true, cause
	if !c.writing && len(c.wq) == 0 {
		return c.sendFINLocked()
	}
	return nil
}

// endIfIdle ends the connection for Server.Shutdown if it has been idle
// for at least idle (see idleLocked). It runs on the event goroutine,
// between callbacks, so that no callback is halfway through a reply when
// it decides, and decides and ends under one hold of c.mu, so that no
// Write slips in between.
//
// A connection still on its way to its Handler (reading its PROXY header,
// or in its TLS handshake) is reset instead: it has no application data in
// flight, and TLS can say close_notify only once its handshake is done.
func (c *Conn) endIfIdle(idle time.Duration) {
	if e := c.edge; e != nil && e.stage != stageReady {
		if c.looksIdle(idle) {
			c.resetWith(errShutdownHandshake)
		}
		return
	}
	c.mu.Lock()
	var err error
	if c.idleLocked(idle) {
		if e := c.edge; e != nil && e.tls != nil {
			// close_notify goes out first, and TLS refuses Writes after
			// it; one that came between is sent before it.
			c.mu.Unlock()
			e.tls.closeNotify()
			c.mu.Lock()
		}
		if !c.closing {
			err = c.endLocked(errShutdownEnded)
		}
	}
	c.mu.Unlock()
	if err != nil {
		c.fail(err)
	}
}

// looksIdle reports whether the connection seems idle enough for Shutdown
// to end it, as seen from another goroutine.
func (c *Conn) looksIdle(idle time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.idleLocked(idle)
}

// idleLocked reports whether the connection has been idle long enough for
// Shutdown to end it: not closing or ending already, not paused, nothing
// queued or in flight, no byte read or written for idle, and no input
// waiting unread in the kernel (which a slow callback, or a long Pause,
// leaves there while the traffic clock stands still). Called with c.mu
// held.
func (c *Conn) idleLocked(idle time.Duration) bool {
	return !c.closing && !c.ending && !c.paused && len(c.wq)+c.inflight == 0 &&
		monotime()-time.Duration(c.lastAct.Load()) >= idle && c.drv.unread() == 0
}

// DefaultEndTimeout is EndWithError's timeout when it is given zero.
const DefaultEndTimeout = 5 * time.Second

// EndWithError ends the connection for a reason the peer has to be told,
// such as a protocol error: write the reply first, then call EndWithError.
// Like End, it sends everything queued, then FIN. From then on, input is
// read and dropped unseen (no more data events), so that the peer's FIN is
// still seen and closing does not turn into a reset that could destroy the
// reply. The connection closes with err as its close error (OnError,
// OnClose, Err) once the queue is flushed and the peer has ended too, or
// when timeout has passed, whichever comes first; zero means
// DefaultEndTimeout. Close and CloseWithError cut it short, with their own
// error.
//
// What the peer sees: the reply, then an orderly end (FIN). Bytes it sends
// after EndWithError are acknowledged by TCP and discarded unread; this is
// the one place where tcpkit drops input on purpose, and the reply is how
// the peer learns why. If the peer has not ended by the timeout, the
// connection is closed, and a peer still sending then gets a reset.
func (c *Conn) EndWithError(err error, timeout time.Duration) {
	if timeout <= 0 {
		timeout = DefaultEndTimeout
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if c.endErr == nil {
		c.endErr = err
		c.endBy.Store(addSat(int64(monotime()), int64(timeout)))
	}
	c.discard = true
	c.mu.Unlock()
	c.End()
	c.post(evWake) // the deadline is new
}

// Close closes the connection at once, dropping anything still queued. The
// close event follows, with a nil error. Close is idempotent and always
// returns nil.
func (c *Conn) Close() error {
	c.closeWith(nil)
	return nil
}

// CloseWithError closes the connection at once, as Close does, with err as
// the error that OnError and OnClose receive (Node's destroy(err)): for
// example a protocol error found by the handler. A nil err is Close.
func (c *Conn) CloseWithError(err error) {
	c.closeWith(err)
}

// Reset closes the connection at once with a TCP RST (SO_LINGER 0), so the
// peer sees ECONNRESET rather than an orderly end. Anything queued is
// dropped. On a Unix socket, which has no RST, Reset is Close: the peer
// sees ECONNRESET only if input it sent was still unread, and otherwise an
// end, then EPIPE on its next write.
func (c *Conn) Reset() error {
	c.resetWith(nil)
	return nil
}

// resetWith is Reset with err as the close error.
func (c *Conn) resetWith(err error) { c.shut(err, true) }

// Pause stops the data events: the connection stops reading, so the
// kernel's receive buffer fills and TCP flow control slows the peer down.
// Bytes already read when Pause is called are delivered after Resume.
func (c *Conn) Pause() {
	c.mu.Lock()
	c.paused = true
	c.mu.Unlock()
}

// Resume restarts the data events after Pause.
func (c *Conn) Resume() {
	c.mu.Lock()
	was := c.paused
	c.paused = false
	c.mu.Unlock()
	if was {
		c.post(evWake)
	}
}

// Paused reports whether the connection is paused.
func (c *Conn) Paused() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paused
}

// SetTimeout sets the idle duration after which OnTimeout fires, and
// restarts the idle period. Zero turns the notification off.
func (c *Conn) SetTimeout(d time.Duration) {
	c.timeout.Store(int64(max(d, 0)))
	c.timeoutSet.Store(int64(monotime()))
	c.post(evWake)
}

// SetNoDelay turns Nagle's algorithm off (true, the default unless
// ConnConfig.Nagle is set) or on (false). It does nothing on a Unix socket.
// Once the connection is closing it returns an error wrapping
// net.ErrClosed, as SetKeepAlive and the other socket options do.
func (c *Conn) SetNoDelay(noDelay bool) error {
	if c.isClosing() {
		return c.opError("set", net.ErrClosed)
	}
	return c.drv.setNoDelay(noDelay)
}

// SetKeepAlive turns TCP keep-alive on or off. A positive period sets both
// the idle time before the first probe and the interval between probes. It
// does nothing on a Unix socket.
func (c *Conn) SetKeepAlive(enable bool, period time.Duration) error {
	if c.isClosing() {
		return c.opError("set", net.ErrClosed)
	}
	return c.drv.setKeepAlive(enable, period)
}

// Buffered returns the number of bytes queued and not yet handed to the
// kernel (Node's writableLength).
func (c *Conn) Buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bufferedLocked()
}

// BytesRead returns the number of bytes received.
func (c *Conn) BytesRead() int64 { return c.bytesRead.Load() }

// BytesWritten returns the number of bytes handed to the kernel. Bytes still
// queued are not counted; Buffered reports them. (Node's bytesWritten counts
// both.)
func (c *Conn) BytesWritten() int64 { return c.bytesWritten.Load() }

// LocalAddr returns the local address. It stays valid after close.
// Behind a proxy that sent a PROXY protocol header, it is the address the
// client connected to, as the header gives it.
func (c *Conn) LocalAddr() net.Addr {
	if a := c.edgeAddrs(); a != nil {
		return a.local
	}
	a, _ := c.drv.addrs()
	return a
}

// RemoteAddr returns the peer's address. It stays valid after close. Behind
// a proxy that sent a PROXY protocol header, it is the real client's
// address, as the header gives it.
func (c *Conn) RemoteAddr() net.Addr {
	if a := c.edgeAddrs(); a != nil {
		return a.remote
	}
	_, a := c.drv.addrs()
	return a
}

// Done returns a channel that is closed once the close event has been
// delivered and the connection's goroutines have finished their work.
func (c *Conn) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil { // made on demand: most connections are never asked
		if c.finished {
			return closedChan
		}
		c.done = make(chan struct{})
	}
	return c.done
}

// closedChan is Done's channel for a connection asked after it finished.
var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// Err returns the close error, as passed to OnClose, once Done is closed,
// and nil before.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.finished {
		return nil
	}
	return c.err
}

func (c *Conn) writableLocked() error {
	switch {
	case c.closing && c.endCause == errShutdownEnded:
		return c.opError("write", errShutdownClosed)
	case c.closing:
		return c.opError("write", net.ErrClosed)
	case c.ending:
		return c.endCause
	}
	return nil
}

// closeWith starts closing the connection with err as the close error,
// unless it is already closing. It is safe from any goroutine.
func (c *Conn) closeWith(err error) { c.shut(err, false) }

// fail is closeWith with an RST, for a failure that ends the connection
// from within tcpkit (a read or write that failed, a queue past
// MaxBuffered, a panic in a callback): bytes on their way in either
// direction are lost, and the peer must learn that it was cut off rather
// than see an orderly end.
func (c *Conn) fail(err error) { c.shut(err, true) }

// shut is closeWith, with an RST if reset is set.
func (c *Conn) shut(err error, reset bool) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.closeErr = err
	c.wq, c.spare = nil, nil
	if e := c.edge; e != nil && e.tls != nil {
		e.tls.dropLocked()
	}
	// Under c.mu, with closing: the event goroutine, which releases the
	// socket once it sees closing, must find the reset asked for.
	c.drv.close(reset)
	c.mu.Unlock()
	if h := shutHook.Load(); h != nil {
		(*h)(c) // a test's: the event goroutine may see closing now
	}
	c.post(evWake)
}

// shutHook, if set by a test, runs in shut once closing is published.
var shutHook atomic.Pointer[func(*Conn)]

// post hands events to the event goroutine and wakes it.
func (c *Conn) post(ev uint32) {
	c.events.Or(ev)
	c.drv.wake()
}

// touch records traffic, for the idle timers.
func (c *Conn) touch() { c.lastAct.Store(int64(monotime())) }

// epoch is the origin of the connections' clocks (lastAct and the like):
// one for the process, so that a connection keeps no clock of its own.
var epoch = time.Now()

// monotime returns the time since epoch, on the monotonic clock.
func monotime() time.Duration { return time.Since(epoch) }

func (c *Conn) opError(op string, err error) error {
	local, remote := c.drv.addrs()
	return &net.OpError{Op: op, Net: local.Network(), Source: local, Addr: remote, Err: err}
}
