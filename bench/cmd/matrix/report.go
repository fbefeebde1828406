package main

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcpkit/tcpkit/internal/loadgen"
)

// A report is everything one matrix run measured.
type report struct {
	header []string
	cells  []cellResult
	idle   map[string]*loadgen.Result // the idle-memory cell
	scale  map[string]*loadgen.Result // the scale cell (-scale)
	yard   []yardResult
	took   time.Duration
}

// spread summarises repeated measurements: the median, and the range.
type spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// spreadOf summarises xs, leaving out zeros (failed runs).
func spreadOf(xs []float64) spread {
	s := slices.DeleteFunc(slices.Clone(xs), func(x float64) bool { return x == 0 })
	if len(s) == 0 {
		return spread{}
	}
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{Median: med, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// stats are the figures of one server in one cell.
type stats struct {
	Eff      spread `json:"msgs_per_server_cpu_second"`
	Rate     spread `json:"msgs_per_sec"`
	P50      spread `json:"p50_ns"`
	P99      spread `json:"p99_ns"`
	CPUShare spread `json:"server_cpu_share"`
	LoadCPU  spread `json:"load_cpu_share"`
	Errors   int64  `json:"errors"`
}

func statsOf(runs []*loadgen.Result) stats {
	var st stats
	var eff, rate, p50, p99, share, load []float64
	for _, r := range runs {
		if r == nil {
			continue
		}
		eff = append(eff, serverEff(r))
		rate = append(rate, r.MsgsPerSec)
		if r.Latency != nil {
			p50 = append(p50, float64(r.Latency.P50))
			p99 = append(p99, float64(r.Latency.P99))
		}
		if r.Server != nil && r.Elapsed > 0 {
			share = append(share, r.Server.CPU.Seconds()/r.Elapsed.Seconds())
		}
		if r.Elapsed > 0 {
			load = append(load, r.LoadCPU.Seconds()/r.Elapsed.Seconds())
		}
		st.Errors += r.Errors.Total()
	}
	st.LoadCPU = spreadOf(load)
	st.Eff, st.Rate, st.P50, st.P99, st.CPUShare = spreadOf(eff), spreadOf(rate), spreadOf(p50), spreadOf(p99), spreadOf(share)
	return st
}

// paired returns the spread of a[i]/b[i] over the repetitions where both
// ran: runs of one repetition ran back to back, so pairing them cancels
// the machine's slow drifts.
func paired(a, b []float64) spread {
	var rs []float64
	for i := range min(len(a), len(b)) {
		rs = append(rs, ratio(a[i], b[i]))
	}
	return spreadOf(rs)
}

// effs returns the messages per server CPU-second of runs, 0 for a failed
// run.
func effs(runs []*loadgen.Result) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		if r != nil {
			out[i] = serverEff(r)
		}
	}
	return out
}

// ratio returns a/b, or 0 if either is 0.
func ratio(a, b float64) float64 {
	if a == 0 || b == 0 {
		return 0
	}
	return a / b
}

// p99s returns the p99 latencies of runs in nanoseconds, 0 for a failed
// run.
func p99s(runs []*loadgen.Result) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		if r != nil && r.Latency != nil {
			out[i] = float64(r.Latency.P99)
		}
	}
	return out
}

// effRatio is the paired ratio of server a's messages per server CPU-second
// to server b's in cr.
func (cr *cellResult) effRatio(a, b string) spread { return paired(effs(cr.runs[a]), effs(cr.runs[b])) }

// p99Ratio is the paired ratio of server a's p99 latency to server b's in
// cr: below 1, a's tail is shorter.
func (cr *cellResult) p99Ratio(a, b string) spread { return paired(p99s(cr.runs[a]), p99s(cr.runs[b])) }

// ranged formats a paired ratio as "median (min–max)", or "–".
func ranged(r spread) string {
	if r.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%s (%s–%s)", fmtRatio(r.Median), fmtRatio(r.Min), fmtRatio(r.Max))
}

// ran reports whether server name ran in this matrix.
func (m *matrix) ran(name string) bool {
	return slices.ContainsFunc(m.servers, func(s server) bool { return s.name == name })
}

