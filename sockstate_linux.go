//go:build linux

package tcpkit

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpClose is the kernel's TCP_CLOSE state: no connection any more.
const tcpClose = 7

// resetAfterEnd reports, for a TCP socket whose peer has ended (sent FIN),
// whether the connection has since been reset: its state is CLOSE. A read
// cannot tell (it returns 0 after the FIN, whatever follows), and SO_ERROR
// mixes in soft errors (a retransmission timeout, an ICMP message) that do
// not end a connection. The caller makes sure the state is not CLOSE for
// the ordinary reason, our own FIN acknowledged. nil for a Unix socket.
func resetAfterEnd(fd int) error {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil || info.State != tcpClose {
		return nil
	}
	soError(fd) // clears what the reset left there
	return syscall.ECONNRESET
}
