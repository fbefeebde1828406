//go:build unix

package tcpkit

import "syscall"

// haveRawWrite reports whether the goroutine engine writes with write(2)
// on the socket itself, skipping package net's write path.
const haveRawWrite = true

func rawWrite(fd uintptr, p []byte) (int, error) { return syscall.Write(int(fd), p) }
