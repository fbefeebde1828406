//go:build unix

package main

import (
	"os/exec"
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
