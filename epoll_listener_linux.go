//go:build linux

package tcpkit

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/tcpkit/tcpkit/internal/fault"
	"golang.org/x/sys/unix"
)

// listenerToken marks the epoll tokens of listeners, which the loops tell
// apart from connections' (numbered from 1) and the wake-up's (^0).
const listenerToken = 1 << 62

// An epollListener accepts from a *net.TCPListener or *net.UnixListener
// with accept4 on its socket, and hands the new socket to the epoll engine
// as it is. Go's net would make a netFD of it, register it with its own
// poller and set its options, all to be undone when the engine takes the
// socket over. It waits for connections on one of the engine's loops,
// where the listening socket is registered for readability, so the Serve
// goroutine that calls Accept blocks on a channel.
type epollListener struct {
	net.Listener // Addr, and Close (which unlinks a Unix socket's file)
	e            *EpollEngine
	token        uint64
	tcp          bool
	local        net.Addr // every accepted socket's, unless bound to a wildcard address

	ready  chan struct{} // the loop saw the socket readable
	closed chan struct{}

	// accept4 runs inside raw.Control, which holds net's reference to the
	// descriptor, so that a listener closed by its owner directly is never
	// accepted from by number. mu guards the call's results.
	raw      syscall.RawConn
	acceptFn func(fd uintptr) // l.acceptOn, made once: Control allocates nothing
	mu       sync.Mutex
	gotFd    int
	gotErr   error
	rsa      unix.RawSockaddrAny
	recheck  *time.Timer // while waiting: a listener closed directly sends no event
}

// recheckEvery is how often Accept looks again while it waits, in case its
// listener was closed by its owner (not through Close) and so left the
// loop's epoll instance without a word.
const recheckEvery = time.Second

// listen wraps ln, and registers its socket with one of e's loops.
func (e *EpollEngine) listen(ln net.Listener, sc syscall.Conn) (*epollListener, error) {
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	l := &epollListener{Listener: ln, e: e, raw: raw, ready: make(chan struct{}, 1), closed: make(chan struct{})}
	l.acceptFn = l.acceptOn
	l.recheck = time.NewTimer(recheckEvery)
	l.recheck.Stop()
	switch a := ln.Addr().(type) {
	case *net.TCPAddr:
		l.tcp = true
		if !a.IP.IsUnspecified() {
			l.local = a
		}
	case *net.UnixAddr:
		l.local = a
	}
	e.lnMu.Lock()
	e.lnSeq++
	l.token = listenerToken | e.lnSeq
	if e.lns == nil {
		e.lns = make(map[uint64]*epollListener)
	}
	e.lns[l.token] = l
	e.lnMu.Unlock()
	loop := e.loops[int(e.next.Add(1))%len(e.loops)]
	var aerr error
	if err := raw.Control(func(fd uintptr) { aerr = loop.p.AddReader(int(fd), l.token) }); err != nil || aerr != nil {
		e.forget(l.token)
		return nil, errors.Join(err, aerr)
	}
	return l, nil
}

// listenerReady is a loop's report that the listener of token is readable.
func (e *EpollEngine) listenerReady(token uint64) {
	e.lnMu.Lock()
	l := e.lns[token]
	e.lnMu.Unlock()
	if l != nil {
		select {
		case l.ready <- struct{}{}:
		default: // a report is pending already
		}
	}
}

func (e *EpollEngine) forget(token uint64) {
	e.lnMu.Lock()
	delete(e.lns, token)
	e.lnMu.Unlock()
}

// Accept returns an *acceptedSocket, or an error shaped as Go's net shapes
// it: a *net.OpError wrapping the *os.SyscallError of accept4, or
// net.ErrClosed once the listener is closed.
func (l *epollListener) Accept() (net.Conn, error) {
	for {
		a, err := l.accept()
		if err == unix.EAGAIN {
			l.recheck.Reset(recheckEvery)
			select {
			case <-l.ready:
				continue
			case <-l.recheck.C:
				continue
			case <-l.closed:
				err = net.ErrClosed
			case <-l.e.closed:
				err = errEngineClosed // no loop is left to say when to accept
			}
		}
		if err != nil {
			return nil, &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: err}
		}
		return a, nil
	}
}

// accept makes one accept4 call; unix.EAGAIN says to wait for readiness.
func (l *epollListener) accept() (*acceptedSocket, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isClosed() {
		return nil, net.ErrClosed
	}
	if cerr := l.raw.Control(l.acceptFn); cerr != nil {
		if errors.Is(cerr, net.ErrClosed) {
			return nil, net.ErrClosed
		}
		return nil, cerr
	}
	fd, err := l.gotFd, l.gotErr
	switch err {
	case nil:
	case unix.EAGAIN:
		return nil, err
	default:
		return nil, os.NewSyscallError("accept4", err)
	}
	a := acceptedSockets.Get().(*acceptedSocket)
	*a = acceptedSocket{fd: fd, tcp: l.tcp}
	if err := a.setAddrs(l, &l.rsa); err != nil {
		unix.Close(fd)
		acceptedSockets.Put(a)
		return nil, err
	}
	return a, nil
}

// isClosed reports whether Close was called.
func (l *epollListener) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

