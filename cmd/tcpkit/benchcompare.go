package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/tcpkit/tcpkit/internal/loadgen"
)

// benchCompareCommand is tcpkit bench compare A.json B.json. It is a
// subcommand rather than a --compare flag on bench: it takes two files and
// no address, and none of bench's flags, so as a flag it would need bench
// to accept two arguments or none, and its help would be lost among
// bench's flags. As a subcommand it has its own usage line, its own
// argument check and its own help.
func (a *app) benchCompareCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "compare A.json B.json",
		Short: "Set two saved bench results side by side, with ratios",
		Long: `Read two results saved with tcpkit bench --json (or two --report pages, which
embed the same JSON) and print them side by side: the settings of each run, then throughput, latency percentiles and
errors, with the ratio B/A. Above 1.00 means B is higher: better for
throughput, worse for latency and errors. Settings that differ between the
runs are pointed out, since the figures then compare different loads.`,
		Example: `  tcpkit bench --json -c 8 -d 10s localhost:8124 > before.json
  # ... change the server ...
  tcpkit bench --json -c 8 -d 10s localhost:8124 > after.json
  tcpkit bench compare before.json after.json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res [2]*loadgen.Result
			for i, path := range args {
				r, err := readResult(path)
				if err != nil {
					return failf("%v", err)
				}
				res[i] = r
			}
			if err := writeComparison(a.stdout, args[0], args[1], res[0], res[1]); err != nil {
				return failf("%v", err)
			}
			return nil
		},
	}
}

// readResult reads a result saved with bench --json, or the one embedded
// in a bench --report page.
func readResult(path string) (*loadgen.Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if _, after, ok := bytes.Cut(b, []byte(reportDataStart)); ok {
		b, _, _ = bytes.Cut(after, []byte("</script>"))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var res loadgen.Result
	if err := dec.Decode(&res); err != nil {
		return nil, fmt.Errorf("%s: not a bench --json result: %v", path, err)
	}
	if res.Mode == "" || res.Addr == "" {
		return nil, fmt.Errorf("%s: not a bench --json result (no mode or address)", path)
	}
	return &res, nil
}

// writeComparison prints results a and b, read from files named nameA and
// nameB, side by side with the ratios b/a.
func writeComparison(w io.Writer, nameA, nameB string, a, b *loadgen.Result) error {
	type row struct{ label, a, b, ratio string }
	var rows []row
	add := func(label, va, vb, ratio string) { rows = append(rows, row{label, va, vb, ratio}) }
	num := func(label string, va, vb float64, f func(float64) string) {
		add(label, f(va), f(vb), ratio(va, vb))
	}
	dur := func(d time.Duration) float64 { return float64(d) }
	rate := func(r *loadgen.Result) string {
		if r.Open == nil {
			return "closed loop"
		}
		return fmtCount(r.Open.Requested) + " msgs/s"
	}

	add("", "A", "B", "B/A")
	add("file", nameA, nameB, "")
	add("address", a.Addr, b.Addr, "")
	add("mode", string(a.Mode), string(b.Mode), "")
	add("conns", fmt.Sprint(a.Conns), fmt.Sprint(b.Conns), "")
	add("size", fmt.Sprint(a.Size), fmt.Sprint(b.Size), "")
	add("depth", fmt.Sprint(a.Depth), fmt.Sprint(b.Depth), "")
	add("rate", rate(a), rate(b), "")
	add("measured", shortDur(dur(a.Elapsed)), shortDur(dur(b.Elapsed)), "")
	add("", "", "", "")
	num("messages", float64(a.Messages), float64(b.Messages), fmtCount)
	num("msgs/s", a.MsgsPerSec, b.MsgsPerSec, fmtCount)
	num("MB/s", a.BytesPerSec, b.BytesPerSec, func(v float64) string { return fmt.Sprintf("%.1f", v/1e6) })
	if a.Open != nil || b.Open != nil {
		sent := func(r *loadgen.Result) float64 {
			if r.Open == nil {
				return r.MsgsPerSec
			}
			return r.Open.Sent
		}
		num("sent/s", sent(a), sent(b), fmtCount)
	}
	la, lb := a.Latency, b.Latency
	if la == nil {
		la = &loadgen.Latency{}
	}
	if lb == nil {
		lb = &loadgen.Latency{}
	}
	lat := func(label string, va, vb time.Duration) {
		num(label, dur(va), dur(vb), func(v float64) string {
			if v == 0 {
				return "-"
			}
			return shortDur(v)
		})
	}
	lat("p50", la.P50, lb.P50)
	lat("p90", la.P90, lb.P90)
	lat("p99", la.P99, lb.P99)
	lat("p99.9", la.P999, lb.P999)
	lat("max", la.Max, lb.Max)
	num("errors", float64(a.Errors.Total()), float64(b.Errors.Total()), fmtCount)
	for _, k := range loadgen.ErrorKinds {
		if a.Errors[k] > 0 || b.Errors[k] > 0 {
			num("  "+k.String(), float64(a.Errors[k]), float64(b.Errors[k]), fmtCount)
		}
	}

	var widths [4]int
	for _, r := range rows {
		for i, s := range []string{r.label, r.a, r.b, r.ratio} {
			widths[i] = max(widths[i], utf8.RuneCountInString(s))
		}
	}
	var out strings.Builder
	for _, r := range rows {
		line := pad(r.label, -widths[0]) + "  " + pad(r.a, widths[1]) + "  " + pad(r.b, widths[2]) + "  " + pad(r.ratio, widths[3])
		out.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	var diffs []string
	if a.Mode != b.Mode {
		diffs = append(diffs, "mode")
	}
	if a.Conns != b.Conns {
		diffs = append(diffs, "conns")
	}
	if a.Size != b.Size {
		diffs = append(diffs, "size")
	}
	if a.Depth != b.Depth {
		diffs = append(diffs, "depth")
	}
	if rate(a) != rate(b) {
		diffs = append(diffs, "rate")
	}
	if len(diffs) > 0 {
		fmt.Fprintf(&out, "note: the runs differ in %s: the figures compare different loads\n", strings.Join(diffs, ", "))
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// pad pads s with spaces to width runes: on the left if width is
// positive, on the right if negative. (fmt's widths count bytes, and µ
// takes two.)
func pad(s string, width int) string {
	n := utf8.RuneCountInString(s)
	switch {
	case width > n:
		return strings.Repeat(" ", width-n) + s
	case -width > n:
		return s + strings.Repeat(" ", -width-n)
	}
	return s
}

// ratio formats vb/va, or says why there is none.
func ratio(va, vb float64) string {
	switch {
	case va == 0 && vb == 0:
		return "="
	case va == 0:
		return "new"
	}
	return fmt.Sprintf("%.2f", vb/va)
}
