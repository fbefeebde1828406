//go:build !unix

package main

import "os"

// upgradeSignal: upgrades need a Unix system (tableflip refuses others
// before any signal matters).
var upgradeSignal os.Signal = os.Interrupt
