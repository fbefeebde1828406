//go:build unix

package activation

import (
	"errors"

	"golang.org/x/sys/unix"
)

// prepare marks fd close-on-exec and checks that it is a listening socket.
func prepare(fd int) error {
	unix.CloseOnExec(fd)
	listening, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	switch {
	case errors.Is(err, unix.ENOTSOCK):
		return errors.New("not a socket")
	case err != nil:
		return err
	case listening == 0:
		return errors.New("a socket that is not listening (Accept=yes sockets are not supported)")
	}
	return nil
}
