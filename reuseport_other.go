//go:build !unix

package tcpkit

import (
	"errors"
	"syscall"
)

func reusePort(network, address string, c syscall.RawConn) error {
	return errors.New("tcpkit: ListenConfig.ReusePort: SO_REUSEPORT is not available on this system")
}
