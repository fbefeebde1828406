package main

import (
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/tcpkit/tcpkit/bench/internal/harness"
)

// writeSummary writes the Markdown report of a soak.
func writeSummary(w io.Writer, cfg *config, res *results) {
	fmt.Fprintf(w, "## Soak: mixed adversaries (%s)\n\n", res.Start.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- %v of clients against %s at once, each a soakserver process pinned to CPU %d: TLS (self-signed, TLS 1.3),\n",
		cfg.duration, strings.Join(cfg.engines, " and "), cfg.serverCPU)
	fmt.Fprintf(w, "  PROXY protocol %s (ProxyHeaderTimeout %v, HandshakeTimeout %v), Pipe(c, c); epoll with one loop\n",
		cfg.proxy, cfg.proxyTimeout, cfg.handshakeTimeout)
	var per []string
	for _, c := range classOrder {
		if c == classChurn {
			per = append(per, fmt.Sprintf("%s at %g/s", c, cfg.churnRate))
			continue
		}
		per = append(per, fmt.Sprintf("%d %s", cfg.counts[c], c))
	}
	headers := "none, v1 and v2"
	if cfg.proxy == "required" {
		headers = "v1 and v2"
	}
	fmt.Fprintf(w, "- clients per server: %s; PROXY header %s in turn\n", strings.Join(per, ", "), headers)
	fmt.Fprintf(w, "- probes: one connection per server (PROXY v1, TLS), a 64 B round trip every %v, from a separate process at nice %d\n", cfg.probeInterval, cfg.probeNice)
	if cfg.clientsNice != 0 {
		fmt.Fprintf(w, "- the clients run in one process at nice %d, on the driver's CPU, so that the probes run first there\n", cfg.clientsNice)
	}
	fmt.Fprintf(w, "- other processes took %s of the CPUs (the servers' and the clients') in the median %v interval, %s at most\n",
		harness.Pct(harness.Median(res.Others)), cfg.sampleEvery, harness.Pct(slices.Max(append([]float64{0}, res.Others...))))
	fmt.Fprintf(w, "- stall bound %v; seed %d; tcpkit at %s; %s; raw results: %s\n\n", cfg.stall, cfg.seed, res.Revision, runtime.Version(), cfg.out)

	fmt.Fprintln(w, "### Targets")
	fmt.Fprintln(w)
	fmt.Fprint(w, "| target |")
	for _, s := range res.Servers {
		fmt.Fprintf(w, " %s |", s.Engine)
	}
	fmt.Fprint(w, "\n|---|")
	for range res.Servers {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w)
	row := func(name string, f func(s *server) (bool, string)) {
		fmt.Fprintf(w, "| %s |", name)
		for _, s := range res.Servers {
			ok, detail := f(s)
			v := "met"
			if !ok {
				v = "**missed**"
			}
			if detail != "" {
				v += ": " + detail
			}
			fmt.Fprintf(w, " %s |", v)
		}
		fmt.Fprintln(w)
	}
	row(fmt.Sprintf("no probe over %v", cfg.targetProbe), func(s *server) (bool, string) {
		if s.Probe == nil {
			return false, "no probe result: " + res.ProbeError
		}
		d := fmt.Sprintf("worst %s, %d of %s over (%d at the same time as one on another server)",
			harness.Dur(s.Probe.Max), s.Probe.Over, harness.Num(float64(s.Probe.Count)), s.Probe.OverShared)
		return s.Probe.Over == 0 && s.Probe.Count > 0, d
	})
	row("nothing lost silently", func(s *server) (bool, string) {
		var lost int64
		for _, c := range s.Clients {
			lost += c.LostSilently
		}
		return lost == 0, fmt.Sprintf("%s lost silently", harness.Bytes(float64(lost)))
	})
	row(fmt.Sprintf("no connection stalled (nothing moved for %v)", cfg.stall), func(s *server) (bool, string) {
		var stalls, late int64
		for _, c := range s.Clients {
			stalls += c.Stalls
			late += c.Late
		}
		return stalls == 0, fmt.Sprintf("%d stalled, %d of which moved again after the client's FIN", stalls, late)
	})
	row("no corrupt echo", func(s *server) (bool, string) {
		var bad int64
		for _, c := range s.Clients {
			bad += c.Corrupt
		}
		return bad == 0, fmt.Sprintf("%d corrupt byte(s)", bad)
	})
	row(fmt.Sprintf("silent and half-header clients closed within %v", cfg.closeBound()), func(s *server) (bool, string) {
		var late int64
		var slowest time.Duration
		for _, n := range []string{classSilent, classPartial} {
			late += s.Clients[n].TooLate
			slowest = max(slowest, s.Clients[n].CloseMax)
		}
		return late == 0, fmt.Sprintf("%d not closed; slowest close %s", late, harness.Dur(slowest))
	})
	row("descriptors back to the baseline", func(s *server) (bool, string) {
		return s.After.FDs <= s.Before.FDs, fmt.Sprintf("%d → %d", s.Before.FDs, s.After.FDs)
	})
	row("goroutines back to the baseline", func(s *server) (bool, string) {
		return s.After.Goroutines <= s.Before.Goroutines, fmt.Sprintf("%d → %d", s.Before.Goroutines, s.After.Goroutines)
	})
	row(fmt.Sprintf("heap back to the baseline (+%s)", harness.Bytes(float64(cfg.targetHeap))), func(s *server) (bool, string) {
		return int64(s.After.HeapAlloc) <= int64(s.Before.HeapAlloc)+cfg.targetHeap,
			fmt.Sprintf("%s → %s", harness.Bytes(float64(s.Before.HeapAlloc)), harness.Bytes(float64(s.After.HeapAlloc)))
	})
	row("no connection left open", func(s *server) (bool, string) {
		return s.After.open == 0, fmt.Sprintf("%d open after", s.After.open)
	})
	row("clean exit at SIGTERM", func(s *server) (bool, string) { return s.ExitedOK, s.Exit })
	row("no panic logged", func(s *server) (bool, string) { return len(s.Panics) == 0, fmt.Sprintf("%d", len(s.Panics)) })
	fmt.Fprintln(w)

	fmt.Fprintln(w, "### Clients, by class")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| class | engine | conns | failed | sent | verified | cut by an error | lost silently | corrupt | stalls | class's own | errors seen |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|")
	for _, name := range classOrder {
		for _, s := range res.Servers {
			c := s.Clients[name]
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |\n", name, s.Engine,
				harness.Num(float64(c.Conns)), harness.Num(float64(c.Failed)), harness.Bytes(float64(c.Sent)),
				verifiedCell(name, c), harness.Bytes(float64(c.CutByError)), lostCell(c.LostSilently),
				harness.Num(float64(c.Corrupt)), c.Stalls, ownCell(name, c), errorsCell(c.Errors))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "sent: plaintext bytes the client's TLS layer took; verified: bytes echoed back that matched; cut by an")
	fmt.Fprintln(w, "error: sent, not echoed, on connections that ended in an error the client saw (a reset, an alert, a cut")
	fmt.Fprintln(w, "record); lost silently: sent, not echoed, on connections that ended cleanly or on which nothing moved")
	fmt.Fprintf(w, "for %v (stalls). Resetters' bytes are not verified: the client resets the connection itself.\n", cfg.stall)
	fmt.Fprintln(w)

	fmt.Fprintln(w, "### Probes")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| engine | round trips | p50 | p99 | p99.9 | worst | worst at | over target (of which shared) | errors | connects | slowest connect | probe timer late p99 / max |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|---|--:|---|--:|--:|--:|")
	for _, s := range res.Servers {
		p := s.Probe
		if p == nil {
			fmt.Fprintf(w, "| %s | – | | | | | | | %s | | | |\n", s.Engine, res.ProbeError)
			continue
		}
		var at []string
		for _, x := range p.Worst[:min(3, len(p.Worst))] {
			at = append(at, fmt.Sprintf("%s at t+%.1fs", harness.Dur(x.RTT), x.At))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %d (%d) | %s | %d | %s | %s / %s |\n", s.Engine,
			harness.Num(float64(p.Count)), harness.Dur(p.P50), harness.Dur(p.P99), harness.Dur(p.P999), harness.Dur(p.Max),
			strings.Join(at, ", "), p.Over, p.OverShared, errorsCell(p.Errors), p.Connects, harness.Dur(p.ConnectMax),
			harness.Dur(p.LateP99), harness.Dur(p.LateMax))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "over target (of which shared): round trips over the target, and how many of them overlapped one over")
	fmt.Fprintln(w, "the target on the other server, which points at the machine (the shared client CPU, other processes)")
	fmt.Fprintln(w, "rather than at one server; probe timer late: how late the probe process woke for its next round trip,")
	fmt.Fprintln(w, "the client side's own scheduling delay.")
	fmt.Fprintln(w)

	fmt.Fprintln(w, "### The server processes")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| engine | measure | before | during (max) | after |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|")
	for _, s := range res.Servers {
		maxOf := func(f func(*Snapshot) float64) float64 {
			m := 0.0
			for _, d := range s.During {
				m = max(m, f(d))
			}
			return m
		}
		after := fmt.Sprintf(" (%.0fs after the clients stopped%s)", s.AfterIn.Seconds(), map[bool]string{true: "", false: "; not settled"}[s.Settled])
		fmt.Fprintf(w, "| %s | descriptors | %d | %.0f | %d%s |\n", s.Engine, s.Before.FDs, maxOf(func(x *Snapshot) float64 { return float64(x.FDs) }), s.After.FDs, after)
		fmt.Fprintf(w, "| %s | goroutines | %d | %.0f | %d |\n", s.Engine, s.Before.Goroutines, maxOf(func(x *Snapshot) float64 { return float64(x.Goroutines) }), s.After.Goroutines)
		fmt.Fprintf(w, "| %s | heap (live after GC, before and after) | %s | %s | %s |\n", s.Engine, harness.Bytes(float64(s.Before.HeapAlloc)),
			harness.Bytes(maxOf(func(x *Snapshot) float64 { return float64(x.HeapAlloc) })), harness.Bytes(float64(s.After.HeapAlloc)))
		fmt.Fprintf(w, "| %s | RSS | %s | %s | %s |\n", s.Engine, harness.Bytes(float64(s.Before.RSS)),
			harness.Bytes(maxOf(func(x *Snapshot) float64 { return float64(x.RSS) })), harness.Bytes(float64(s.After.RSS)))
		fmt.Fprintf(w, "| %s | open connections | %d | %.0f | %d |\n", s.Engine, s.Before.open, maxOf(func(x *Snapshot) float64 { return float64(x.open) }), s.After.open)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "During: the largest of the samples taken every", cfg.sampleEvery, "while the clients ran (heap not collected there).")
	fmt.Fprintln(w)
	for _, s := range res.Servers {
		fmt.Fprintf(w, "- %s: the server's Stats after: `%s`; handshake failures by kind: %s; log lines by level: %s\n",
			s.Engine, compact(string(s.After.Stats)), errorsCell(s.After.HandshakeErrors), countsCell(s.LogLines))
	}
	fmt.Fprintln(w)

	var notes []string
	for _, name := range classOrder {
		for _, s := range res.Servers {
			for _, n := range s.Clients[name].Notes {
				notes = append(notes, fmt.Sprintf("- %s, %s: %s", s.Engine, name, n))
			}
		}
	}
	for _, s := range res.Servers {
		for _, p := range s.Panics {
			notes = append(notes, fmt.Sprintf("- %s, server log: %s", s.Engine, p))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "### Findings (the first of each class)")
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
		fmt.Fprintln(w)
	}
}

