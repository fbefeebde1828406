package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit/internal/loadgen"
)

// fakeRun is a fake loadgen result with the given efficiency and p99.
func fakeRun(eff float64, p99 time.Duration) *loadgen.Result {
	return &loadgen.Result{
		MsgsPerSec: eff / 2,
		Elapsed:    time.Second,
		Latency:    &loadgen.Latency{P50: p99 / 2, P99: p99},
		Server:     &loadgen.ServerUsage{MsgsPerCPUSecond: eff, CPU: 500 * time.Millisecond},
	}
}

func TestPairedRatios(t *testing.T) {
	cr := cellResult{cell: cell{name: "ping-pong 1×64B"}, runs: map[string][]*loadgen.Result{
		// Run 2 of tcpkit-epoll failed: its pairs are left out.
		"tcpkit-epoll": {fakeRun(90, 100*time.Microsecond), nil, fakeRun(120, 80*time.Microsecond), fakeRun(100, 90*time.Microsecond)},
		"gnet":         {fakeRun(100, 80*time.Microsecond), fakeRun(100, 80*time.Microsecond), fakeRun(100, 100*time.Microsecond), fakeRun(80, 90*time.Microsecond)},
	}}
	r := cr.effRatio("tcpkit-epoll", "gnet")
	if r.N != 3 || r.Median != 1.2 || r.Min != 0.9 || r.Max != 1.25 {
		t.Errorf("tcpkit-epoll ÷ gnet = %+v, want median 1.2 of 3 pairs, 0.9–1.25", r)
	}
	p := cr.p99Ratio("tcpkit-epoll", "gnet")
	if p.N != 3 || p.Median != 1 || p.Min != 0.8 || p.Max != 1.25 {
		t.Errorf("p99 ratio = %+v, want median 1 of 3 pairs, 0.8–1.25", p)
	}
	if r := cr.effRatio("tcpkit-epoll", "c"); r.N != 0 || ranged(r) != "–" {
		t.Errorf("ratio to a server that did not run = %+v (%q), want none", r, ranged(r))
	}
	if got := ranged(p); got != "1.00 (0.80–1.25)" {
		t.Errorf("ranged = %q", got)
	}
}

func TestMarkdown(t *testing.T) {
	m := &matrix{reps: 1}
	for _, name := range []string{"tcpkit", "tcpkit-epoll", "std", "gnet", "c"} {
		m.servers = append(m.servers, server{name: name})
	}
	rep := report{cells: []cellResult{{cell: cell{name: "ping-pong 1×64B"}, runs: map[string][]*loadgen.Result{
		"tcpkit":       {fakeRun(20000, 90*time.Microsecond)},
		"tcpkit-epoll": {fakeRun(30000, 80*time.Microsecond)},
		"std":          {fakeRun(20000, 90*time.Microsecond)},
		"gnet":         {fakeRun(40000, 100*time.Microsecond)},
		"c":            {nil}, // failed
	}}}}
	md := rep.markdown(m)
	for _, want := range []string{
		" UTC, pinned)\n",
		"| ping-pong 1×64B | tcpkit-epoll | 30,000 (30,000–30,000) | 1.50 | 0.75 | – | 15,000 | 40.0µs | 80.0µs | 50% |",
		"| ping-pong 1×64B | c | no result |",
		"| cell | tcpkit-epoll ÷ gnet | tcpkit-epoll ÷ C | tcpkit-epoll ÷ tcpkit | tcpkit ÷ std |",
		"| ping-pong 1×64B | 0.75 (0.75–0.75) | – | 1.50 (1.50–1.50) | 1.00 (1.00–1.00) |",
		"| cell | tcpkit | tcpkit-epoll | std | gnet | c | tcpkit-epoll ÷ gnet p99 |",
		"| ping-pong 1×64B | 90.0µs | 80.0µs | 90.0µs | 100µs | – | 0.80 (0.80–0.80) |",
		"| ping-pong 1×64B | 1.00 (1.00–1.00) | met |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	m.unpinned, m.procs = true, 2
	if md := rep.markdown(m); !strings.Contains(md, " UTC, unpinned, 2 procs)\n") {
		t.Errorf("unpinned report does not say so:\n%s", md)
	}
}
