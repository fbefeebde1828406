package tcpkit

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpkit/tcpkit/internal/fault"
)

// goroutineDriver is the goroutine engine: each connection has an event
// goroutine of its own that blocks in Read, in Go's netpoller, and a writer
// goroutine while its write queue has bytes. It forgives callbacks that
// block: only their own connection waits.
type goroutineDriver struct {
	c   *Conn
	nc  net.Conn
	raw syscall.RawConn // nil if nc has no file descriptor of its own

	reading  atomic.Bool   // the event goroutine is in, or about to enter, a read
	wakeCh   chan struct{} // nudges an event goroutine that waits outside Read
	deadline time.Time     // the timer, as a read deadline; event goroutine only
	writers  sync.WaitGroup

	// The read buffer, taken from a pool only once the socket has data,
	// and given back once that data has been delivered: a connection
	// waiting for input holds none. readFn, rsize, rn and rerr are
	// raw.Read's function and its arguments and results, made once so that
	// a read allocates nothing.
	buf    *[]byte
	readFn func(fd uintptr) bool
	rsize  int
	rn     int
	rerr   error

	// The arguments and results of rawWrite's write(2) call, and the
	// function the netpoller calls with the socket, made once so that a
	// write allocates nothing. The direct write (under c.mu, with no
	// writer) and the writer goroutine never write at once, so one set
	// serves both.
	writeFn func(fd uintptr) bool
	wp      []byte
	wn      int
	werr    error
	wwait   bool
}

// newGoroutineConn makes a Conn on nc for the goroutine engine and sets
// its socket options; go c.drv.(*goroutineDriver).serve(h) starts it.
func newGoroutineConn(nc net.Conn, cfg *ConnConfig, srv *Server, log *slog.Logger) *Conn {
	d := &goroutineDriver{nc: nc, wakeCh: make(chan struct{}, 1)}
	if sc, ok := nc.(syscall.Conn); ok && haveRawIO {
		if raw, err := sc.SyscallConn(); err == nil {
			d.raw = raw
			d.writeFn = d.writeSyscall
			d.readFn = d.readSyscall
		}
	}
	c := newConn(d, cfg, srv, log)
	d.c = c
	return c
}

// serve runs the connection's event goroutine: the handler, then the
// event rules fed with reads, until the connection closes; then the close
// event. Every callback of the connection runs here.
func (d *goroutineDriver) serve(h Handler) {
	c := d.c
	defer c.finish()
	defer c.recoverPanic()
	c.open(h)
	defer d.releaseBuf()
	size := min(initialReadBuffer, c.cfg.ReadBufferSize) // doubles while reads fill it
	for {
		switch c.step() {
		case actClosed:
			return
		case actWait:
			if d.wait() {
				c.onTimer()
			}
			continue
		case actWatch:
			if d.raw == nil {
				if d.wait() {
					c.onTimer()
				}
				continue
			}
			d.reading.Store(true)
			if c.events.Load() != 0 {
				d.reading.Store(false)
				continue
			}
			err := d.watch()
			d.reading.Store(false)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.onTimer()
				continue
			}
			if err != nil {
				c.onRead(nil, err)
			}
			continue
		}
		// actRead: what was read before has been delivered, so d.buf may
		// be read into again; it goes back to its pool when the socket
		// has nothing more.
		d.reading.Store(true)
		if c.events.Load() != 0 {
			d.reading.Store(false)
			continue
		}
		n, err := d.read(size)
		d.reading.Store(false)
		if n == size && size < c.cfg.ReadBufferSize {
			size = min(2*size, c.cfg.ReadBufferSize)
		}
		var p []byte
		if n > 0 {
			p = (*d.buf)[:n]
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The timer, or a wake-up that set the deadline in the past:
			// either way the timers are looked at and the deadline reset.
			c.onRead(p, nil)
			c.onTimer()
			continue
		}
		c.onRead(p, err)
	}
}

// read reads up to size bytes into d.buf, which it takes from a pool once
// the socket has data, and returns io.EOF at the peer's end.
func (d *goroutineDriver) read(size int) (int, error) {
	if d.raw == nil {
		d.takeBuf(size)
		return d.nc.Read(*d.buf)
	}
	d.rsize, d.rn, d.rerr = size, 0, nil
	err := d.raw.Read(d.readFn)
	n, errno := d.rn, d.rerr
	d.rerr = nil
	switch {
	case err != nil: // a deadline, or the socket closed under the read
		return 0, d.c.opError("read", err)
	case errno != nil:
		return 0, d.c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, d.endOrReset()
	}
	return n, nil
}

