package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/tcpkit/tcpkit/bench/internal/harness"
)

// writeSummary writes the Markdown table of runs: one row per server and
// flooder count, medians over the repetitions.
func writeSummary(w io.Writer, cfg *config, runs []serverRun) {
	fmt.Fprintf(w, "## Fairness: one loop, a ping-pong client beside flooders (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- each server a fresh process pinned to CPU %d, one event loop, GOMAXPROCS=%d; the clients on the driver's CPU\n", cfg.serverCPU, cfg.gomaxprocs)
	served := "the server only reads them"
	if cfg.floodEcho {
		served = "the server echoes them and the flooders read the echo back (-flood-echo)"
	}
	fmt.Fprintf(w, "- ping-pong: one connection, %d B messages, one in flight; flooders: one connection each, %s writes, %s\n", cfg.size, harness.Bytes(float64(cfg.floodSize)), served)
	fmt.Fprintf(w, "- each phase: %v measured after %v; alone first, then beside each flooder count; %d repetition(s), medians\n", cfg.duration, cfg.warmup, cfg.reps)
	if cfg.hog {
		fmt.Fprintf(w, "- contended (-hog): in every phase, alone included, a busy loop at the default priority shares CPU %d with the server\n", cfg.serverCPU)
	}
	sched := "SCHED_IDLE (chrt --idle), so that the client CPU serves the ping-pong client first"
	if !cfg.floodIdle {
		sched = "the default policy, as the ping-pong client"
	}
	fmt.Fprintf(w, "- the flooders, and the control's sink, run under %s\n", sched)
	fmt.Fprintf(w, "- control: the ping-pong to one process (tcpkit's goroutine engine), the flood to another (a sink), both on CPU %d:\n", cfg.serverCPU)
	fmt.Fprintf(w, "  the kernel shares the server CPU and serves the ping-pong first, so what it loses is the client side's and the kernel's share\n")
	fmt.Fprintf(w, "- target (issue 17, epoll): kept ≥ %.0f%% and p99 < %v while the flood runs\n", cfg.targetKept*100, cfg.targetP99)
	fmt.Fprintf(w, "- tcpkit at %s; %s; raw results: %s\n\n", revision(), runtime.Version(), cfg.out)
	fmt.Fprintln(w, "| server | flooders | ping-pong alone | with the flood | kept | p50 | p99 | max | p99 alone | flood MB/s | server CPU | others | target |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
	for _, name := range cfg.servers {
		var mine []serverRun
		for _, r := range runs {
			if r.Server == name {
				mine = append(mine, r)
			}
		}
		if len(mine) == 0 {
			continue
		}
		for i, n := range cfg.floods {
			var alone, rate, kept, p50, p99, mx, p99a, mbps, share, others []float64
			var errs []string
			stalled := false
			for _, r := range mine {
				if len(r.Phases) <= i+1 {
					continue
				}
				a, f := r.Phases[0], r.Phases[i+1]
				alone = append(alone, a.Rate)
				rate = append(rate, f.Rate)
				if a.Rate > 0 {
					kept = append(kept, f.Rate/a.Rate)
				}
				p50 = append(p50, float64(f.P50))
				p99 = append(p99, float64(f.P99))
				mx = append(mx, float64(f.Max))
				p99a = append(p99a, float64(a.P99))
				mbps = append(mbps, f.FloodMBps)
				share = append(share, f.ServerShare)
				others = append(others, max(a.Others, f.Others))
				stalled = stalled || f.Stalled
				errs = append(errs, a.Errors...)
				errs = append(errs, f.Errors...)
			}
			k := harness.Median(kept)
			keptCell := harness.Pct(k)
			if len(kept) > 1 {
				keptCell += fmt.Sprintf(" (%s–%s)", harness.Pct(minOf(kept)), harness.Pct(maxOf(kept)))
			}
			maxCell := harness.Dur(time.Duration(harness.Median(mx)))
			if stalled {
				maxCell = "> " + maxCell + " (stalled)"
			}
			verdict := "–"
			if name != "control" {
				verdict = "met"
				var why []string
				if !(k >= cfg.targetKept) {
					why = append(why, "kept")
				}
				if !(time.Duration(harness.Median(p99)) < cfg.targetP99) {
					why = append(why, "p99")
				}
				if len(why) > 0 {
					verdict = "**missed** (" + strings.Join(why, ", ") + ")"
				}
			}
			if len(errs) > 0 {
				verdict += fmt.Sprintf("; %d error(s): %s", len(errs), errs[0])
			}
			label := name
			if name == "control" {
				label = "control (two processes)"
			}
			fmt.Fprintf(w, "| %s | %d | %s/s | %s/s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				label, n, harness.Num(harness.Median(alone)), harness.Num(harness.Median(rate)), keptCell,
				harness.Dur(time.Duration(harness.Median(p50))), harness.Dur(time.Duration(harness.Median(p99))), maxCell,
				harness.Dur(time.Duration(harness.Median(p99a))), harness.Num(harness.Median(mbps)),
				harness.Pct(harness.Median(share)), harness.Pct(maxOf(others)), verdict)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "ping-pong alone and with the flood: round trips per second of the window; kept: their ratio; p50, p99,")
	fmt.Fprintln(w, "max: round-trip times with the flood (stalled: a round trip outlived the window and the grace, so max is a")
	fmt.Fprintln(w, "lower bound); flood MB/s: what the flooders wrote in the window, all together (for the control, to the")
	fmt.Fprintln(w, "sink); server CPU: the server process's user + system time over the window (for the control, the")
	fmt.Fprintln(w, "ping-pong server's); others: the largest share of the CPUs (server's and client's) that other processes")
	fmt.Fprintln(w, "took during the phases behind the row.")
}

func minOf(xs []float64) float64 {
	m := math.Inf(1)
	for _, x := range xs {
		m = math.Min(m, x)
	}
	return m
}

func maxOf(xs []float64) float64 {
	m := math.Inf(-1)
	for _, x := range xs {
		m = math.Max(m, x)
	}
	return m
}

// revision says which tcpkit the servers were built from: the
// TCPKIT_REVISION environment variable that fairness.sh sets, else
// git's HEAD of the working directory.
func revision() string {
	if r := strings.TrimSpace(os.Getenv("TCPKIT_REVISION")); r != "" {
		return r
	}
	out, err := exec.Command("git", "log", "-1", "--format=%h (%cs)").Output()
	if err != nil {
		return "an unknown revision"
	}
	return strings.TrimSpace(string(out)) + ", working tree"
}
