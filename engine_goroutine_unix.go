//go:build unix

package tcpkit

import "syscall"

// haveRawIO reports whether the goroutine engine reads and writes with
// read(2) and write(2) on the socket itself, skipping package net's paths.
const haveRawIO = true

func rawRead(fd uintptr, p []byte) (int, error)  { return syscall.Read(int(fd), p) }
func rawWrite(fd uintptr, p []byte) (int, error) { return syscall.Write(int(fd), p) }

// soError returns and clears the pending error of socket fd (SO_ERROR),
// nil if there is none. A reset that comes after the peer's FIN leaves
// EPIPE there, the kernel's word for "the peer reset after ending"; it is
// reported as the reset it is, ECONNRESET.
func soError(fd int) error {
	v, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
	switch {
	case err != nil || v == 0:
		return nil
	case syscall.Errno(v) == syscall.EPIPE:
		return syscall.ECONNRESET
	}
	return syscall.Errno(v)
}