// markdown renders the report.
func (rep *report) markdown(m *matrix) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	mode := "pinned"
	if m.unpinned {
		mode = fmt.Sprintf("unpinned, %d procs", m.procs)
	}
	title := "Echo servers side by side"
	if m.scale > 0 {
		title = "Echo servers at scale"
	}
	p("## %s (%s, %s)\n\n", title, time.Now().UTC().Format("2006-01-02 15:04 MST"), mode)
	for _, h := range rep.header {
		p("- %s\n", h)
	}
	p("- matrix took %s\n", rep.took.Round(time.Second))

	core := "its core saturated"
	if m.unpinned {
		core = "one core's worth; up to " + strconv.Itoa(100*runtime.NumCPU()) + "% unpinned"
	}
	if len(rep.cells) > 0 {
		p("\n### Messages per server CPU-second\n\n")
		p("Median of the runs, with their range. ÷std, ÷gnet and ÷C are medians of the ratios between runs of\n")
		p("the same repetition, which ran back to back. \"server CPU\" and \"load CPU\" are each process's CPU\n")
		p("time over the window's wall time (100%% = %s).\n\n", core)
		p("| cell | server | msgs per server CPU-s (min–max) | ÷std | ÷gnet | ÷C | msgs/s | p50 | p99 | server CPU | load CPU | errors |\n")
		p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, cr := range rep.cells {
			for _, s := range m.servers {
				st := statsOf(cr.runs[s.name])
				if st.Eff.N == 0 {
					p("| %s | %s | no result | | | | | | | | | %d |\n", cr.cell.name, s.name, st.Errors)
					continue
				}
				p("| %s | %s | %s (%s–%s) | %s | %s | %s | %s | %s | %s | %.0f%% | %.0f%% | %d |\n", cr.cell.name, s.name,
					num(st.Eff.Median), num(st.Eff.Min), num(st.Eff.Max),
					fmtRatio(cr.effRatio(s.name, "std").Median),
					fmtRatio(cr.effRatio(s.name, "gnet").Median),
					fmtRatio(cr.effRatio(s.name, "c").Median),
					num(st.Rate.Median), dur(st.P50.Median), dur(st.P99.Median), 100*st.CPUShare.Median, 100*st.LoadCPU.Median, st.Errors)
			}
		}
		rep.ratioTable(p, m)
		rep.p99Table(p, m)
		rep.targetTable(p, m)
	}

	if len(rep.idle) > 0 {
		p("\n### Idle connections: server memory (%s connections, each echoed once, from 127.0.0.1–%d)\n\n",
			num(float64(m.idleConns)), idleSources(m.idleConns))
		idleTable(p, m, rep.idle)
	}
	if len(rep.scale) > 0 {
		p("\n### Scale: %s connections held, each echoed once, from 127.0.0.1–%d\n\n", num(float64(m.scale)), idleSources(m.scale))
		idleTable(p, m, rep.scale)
	}

	if len(rep.yard) > 0 {
		p("\n### Load generator against a minimal Go client loop (target: at most 1.2× the CPU per message)\n\n")
		if m.unpinned {
			p("Both unpinned, against the stdlib echo (GOMAXPROCS=%d); CPU from getrusage over the window.\n\n", m.procs)
		} else {
			p("Both pinned to CPU 1, against the stdlib echo on CPU 0; CPU from getrusage over the window.\n\n")
		}
		p("| shape | clientloop CPU per msg (min–max) | loadgen CPU per msg (min–max) | loadgen ÷ clientloop, paired: median (min–max) | clientloop msgs/s | loadgen msgs/s |\n")
		p("|---|--:|--:|--:|--:|--:|\n")
		for _, y := range rep.yard {
			c, l, r := spreadOf(y.clientCPU), spreadOf(y.loadgenCPU), paired(y.loadgenCPU, y.clientCPU)
			p("| %s | %s (%s–%s) | %s (%s–%s) | %s (%s–%s) | %s | %s |\n", y.name,
				dur(c.Median), dur(c.Min), dur(c.Max), dur(l.Median), dur(l.Min), dur(l.Max),
				fmtRatio(r.Median), fmtRatio(r.Min), fmtRatio(r.Max),
				num(spreadOf(y.clientRate).Median), num(spreadOf(y.loadgenRate).Median))
		}
	}
	return b.String()
}

