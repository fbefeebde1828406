package epoll

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tcpkit/tcpkit/internal/fault"
	"golang.org/x/sys/unix"
)

// Readiness bits, as epoll reports them.
const (
	Readable = unix.EPOLLIN
	Writable = unix.EPOLLOUT
	PeerEnd  = unix.EPOLLRDHUP // the peer half-closed: a read will see EOF once drained
	Hangup   = unix.EPOLLHUP   // both directions are shut
	Error    = unix.EPOLLERR   // an error is pending; a read or write reports it
	Urgent   = unix.EPOLLPRI   // TCP urgent data (MSG_OOB) has arrived: a read stops short at its mark
)

// wakeToken is the token of the Poller's own eventfd.
const wakeToken = ^uint64(0)

// A Poller waits for readiness on the descriptors registered with it.
// Wait must be called from one goroutine at a time; Add, Delete and Wake
// may be called from any, before and after Close: once closed, they
// touch no descriptor (the numbers may belong to others by then) and
// report ErrClosed, but for Wake, which does nothing.
type Poller struct {
	epfd    int
	wakefd  int
	pending atomic.Bool  // a wake-up is written and not yet consumed
	writes  atomic.Int64 // eventfd writes, for the tests
	events  []unix.EpollEvent

	// mu is held for reading across each use of epfd or wakefd by Add,
	// Delete and Wake, and for writing by Close, which so never closes a
	// descriptor under a call still using it.
	mu     sync.RWMutex
	closed bool
}

// ErrClosed is what Add and Delete return once the Poller is closed.
var ErrClosed = errors.New("epoll: poller closed")

// New returns a Poller that reports up to batch descriptors per Wait.
func New(batch int) (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	p := &Poller{epfd: epfd, wakefd: wakefd, events: make([]unix.EpollEvent, max(batch, 1))}
	if err := p.ctl(unix.EPOLL_CTL_ADD, wakefd, unix.EPOLLIN, wakeToken); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Add registers fd, edge-triggered, for reading, writing, the peer's
// half-close and urgent data; Wait reports its readiness with token.
func (p *Poller) Add(fd int, token uint64) error {
	if token == wakeToken {
		return errors.New("epoll: the token ^0 is the Poller's own")
	}
	return p.ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP|unix.EPOLLPRI|unix.EPOLLET, token)
}

// AddReader registers fd, a listening socket, for readability alone
// (edge-triggered), under token.
func (p *Poller) AddReader(fd int, token uint64) error {
	if token == wakeToken {
		return errors.New("epoll: the token ^0 is the Poller's own")
	}
	return p.ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLET, token)
}

// Delete unregisters fd. Closing fd unregisters it too, once no other
// descriptor refers to the same socket.
func (p *Poller) Delete(fd int) error {
	return p.ctl(unix.EPOLL_CTL_DEL, fd, 0, 0)
}

func (p *Poller) ctl(op, fd int, events uint32, token uint64) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(uint32(token)), Pad: int32(uint32(token >> 32))}
	err := error(nil)
	if f, ok := fault.At(fault.EpollCtl, fd); ok && f.Errno != 0 {
		err = f.Errno
	} else {
		err = unix.EpollCtl(p.epfd, op, fd, &ev)
	}
	if err != nil {
		return os.NewSyscallError(fmt.Sprintf("epoll_ctl(%d)", op), err)
	}
	return nil
}

// Wake makes the current or next Wait return, woken. Wake-ups that come
// before that Wait collapse into one: only the first writes the eventfd.
// After Close it does nothing.
func (p *Poller) Wake() error {
	if !p.pending.CompareAndSwap(false, true) {
		return nil
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil
	}
	var one = [8]byte{1}
	p.writes.Add(1)
	for {
		_, err := unix.Write(p.wakefd, one[:])
		switch err {
		case unix.EINTR:
			continue
		case nil, unix.EAGAIN: // EAGAIN: the counter is full, so a wake-up is pending anyway
			return nil
		}
		p.pending.Store(false)
		return os.NewSyscallError("write eventfd", err)
	}
}

// Wait waits for readiness, for at most timeout (a negative timeout waits
// for ever, zero does not wait), and calls ready for each ready descriptor
// with its token and readiness bits. It returns how many descriptors were
// ready, the wake-up included, and reports whether Wake was called since
// the last Wait that reported it.
func (p *Poller) Wait(timeout time.Duration, ready func(token uint64, events uint32)) (n int, woken bool, err error) {
	msec := -1
	if timeout >= 0 {
		msec = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	switch f, ok := fault.At(fault.EpollWait, p.epfd); {
	case ok && f.Errno != 0:
		err = f.Errno
	case msec == 0:
		n, err = p.poll()
	default:
		n, err = unix.EpollWait(p.epfd, p.events, msec)
	}
	if err != nil {
		if err == unix.EINTR {
			return 0, false, nil
		}
		return 0, false, os.NewSyscallError("epoll_wait", err)
	}
	for _, ev := range p.events[:n] {
		token := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
		if token == wakeToken {
			var buf [8]byte
			unix.Read(p.wakefd, buf[:]) // reset the counter; nonblocking
			p.pending.Store(false)
			woken = true
			continue
		}
		ready(token, ev.Events)
	}
	return n, woken, nil
}

// poll is epoll_wait with a zero timeout, made without telling the Go
// scheduler, which a call that cannot block does not need: a goroutine
// seen in a system call is what keeps the runtime's monitor thread
// waking every 20µs (see Wait).
func (p *Poller) poll() (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(p.epfd), uintptr(unsafe.Pointer(&p.events[0])), uintptr(len(p.events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// Close releases the epoll instance and the eventfd. Descriptors still
// registered are not closed.
func (p *Poller) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	return errors.Join(unix.Close(p.wakefd), unix.Close(p.epfd))
}
