//go:build unix

package main

import (
	"os"
	"syscall"
)

// upgradeSignal starts a zero-downtime upgrade of tcpkit echo --upgrade.
var upgradeSignal os.Signal = syscall.SIGUSR2