func verifiedCell(class string, c *classStats) string {
	if class == classReset {
		return "–"
	}
	return harness.Bytes(float64(c.Verified))
}

func lostCell(n int64) string {
	if n == 0 {
		return "0"
	}
	return "**" + harness.Bytes(float64(n)) + "**"
}

// ownCell gives the class's own figures.
func ownCell(class string, c *classStats) string {
	switch class {
	case classSilent, classPartial:
		s := fmt.Sprintf("%d closed by the server in %s–%s", c.Closed, harness.Dur(c.CloseMin), harness.Dur(c.CloseMax))
		if c.TooLate > 0 {
			s += fmt.Sprintf(", **%d not closed in time**", c.TooLate)
		}
		return s
	case classReset:
		return fmt.Sprintf("%d reset", c.Reset)
	case classUrgent:
		return fmt.Sprintf("%d sessions, %d clean; %d stalled echoes came after the FIN", c.Sessions, c.Clean, c.Late)
	case classChurn:
		return fmt.Sprintf("%d echoed and closed, %d left before the echo", c.Sessions, c.LeftEarly)
	}
	return fmt.Sprintf("%d sessions, %d clean", c.Sessions, c.Clean)
}

func errorsCell(m map[string]int64) string {
	if len(m) == 0 {
		return "–"
	}
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int { return int(m[b] - m[a]) })
	var parts []string
	for _, k := range keys[:min(4, len(keys))] {
		parts = append(parts, fmt.Sprintf("%s ×%d", strings.ReplaceAll(k, "|", "/"), m[k]))
	}
	if len(keys) > 4 {
		parts = append(parts, fmt.Sprintf("%d more kinds", len(keys)-4))
	}
	return strings.Join(parts, "; ")
}

func countsCell(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// compact squeezes JSON onto one line, for a table cell.
func compact(s string) string {
	return strings.Join(strings.Fields(s), "")
}