// ratioTable renders tcpkit-epoll's paired ratios to gnet, C and tcpkit's
// goroutine engine, and tcpkit's to std, if tcpkit-epoll ran.
func (rep *report) ratioTable(p func(string, ...any), m *matrix) {
	if !m.ran("tcpkit-epoll") {
		return
	}
	p("\n### tcpkit-epoll against gnet and C (messages per server CPU-second)\n\n")
	p("Medians of the ratios between runs of the same repetition, with their range.\n\n")
	p("| cell | tcpkit-epoll ÷ gnet | tcpkit-epoll ÷ C | tcpkit-epoll ÷ tcpkit | tcpkit ÷ std |\n|---|--:|--:|--:|--:|\n")
	for _, cr := range rep.cells {
		p("| %s | %s | %s | %s | %s |\n", cr.cell.name, ranged(cr.effRatio("tcpkit-epoll", "gnet")),
			ranged(cr.effRatio("tcpkit-epoll", "c")), ranged(cr.effRatio("tcpkit-epoll", "tcpkit")),
			ranged(cr.effRatio("tcpkit", "std")))
	}
}

// p99Table renders every server's p99 latency by cell, and tcpkit-epoll's
// paired ratio to gnet's.
func (rep *report) p99Table(p func(string, ...any), m *matrix) {
	p("\n### Latency p99\n\n")
	p("Median p99 of the runs. The last column is the median of tcpkit-epoll's p99 ÷ gnet's p99 between runs\n")
	p("of the same repetition (below 1: tcpkit-epoll's tail is shorter); it matters most in the 1-connection\n")
	p("cells, where latency is not queueing.\n\n")
	p("| cell |")
	for _, s := range m.servers {
		p(" %s |", s.name)
	}
	p(" tcpkit-epoll ÷ gnet p99 |\n|---|")
	for range m.servers {
		p("--:|")
	}
	p("--:|\n")
	for _, cr := range rep.cells {
		p("| %s |", cr.cell.name)
		for _, s := range m.servers {
			p(" %s |", dur(statsOf(cr.runs[s.name]).P99.Median))
		}
		p(" %s |\n", ranged(cr.p99Ratio("tcpkit-epoll", "gnet")))
	}
}

// targetTable renders the verdict of tcpkit ÷ std against the 0.9 target.
func (rep *report) targetTable(p func(string, ...any), m *matrix) {
	if !m.ran("tcpkit") || !m.ran("std") {
		return
	}
	p("\n### Target: tcpkit at least 0.9× the stdlib echo's messages per server CPU-second\n\n")
	p("Each repetition's tcpkit run is divided by the std run that ran next to it; the verdict goes by the\n")
	p("median of those ratios.\n\n")
	p("| cell | tcpkit ÷ std: median (min–max of %d pairs) | verdict |\n|---|--:|---|\n", m.reps)
	for _, cr := range rep.cells {
		r := cr.effRatio("tcpkit", "std")
		if r.N == 0 {
			continue
		}
		verdict := "met"
		if r.Median < 0.9 {
			verdict = "**missed**"
		}
		p("| %s | %s | %s |\n", cr.cell.name, ranged(r), verdict)
	}
}

// idleTable renders the results of an idle or scale cell.
func idleTable(p func(string, ...any), m *matrix, res map[string]*loadgen.Result) {
	p("| server | held | alive after the hold | RSS before | RSS after | RSS growth per connection | opened per second | open p99 | server CPU opening | server CPU idle | errors |\n")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, s := range m.servers {
		r := res[s.name]
		if r == nil || r.Idle == nil || r.Server == nil {
			p("| %s | no result | | | | | | | | | |\n", s.name)
			continue
		}
		open := "–"
		if r.Latency != nil {
			open = dur(float64(r.Latency.P99))
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", s.name, num(float64(r.Idle.Established)), num(float64(r.Idle.Alive)),
			mib(float64(r.Server.RSSBefore)), mib(float64(r.Server.RSSAfter)), kib(r.Idle.RSSPerConn), num(r.Idle.ConnectRate),
			open, secs(r.Idle.ServerConnectCPU), secs(r.Server.CPU), r.Errors.Total())
	}
}

