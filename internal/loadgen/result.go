package loadgen

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// A Result is what a run measured. It marshals to JSON for machines (times
// in nanoseconds, sizes in bytes); WriteTable prints it for people.
type Result struct {
	// The run's settings, defaults filled in.
	Addr    string `json:"addr"`
	Network string `json:"network"` // "tcp" or "unix"
	Mode    Mode   `json:"mode"`
	Conns   int    `json:"conns"`
	Size    int    `json:"size"`
	Depth   int    `json:"depth"`

	// Start is when the measured window began; Elapsed is its length (the
	// hold time in Idle mode). Warmup ran before Start.
	Start   time.Time     `json:"start"`
	Warmup  time.Duration `json:"warmup_ns"`
	Elapsed time.Duration `json:"elapsed_ns"`

	// Interrupted is set when the run's context ended the measured window
	// early.
	Interrupted bool `json:"interrupted,omitempty"`

	// Stalled is set when a run bounded by Count alone was ended because
	// no message completed for a whole Timeout; Errors say why.
	Stalled bool `json:"stalled,omitempty"`

	// Messages is the number of messages whose echo came back, checked,
	// within the measured window; in Connect mode, the connections made,
	// each with its one message; in Idle mode, the check exchanges.
	Messages int64 `json:"messages"`
	// MsgsPerSec is Messages per second of the window.
	MsgsPerSec float64 `json:"msgs_per_sec"`
	// BytesPerSec is the payload echoed per second, in one direction.
	BytesPerSec float64 `json:"bytes_per_sec"`

	// Latency summarises the latencies of the messages in the window (in
	// Idle mode, the time to open and check each connection). It is nil
	// in Stream mode, and when no message came back.
	Latency *Latency `json:"latency,omitempty"`

	// Spectrum is the latency distribution in more detail than Latency:
	// percentiles evenly spaced on HdrHistogram's 1/(1-p) axis, from 0 to
	// 99.999, then 100 (the max). Nil when Latency is.
	Spectrum []Quantile `json:"spectrum,omitempty"`

	// Open holds the figures of an open-loop run (Config.Rate).
	Open *OpenLoop `json:"open_loop,omitempty"`

	// Series is the measured window second by second: messages completed
	// and their latencies. Not kept in Idle mode.
	Series []Second `json:"series,omitempty"`

	// Errors counts the failures of the whole run, warmup and finish
	// included, by kind; ErrorSamples gives the first few in words.
	Errors       ErrorCounts `json:"errors"`
	ErrorSamples []string    `json:"error_samples,omitempty"`

	// LoadCPU is the CPU time this process used in the window, and
	// LoadCPUPerMsg that time per message: the cost of the load itself.
	LoadCPU       time.Duration `json:"load_cpu_ns"`
	LoadCPUPerMsg time.Duration `json:"load_cpu_per_msg_ns"`

	// Server is the server's usage, if Config.ServerPID was set.
	Server *ServerUsage `json:"server,omitempty"`

	// Idle holds the figures of Idle mode.
	Idle *IdleStats `json:"idle,omitempty"`

	hist *hdrhistogram.Histogram
}

