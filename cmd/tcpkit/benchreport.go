package main

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/tcpkit/tcpkit/internal/loadgen"
)

// The report of tcpkit bench --report is one HTML file that needs nothing
// else: the charts are inline SVG drawn here (with a <title> on each point
// for its value when hovered), the style is inline CSS, and there is no
// script to run. The Result itself is embedded as JSON, in a
// <script type="application/json"> element that browsers do not run, so
// the page is also a saved result.

// reportDataStart opens the element that holds the result's JSON.
const reportDataStart = `<script type="application/json" id="tcpkit-result">`

// commandLine reconstructs cmd's command line from its name, the flags
// given, and args, for the report.
func commandLine(cmd *cobra.Command, args []string) string {
	parts := []string{cmd.CommandPath()}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		parts = append(parts, "--"+f.Name+"="+shellQuote(f.Value.String()))
	})
	for _, a := range args {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for a POSIX shell if it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.,:/@=+[]") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeReportFile writes the HTML report of res to path.
func writeReportFile(path string, res *loadgen.Result, command string) error {
	var b strings.Builder
	if err := writeReport(&b, res, command); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// reportCSS is the page's style: system fonts, light and dark.
const reportCSS = `
:root { color-scheme: light dark; --fg: #1d1d1f; --bg: #fff; --muted: #6e6e73; --grid: #d8d8dc; --a: #0b63c5; --b: #c2410c; --c: #15803d; }
@media (prefers-color-scheme: dark) { :root { --fg: #e8e8ea; --bg: #161618; --muted: #9a9aa0; --grid: #3a3a3e; --a: #5aa9ff; --b: #fb923c; --c: #4ade80; } }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); margin: 2em auto; max-width: 60em; padding: 0 1em; }
h1 { font-size: 1.4em; margin-bottom: .2em; } h2 { font-size: 1.1em; margin-top: 2em; }
code, td.n, .cmd { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .92em; }
.cmd { color: var(--muted); overflow-wrap: anywhere; }
table { border-collapse: collapse; } td, th { padding: .15em .9em .15em 0; text-align: left; vertical-align: top; }
td.n { text-align: right; } th { font-weight: 600; color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: .8em; margin: 1em 0; }
.card { border: 1px solid var(--grid); border-radius: 8px; padding: .5em .9em; min-width: 8em; }
.card b { display: block; font-size: 1.3em; } .card span { color: var(--muted); font-size: .85em; }
.bad { color: #dc2626; }
svg { width: 100%; height: auto; display: block; } svg text { fill: var(--muted); font-size: 12px; }
svg .grid { stroke: var(--grid); stroke-width: 1; } svg .axis { stroke: var(--muted); stroke-width: 1; }
svg .line { fill: none; stroke-width: 2; } svg .ref { stroke-dasharray: 6 4; stroke-width: 1.5; fill: none; }
.legend span { margin-right: 1.2em; } .legend i { display: inline-block; width: 1.4em; height: 3px; vertical-align: middle; margin-right: .3em; }
details { margin-top: 1em; } summary { cursor: pointer; color: var(--muted); }
`

// writeReport writes the HTML report of res to w.
func writeReport(w io.Writer, res *loadgen.Result, command string) error {
	data, err := json.Marshal(res) // escapes <, > and &, so it cannot end the script element
	if err != nil {
		return err
	}
	esc := html.EscapeString
	var b strings.Builder
	title := fmt.Sprintf("tcpkit bench %s: %s", res.Addr, res.Mode)
	if res.Open != nil {
		title += fmt.Sprintf(" at %s msgs/s", fmtCount(res.Open.Requested))
	}
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"+
		"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n",
		esc(title), reportCSS)
	fmt.Fprintf(&b, "<h1>%s</h1>\n<p class=\"cmd\">%s<br>measured %s, %s</p>\n", esc(title), esc(command),
		esc(res.Start.UTC().Format("2006-01-02 15:04:05 UTC")), esc(shortDur(float64(res.Elapsed))))

	// Headline figures.
	b.WriteString("<div class=\"cards\">\n")
	card := func(value, label string, bad bool) {
		class := "card"
		if bad {
			class += " bad"
		}
		fmt.Fprintf(&b, "<div class=\"%s\"><b>%s</b><span>%s</span></div>\n", class, esc(value), esc(label))
	}
	card(fmtCount(res.MsgsPerSec), "msgs/s achieved", false)
	if o := res.Open; o != nil {
		card(fmtCount(o.Requested), "msgs/s requested", false)
		card(fmtCount(o.Sent), "msgs/s sent", false)
	}
	if l := res.Latency; l != nil {
		card(shortDur(float64(l.P50)), "p50", false)
		card(shortDur(float64(l.P99)), "p99", false)
		card(shortDur(float64(l.P999)), "p99.9", false)
		card(shortDur(float64(l.Max)), "max", false)
	}
	card(fmtCount(float64(res.Errors.Total())), "errors", res.Errors.Total() > 0)
	b.WriteString("</div>\n")

	// The spectrum.
	if len(res.Spectrum) > 0 {
		b.WriteString("<h2>Latency by percentile</h2>\n")
		if res.Open != nil {
			b.WriteString("<p>Open loop: each latency runs from the message's <em>scheduled</em> send time, " +
				"so the waits of messages queued behind a slow one are counted (coordinated-omission correction).</p>\n")
		}
		spectrumSVG(&b, res)
		b.WriteString("<details><summary>Percentiles as a table</summary>\n<table>\n<tr><th>percentile</th><th>latency</th></tr>\n")
		for _, q := range res.Spectrum {
			fmt.Fprintf(&b, "<tr><td class=\"n\">%s%%</td><td class=\"n\">%s</td></tr>\n", fmtPercentile(q.Percentile), shortDur(float64(q.Latency)))
		}
		b.WriteString("</table>\n</details>\n")
	}

	// The series.
	if len(res.Series) > 0 {
		b.WriteString("<h2>Throughput, second by second</h2>\n")
		rate := make([]float64, len(res.Series))
		for i, s := range res.Series {
			rate[i] = s.MsgsPerSec
		}
		lines := []seriesLine{{"msgs/s completed", "var(--a)", rate, false}}
		if o := res.Open; o != nil {
			flat := make([]float64, len(res.Series))
			for i := range flat {
				flat[i] = o.Requested
			}
			lines = append(lines, seriesLine{"requested", "var(--muted)", flat, true})
		}
		timeSVG(&b, res.Series, lines, fmtCount)
		if res.Latency != nil {
			b.WriteString("<h2>Latency, second by second</h2>\n<p>Of the messages completed in each second.</p>\n")
			p50, p99, mx := make([]float64, len(res.Series)), make([]float64, len(res.Series)), make([]float64, len(res.Series))
			for i, s := range res.Series {
				p50[i], p99[i], mx[i] = float64(s.P50), float64(s.P99), float64(s.Max)
			}
			timeSVG(&b, res.Series, []seriesLine{
				{"p50", "var(--c)", p50, false}, {"p99", "var(--b)", p99, false}, {"max", "var(--muted)", mx, true},
			}, func(v float64) string { return shortDur(v) })
		}
		b.WriteString("<details><summary>Seconds as a table</summary>\n<table>\n" +
			"<tr><th>second</th><th>messages</th><th>msgs/s</th><th>p50</th><th>p99</th><th>max</th></tr>\n")
		for _, s := range res.Series {
			fmt.Fprintf(&b, "<tr><td class=\"n\">%d</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td></tr>\n",
				int(s.T/time.Second), fmtCount(float64(s.Messages)), fmtCount(s.MsgsPerSec),
				shortDur(float64(s.P50)), shortDur(float64(s.P99)), shortDur(float64(s.Max)))
		}
		b.WriteString("</table>\n</details>\n")
	}

	// The parameters and the rest of the result.
	b.WriteString("<h2>Run</h2>\n<table>\n")
	row := func(k, v string) { fmt.Fprintf(&b, "<tr><th>%s</th><td>%s</td></tr>\n", esc(k), esc(v)) }
	row("address", fmt.Sprintf("%s (%s)", res.Addr, res.Network))
	row("mode", string(res.Mode))
	row("connections", fmt.Sprint(res.Conns))
	row("message size", fmt.Sprintf("%d bytes", res.Size))
	row("in flight", fmt.Sprintf("%d per connection", res.Depth))
	if o := res.Open; o != nil {
		row("open loop", fmt.Sprintf("%s msgs/s requested, %s sent, %s achieved; %s held at the bound, %s unsent at the end, %s abandoned",
			fmtCount(o.Requested), fmtCount(o.Sent), fmtCount(res.MsgsPerSec), fmtCount(float64(o.Held)),
			fmtCount(float64(o.Unsent)), fmtCount(float64(o.Abandoned))))
	}
	row("start", res.Start.UTC().Format(time.RFC3339Nano))
	row("warmup", shortDur(float64(res.Warmup)))
	row("measured", shortDur(float64(res.Elapsed)))
	row("messages", fmtCount(float64(res.Messages)))
	row("throughput", fmt.Sprintf("%s msgs/s, %.1f MB/s each way", fmtCount(res.MsgsPerSec), res.BytesPerSec/1e6))
	row("errors", res.Errors.String())
	for _, s := range res.ErrorSamples {
		row("", s)
	}
	if res.LoadCPU > 0 {
		row("load CPU", fmt.Sprintf("%s, %s per message", shortDur(float64(res.LoadCPU)), shortDur(float64(res.LoadCPUPerMsg))))
	}
	if s := res.Server; s != nil {
		if s.Error != "" {
			row("server", fmt.Sprintf("pid %d: %s", s.PID, s.Error))
		} else {
			row("server CPU", fmt.Sprintf("%s (pid %d), %s msgs per CPU-second", shortDur(float64(s.CPU)), s.PID, fmtCount(s.MsgsPerCPUSecond)))
		}
	}
	if res.Interrupted {
		row("note", "interrupted")
	}
	if res.Stalled {
		row("note", "stalled: no message completed in a whole timeout")
	}
	b.WriteString("</table>\n")
	fmt.Fprintf(&b, "%s%s</script>\n</body>\n</html>\n", reportDataStart, data)
	_, err = io.WriteString(w, b.String())
	return err
}

// The geometry of every chart, in SVG user units.
const (
	chartW, chartH       = 900.0, 320.0
	padL, padR           = 70.0, 20.0
	padT, padB           = 15.0, 45.0
	plotW, plotH         = chartW - padL - padR, chartH - padT - padB
	spectrumDecades      = 5 // the x axis runs to 99.999%
	maxPointsWithCircles = 600
)

// spectrumSVG draws the latency spectrum: latency against percentile, on
// HdrHistogram's axis, where 90, 99, 99.9... are evenly spaced.
func spectrumSVG(b *strings.Builder, res *loadgen.Result) {
	var xs, ys []float64
	var labels []string
	for _, q := range res.Spectrum {
		if q.Percentile >= 100 {
			continue
		}
		xs = append(xs, -math.Log10(1-q.Percentile/100))
		ys = append(ys, float64(q.Latency))
		labels = append(labels, fmt.Sprintf("p%s: %s", fmtPercentile(q.Percentile), shortDur(float64(q.Latency))))
	}
	maxLat := float64(res.Latency.Max)
	yTicks := niceTicks(maxLat)
	ymax := yTicks[len(yTicks)-1]
	x := func(v float64) float64 { return padL + v/spectrumDecades*plotW }
	y := func(v float64) float64 { return padT + plotH - v/ymax*plotH }
	fmt.Fprintf(b, "<svg id=\"spectrum\" viewBox=\"0 0 %g %g\" role=\"img\" aria-label=\"latency by percentile\">\n", chartW, chartH)
	for _, t := range yTicks {
		fmt.Fprintf(b, "<line class=\"grid\" x1=\"%g\" x2=\"%g\" y1=\"%.1f\" y2=\"%.1f\"/><text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
			padL, padL+plotW, y(t), y(t), padL-6, y(t)+4, shortDur(t))
	}
	for d := 0; d <= spectrumDecades; d++ {
		p := 100 * (1 - math.Pow(10, -float64(d)))
		fmt.Fprintf(b, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%g\" y2=\"%g\"/><text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%s%%</text>\n",
			x(float64(d)), x(float64(d)), padT, padT+plotH, x(float64(d)), padT+plotH+18, fmtPercentile(p))
	}
	fmt.Fprintf(b, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">percentile</text>\n", padL+plotW/2, chartH-4)
	fmt.Fprintf(b, "<line class=\"ref\" style=\"stroke: var(--b)\" x1=\"%g\" x2=\"%g\" y1=\"%.1f\" y2=\"%.1f\"><title>max: %s</title></line>"+
		"<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">max %s</text>\n",
		padL, padL+plotW, y(maxLat), y(maxLat), shortDur(maxLat), padL+plotW, y(maxLat)-5, shortDur(maxLat))
	polyline(b, "var(--a)", xs, ys, x, y, labels)
	b.WriteString("</svg>\n")
}

// A seriesLine is one line of a chart over time.
type seriesLine struct {
	name, color string
	values      []float64
	dashed      bool
}

// timeSVG draws lines over the seconds of the series, with a legend.
func timeSVG(b *strings.Builder, secs []loadgen.Second, lines []seriesLine, yfmt func(float64) string) {
	var top float64
	for _, l := range lines {
		for _, v := range l.values {
			top = max(top, v)
		}
	}
	yTicks := niceTicks(top)
	ymax := yTicks[len(yTicks)-1]
	n := float64(max(len(secs), 1))
	// Each second's point sits in the middle of its second.
	x := func(v float64) float64 { return padL + v/n*plotW }
	y := func(v float64) float64 { return padT + plotH - v/ymax*plotH }
	id := "throughput"
	if lines[0].name == "p50" {
		id = "latency"
	}
	b.WriteString("<p class=\"legend\">")
	for _, l := range lines {
		style := "background: " + l.color
		fmt.Fprintf(b, "<span><i style=\"%s\"></i>%s</span>", style, html.EscapeString(l.name))
	}
	b.WriteString("</p>\n")
	fmt.Fprintf(b, "<svg id=\"%s\" viewBox=\"0 0 %g %g\" role=\"img\" aria-label=\"%s over time\">\n", id, chartW, chartH, id)
	for _, t := range yTicks {
		fmt.Fprintf(b, "<line class=\"grid\" x1=\"%g\" x2=\"%g\" y1=\"%.1f\" y2=\"%.1f\"/><text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
			padL, padL+plotW, y(t), y(t), padL-6, y(t)+4, yfmt(t))
	}
	for _, t := range niceTicks(n) {
		if t > n {
			break
		}
		fmt.Fprintf(b, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%g\" y2=\"%g\"/><text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%gs</text>\n",
			x(t), x(t), padT, padT+plotH, x(t), padT+plotH+18, t)
	}
	fmt.Fprintf(b, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">seconds into the measured window</text>\n", padL+plotW/2, chartH-4)
	for _, l := range lines {
		xs := make([]float64, len(l.values))
		labels := make([]string, len(l.values))
		for i, v := range l.values {
			xs[i] = float64(i) + 0.5
			labels[i] = fmt.Sprintf("second %d, %s: %s", i, l.name, yfmt(v))
		}
		if l.dashed {
			pts := make([]string, len(xs))
			for i := range xs {
				pts[i] = fmt.Sprintf("%.1f,%.1f", x(xs[i]), y(l.values[i]))
			}
			fmt.Fprintf(b, "<polyline class=\"ref\" stroke=\"%s\" style=\"stroke: %s\" points=\"%s\"><title>%s</title></polyline>\n",
				fallback(l.color), l.color, strings.Join(pts, " "), html.EscapeString(l.name))
			continue
		}
		polyline(b, l.color, xs, l.values, x, y, labels)
	}
	b.WriteString("</svg>\n")
}

// polyline draws a line through the points, with a dot and a hover label
// on each (unless there are too many).
func polyline(b *strings.Builder, color string, xs, ys []float64, x, y func(float64) float64, labels []string) {
	pts := make([]string, len(xs))
	for i := range xs {
		pts[i] = fmt.Sprintf("%.1f,%.1f", x(xs[i]), y(ys[i]))
	}
	fmt.Fprintf(b, "<polyline class=\"line\" stroke=\"%s\" style=\"stroke: %s\" points=\"%s\"/>\n", fallback(color), color, strings.Join(pts, " "))
	if len(xs) > maxPointsWithCircles {
		return
	}
	for i := range xs {
		fmt.Fprintf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\" style=\"fill: %s\"><title>%s</title></circle>\n",
			x(xs[i]), y(ys[i]), fallback(color), color, html.EscapeString(labels[i]))
	}
}

