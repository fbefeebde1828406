//go:build linux

package tcpkit

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// dropAll is a socket filter that drops every packet: on a listening TCP
// socket, every SYN and every handshake's last ACK, so that no new
// connection joins the accept queue while it is drained.
var dropAll = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}

// drainAccepts takes the connections already waiting in ln's accept queue,
// which closing ln would reset, and passes each to serve. A TCP listener
// first stops completing handshakes (a socket filter that drops all): a
// client that is still connecting then sees its connection refused when
// the listener closes, which a load balancer retries elsewhere, rather
// than a connection that succeeded and was then reset. It does nothing to
// a listener without a file descriptor.
//
// It reports whether the filter is on (not for Unix sockets; not on a
// kernel that refuses it, where only the drain's speed narrows the window
// between the last accept and the close).
func drainAccepts(ln net.Listener, serve func(net.Conn)) (filtered bool) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var fds []int
	raw.Control(func(s uintptr) {
		prog := unix.SockFprog{Len: uint16(len(dropAll)), Filter: &dropAll[0]}
		filtered = unix.SetsockoptSockFprog(int(s), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog) == nil
		for {
			fd, _, err := unix.Accept4(int(s), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if err == unix.EINTR || err == unix.ECONNABORTED {
				continue
			}
			if err != nil {
				return // EAGAIN: the queue is empty
			}
			fds = append(fds, fd)
		}
	})
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "")
		nc, err := net.FileConn(f)
		f.Close()
		if err == nil {
			serve(nc)
		}
	}
	return filtered
}
