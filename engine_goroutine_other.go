//go:build !unix

package tcpkit

// haveRawIO is false where sockets are not file descriptors that read(2)
// and write(2) take: the goroutine engine reads and writes through package
// net.
const haveRawIO = false

func rawRead(fd uintptr, p []byte) (int, error)  { panic("tcpkit: rawRead without haveRawIO") }
func rawWrite(fd uintptr, p []byte) (int, error) { panic("tcpkit: rawWrite without haveRawIO") }

// soError is not called without haveRawIO.
func soError(fd int) error { return nil }