// endOrReset returns what a read of 0 bytes means: io.EOF, or the reset
// that ended the connection, whose error a Write or End on another
// goroutine took first (a read then returns 0 too).
func (d *goroutineDriver) endOrReset() error {
	var found error
	d.raw.Control(func(fd uintptr) { found = resetAfterEnd(int(fd)) })
	if err := d.c.peerReset(found); err != nil {
		return err
	}
	return io.EOF
}

// readSyscall is d.readFn: the function the netpoller calls with the
// socket for read. It returns false to wait for the socket to become
// readable, having given the buffer back.
func (d *goroutineDriver) readSyscall(fd uintptr) bool {
	d.takeBuf(d.rsize)
	for {
		var n int
		var err error
		if f, ok := fault.At(fault.Read, int(fd)); ok && f.Errno != 0 {
			err = f.Errno
		} else if ok && f.Limit > 0 && f.Limit < len(*d.buf) {
			n, err = rawRead(fd, (*d.buf)[:f.Limit])
		} else {
			n, err = rawRead(fd, *d.buf)
		}
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			d.releaseBuf()
			return false
		}
		d.rn, d.rerr = max(n, 0), err
		if d.rn == 0 {
			d.releaseBuf()
		}
		return true
	}
}

// watch waits, once the peer has ended, for the socket to report an error
// (a reset), in the netpoller, until a wake-up or the timer interrupts it
// (os.ErrDeadlineExceeded) or the socket closes.
func (d *goroutineDriver) watch() error {
	var serr error
	err := d.raw.Read(func(fd uintptr) bool {
		serr = resetAfterEnd(int(fd))
		switch {
		case serr != nil && d.c.sentFIN():
			serr = nil // closed by our own FIN, acknowledged: step closes it cleanly
			return true
		case serr != nil && !d.c.resetIsNews():
			serr = nil // a reset that loses nothing: wait on
		}
		return serr != nil // else wait for the socket's next event
	})
	switch {
	case err != nil:
		return d.c.opError("read", err)
	case serr != nil:
		return d.c.opError("read", os.NewSyscallError("read", serr))
	}
	return nil
}

// takeBuf makes d.buf a buffer of size bytes: the one it holds, if that
// is the size, or one from a pool.
func (d *goroutineDriver) takeBuf(size int) {
	if d.buf != nil && len(*d.buf) == size {
		return
	}
	d.releaseBuf()
	d.buf = getReadBuf(size)
}

// releaseBuf gives the read buffer back to its pool.
func (d *goroutineDriver) releaseBuf() {
	if d.buf != nil {
		putReadBuf(d.buf)
		d.buf = nil
	}
}

// wait blocks until something is posted or the timer's deadline passes,
// and reports the latter.
func (d *goroutineDriver) wait() bool {
	if d.deadline.IsZero() {
		<-d.wakeCh
		return false
	}
	t := time.NewTimer(time.Until(d.deadline))
	defer t.Stop()
	select {
	case <-d.wakeCh:
		return false
	case <-t.C:
		return true
	}
}

func (d *goroutineDriver) wake() {
	if d.reading.Load() {
		d.nc.SetReadDeadline(aLongTimeAgo)
	}
	select {
	case d.wakeCh <- struct{}{}:
	default:
	}
}

func (d *goroutineDriver) setTimer(deadline time.Time) {
	d.deadline = deadline
	d.nc.SetReadDeadline(deadline)
}

func (d *goroutineDriver) write(p []byte) (int, error) {
	if d.raw == nil {
		return 0, nil // the writer goroutine writes, with nc.Write
	}
	return d.rawWrite(p, false)
}

func (d *goroutineDriver) startFlush() {
	d.writers.Add(1)
	go func() {
		defer d.writers.Done()
		d.c.writeLoop(d.blockingWrite)
	}()
}

