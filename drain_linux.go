//go:build linux

package tcpkit

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// drainAccepts takes the connections already waiting in ln's accept queue,
// which closing ln would reset, and passes each to serve. It does nothing
// to a listener without a file descriptor.
//
// It leaves the listening socket itself alone: after a zero-downtime
// upgrade, the new process accepts from the very same socket. (A socket
// filter that dropped new SYNs would close the window between the last
// accept and the close, and stop the new process accepting too.)
func drainAccepts(ln net.Listener, serve func(net.Conn)) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	var fds []int
	raw.Control(func(s uintptr) {
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
}
