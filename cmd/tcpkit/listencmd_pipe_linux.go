package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// pipeUnread returns how many bytes the pipe that f is an end of holds,
// written and not yet read, or 0 if it cannot tell. TIOCINQ is Linux's
// name for FIONREAD, which pipes answer too.
func pipeUnread(f *os.File) int64 {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	var n int
	if rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }) != nil || err != nil {
		return 0
	}
	return int64(n)
}
