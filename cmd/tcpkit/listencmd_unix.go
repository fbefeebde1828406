//go:build unix

package main

import (
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// ownProcessGroup puts an --exec process in a process group of its own,
// so that a signal reaches the whole pipeline that /bin/sh -c started, and
// Ctrl-C on the terminal reaches tcpkit alone, which shuts down in order.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// terminate sends SIGTERM to cmd's process group.
func terminate(cmd *exec.Cmd) { syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }

// kill sends SIGKILL to cmd's process group.
func kill(cmd *exec.Cmd) { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

// catchSIGPIPE makes a write to a broken pipe on standard output fail with
// EPIPE, which tcpkit listen handles (it resets the clients whose data is
// lost, and exits 1), rather than kill the process with SIGPIPE, which
// would end the clients with no word of what was lost. It returns the
// function that restores the default. The --exec processes still get
// SIGPIPE: exec resets a caught signal, unlike an ignored one.
func catchSIGPIPE() (restore func()) {
	c := make(chan os.Signal, 1) // never read: a full channel drops the signal
	signal.Notify(c, syscall.SIGPIPE)
	return func() { signal.Stop(c) }
}
