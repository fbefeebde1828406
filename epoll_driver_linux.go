//go:build linux

package tcpkit

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tcpkit/tcpkit/internal/fault"
	"golang.org/x/sys/unix"
)

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
	gone        atomic.Bool // released: wake-ups are for nobody

	// fdRefs counts the calls on fd from other goroutines in progress
	// (socket options and the like), with fdClosed set once the socket is
	// to be closed: the last of them closes it, so that no call ever lands
	// on a descriptor number the process has given to another socket.
	fdRefs atomic.Uint32

	// The loop's own state of the connection.
	token        uint64
	registered   bool
	opened       bool
	released     bool
	scheduled    bool
	readable     bool // the socket may have input: read until EAGAIN
	peerEnd      bool
	urgent       bool // urgent data came: a short read is not the end of the input
	writable     bool
	slowReported bool
	timerPos     int           // 1 + the index of d in its loop's timer heap; 0 for none
	timerAt      time.Duration // the timer, as monotime counts it; 0 for none
}

// fdClosed marks fdRefs once the socket is to be closed.
const fdClosed = 1 << 31

// useFd reports whether fd may be used, and if so holds it open until
// doneFd: from any goroutine.
func (d *epollDriver) useFd() bool {
	for {
		n := d.fdRefs.Load()
		if n&fdClosed != 0 {
			return false
		}
		if d.fdRefs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// doneFd ends a use of fd begun by useFd, closing fd if it is the last
// use of a socket to be closed.
func (d *epollDriver) doneFd() {
	if d.fdRefs.Add(^uint32(0)) == fdClosed {
		unix.Close(d.fd)
	}
}

// closeFd closes fd, now or, if another goroutine is using it, when that
// use ends. Once only.
func (d *epollDriver) closeFd() error {
	if old := d.fdRefs.Or(fdClosed); old == 0 {
		return unix.Close(d.fd)
	}
	return nil
}

// stepOnce runs the event rules once, reading while the socket has input
// and the turn's budget lasts. It reports done false if a callback
// panicked, so that dispatch steps again (now to close the connection),
// and more if the budget ran out with work left.
func (d *epollDriver) stepOnce() (done, more bool) {
	c, l := d.c, d.l
	defer c.recoverPanic()
	if !d.registered {
		d.l.tokens++
		d.token = d.l.tokens
		if err := l.p.Add(d.fd, d.token); err != nil {
			c.fail(err)
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
		if !c.flushNow(d.flushWrite) {
			d.flushWanted.Store(true)
			if l.turnWritten < maxTurnWrite {
				d.writable = false // full: again when writable
			} else {
				more = true // the turn's share written: the rest next turn
			}
		}
	}
	for {
		switch c.step() {
		case actClosed:
			c.finish()
			l.release(d)
			return true, false
		case actWait:
			d.keepHeld()
			return true, more
		case actWatch:
			// The peer has ended. A reset after that is seen only in the
			// socket's state (a read returns 0 still), so look there when
			// the socket says something has happened.
			d.keepHeld()
			if !d.readable {
				return true, more
			}
			d.readable = false
			if err := c.peerReset(d.resetAfterEnd()); err != nil {
				c.onRead(nil, err)
			}
			continue
		}
		if !d.readable {
			return true, more
		}
		if l.turnReads >= maxTurnReads || l.turnRead >= len(l.buf) {
			return true, true // the turn's share read: the rest next turn
		}
		buf := l.buf[:min(len(l.buf), c.cfg.ReadBufferSize)]
		var n int
		var err error
		if f, ok := fault.At(fault.Read, d.fd); ok && f.Errno != 0 {
			err = f.Errno
		} else {
			if ok && f.Limit > 0 && f.Limit < len(buf) {
				buf = buf[:f.Limit] // a smaller read, not a claim that the socket is drained
			}
			n, err = loopRead(d.fd, buf)
		}
		l.turnReads++
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			d.readable, d.urgent = false, false
			return true, more
		case err != nil:
			c.onRead(nil, c.opError("read", os.NewSyscallError("read", err)))
		case n == 0:
			// An end, or a reset whose error a Write or End on another
			// goroutine took first (a read then returns 0 too): the
			// socket's state tells. readable stays set: the first actWatch
			// looks again, for a reset whose edge came with the FIN's.
			c.onRead(nil, d.endOrReset())
		default:
			l.turnRead += n
			if n < len(buf) && !d.peerEnd && !d.urgent {
				d.readable = false // drained: the next input brings a new edge
			}
			c.onRead(buf[:n], nil)
		}
	}
}

// keepHeld copies input held while paused out of the loop's buffer, which
// the next read reuses.
func (d *epollDriver) keepHeld() {
	if h := d.c.rs.held; len(h) > 0 && &h[0] == &d.l.buf[0] {
		d.c.rs.held = append([]byte(nil), h...)
	}
}

func (d *epollDriver) wake() {
	if !d.started.Load() || d.l.current.Load() == d || d.gone.Load() {
		return // not yet started, its dispatch looks again before it ends, or closed
	}
	if d.queued.CompareAndSwap(false, true) {
		l := d.l
		l.mu.Lock()
		if l.dead {
			l.mu.Unlock()
			go d.orphan()
			return
		}
		l.inbox = append(l.inbox, d)
		l.mu.Unlock()
		l.p.Wake()
	}
}

// orphan runs, on a goroutine of its own, a connection that reached its
// loop after the loop's last turn (the engine was closed as it was
// accepted or dialled): the Handler, then the close event, with
// errEngineClosed, and an RST for the peer. It waits for the loop to have
// exited, so that the connection is its alone.
func (d *epollDriver) orphan() {
	<-d.l.exited
	if d.gone.Load() {
		return // the loop's last turn closed it
	}
	c := d.c
	c.resetWith(errEngineClosed)
	func() {
		defer c.recoverPanic()
		if !d.opened {
			d.opened = true
			h := d.h
			d.h = nil
			c.open(h)
		}
	}()
	for c.step() != actClosed {
	}
	c.finish()
	d.l.release(d)
}

func (d *epollDriver) setTimer(deadline time.Time) {
	var at time.Duration // 0: none
	if !deadline.IsZero() {
		at = max(deadline.Sub(epoch), 1)
	}
	d.l.timers.set(d, at)
}

func (d *epollDriver) write(p []byte) (int, error) {
	for {
		var n int
		var err error
		if f, ok := fault.At(fault.Write, d.fd); ok && f.Errno != 0 {
			err = f.Errno
		} else if ok && f.Limit > 0 && f.Limit < len(p) {
			n, err = loopWrite(d.fd, p[:f.Limit])
		} else {
			n, err = loopWrite(d.fd, p)
		}
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

// flushWrite is write for the loop's flush of the queue, within the turn's
// budget: once the connection has written maxTurnWrite bytes this turn, it
// reports the socket full, and stepOnce carries the rest to the next turn.
func (d *epollDriver) flushWrite(p []byte) (int, error) {
	l := d.l
	left := maxTurnWrite - l.turnWritten
	if left <= 0 {
		return 0, nil
	}
	n, err := d.write(p[:min(len(p), left)])
	l.turnWritten += n
	return n, err
}

func (d *epollDriver) startFlush() {
	d.flushWanted.Store(true)
	d.wake()
}

func (d *epollDriver) closeWrite() error {
	err := error(nil)
	if f, ok := fault.At(fault.Shutdown, d.fd); ok && f.Errno != 0 {
		err = f.Errno
	} else {
		err = unix.Shutdown(d.fd, unix.SHUT_WR)
	}
	if err != nil {
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
		return d.closeFd() // never started: dropped, or the server closed
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

func (d *epollDriver) unread() int {
	if !d.useFd() {
		return 0
	}
	defer d.doneFd()
	return unreadBytes(uintptr(d.fd))
}

// soError returns and clears the socket's pending error (SO_ERROR), as
// an errno; nil if there is none.
func (d *epollDriver) soError() error {
	if !d.useFd() {
		return nil
	}
	defer d.doneFd()
	return soError(d.fd)
}

// endOrReset returns what a read of 0 bytes means: io.EOF, or the reset
// that ended the connection.
func (d *epollDriver) endOrReset() error {
	if err := d.c.peerReset(d.resetAfterEnd()); err != nil {
		return err
	}
	return io.EOF
}

// resetAfterEnd is resetAfterEnd on d's socket.
func (d *epollDriver) resetAfterEnd() error {
	if !d.useFd() {
		return nil
	}
	defer d.doneFd()
	return resetAfterEnd(d.fd)
}

func (d *epollDriver) control(f func(fd uintptr)) error {
	if !d.useFd() {
		return net.ErrClosed
	}
	defer d.doneFd()
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
	if !d.useFd() {
		return net.ErrClosed
	}
	defer d.doneFd()
	return os.NewSyscallError("setsockopt", unix.SetsockoptInt(d.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, v))
}

func (d *epollDriver) setKeepAlive(enable bool, period time.Duration) error {
	if !d.tcp || !enable && d.keepAliveOff.Load() {
		return nil
	}
	if !d.useFd() {
		return net.ErrClosed
	}
	defer d.doneFd()
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
	if send <= 0 && receive <= 0 {
		return nil
	}
	if !d.useFd() {
		return net.ErrClosed
	}
	defer d.doneFd()
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
