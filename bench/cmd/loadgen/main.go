// Command loadgen runs one load-generator run against an echo server and
// prints the result: a table on stdout and, with -json, the raw result in a
// file. It is a thin driver over tcpkit's internal/loadgen package, the
// engine of "tcpkit bench", for the benchmark scripts.
//
//	loadgen -addr 127.0.0.1:8124 -mode ping-pong -conns 50 -size 64 -duration 3s -pid 1234
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/tcpkit/tcpkit/internal/loadgen"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg      loadgen.Config
		mode     string
		greeting string
		sources  int
		jsonOut  string
		quiet    bool
		cpuProf  string
	)
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:8124", "echo server address, in tcpkit's grammar (host:port or a socket path)")
	flag.StringVar(&mode, "mode", "ping-pong", "ping-pong, pipeline, stream, connect or idle")
	flag.IntVar(&cfg.Conns, "conns", 1, "connections (connect mode: connections made at once)")
	flag.IntVar(&cfg.Size, "size", 64, "message size in bytes")
	flag.IntVar(&cfg.Depth, "depth", 16, "messages in flight per connection (pipeline mode)")
	flag.DurationVar(&cfg.Duration, "duration", 0, "measured window (idle mode: hold time); default 10s unless -count")
	flag.Int64Var(&cfg.Count, "count", 0, "messages (connect mode: connections) to measure")
	flag.DurationVar(&cfg.Warmup, "warmup", 0, "unmeasured warmup before the window")
	flag.DurationVar(&cfg.Timeout, "timeout", 0, "bound on each dial, read and write (default 5s)")
	flag.StringVar(&greeting, "greeting", "", `greeting the server sends first, with \r \n escapes (tcpkit echo: 'hello\r\n')`)
	flag.IntVar(&sources, "sources", 0, "make connections from 127.0.0.1 to 127.0.0.N in turn")
	flag.IntVar(&cfg.ServerPID, "pid", 0, "server process id: report its CPU time and memory")
	flag.StringVar(&jsonOut, "json", "", "write the result as JSON to this file")
	flag.BoolVar(&quiet, "quiet", false, "no live status line")
	flag.StringVar(&cpuProf, "cpuprofile", "", "write a CPU profile of the load generator to this file")
	flag.Parse()

	if cpuProf != "" {
		f, err := os.Create(cpuProf)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	var err error
	if cfg.Mode, err = loadgen.ParseMode(mode); err != nil {
		return err
	}
	cfg.Greeting = []byte(strings.NewReplacer(`\r`, "\r", `\n`, "\n", `\t`, "\t", `\\`, `\`).Replace(greeting))
	if sources > 0 {
		cfg.SourceIPs = loadgen.LoopbackSources(sources)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var progress *os.File
	if !quiet {
		progress = os.Stderr
	}
	res, err := loadgen.Run(ctx, cfg, progress)
	if err != nil {
		return err
	}
	if err := res.WriteTable(os.Stdout); err != nil {
		return err
	}
	if jsonOut != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(jsonOut, append(b, '\n'), 0o644)
	}
	return nil
}