// fallback returns the light theme's colour for a colour variable, for
// the presentation attribute under the style that uses the variable: a
// browser without CSS variables ignores the style and uses the attribute.
func fallback(color string) string {
	switch color {
	case "var(--a)":
		return "#0b63c5"
	case "var(--b)":
		return "#c2410c"
	case "var(--c)":
		return "#15803d"
	}
	return "#6e6e73"
}

// niceTicks returns the ticks of an axis from 0 to at least top, on a 1,
// 2, 5 progression, about five of them.
func niceTicks(top float64) []float64 {
	if !(top > 0) || math.IsInf(top, 0) {
		top = 1
	}
	raw := top / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag * 10
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if raw <= m*mag {
			step = m * mag
			break
		}
	}
	var ticks []float64
	for t := 0.0; ; t += step {
		ticks = append(ticks, t)
		if t >= top*(1-1e-9) {
			return ticks
		}
	}
}

// shortDur formats a latency in nanoseconds with about three digits.
func shortDur(ns float64) string {
	switch {
	case ns == 0:
		return "0"
	case ns < 1e3:
		return fmt.Sprintf("%.0fns", ns)
	case ns < 1e6:
		return trimZeros(fmt.Sprintf("%.3g", ns/1e3)) + "µs"
	case ns < 1e9:
		return trimZeros(fmt.Sprintf("%.3g", ns/1e6)) + "ms"
	}
	return trimZeros(fmt.Sprintf("%.3g", ns/1e9)) + "s"
}

// trimZeros turns the exponent form %g may choose back into digits.
func trimZeros(s string) string {
	var f float64
	if strings.ContainsAny(s, "e") {
		fmt.Sscan(s, &f)
		return fmt.Sprintf("%.0f", f)
	}
	return s
}

// fmtCount formats a rate or count with thousands separators, rounded.
func fmtCount(v float64) string {
	if v < 0 {
		return "-" + fmtCount(-v)
	}
	s := fmt.Sprintf("%.0f", v)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// fmtPercentile formats a percentile without trailing zeros: 99.9, 50.
func fmtPercentile(p float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.4f", p), "0"), ".")
}
