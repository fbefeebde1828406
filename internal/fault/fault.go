// Package fault is a test seam at the system-call sites of tcpkit's
// engines: read, write, shutdown and accept on sockets, epoll_wait and
// epoll_ctl. A test sets an Injector, which each site asks before its
// call whether to fail it with an errno or to make it with fewer bytes;
// the engines must then do what they do when the kernel says the same.
// With no Injector set, as outside tests, a site costs one atomic load.
//
// The faults a site can be given are those the kernel can give it. In
// particular no site is made to return EAGAIN to a read while input is
// waiting, nor to a write while the socket has room: the kernel never
// does, and an edge-triggered engine rightly relies on that (it would
// wait for an edge that never comes). Short reads are made by asking for
// fewer bytes, as a smaller buffer would, not by claiming a read drained
// the socket.
package fault

import (
	"sync/atomic"
	"syscall"
)

// A Site is a kind of system call an engine makes.
type Site uint8

const (
	Read      Site = iota // read(2) from a connection's socket
	Write                 // write(2) to a connection's socket
	Shutdown              // shutdown(2) of a connection's sending side
	Accept                // accept4(2) on a listening socket, or a listener's Accept
	EpollWait             // epoll_wait(2)
	EpollCtl              // epoll_ctl(2)
)

func (s Site) String() string {
	switch s {
	case Read:
		return "read"
	case Write:
		return "write"
	case Shutdown:
		return "shutdown"
	case Accept:
		return "accept"
	case EpollWait:
		return "epoll_wait"
	case EpollCtl:
		return "epoll_ctl"
	}
	return "site?"
}

// A Fault is what a site does instead of its plain call.
type Fault struct {
	Errno syscall.Errno // fail the call with this error, making no call; 0 for none
	Limit int           // Read and Write: make the call with at most this many bytes; 0 for no limit
}

// An Injector chooses the fault for a call at site on descriptor fd (-1
// where there is none to tell); the zero Fault for none. It is called from
// the engines' goroutines, several at once.
type Injector func(site Site, fd int) Fault

var injector atomic.Pointer[Injector]

// Set makes f the Injector, or, with nil, turns injection off. Tests only.
func Set(f Injector) {
	if f == nil {
		injector.Store(nil)
		return
	}
	injector.Store(&f)
}

// At returns the fault for a call at site on fd, and whether there is one.
func At(site Site, fd int) (Fault, bool) {
	p := injector.Load()
	if p == nil {
		return Fault{}, false
	}
	f := (*p)(site, fd)
	return f, f != Fault{}
}
