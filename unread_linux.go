package tcpkit

import "golang.org/x/sys/unix"

// unreadBytes returns how many bytes the socket has received and not yet
// given to a read (SIOCINQ), or 0 if it cannot tell.
func unreadBytes(fd uintptr) int {
	n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	if err != nil {
		return 0
	}
	return n
}
