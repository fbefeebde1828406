package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tcpkit/tcpkit"
	"github.com/tcpkit/tcpkit/internal/loadgen"
)

// benchOptions are the flags of tcpkit bench.
type benchOptions struct {
	mode     *choiceValue
	conns    int
	size     int
	depth    int
	duration time.Duration
	count    int64
	warmup   time.Duration
	timeout  time.Duration
	greeting *textValue
	sources  int
	pid      int
	json     bool
	tls      clientTLSFlags
	rate     float64
	report   string

	depthSet bool   // --depth was given
	command  string // the command line, for the report
}

func (a *app) benchCommand() *cobra.Command {
	modes := make([]string, len(loadgen.Modes))
	for i, m := range loadgen.Modes {
		modes[i] = string(m)
	}
	o := &benchOptions{
		mode:     &choiceValue{value: string(loadgen.PingPong), choices: modes},
		greeting: newTextValue(""),
	}
	cmd := &cobra.Command{
		Use:   "bench ADDR",
		Short: "Measure a TCP or Unix-socket echo server, checking every byte",
		Long: `Put load on the echo server at ADDR and report what it did: messages per
second, MB/s, latency percentiles (p50, p90, p99, p99.9, max) from an HDR
histogram, and errors by kind.

Every echoed byte is checked: each message carries its connection, its
sequence number and a pattern, so a server that corrupts, loses, truncates
or reorders data is reported as such, not merely timed. bench exits with
status 1 if any error was counted.

Modes:
  ping-pong   each connection keeps one message in flight (latency)
  pipeline    each connection keeps --depth messages in flight
  stream      one-way throughput: write flat out, read the echo on the side
  connect     connections per second: connect, exchange one message, close
  idle        hold --conns idle connections for --duration (memory per
              connection with --pid)

With --rate N the load is open-loop, as wrk2's: N messages a second in
all, spread over the connections, each sent on its schedule whether or not
the echoes of earlier ones have come back (up to --depth in flight per
connection, default 1024 with --rate). Latency is measured from each
message's scheduled send time, so a server that falls behind is charged for
the wait of every message queued behind the slow one (coordinated-omission
correction). A message due when --depth are in flight waits for a slot and
goes out late: the schedule does not slip, and the wait shows as latency.
The report gives the requested, sent and achieved rates.

--report FILE.html writes a self-contained page (no network needed): the
latency spectrum, throughput and latency second by second, and the run's
parameters. --json output includes the same data; two saved results are
set side by side, with ratios, by "tcpkit bench compare A.json B.json".

Each run is bounded by --duration and/or --count, after --warmup. With
--pid, the server's CPU time is read from /proc for the measured window and
reported as messages per server CPU-second, the figure that compares servers
when the load generator saturates its own core; in idle mode, the server's
memory growth per connection too.

The server must echo. If it greets each connection first, as tcpkit echo
does, give the greeting with --greeting, or start the server with
--greeting ''. Load goes to loopback or Unix-socket servers you run.`,
		Example: `  tcpkit echo --greeting '' --quiet localhost:8124 &
  tcpkit bench localhost:8124                              # 10s ping-pong, 1 connection, 64 B
  tcpkit bench -c 50 -s 4096 -d 5s localhost:8124          # 50 connections, 4 KiB messages
  tcpkit bench --mode pipeline -c 50 --depth 16 localhost:8124
  tcpkit bench --mode connect -c 8 -d 5s /tmp/echo.sock
  tcpkit bench --mode idle -c 5000 --sources 4 --pid $(pgrep -f 'tcpkit echo') localhost:8124
  tcpkit bench --greeting 'hello\r\n' localhost:8124       # against tcpkit echo's default greeting
  tcpkit bench --json -n 100000 localhost:8124 > result.json
  tcpkit bench --rate 20000 -c 16 -d 30s --report run.html localhost:8124   # open loop, wrk2-style
  tcpkit bench compare before.json after.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.depthSet = cmd.Flags().Changed("depth")
			o.command = commandLine(cmd, args)
			return a.bench(cmd.Context(), args[0], o)
		},
	}
	cmd.AddCommand(a.benchCompareCommand())
	f := cmd.Flags()
	f.Var(o.mode, "mode", "the shape of the load")
	f.IntVarP(&o.conns, "conns", "c", loadgen.DefaultConns, "connections (in connect mode: connections made at once)")
	f.IntVarP(&o.size, "size", "s", loadgen.DefaultSize, fmt.Sprintf("message size in bytes (%d to %d)", loadgen.MinSize, loadgen.MaxSize))
	f.IntVar(&o.depth, "depth", loadgen.DefaultDepth, fmt.Sprintf("messages in flight per connection, in pipeline mode; with --rate, the most in flight (default %d there)", loadgen.DefaultRateDepth))
	f.DurationVarP(&o.duration, "duration", "d", 0, "length of the measured window; the hold time in idle mode (default 10s unless --count is set)")
	f.Int64VarP(&o.count, "count", "n", 0, "stop after this many messages (connections, in connect mode)")
	f.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before the window")
	f.DurationVar(&o.timeout, "timeout", loadgen.DefaultTimeout, "fail a dial, read or write that makes no progress for this long")
	f.Var(o.greeting, "greeting", `what the server sends first on each connection, checked (escapes \r \n \t \\ \xHH)`)
	f.IntVar(&o.sources, "sources", 0, "spread connections over this many source addresses, 127.0.0.1 up (TCP, for more than ~28k connections)")
	f.IntVar(&o.pid, "pid", 0, "the server's process id, to report its CPU time and memory from /proc")
	f.BoolVar(&o.json, "json", false, "print the result as JSON, for machines")
	f.Float64Var(&o.rate, "rate", 0, "open loop: send this many messages per second in all, on schedule, and measure latency from the schedule (ping-pong and pipeline modes)")
	f.StringVar(&o.report, "report", "", "also write the result as a self-contained HTML page to this file")
	o.tls.register(f)
	return cmd
}

// bench runs one measurement and prints its result.
func (a *app) bench(ctx context.Context, addr string, o *benchOptions) error {
	cfg := loadgen.Config{
		Addr:      addr,
		Mode:      loadgen.Mode(o.mode.value),
		Conns:     o.conns,
		Size:      o.size,
		Depth:     o.depth,
		Duration:  o.duration,
		Count:     o.count,
		Warmup:    o.warmup,
		Timeout:   o.timeout,
		Greeting:  o.greeting.bytes,
		ServerPID: o.pid,
	}
	if o.rate != 0 {
		if math.IsNaN(o.rate) || math.IsInf(o.rate, 0) || o.rate < 0 {
			return &exitErr{code: exitUsage, msg: fmt.Sprintf("--rate %v: want a positive number of messages per second", o.rate)}
		}
		if cfg.Mode != loadgen.PingPong && cfg.Mode != loadgen.Pipeline {
			return &exitErr{code: exitUsage, msg: fmt.Sprintf("--rate applies to the ping-pong and pipeline modes, not %s", cfg.Mode)}
		}
		cfg.Rate = o.rate
		if !o.depthSet {
			cfg.Depth = 0 // the open-loop default
		}
	}
	if o.sources > 0 {
		cfg.SourceIPs = loadgen.LoopbackSources(o.sources)
	}
	tlsCfg, err := o.tls.config()
	if err != nil {
		return err
	}
	if tlsCfg != nil && tlsCfg.ServerName == "" {
		if network, address, err := tcpkit.ParseAddr(addr); err == nil && network == "tcp" {
			tlsCfg.ServerName, _, _ = net.SplitHostPort(address)
		}
	}
	cfg.TLS = tlsCfg
	res, err := loadgen.Run(ctx, cfg, a.stderr)
	if err != nil {
		return failf("%s", strings.TrimPrefix(err.Error(), "loadgen: "))
	}
	if o.json {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return failf("%v", err)
		}
	} else if err := res.WriteTable(a.stdout); err != nil {
		return failf("%v", err)
	}
	if o.report != "" {
		if err := writeReportFile(o.report, res, o.command); err != nil {
			return failf("--report: %v", err)
		}
	}
	if n := res.Errors.Total(); n > 0 {
		return failf("%d errors: %s", n, res.Errors)
	}
	return nil
}
