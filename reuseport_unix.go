//go:build unix

package tcpkit

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort is a net.ListenConfig.Control that sets SO_REUSEPORT.
func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt SO_REUSEPORT", serr)
}
