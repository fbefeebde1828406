//go:build !unix

package tcpkit

// haveRawWrite is false where sockets are not file descriptors that
// write(2) takes: the goroutine engine writes through package net.
const haveRawWrite = false

func rawWrite(fd uintptr, p []byte) (int, error) { panic("tcpkit: rawWrite without haveRawWrite") }
