package loadgen

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestProc reads the test's own /proc entries.
func TestProc(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	if hz := ClockTicks(); hz <= 0 || hz > 10000 {
		t.Errorf("ClockTicks() = %d", hz)
	}
	pid := os.Getpid()
	cpu0, err := ProcCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Burn at least three clock ticks of CPU, bounded in time.
	x := uint64(1)
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		for range 100000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
		if cpu, _ := ProcCPU(pid); cpu-cpu0 >= 30*time.Millisecond {
			break
		}
	}
	cpu1, err := ProcCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	if cpu1-cpu0 < 30*time.Millisecond || x == 0 {
		t.Errorf("CPU went from %v to %v after burning", cpu0, cpu1)
	}
	if self := selfCPU(); self < cpu1-50*time.Millisecond {
		t.Errorf("getrusage says %v, /proc says %v", self, cpu1)
	}
	rss, err := ProcRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 || rss > 1<<34 {
		t.Errorf("RSS %d bytes", rss)
	}
	if _, err := ProcCPU(-5); err == nil {
		t.Error("ProcCPU(-5) succeeded")
	}
}

// TestServerUsage runs against an echo server in this very process, so
// that ServerPID is the test's own.
func TestServerUsage(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	addr := startEcho(t, "127.0.0.1:0", "")
	res, err := Run(context.Background(), Config{Addr: addr, Conns: 2, Duration: 200 * time.Millisecond,
		ServerPID: os.Getpid()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, res, 1)
	s := res.Server
	if s == nil || s.Error != "" || s.CPU <= 0 || s.MsgsPerCPUSecond <= 0 || s.RSSAfter <= 0 {
		t.Fatalf("server usage %+v", s)
	}
	if res.LoadCPU <= 0 || res.LoadCPUPerMsg <= 0 {
		t.Errorf("load CPU %v, %v per message", res.LoadCPU, res.LoadCPUPerMsg)
	}

	res, err = Run(context.Background(), Config{Addr: addr, Mode: Idle, Conns: 50, Duration: 50 * time.Millisecond,
		ServerPID: os.Getpid()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Server; s == nil || s.Error != "" || s.RSSBefore <= 0 || res.Idle.Established != 50 {
		t.Fatalf("idle: server %+v, idle %+v", s, res.Idle)
	}

	res, err = Run(context.Background(), Config{Addr: addr, Count: 10, ServerPID: 1 << 30}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Server == nil || res.Server.Error == "" {
		t.Errorf("no such process: server usage %+v, want an Error", res.Server)
	}
}
