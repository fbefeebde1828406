//go:build !linux

package tcpkit

// resetAfterEnd reports, for a socket whose peer has ended, whether the
// connection has since been reset, as the socket's pending error says.
func resetAfterEnd(fd int) error { return soError(fd) }
