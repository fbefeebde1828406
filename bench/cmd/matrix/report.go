package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tcpkit/tcpkit/internal/loadgen"
)

// A report is everything one matrix run measured.
type report struct {
	header []string
	cells  []cellResult
	idle   map[string]*loadgen.Result
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

// markdown renders the report.
func (rep *report) markdown(m *matrix) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## Echo servers side by side (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	for _, h := range rep.header {
		p("- %s\n", h)
	}
	p("- matrix took %s\n\n", rep.took.Round(time.Second))

	p("### Messages per server CPU-second\n\n")
	p("Median of the runs, with their range. ÷std and ÷gnet are medians of the ratios between runs of the\n")
	p("same repetition, which ran back to back. \"server CPU\" and \"load CPU\" are each process's CPU time\n")
	p("over the window's wall time (100%% = its core saturated).\n\n")
	p("| cell | server | msgs per server CPU-s (min–max) | ÷std | ÷gnet | msgs/s | p50 | p99 | server CPU | load CPU | errors |\n")
	p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, cr := range rep.cells {
		all := map[string]stats{}
		for _, s := range m.servers {
			all[s.name] = statsOf(cr.runs[s.name])
		}
		for _, s := range m.servers {
			st := all[s.name]
			if st.Eff.N == 0 {
				p("| %s | %s | no result | | | | | | | | |\n", cr.cell.name, s.name)
				continue
			}
			p("| %s | %s | %s (%s–%s) | %s | %s | %s | %s | %s | %.0f%% | %.0f%% | %d |\n", cr.cell.name, s.name,
				num(st.Eff.Median), num(st.Eff.Min), num(st.Eff.Max),
				fmtRatio(paired(effs(cr.runs[s.name]), effs(cr.runs["std"])).Median),
				fmtRatio(paired(effs(cr.runs[s.name]), effs(cr.runs["gnet"])).Median),
				num(st.Rate.Median), dur(st.P50.Median), dur(st.P99.Median), 100*st.CPUShare.Median, 100*st.LoadCPU.Median, st.Errors)
		}
	}

	p("\n### Target: tcpkit at least 0.9× the stdlib echo's messages per server CPU-second\n\n")
	p("Each repetition's tcpkit run is divided by the std run that ran next to it; the verdict goes by the\n")
	p("median of those ratios.\n\n")
	p("| cell | tcpkit ÷ std: median (min–max of %d pairs) | verdict |\n|---|--:|---|\n", m.reps)
	for _, cr := range rep.cells {
		r := paired(effs(cr.runs["tcpkit"]), effs(cr.runs["std"]))
		if r.N == 0 {
			continue
		}
		verdict := "met"
		if r.Median < 0.9 {
			verdict = "**missed**"
		}
		p("| %s | %s (%s–%s) | %s |\n", cr.cell.name, fmtRatio(r.Median), fmtRatio(r.Min), fmtRatio(r.Max), verdict)
	}

	if len(rep.idle) > 0 {
		p("\n### Idle connections: server memory\n\n")
		p("| server | held | alive after the hold | RSS before | RSS growth per connection | opened per second | server CPU opening | server CPU idle |\n")
		p("|---|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, s := range m.servers {
			r := rep.idle[s.name]
			if r == nil || r.Idle == nil || r.Server == nil {
				continue
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", s.name, num(float64(r.Idle.Established)), num(float64(r.Idle.Alive)),
				mib(float64(r.Server.RSSBefore)), kib(r.Idle.RSSPerConn), num(r.Idle.ConnectRate),
				secs(r.Idle.ServerConnectCPU), secs(r.Server.CPU))
		}
	}

	if len(rep.yard) > 0 {
		p("\n### Load generator against a minimal Go client loop (target: at most 1.2× the CPU per message)\n\n")
		p("Both pinned to CPU 1, against the stdlib echo on CPU 0; CPU from getrusage over the window.\n\n")
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

// jsonForm is the report's summary for summary.json.
func (rep *report) jsonForm() any {
	type cellJSON struct {
		Cell      string           `json:"cell"`
		Args      []string         `json:"loadgen_args"`
		Servers   map[string]stats `json:"servers"`
		TcpkitStd spread           `json:"tcpkit_over_std_paired"`
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
		Header []string                   `json:"header"`
		Cells  []cellJSON                 `json:"cells"`
		Idle   map[string]*loadgen.Result `json:"idle"`
		Yard   []yardJSON                 `json:"yardstick"`
		TookNs time.Duration              `json:"took_ns"`
	}{Header: rep.header, Idle: rep.idle, TookNs: rep.took}
	for _, cr := range rep.cells {
		cj := cellJSON{Cell: cr.cell.name, Args: cr.cell.args, Servers: map[string]stats{},
			TcpkitStd: paired(effs(cr.runs["tcpkit"]), effs(cr.runs["std"]))}
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

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
