//go:build !unix

package main

import (
	"os"
	"os/exec"
)

// ownProcessGroup does nothing where there are no process groups.
func ownProcessGroup(cmd *exec.Cmd) {}

// terminate asks cmd's process to stop.
func terminate(cmd *exec.Cmd) { cmd.Process.Signal(os.Interrupt) }

// kill kills cmd's process.
func kill(cmd *exec.Cmd) { cmd.Process.Kill() }

// catchSIGPIPE does nothing where there is no SIGPIPE.
func catchSIGPIPE() (restore func()) { return func() {} }
