package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloudflare/tableflip"
)

// upgradeListenersEnv names, for a process started by an upgrade, the
// listeners it inherits: [[network, address], ...] as JSON. The address of
// a bound listener, not the ADDR argument: port 0, or localhost's two
// addresses, would not say which sockets they are.
const upgradeListenersEnv = "TCPKIT_UPGRADE_LISTENERS"

// upgrades runs tcpkit echo's zero-downtime upgrades, on cloudflare's
// tableflip: on SIGUSR2 the process starts its binary again (the file at
// the same path, typically just replaced) with the listening sockets
// inherited, and once the new process serves, the old one stops accepting
// and drains its connections. A failed start leaves the old one serving.
type upgrades struct {
	u       *tableflip.Upgrader
	log     *slog.Logger
	enabled bool           // SIGUSR2 upgrades; without, only the PID file
	usr2    chan os.Signal // SIGUSR2, once ready with upgrades enabled
	done    chan struct{}  // closed by stop
	stopped chan struct{}  // closed when the SIGUSR2 goroutine returns

	unixPaths  []string    // this process's Unix socket files
	handedOver atomic.Bool // a new process serves them now
}

// startUpgrades returns the upgrades of tcpkit echo, or nil if it has
// neither --upgrade nor --pid-file.
func startUpgrades(enabled bool, pidFile string, timeout time.Duration, log *slog.Logger) (*upgrades, error) {
	if !enabled && pidFile == "" {
		return nil, nil
	}
	u, err := tableflip.New(tableflip.Options{PIDFile: pidFile, UpgradeTimeout: timeout})
	if err != nil {
		return nil, failf("--upgrade: %v", err)
	}
	return &upgrades{u: u, log: log, enabled: enabled, done: make(chan struct{}), stopped: make(chan struct{})}, nil
}

// listeners returns the listeners inherited from the process this one
// replaces, or, in the first process, those open returns, made
// inheritable.
func (up *upgrades) listeners(open func() ([]net.Listener, error)) ([]net.Listener, error) {
	if up.u.HasParent() {
		var keys [][2]string
		if err := json.Unmarshal([]byte(os.Getenv(upgradeListenersEnv)), &keys); err != nil || len(keys) == 0 {
			return nil, failf("upgrade: the old process named no listeners (%s=%q)", upgradeListenersEnv, os.Getenv(upgradeListenersEnv))
		}
		var lns []net.Listener
		for _, k := range keys {
			ln, err := up.u.Listener(k[0], k[1])
			if err == nil && ln == nil {
				err = fmt.Errorf("not passed on")
			}
			if err != nil {
				for _, l := range lns {
					l.Close()
				}
				return nil, failf("upgrade: inheriting %s %s: %v", k[0], k[1], err)
			}
			lns = append(lns, ln)
		}
		up.log.Info("took over the listeners of the old process", "listeners", len(lns))
		up.noteUnix(keys)
		return lns, nil
	}
	lns, err := open()
	if err != nil {
		return nil, err
	}
	keys := make([][2]string, len(lns))
	for i, ln := range lns {
		keys[i] = [2]string{ln.Addr().Network(), ln.Addr().String()}
		tl, ok := ln.(tableflip.Listener)
		if !ok {
			return nil, failf("upgrade: %T cannot be passed to another process", ln)
		}
		if err := up.u.AddListener(keys[i][0], keys[i][1], tl); err != nil {
			return nil, failf("upgrade: %v", err)
		}
	}
	b, _ := json.Marshal(keys)
	os.Setenv(upgradeListenersEnv, string(b)) // for the next process
	up.noteUnix(keys)
	return lns, nil
}

// noteUnix keeps the paths of the Unix sockets among keys, which stop
// removes unless a new process has taken them over.
func (up *upgrades) noteUnix(keys [][2]string) {
	for _, k := range keys {
		if k[0] == "unix" && !strings.HasPrefix(k[1], "@") {
			up.unixPaths = append(up.unixPaths, k[1])
		}
	}
}

// ready says this process serves: it writes the PID file, tells the old
// process, if any, to stop, and from now on upgrades on SIGUSR2.
func (up *upgrades) ready() error {
	if err := up.u.Ready(); err != nil {
		return failf("upgrade: %v", err)
	}
	if !up.enabled {
		return nil
	}
	up.usr2 = make(chan os.Signal, 1)
	signal.Notify(up.usr2, upgradeSignal)
	go func() {
		defer close(up.stopped)
		for {
			select {
			case <-up.usr2:
				up.log.Info("SIGUSR2: starting the new process")
				if err := up.u.Upgrade(); err != nil {
					up.log.Error("upgrade failed; this process goes on serving", "err", err.Error())
					continue
				}
				up.handedOver.Store(true)
				up.log.Info("the new process is serving; this one stops accepting and drains its connections")
				return
			case <-up.done:
				return
			}
		}
	}()
	return nil
}

// exited is closed once a new process has taken over; nil for no
// upgrades, which blocks a select case for ever.
func (up *upgrades) exited() <-chan struct{} {
	if up == nil {
		return nil
	}
	return up.u.Exit()
}

// stop ends the upgrades: a process that was not replaced removes its
// Unix socket files, as a plain one does.
func (up *upgrades) stop() {
	if up == nil {
		return
	}
	close(up.done)
	if up.usr2 != nil {
		signal.Stop(up.usr2)
		<-up.stopped
	}
	up.u.Stop()
	// tableflip removes them too, but on a goroutine of its own, which
	// the process's exit may beat.
	if !up.handedOver.Load() {
		for _, p := range up.unixPaths {
			if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
				os.Remove(p)
			}
		}
	}
}