// jsonForm is the report's summary for summary.json.
func (rep *report) jsonForm(m *matrix) any {
	type cellJSON struct {
		Cell      string            `json:"cell"`
		Args      []string          `json:"loadgen_args"`
		Servers   map[string]stats  `json:"servers"`
		TcpkitStd spread            `json:"tcpkit_over_std_paired"`
		Ratios    map[string]spread `json:"paired_ratios"`
	}
	type yardJSON struct {
		Shape        string `json:"shape"`
		ClientCPUNs  spread `json:"clientloop_cpu_per_msg_ns"`
		LoadgenCPUNs spread `json:"loadgen_cpu_per_msg_ns"`
		ClientRate   spread `json:"clientloop_msgs_per_sec"`
		LoadgenRate  spread `json:"loadgen_msgs_per_sec"`
		PairedRatio  spread `json:"loadgen_over_clientloop_paired"`
	}
	out := struct {
		Header   []string                   `json:"header"`
		Unpinned bool                       `json:"unpinned"`
		Procs    int                        `json:"procs,omitempty"`
		Cells    []cellJSON                 `json:"cells"`
		Idle     map[string]*loadgen.Result `json:"idle,omitempty"`
		Scale    map[string]*loadgen.Result `json:"scale,omitempty"`
		Yard     []yardJSON                 `json:"yardstick"`
		TookNs   time.Duration              `json:"took_ns"`
	}{Header: rep.header, Unpinned: m.unpinned, Idle: rep.idle, Scale: rep.scale, TookNs: rep.took}
	if m.unpinned {
		out.Procs = m.procs
	}
	for _, cr := range rep.cells {
		cj := cellJSON{Cell: cr.cell.name, Args: cr.cell.args, Servers: map[string]stats{},
			TcpkitStd: cr.effRatio("tcpkit", "std"),
			Ratios: map[string]spread{
				"tcpkit-epoll/gnet":     cr.effRatio("tcpkit-epoll", "gnet"),
				"tcpkit-epoll/c":        cr.effRatio("tcpkit-epoll", "c"),
				"tcpkit-epoll/tcpkit":   cr.effRatio("tcpkit-epoll", "tcpkit"),
				"tcpkit-epoll/gnet p99": cr.p99Ratio("tcpkit-epoll", "gnet"),
			}}
		for name, runs := range cr.runs {
			cj.Servers[name] = statsOf(runs)
		}
		out.Cells = append(out.Cells, cj)
	}
	for _, y := range rep.yard {
		c, l := spreadOf(y.clientCPU), spreadOf(y.loadgenCPU)
		out.Yard = append(out.Yard, yardJSON{Shape: y.name, ClientCPUNs: c, LoadgenCPUNs: l,
			ClientRate: spreadOf(y.clientRate), LoadgenRate: spreadOf(y.loadgenRate), PairedRatio: paired(y.loadgenCPU, y.clientCPU)})
	}
	return out
}

// num formats a count with thousands separators.
func num(f float64) string {
	s := fmt.Sprintf("%.0f", f)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

func fmtRatio(r float64) string {
	if r == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", r)
}

// dur formats nanoseconds with about three significant digits.
func dur(ns float64) string {
	switch {
	case ns == 0:
		return "–"
	case ns < 1e3:
		return fmt.Sprintf("%.0fns", ns)
	case ns < 1e5:
		return fmt.Sprintf("%.1fµs", ns/1e3)
	case ns < 1e6:
		return fmt.Sprintf("%.0fµs", ns/1e3)
	case ns < 1e9:
		return fmt.Sprintf("%.1fms", ns/1e6)
	}
	return fmt.Sprintf("%.2fs", ns/1e9)
}

// secs formats a CPU time in seconds, zero included.
func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// kib formats a size in KiB, or in bytes below one KiB (cecho holds a few
// dozen bytes per idle connection).
func kib(b float64) string {
	if b < 1024 && b > -1024 {
		return fmt.Sprintf("%.0f B", b)
	}
	return fmt.Sprintf("%.1f KiB", b/1024)
}
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