// blockingWrite writes some of p, waiting in the netpoller while the
// socket buffer is full.
func (d *goroutineDriver) blockingWrite(p []byte) (int, error) {
	if d.raw == nil {
		return d.nc.Write(p)
	}
	// With a small SO_SNDBUF, Linux serves one large write(2) slowly, a
	// little at a time as acknowledgements come in: hand it at most a send
	// buffer's worth per call instead.
	if limit := d.c.cfg.SendBuffer; limit > 0 && len(p) > limit {
		p = p[:limit]
	}
	return d.rawWrite(p, true)
}

// rawWrite calls write(2) on the socket, again after EINTR. If wait is set,
// it also waits in the netpoller while the socket buffer is full; if not, a
// full buffer returns 0, nil.
func (d *goroutineDriver) rawWrite(p []byte, wait bool) (int, error) {
	d.wp, d.wwait = p, wait
	err := d.raw.Write(d.writeFn)
	n, errno := d.wn, d.werr
	d.wp, d.wn, d.werr = nil, 0, nil
	switch {
	case err != nil:
		return 0, d.c.opError("write", err)
	case errno == syscall.EAGAIN:
		return 0, nil
	case errno != nil:
		return 0, d.c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// writeSyscall is d.writeFn: the function the netpoller calls with the
// socket for rawWrite. It returns false to wait for the socket to become
// writable.
func (d *goroutineDriver) writeSyscall(fd uintptr) bool {
	for {
		var n int
		var err error
		if f, ok := fault.At(fault.Write, int(fd)); ok && f.Errno != 0 {
			err = f.Errno
		} else if ok && f.Limit > 0 && f.Limit < len(d.wp) {
			n, err = rawWrite(fd, d.wp[:f.Limit])
		} else {
			n, err = rawWrite(fd, d.wp)
		}
		if err != syscall.EINTR {
			d.wn, d.werr = max(n, 0), err
			return !d.wwait || err != syscall.EAGAIN
		}
	}
}

func (d *goroutineDriver) closeWrite() error {
	cw, ok := d.nc.(interface{ CloseWrite() error })
	if !ok {
		return nil
	}
	if f, ok := fault.At(fault.Shutdown, -1); ok && f.Errno != 0 {
		return d.c.opError("shutdown", os.NewSyscallError("shutdown", f.Errno))
	}
	return cw.CloseWrite()
}

func (d *goroutineDriver) close(reset bool) error {
	if tc, ok := d.nc.(*net.TCPConn); ok && reset {
		tc.SetLinger(0)
	}
	return d.nc.Close()
}

func (d *goroutineDriver) addrs() (local, remote net.Addr) {
	return d.nc.LocalAddr(), d.nc.RemoteAddr()
}

func (d *goroutineDriver) quiesce() { d.writers.Wait() }

func (d *goroutineDriver) unread() int {
	n := 0
	if d.raw != nil {
		d.raw.Control(func(fd uintptr) { n = unreadBytes(fd) })
	}
	return n
}

func (d *goroutineDriver) soError() error {
	var err error
	if d.raw != nil {
		d.raw.Control(func(fd uintptr) { err = soError(int(fd)) })
	}
	return err
}

func (d *goroutineDriver) control(f func(fd uintptr)) error {
	if d.raw == nil {
		return errors.New("tcpkit: the connection has no file descriptor")
	}
	return d.raw.Control(f)
}

func (d *goroutineDriver) setNoDelay(noDelay bool) error {
	if tc, ok := d.nc.(*net.TCPConn); ok {
		return tc.SetNoDelay(noDelay)
	}
	return nil
}

func (d *goroutineDriver) setKeepAlive(enable bool, period time.Duration) error {
	tc, ok := d.nc.(*net.TCPConn)
	switch {
	case !ok:
		return nil
	case !enable || period <= 0:
		return tc.SetKeepAlive(enable)
	}
	return tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: period, Interval: period})
}

func (d *goroutineDriver) setBuffers(send, receive int) error {
	b, ok := d.nc.(interface {
		SetWriteBuffer(int) error
		SetReadBuffer(int) error
	})
	if !ok {
		return nil
	}
	var err error
	if send > 0 {
		err = b.SetWriteBuffer(send)
	}
	if receive > 0 {
		err = errors.Join(err, b.SetReadBuffer(receive))
	}
	return err
}

// aLongTimeAgo is a deadline in the past, used to interrupt a blocked Read.
var aLongTimeAgo = time.Unix(1, 0)