// Latency summarises a latency distribution.
type Latency struct {
	Count int64         `json:"count"`
	Min   time.Duration `json:"min_ns"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
}

// OpenLoop holds the figures of an open-loop run: the rate asked for,
// and what came of it.
type OpenLoop struct {
	// Requested is Config.Rate, in messages per second.
	Requested float64 `json:"requested_msgs_per_sec"`
	// Sent is the rate at which messages were written in the window; it
	// falls short of Requested when messages wait at the in-flight bound
	// or the load generator cannot keep up. Result.MsgsPerSec is the rate
	// at which echoes came back: the achieved rate.
	Sent float64 `json:"sent_msgs_per_sec"`
	// Depth is the bound on messages in flight per connection.
	Depth int `json:"depth"`
	// Held counts the messages that waited, past their scheduled time,
	// for a connection to have fewer than Depth in flight. Their latency
	// includes the wait.
	Held int64 `json:"held"`
	// Unsent counts the messages that were due but not yet sent when the
	// window ended (behind schedule); they are not in the latencies.
	Unsent int64 `json:"unsent"`
	// Abandoned counts the messages still in flight when the run's finish
	// was cut short (Timeout and 2s after the window): they are not in the
	// latencies either.
	Abandoned int64 `json:"abandoned,omitempty"`
}

// ServerUsage is the server process's usage over the measured window, read
// from /proc.
type ServerUsage struct {
	PID int `json:"pid"`
	// CPU is the CPU time, user and system, the server used in the window
	// (in Idle mode, while the connections were held idle).
	CPU time.Duration `json:"cpu_ns"`
	// MsgsPerCPUSecond is Messages per second of server CPU time: the
	// server's efficiency, independent of how fast the load could go.
	MsgsPerCPUSecond float64 `json:"msgs_per_cpu_second"`
	// RSSBefore and RSSAfter are the server's resident memory before and
	// after (in Idle mode, before the first connection and at the end of
	// the hold).
	RSSBefore int64 `json:"rss_before_bytes"`
	RSSAfter  int64 `json:"rss_after_bytes"`
	// Error, if not empty, says why /proc could not be read; the other
	// fields are then zero.
	Error string `json:"error,omitempty"`
}

// IdleStats are the figures of an Idle run.
type IdleStats struct {
	// Established connections were opened and passed their first check;
	// Alive ones passed the second, after the hold.
	Established int64 `json:"established"`
	Alive       int64 `json:"alive"`
	// ConnectTime is how long opening them took, and ConnectRate the
	// connections opened per second.
	ConnectTime time.Duration `json:"connect_time_ns"`
	ConnectRate float64       `json:"connect_rate"`
	// ServerConnectCPU is the server's CPU time while they were opened.
	ServerConnectCPU time.Duration `json:"server_connect_cpu_ns"`
	// RSSPerConn is the server's memory growth, from before the first
	// connection to the end of the hold, per established connection.
	RSSPerConn float64 `json:"rss_per_conn_bytes"`
}

// Histogram returns the merged latency histogram, in nanoseconds, or nil in
// Stream mode. It is not part of the JSON form.
func (res *Result) Histogram() *hdrhistogram.Histogram { return res.hist }

// fill copies the run's settings into res.
func (res *Result) fill(cfg *resolved) {
	res.Addr, res.Network, res.Mode = cfg.Addr, cfg.network, cfg.Mode
	res.Conns, res.Size, res.Depth = cfg.Conns, cfg.Size, cfg.Depth
}

func (res *Result) setLatency(h *hdrhistogram.Histogram) {
	res.hist = h
	if h.TotalCount() == 0 {
		return
	}
	q := h.ValueAtPercentiles([]float64{50, 90, 99, 99.9})
	res.Latency = &Latency{
		Count: h.TotalCount(),
		Min:   time.Duration(h.Min()),
		Mean:  time.Duration(h.Mean()),
		P50:   time.Duration(q[50]),
		P90:   time.Duration(q[90]),
		P99:   time.Duration(q[99]),
		P999:  time.Duration(q[99.9]),
		Max:   time.Duration(h.Max()),
	}
	res.Spectrum = spectrum(h)
}

// setOpen fills in the figures of an open-loop run at rate.
func (res *Result) setOpen(rate float64, ws []*worker) {
	o := &OpenLoop{Requested: rate, Depth: res.Depth}
	var sent int64
	for _, w := range ws {
		sent += w.open.sent
		o.Held += w.open.held
		o.Unsent += w.open.unsent
		o.Abandoned += w.open.abandoned
	}
	if secs := res.Elapsed.Seconds(); secs > 0 {
		o.Sent = float64(sent) / secs
	}
	res.Open = o
}

func (res *Result) setErrors(ws []*worker, samples []string) {
	res.Errors = ErrorCounts{}
	for _, w := range ws {
		for k := range w.kinds {
			if n := w.kinds[k].Load(); n > 0 {
				res.Errors[ErrorKind(k)] += n
			}
		}
	}
	res.ErrorSamples = samples
}

func (res *Result) setRates() {
	if secs := res.Elapsed.Seconds(); secs > 0 {
		res.MsgsPerSec = float64(res.Messages) / secs
		res.BytesPerSec = res.MsgsPerSec * float64(res.Size)
	}
	if res.Messages > 0 {
		res.LoadCPUPerMsg = res.LoadCPU / time.Duration(res.Messages)
	}
}

func (res *Result) setServer(pid int, before, after procSample, err error) {
	switch {
	case pid <= 0:
		return
	case err != nil:
		res.Server = &ServerUsage{PID: pid, Error: err.Error()}
		return
	}
	s := &ServerUsage{PID: pid, CPU: after.cpu - before.cpu, RSSBefore: before.rss, RSSAfter: after.rss}
	if s.CPU > 0 && res.Mode != Idle {
		s.MsgsPerCPUSecond = float64(res.Messages) / s.CPU.Seconds()
	}
	res.Server = s
}

// WriteTable writes res for people: one figure per line, aligned.
func (res *Result) WriteTable(w io.Writer) error {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "  %-12s %s\n", label, fmt.Sprintf(format, args...))
	}
	shape := fmt.Sprintf("%d connections, %d-byte messages", res.Conns, res.Size)
	switch {
	case res.Open != nil:
		shape += fmt.Sprintf(", open loop, up to %d in flight on each", res.Depth)
	case res.Mode == Pipeline:
		shape += fmt.Sprintf(", %d in flight on each", res.Depth)
	}
	fmt.Fprintf(&b, "%s (%s): %s, %s\n", res.Addr, res.Network, res.Mode, shape)
	if res.Idle != nil {
		res.idleLines(line)
	} else {
		window := fmtDur(res.Elapsed)
		if res.Warmup > 0 {
			window += " after " + fmtDur(res.Warmup) + " warmup"
		}
		if res.Interrupted {
			window += " (interrupted)"
		}
		if res.Stalled {
			window += " (stalled: no message completed in a whole timeout)"
		}
		line("measured", "%s", window)
		unit := "msgs"
		if res.Mode == Connect {
			unit = "conns"
		}
		line("messages", "%s %s, %s %s/s, %s each way", count(res.Messages), unit,
			count(int64(res.MsgsPerSec)), unit, fmtRate(res.BytesPerSec))
		if o := res.Open; o != nil {
			res.openLines(line)
		}
		if l := res.Latency; l != nil {
			label := "latency"
			if res.Open != nil {
				label = "latency*"
			}
			line(label, "p50 %s  p90 %s  p99 %s  p99.9 %s  max %s",
				fmtDur(l.P50), fmtDur(l.P90), fmtDur(l.P99), fmtDur(l.P999), fmtDur(l.Max))
		}
	}
	line("errors", "%s", res.Errors)
	for _, s := range res.ErrorSamples {
		line("", "%s", s)
	}
	if s := res.Server; s != nil {
		switch {
		case s.Error != "":
			line("server", "pid %d: %s", s.PID, s.Error)
		case res.Idle == nil:
			unit := "msgs"
			if res.Mode == Connect {
				unit = "conns"
			}
			line("server CPU", "%s (pid %d): %s %s per CPU-second", fmtDur(s.CPU), s.PID, count(int64(s.MsgsPerCPUSecond)), unit)
		}
	}
	if res.Idle == nil && res.Messages > 0 {
		line("load CPU", "%s: %s per message", fmtDur(res.LoadCPU), fmtDur(res.LoadCPUPerMsg))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// openLines writes the lines of an open-loop result.
func (res *Result) openLines(line func(label, format string, args ...any)) {
	o := res.Open
	pct := 0.0
	if o.Requested > 0 {
		pct = 100 * res.MsgsPerSec / o.Requested
	}
	line("rate", "requested %s msgs/s, sent %s msgs/s, achieved %s msgs/s (%.1f%%)",
		count(int64(o.Requested+0.5)), count(int64(o.Sent+0.5)), count(int64(res.MsgsPerSec+0.5)), pct)
	tail := ""
	if o.Abandoned > 0 {
		tail = fmt.Sprintf(", %s abandoned in flight", count(o.Abandoned))
	}
	line("", "%s held at the bound of %d in flight, %s unsent at the end%s", count(o.Held), o.Depth, count(o.Unsent), tail)
	line("", "latency* is from each message's scheduled send, for every message scheduled in the window")
}

// idleLines writes the lines of an Idle result.
func (res *Result) idleLines(line func(label, format string, args ...any)) {
	id := res.Idle
	line("opened", "%s of %d in %s (%s/s)", count(id.Established), res.Conns, fmtDur(id.ConnectTime), count(int64(id.ConnectRate)))
	line("held", "%s idle; %s alive at the end", fmtDur(res.Elapsed), count(id.Alive))
	if l := res.Latency; l != nil {
		line("open time", "p50 %s  p99 %s  max %s (dial, greeting, first echo)", fmtDur(l.P50), fmtDur(l.P99), fmtDur(l.Max))
	}
	if s := res.Server; s != nil && s.Error == "" {
		line("server RSS", "%s before, %s after: %s per connection",
			fmtBytes(float64(s.RSSBefore)), fmtBytes(float64(s.RSSAfter)), fmtBytes(id.RSSPerConn))
		line("server CPU", "%s opening, %s idle (pid %d)", fmtDur(id.ServerConnectCPU), fmtDur(s.CPU), s.PID)
	}
}

// fmtDur formats d with about three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < 100*time.Microsecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// fmtRate formats a rate in bytes per second, in decimal megabytes.
func fmtRate(bps float64) string { return fmt.Sprintf("%.1f MB/s", bps/1e6) }

// fmtBytes formats a size in binary units.
func fmtBytes(n float64) string {
	switch {
	case n < 0:
		return "-" + fmtBytes(-n)
	case n < 1<<10:
		return fmt.Sprintf("%.0f B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", n/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", n/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", n/(1<<30))
}