// acceptOn accepts from the listening socket s, for accept's Control call.
func (l *epollListener) acceptOn(s uintptr) {
	if f, ok := fault.At(fault.Accept, int(s)); ok && f.Errno != 0 {
		l.gotFd, l.gotErr = -1, f.Errno
		return
	}
	l.gotFd, l.gotErr = accept4(int(s), &l.rsa)
}

// accept4 accepts from the non-blocking listening socket s into rsa. It
// retries on EINTR, and on ECONNABORTED (a connection reset while it
// waited in the backlog), as Go's net does; it cannot block, so it skips
// the scheduler's bookkeeping, as the loops' reads do.
func accept4(s int, rsa *unix.RawSockaddrAny) (int, error) {
	for {
		n := uint32(unix.SizeofSockaddrAny)
		fd, _, errno := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(s), uintptr(unsafe.Pointer(rsa)), uintptr(unsafe.Pointer(&n)),
			unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		if errno != unix.EINTR && errno != unix.ECONNABORTED {
			if errno != 0 {
				return -1, errno
			}
			return int(fd), nil
		}
	}
}

// Close stops Accept and closes the listener. The socket leaves the loop's
// epoll instance as it is closed.
func (l *epollListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.isClosed() {
		l.recheck.Stop()
		close(l.closed)
		l.e.forget(l.token)
	}
	return l.Listener.Close()
}

// SyscallConn returns the listening socket's raw connection, so that
// Server.Close can take what waits in its accept queue (drainAccepts)
// rather than let the close reset it.
func (l *epollListener) SyscallConn() (syscall.RawConn, error) { return l.raw, nil }

// An acceptedSocket is a socket fresh from epollListener.Accept, on its
// way to EpollEngine.newConn, which takes it over. It is a net.Conn only
// to pass through Server.Serve; it is never read or written as one.
type acceptedSocket struct {
	fd                int
	tcp               bool
	localAP, remoteAP netip.AddrPort // TCP
	local, remote     net.Addr       // Unix, or a listener's address shared by its TCP sockets
}

// acceptedSockets recycles acceptedSockets, so that accepting makes no
// garbage.
var acceptedSockets = sync.Pool{New: func() any { return new(acceptedSocket) }}

// setAddrs records the addresses of a socket accepted by l, its peer's
// from rsa.
func (a *acceptedSocket) setAddrs(l *epollListener, rsa *unix.RawSockaddrAny) error {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		a.remoteAP = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		ip := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.Scope_id)); err == nil {
				ip = ip.WithZone(ifi.Name)
			}
		}
		a.remoteAP = netip.AddrPortFrom(ip, ntohs(sa.Port))
	default:
		a.remote = &net.UnixAddr{Name: unixPath(rsa), Net: "unix"}
	}
	if !a.tcp {
		a.local = l.local
		return nil
	}
	if l.local != nil {
		a.localAP = l.local.(*net.TCPAddr).AddrPort()
		return nil
	}
	lsa, err := unix.Getsockname(a.fd) // a wildcard listener: which of the host's addresses
	if err != nil {
		return os.NewSyscallError("getsockname", err)
	}
	switch lsa := lsa.(type) {
	case *unix.SockaddrInet4:
		a.localAP = netip.AddrPortFrom(netip.AddrFrom4(lsa.Addr), uint16(lsa.Port))
	case *unix.SockaddrInet6:
		a.localAP = netip.AddrPortFrom(netip.AddrFrom16(lsa.Addr), uint16(lsa.Port))
	}
	return nil
}

// ntohs turns a port in network byte order, as sockaddrs hold it, into a
// number.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// unixPath returns the path of a Unix sockaddr, "" for an unnamed socket,
// as Go's net reports it.
func unixPath(rsa *unix.RawSockaddrAny) string {
	sa := (*unix.RawSockaddrUnix)(unsafe.Pointer(rsa))
	n := 0
	for n < len(sa.Path) && sa.Path[n] != 0 {
		n++
	}
	b := make([]byte, n)
	for i := range n {
		b[i] = byte(sa.Path[i])
	}
	return string(b)
}

var errNotAdopted = errors.New("tcpkit: a socket accepted for the epoll engine is read and written by the engine only")

func (a *acceptedSocket) Read([]byte) (int, error)         { return 0, errNotAdopted }
func (a *acceptedSocket) Write([]byte) (int, error)        { return 0, errNotAdopted }
func (a *acceptedSocket) Close() error                     { return unix.Close(a.fd) }
func (a *acceptedSocket) SetDeadline(time.Time) error      { return errNotAdopted }
func (a *acceptedSocket) SetReadDeadline(time.Time) error  { return errNotAdopted }
func (a *acceptedSocket) SetWriteDeadline(time.Time) error { return errNotAdopted }

func (a *acceptedSocket) LocalAddr() net.Addr {
	if a.local != nil {
		return a.local
	}
	return net.TCPAddrFromAddrPort(a.localAP)
}

func (a *acceptedSocket) RemoteAddr() net.Addr {
	if a.remote != nil {
		return a.remote
	}
	return net.TCPAddrFromAddrPort(a.remoteAP)
}
