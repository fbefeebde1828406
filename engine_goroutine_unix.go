//go:build unix

package tcpkit

import "syscall"

// haveRawIO reports whether the goroutine engine reads and writes with
// read(2) and write(2) on the socket itself, skipping package net's paths.
const haveRawIO = true

func rawRead(fd uintptr, p []byte) (int, error)  { return syscall.Read(int(fd), p) }
func rawWrite(fd uintptr, p []byte) (int, error) { return syscall.Write(int(fd), p) }
