package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// upgradeHarness runs a copy of the tcpkit binary with --upgrade, as a
// child subreaper: each process an upgrade starts outlives its parent and
// becomes this test's child, so that its exit status can be read.
type upgradeHarness struct {
	t       *testing.T
	bin     string // the copy, which a test may replace
	pidFile string
	logFile string
	addr    string
}

func newUpgradeHarness(t *testing.T, args ...string) *upgradeHarness {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	dir := t.TempDir()
	h := &upgradeHarness{t: t, bin: filepath.Join(dir, "tcpkit"), pidFile: filepath.Join(dir, "tcpkit.pid"),
		logFile: filepath.Join(dir, "log")}
	copyFile(t, os.Args[0], h.bin)
	logf, err := os.Create(h.logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(h.bin, append([]string{"echo", "--upgrade", "--pid-file", h.pidFile}, args...)...)
	cmd.Env = append(os.Environ(), asMainEnv+"=1", "GORACE=atexit_sleep_ms=100")
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever generation is left is killed and reaped.
		if pid, err := h.pid(); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
			h.reap(pid)
		}
		syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		h.reap(cmd.Process.Pid)
	})
	deadline := time.Now().Add(waitLimit)
	for h.addr == "" {
		if m := regexp.MustCompile(`msg=listening .*addr=(\S+)`).FindStringSubmatch(h.log()); m != nil {
			h.addr = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no listening line within %v:\n%s", waitLimit, h.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.waitPID(0)
	return h
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil { // a running binary's file is replaced, not written
		t.Fatal(err)
	}
}

func (h *upgradeHarness) log() string {
	b, _ := os.ReadFile(h.logFile)
	return string(b)
}

func (h *upgradeHarness) pid() (int, error) {
	b, err := os.ReadFile(h.pidFile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// waitPID waits until the PID file names a process other than old, and
// returns it.
func (h *upgradeHarness) waitPID(old int) int {
	h.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		if pid, err := h.pid(); err == nil && pid != old {
			return pid
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the PID file still names %d after %v; log:\n%s", old, waitLimit, h.log())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reap waits, for at most waitLimit, for pid to exit and returns its exit
// status (-1 if it did not exit in time or was killed).
func (h *upgradeHarness) reap(pid int) int {
	done := make(chan int, 1)
	go func() {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil || !ws.Exited() {
			done <- -1
			return
		}
		done <- ws.ExitStatus()
	}()
	select {
	case code := <-done:
		return code
	case <-time.After(waitLimit):
		return -1
	}
}

// upgradeLoad is the traffic of the upgrade test: short connections at a
// steady rate, and long ones that exchange whole messages with pauses, in
// which the server may end them. Every failure is counted by kind.
type upgradeLoad struct {
	addr          string
	stop          chan struct{}
	wg            sync.WaitGroup
	short, long   atomic.Int64 // exchanges that succeeded
	ended         atomic.Int64 // long connections the server ended cleanly
	mu            sync.Mutex
	failures      map[string]int
	firstFailures []string
}

func (l *upgradeLoad) fail(kind string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures[kind]++
	if len(l.firstFailures) < 10 {
		l.firstFailures = append(l.firstFailures, fmt.Sprintf("%s: %v", kind, err))
	}
}

func kindOf(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		return "reset"
	}
	return "other"
}

func (l *upgradeLoad) shortClient() {
	defer l.wg.Done()
	tick := time.NewTicker(4 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		c, err := net.DialTimeout("tcp", l.addr, 5*time.Second)
		if err != nil {
			l.fail(kindOf(err), err)
			continue
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := make([]byte, 64)
		rand.Read(msg)
		c.Write(msg)
		got := make([]byte, len("hello\r\n")+len(msg))
		_, err = io.ReadFull(c, got)
		c.Close()
		switch {
		case err != nil:
			l.fail(kindOf(err), err)
		case !bytes.Equal(got[7:], msg):
			l.fail("corrupt", fmt.Errorf("short exchange: got %q", got))
		default:
			l.short.Add(1)
		}
	}
}

func (l *upgradeLoad) longClient() {
	defer l.wg.Done()
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		c, err := net.DialTimeout("tcp", l.addr, 5*time.Second)
		if err != nil {
			l.fail(kindOf(err), err)
			continue
		}
		l.session(c)
		c.Close()
	}
}

// session exchanges 1 KiB messages on c, pausing 100ms between them, until
// the load stops or the server ends the connection in a pause.
func (l *upgradeLoad) session(c net.Conn) {
	greeting := make([]byte, 7)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, greeting); err != nil {
		l.fail(kindOf(err), err)
		return
	}
	for {
		msg := make([]byte, 1024)
		rand.Read(msg)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(msg); err != nil {
			l.fail(kindOf(err), err)
			return
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			l.fail(kindOf(err), err)
			return
		}
		if !bytes.Equal(got, msg) {
			l.fail("corrupt", errors.New("long exchange: the echo differs"))
			return
		}
		l.long.Add(1)
		// The pause: an end from the server may come now, whole. Like an
		// HTTP client about to reuse an idle connection, look once more
		// just before sending: a goroutine late back from its timeout
		// must not write after an end that has already come.
		for _, pause := range []time.Duration{100 * time.Millisecond, time.Millisecond} {
			c.SetReadDeadline(time.Now().Add(pause))
			n, err := c.Read(make([]byte, 1))
			var ne net.Error
			switch {
			case n > 0:
				l.fail("other", errors.New("long exchange: a byte nobody sent"))
				return
			case err == io.EOF:
				l.ended.Add(1)
				return
			case errors.As(err, &ne) && ne.Timeout():
			case err != nil:
				l.fail(kindOf(err), err)
				return
			}
		}
		select {
		case <-l.stop:
			return
		default:
		}
	}
}

// TestEchoUpgradesUnderLoad upgrades tcpkit echo five times in a row while
// clients come and go: no connection is refused or reset, and no byte is
// lost or changed. Long connections are ended, if at all, with a clean FIN
// between messages (--shutdown-idle is shorter than their pauses).
func TestEchoUpgradesUnderLoad(t *testing.T) {
	forEachEngine(t, echoUpgradesUnderLoad)
}

func echoUpgradesUnderLoad(t *testing.T, engine string) {
	h := newUpgradeHarness(t, "--engine", engine, "--shutdown-idle", "30ms", "--grace", "10s", "127.0.0.1:0")
	l := &upgradeLoad{addr: h.addr, stop: make(chan struct{}), failures: map[string]int{}}
	for range 2 {
		l.wg.Add(1)
		go l.shortClient()
	}
	for range 4 {
		l.wg.Add(1)
		go l.longClient()
	}
	time.Sleep(300 * time.Millisecond)
	pids := map[int]bool{}
	for i := range 5 {
		old, err := h.pid()
		if err != nil {
			t.Fatal(err)
		}
		pids[old] = true
		syscall.Kill(old, syscall.SIGUSR2)
		next := h.waitPID(old)
		if code := h.reap(old); code != 0 {
			t.Fatalf("upgrade %d: the old process %d exited with %d; log:\n%s", i+1, old, code, h.log())
		}
		pids[next] = true
		time.Sleep(200 * time.Millisecond)
	}
	close(l.stop)
	l.wg.Wait()
	last, _ := h.pid()
	syscall.Kill(last, syscall.SIGTERM)
	if code := h.reap(last); code != 0 {
		t.Errorf("the last process exited with %d", code)
	}
	t.Logf("6 processes, 5 upgrades: %d short exchanges, %d long messages, %d long connections ended cleanly by a draining server",
		l.short.Load(), l.long.Load(), l.ended.Load())
	if len(pids) != 6 {
		t.Errorf("%d distinct processes served, want 6", len(pids))
	}
	if len(l.failures) > 0 {
		t.Errorf("failures %v; first ones:\n%s\nlog:\n%s", l.failures, strings.Join(l.firstFailures, "\n"), h.log())
	}
	if l.short.Load() < 100 || l.long.Load() < 50 || l.ended.Load() == 0 {
		t.Errorf("too little traffic to mean anything: %d short, %d long, %d ended", l.short.Load(), l.long.Load(), l.ended.Load())
	}
}

// A new binary that fails to start leaves the old process serving, and
// the log says why; a good binary then upgrades.
func TestEchoUpgradeFailureKeepsServing(t *testing.T) {
	forEachEngine(t, echoUpgradeFailureKeepsServing)
}

func echoUpgradeFailureKeepsServing(t *testing.T, engine string) {
	h := newUpgradeHarness(t, "--engine", engine, "127.0.0.1:0")
	old, _ := h.pid()
	good, err := os.ReadFile(h.bin)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(h.bin+".tmp", []byte("#!/bin/sh\necho 'broken build' >&2\nexit 1\n"), 0o755)
	os.Rename(h.bin+".tmp", h.bin)
	syscall.Kill(old, syscall.SIGUSR2)
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(h.log(), "upgrade failed; this process goes on serving") {
		if time.Now().After(deadline) {
			t.Fatalf("no failure logged:\n%s", h.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if pid, _ := h.pid(); pid != old {
		t.Fatalf("the PID file names %d, not the old process %d", pid, old)
	}
	r := runCLI(t, strings.NewReader("still here\n"), "connect", h.addr)
	if r.stdout != "hello\r\nstill here\n" {
		t.Fatalf("after the failed upgrade: %q, %s", r.stdout, r.stderr)
	}
	os.WriteFile(h.bin+".tmp", good, 0o755)
	os.Rename(h.bin+".tmp", h.bin)
	syscall.Kill(old, syscall.SIGUSR2)
	next := h.waitPID(old)
	if code := h.reap(old); code != 0 {
		t.Fatalf("old process exit %d", code)
	}
	r = runCLI(t, strings.NewReader("new\n"), "connect", h.addr)
	if r.stdout != "hello\r\nnew\n" {
		t.Fatalf("after the upgrade to %d: %q, %s", next, r.stdout, r.stderr)
	}
	syscall.Kill(next, syscall.SIGTERM)
	if code := h.reap(next); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// A Unix socket is handed over, not unlinked: its file stays through the
// upgrade and the new process serves it; the last process removes it.
func TestEchoUpgradeUnixSocket(t *testing.T) {
	forEachEngine(t, echoUpgradeUnixSocket)
}

func echoUpgradeUnixSocket(t *testing.T, engine string) {
	dir, err := os.MkdirTemp("/tmp", "tk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "echo.sock")
	h := newUpgradeHarness(t, "--engine", engine, sock)
	old, _ := h.pid()
	syscall.Kill(old, syscall.SIGUSR2)
	next := h.waitPID(old)
	if code := h.reap(old); code != 0 {
		t.Fatalf("old process exit %d; log:\n%s", code, h.log())
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("after the upgrade the socket file is gone: %v", err)
	}
	r := runCLI(t, strings.NewReader("via unix\n"), "connect", sock)
	if r.stdout != "hello\r\nvia unix\n" {
		t.Fatalf("after the upgrade: %q, %s", r.stdout, r.stderr)
	}
	syscall.Kill(next, syscall.SIGTERM)
	if code := h.reap(next); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the last process left its socket file: %v", err)
	}
}
