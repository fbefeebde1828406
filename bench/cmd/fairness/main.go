// Command fairness measures whether one event loop stays fair to a
// ping-pong client while other connections flood it (GitHub issue 17).
//
// For each server it starts a fresh bin/fairserver process pinned to one
// CPU (one event loop; GOMAXPROCS=1) and runs, back to back:
//
//   - alone: one ping-pong connection (send 64 B, wait for the echo,
//     repeat, timing each round trip) for -duration after -warmup;
//   - for each N in -floods: the same ping-pong beside N flooders, each a
//     process of its own that writes -flood-size chunks as fast as the
//     server takes them, for -duration after -warmup (the flooders start
//     at the warmup). The server only reads a flood, or, with
//     -flood-echo, echoes it (with backpressure) and the flooder reads
//     the echo back and drops it.
//
// The ping-pong client and the flooders run on this process's CPU (run it
// pinned: fairness.sh puts it on CPU 1). Each flooder is this program
// again, in the hidden -flood-worker role, under SCHED_IDLE (chrt --idle),
// so that the kernel, not Go's scheduler, shares the client CPU, and gives
// it to the ping-pong client (which sleeps while it waits) whenever that
// wakes.
//
// The server "control" is the reference for what this machine allows: the
// ping-pong goes to one process (tcpkit's goroutine engine) and the flood
// to another, a sink, both on the server CPU, the sink under SCHED_IDLE as
// the flooders are. The kernel's scheduler, not an event loop, then
// shares that CPU, serving the ping-pong first: what the ping-pong still
// loses is the client CPU's and the kernel's doing (on loopback the
// flood's TCP receive path runs on the sender's CPU, and this kernel does
// not preempt a long write(2)).
//
// The machine may be shared: before each server's run the driver waits
// (up to -quiet-wait) for a quiet second; each phase measures the share of
// the CPUs (the server's and this process's) that other processes took;
// and a server's run is made again (up to 3 times) when a phase saw more
// than -max-others percent.
//
// With -hog, a busy loop at the default priority shares the server CPU in
// every phase, the ping-pong alone included: a contended server, which the
// flood can saturate. (The control's sink, under SCHED_IDLE, then gets no
// CPU: its row means nothing there.)
//
// It prints a Markdown table, and writes it with every phase's raw figures
// (results.json) to -out.
//
//	fairness -bin bin -out results/fairness-X [-servers tcpkit-epoll,tcpkit,gnet,control]
//	         [-duration 5s] [-warmup 500ms] [-floods 1,4] [-flood-size 262144] [-flood-echo] [-reps 3]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tcpkit/tcpkit/bench/internal/harness"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fairness:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	bin        string
	out        string
	servers    []string
	duration   time.Duration
	warmup     time.Duration
	floods     []int
	floodSize  int
	size       int
	reps       int
	gomaxprocs int
	serverCPU  int
	floodIdle  bool
	floodEcho  bool
	quietWait  time.Duration
	hog        bool
	maxOthers  float64
	grace      time.Duration
	targetKept float64
	targetP99  time.Duration
}

// floodPrefix returns the command that runs a flooder or the control's
// sink: chrt --idle 0 (SCHED_IDLE: a task of any other policy that wakes
// on the CPU preempts it at once), or a plain env.
func (cfg *config) floodPrefix() []string {
	if cfg.floodIdle {
		return []string{"chrt", "--idle", "0"}
	}
	return []string{"env"}
}

// servers the driver knows, in the default order.
var knownServers = []string{"tcpkit-epoll", "tcpkit", "gnet", "control"}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fairness", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	var servers, floods string
	var worker floodWorker
	fs.StringVar(&cfg.bin, "bin", "", "directory holding fairserver (default: this program's)")
	fs.StringVar(&cfg.out, "out", "", "directory for the raw results and summary.md (default results/fairness-<UTC time>)")
	fs.StringVar(&servers, "servers", strings.Join(knownServers, ","), "servers, comma-separated: "+strings.Join(knownServers, ", "))
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "measured window of each phase")
	fs.DurationVar(&cfg.warmup, "warmup", 500*time.Millisecond, "unmeasured time before each window (the flooders ramp up)")
	fs.StringVar(&floods, "floods", "1,4", "flooder counts, one phase each, comma-separated")
	fs.BoolVar(&cfg.floodEcho, "flood-echo", false, "the server echoes the floods too, and the flooders read the echo back (and discard it)")
	fs.BoolVar(&cfg.hog, "hog", false, "in every phase, a busy loop at the default priority shares the server CPU (the server gets about half of it): a contended server; the control's sink, under SCHED_IDLE, then gets nothing")
	var hogUntil int64
	fs.Int64Var(&hogUntil, "hog-worker", 0, "(internal) spin until this time, Unix ns")
	fs.IntVar(&cfg.floodSize, "flood-size", 256<<10, "bytes per write of a flooder")
	fs.IntVar(&cfg.size, "size", 64, "ping-pong message size, 16 and up")
	fs.IntVar(&cfg.reps, "reps", 3, "repetitions; the table gives medians (and the range of the kept fraction)")
	fs.IntVar(&cfg.gomaxprocs, "gomaxprocs", 1, "GOMAXPROCS of the server processes")
	fs.IntVar(&cfg.serverCPU, "server-cpu", 0, "CPU the server is pinned to (-1: not pinned)")
	fs.BoolVar(&cfg.floodIdle, "flood-idle", true, "run the flooders, and the control's sink, under SCHED_IDLE (chrt --idle): the CPU they share serves the ping-pong first")
	fs.Float64Var(&cfg.maxOthers, "max-others", 10, "run a server again (3 tries) when other processes took more than this percent of the CPUs during a phase")
	fs.DurationVar(&cfg.quietWait, "quiet-wait", time.Minute, "before each server run, wait up to this long for a second in which other processes take at most -max-others of the CPUs")
	fs.DurationVar(&cfg.grace, "grace", 5*time.Second, "how long a round trip may take past the window before the phase gives up on it")
	fs.Float64Var(&cfg.targetKept, "target-kept", 0.5, "target: the ping-pong keeps at least this fraction of its rate alone")
	fs.DurationVar(&cfg.targetP99, "target-p99", 2*time.Millisecond, "target: p99 round trip with the flood under this")
	fs.StringVar(&worker.addr, "flood-worker", "", "(internal) flood ADDR as one flooder")
	fs.Int64Var(&worker.from, "from", 0, "(internal) window start, Unix ns")
	fs.Int64Var(&worker.until, "until", 0, "(internal) window end, Unix ns")
	fs.Int64Var(&worker.stop, "stop", 0, "(internal) when to stop flooding, Unix ns")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if hogUntil != 0 {
		spin(time.Unix(0, hogUntil))
		return nil
	}
	if worker.addr != "" {
		worker.size, worker.echo = cfg.floodSize, cfg.floodEcho
		return worker.run(stdout)
	}
	cfg.servers = strings.Split(servers, ",")
	for _, s := range cfg.servers {
		if !slices.Contains(knownServers, s) {
			return fmt.Errorf("unknown server %q (want some of %s)", s, strings.Join(knownServers, ", "))
		}
	}
	for _, f := range strings.Split(floods, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 64 {
			return fmt.Errorf("bad -floods entry %q (want 1 to 64)", f)
		}
		cfg.floods = append(cfg.floods, n)
	}
	switch {
	case cfg.size < 16:
		return errors.New("-size must be at least 16")
	case cfg.floodSize < 1:
		return errors.New("-flood-size must be positive")
	case cfg.reps < 1:
		return errors.New("-reps must be at least 1")
	case cfg.duration <= 0 || cfg.warmup < 0:
		return errors.New("-duration must be positive and -warmup not negative")
	}
	if cfg.bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.bin = filepath.Dir(exe)
	}
	if cfg.out == "" {
		cfg.out = filepath.Join("results", "fairness-"+time.Now().UTC().Format("20060102T150405Z"))
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "fairness: raw results in %s\n", cfg.out)

	var runs []serverRun
	for rep := 1; rep <= cfg.reps; rep++ {
		for k := range cfg.servers {
			name := cfg.servers[(k+rep-1)%len(cfg.servers)] // the order rotates between repetitions
			fmt.Fprintf(stderr, "fairness: rep %d: %s\n", rep, name)
			var r serverRun
			for try := 1; try <= 3; try++ {
				if waited, busy := waitQuiet(ctx, &cfg); busy > cfg.maxOthers/100 {
					fmt.Fprintf(stderr, "fairness:   the machine stayed busy (others %s) for %v: going on\n", harness.Pct(busy), waited.Round(time.Second))
				}
				var err error
				r, err = measureServer(ctx, &cfg, name, rep, stderr)
				if err != nil {
					return fmt.Errorf("%s, rep %d: %w", name, rep, err)
				}
				r.Tries = try
				if r.othersMax() <= cfg.maxOthers/100 {
					break
				}
				fmt.Fprintf(stderr, "fairness:   other processes took %s of the CPUs in a phase (over %.0f%%)", harness.Pct(r.othersMax()), cfg.maxOthers)
				if try < 3 {
					fmt.Fprintf(stderr, ": again\n")
				} else {
					fmt.Fprintf(stderr, ": kept after 3 tries\n")
				}
			}
			runs = append(runs, r)
		}
	}
	raw, err := json.MarshalIndent(runs, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.out, "results.json"), append(raw, '\n'), 0o644); err != nil {
		return err
	}
	var md bytes.Buffer
	writeSummary(&md, &cfg, runs)
	if err := os.WriteFile(filepath.Join(cfg.out, "summary.md"), md.Bytes(), 0o644); err != nil {
		return err
	}
	_, err = stdout.Write(md.Bytes())
	return err
}

// A serverRun is one repetition on one server: its phases in order, the
// first alone.
type serverRun struct {
	Server string  `json:"server"`
	Rep    int     `json:"rep"`
	Phases []phase `json:"phases"`
	// Discarded is what the server said it read from the flooders, at its
	// exit (the sink's, for the control).
	Discarded int64 `json:"discarded"`
	// Tries is how many times the run was made (more than 1: other
	// processes took too much CPU in an earlier one).
	Tries int `json:"tries"`
}

// waitQuiet waits, up to cfg.quietWait, for a second in which processes
// took at most cfg.maxOthers percent of the CPUs (the server's and this
// process's; nothing of ours runs now). It returns how long it waited and
// the share of the last second.
func waitQuiet(ctx context.Context, cfg *config) (waited time.Duration, busy float64) {
	cpus, err := harness.AllowedCPUs()
	if err != nil {
		return 0, 0
	}
	if cfg.serverCPU >= 0 && !slices.Contains(cpus, cfg.serverCPU) {
		cpus = append(cpus, cfg.serverCPU)
	}
	start := time.Now()
	for range 3600 {
		b0, _ := harness.BusyTicks(cpus)
		m0, _ := harness.CPUTime(os.Getpid())
		t0 := time.Now()
		if !harness.Sleep(ctx, time.Second) {
			break
		}
		b1, _ := harness.BusyTicks(cpus)
		m1, _ := harness.CPUTime(os.Getpid())
		busy = ((time.Duration(b1-b0)*10*time.Millisecond - (m1 - m0)).Seconds()) / time.Since(t0).Seconds() / float64(len(cpus))
		if busy <= cfg.maxOthers/100 || time.Since(start) >= cfg.quietWait {
			break
		}
	}
	return time.Since(start), busy
}

// othersMax returns the largest share of the CPUs that other processes
// took during one of r's phases.
func (r *serverRun) othersMax() float64 {
	m := 0.0
	for _, p := range r.Phases {
		m = max(m, p.Others)
	}
	return m
}

// A phase is one measured window.
type phase struct {
	Floods     int           `json:"floods"`
	Window     time.Duration `json:"window_ns"`
	RoundTrips int           `json:"round_trips"`
	Rate       float64       `json:"round_trips_per_sec"`
	P50        time.Duration `json:"p50_ns"`
	P90        time.Duration `json:"p90_ns"`
	P99        time.Duration `json:"p99_ns"`
	P999       time.Duration `json:"p999_ns"`
	Max        time.Duration `json:"max_ns"`
	// Stalled is set when a round trip took longer than the window plus
	// -grace: Max is then a lower bound.
	Stalled     bool          `json:"stalled"`
	FloodBytes  int64         `json:"flood_bytes"`
	FloodMBps   float64       `json:"flood_mb_per_sec"`
	ServerCPU   time.Duration `json:"server_cpu_ns"`
	ServerShare float64       `json:"server_cpu_share"`
	// Others is the share of the measured CPUs (the server's and the
	// client's) that processes other than the server, the sink, the
	// driver and the flooders took during the window.
	Others float64  `json:"others_cpu_share"`
	Errors []string `json:"errors,omitempty"`
}

// measureServer runs every phase on a fresh process of server name.
func measureServer(ctx context.Context, cfg *config, name string, rep int, stderr io.Writer) (serverRun, error) {
	r := serverRun{Server: name, Rep: rep}
	engine := name
	if name == "control" {
		engine = "tcpkit"
	}
	env := []string{"GOMAXPROCS=" + strconv.Itoa(cfg.gomaxprocs)}
	tag := fmt.Sprintf("%s.%d", name, rep)
	srv, err := startServer(cfg, engine, cfg.serverCPU, env, tag)
	if err != nil {
		return r, err
	}
	defer srv.Stop(5 * time.Second)
	addr, floodAddr := srv.Ready["addr"], srv.Ready["addr"]
	pids := []int{srv.PID}
	sinkProc := srv
	if name == "control" {
		sink, err := startServer(cfg, "tcpkit", cfg.serverCPU, env, tag+".sink", cfg.floodPrefix()...)
		if err != nil {
			return r, err
		}
		defer sink.Stop(5 * time.Second)
		floodAddr = sink.Ready["addr"]
		sinkProc = sink
		pids = append(pids, sink.PID)
	}
	for _, n := range append([]int{0}, cfg.floods...) {
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		p, err := runPhase(ctx, cfg, srv.PID, pids, addr, floodAddr, n)
		if err != nil {
			return r, err
		}
		fmt.Fprintf(stderr, "fairness:   %d flooder(s): %s round trips/s, p99 %s, max %s, flood %.0f MB/s, others %s%s\n",
			n, harness.Num(p.Rate), harness.Dur(p.P99), harness.Dur(p.Max), p.FloodMBps, harness.Pct(p.Others), errNote(p.Errors))
		r.Phases = append(r.Phases, p)
		// Let the server read what the flooders left in its socket
		// buffers before the next phase.
		harness.Sleep(ctx, 500*time.Millisecond)
	}
	srv.Stop(5 * time.Second)
	sinkProc.Stop(5 * time.Second)
	r.Discarded = discardedBy(filepath.Join(cfg.out, tag+".stdout"))
	if name == "control" {
		r.Discarded = discardedBy(filepath.Join(cfg.out, tag+".sink.stdout"))
	}
	return r, nil
}

func errNote(errs []string) string {
	if len(errs) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d error(s): %s)", len(errs), errs[0])
}

// startServer starts fairserver -engine engine pinned to cpu, its output
// in files named after tag, behind the command prefix (nice -n 19, say),
// which must exec it.
func startServer(cfg *config, engine string, cpu int, env []string, tag string, prefix ...string) (*harness.Proc, error) {
	argv := append(prefix, filepath.Join(cfg.bin, "fairserver"), "-engine", engine)
	var last error
	for range 3 { // gnet's port, found free, may be taken before gnet binds it
		p, err := harness.Start(argv[0], argv[1:], cpu, env,
			filepath.Join(cfg.out, tag+".stdout"), filepath.Join(cfg.out, tag+".stderr"), 10*time.Second)
		if err == nil {
			return p, nil
		}
		last = err
	}
	return nil, last
}

// discardedBy reads the "discarded N" line a fairserver prints at exit.
func discardedBy(stdoutFile string) int64 {
	b, err := os.ReadFile(stdoutFile)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "discarded "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return -1
}

// runPhase measures one window: the ping-pong against addr beside floods
// flooders against floodAddr. pid is the server's; ours lists it with the
// sink's, if any, whose CPU time is not the work of others.
func runPhase(ctx context.Context, cfg *config, pid int, ours []int, addr, floodAddr string, floods int) (phase, error) {
	p := phase{Floods: floods, Window: cfg.duration}
	from := time.Now().Add(cfg.warmup)
	until := from.Add(cfg.duration)
	stopAt := until.Add(200 * time.Millisecond)

	exe, err := os.Executable()
	if err != nil {
		return p, err
	}
	type floodResult struct {
		res floodReport
		err error
	}
	results := make(chan floodResult, floods)
	ours = append(slices.Clone(ours), os.Getpid())
	if cfg.hog {
		hog := exec.Command("taskset", "-c", strconv.Itoa(cfg.serverCPU), exe, "-hog-worker", strconv.FormatInt(stopAt.UnixNano(), 10))
		if err := hog.Start(); err != nil {
			return p, err
		}
		ours = append(ours, hog.Process.Pid) // taskset execs it
		defer func() {
			// Bounded: it spins until stopAt; past that and 5 s more, it is killed.
			t := time.AfterFunc(time.Until(stopAt)+5*time.Second, func() { hog.Process.Kill() })
			hog.Wait()
			t.Stop()
		}()
	}
	for range floods {
		argv := append(cfg.floodPrefix(), exe, "-flood-worker", floodAddr, "-flood-size", strconv.Itoa(cfg.floodSize),
			"-flood-echo="+strconv.FormatBool(cfg.floodEcho),
			"-from", strconv.FormatInt(from.UnixNano(), 10), "-until", strconv.FormatInt(until.UnixNano(), 10),
			"-stop", strconv.FormatInt(stopAt.UnixNano(), 10))
		cmd := exec.Command(argv[0], argv[1:]...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			return p, err
		}
		ours = append(ours, cmd.Process.Pid) // chrt execs the flooder
		go func() {
			// Bounded: the worker stops at stopAt; past that and 5 s more,
			// it is killed.
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t := time.NewTimer(time.Until(stopAt) + 5*time.Second)
			defer t.Stop()
			var werr error
			select {
			case werr = <-done:
			case <-t.C:
				cmd.Process.Kill()
				werr = fmt.Errorf("flooder overran its stop time: killed (%v)", <-done)
			}
			var fr floodResult
			if err := json.Unmarshal(out.Bytes(), &fr.res); err != nil {
				fr.err = fmt.Errorf("flooder: %v; %v; %s", werr, err, strings.TrimSpace(errb.String()))
			}
			results <- fr
		}()
	}

	// CPU time over the window, read at its edges: the server's, ours
	// (the server, the sink, the flooders and this process) and every
	// process's on the CPUs concerned.
	cpus, err := harness.AllowedCPUs()
	if err != nil {
		return p, err
	}
	if !slices.Contains(cpus, cfg.serverCPU) && cfg.serverCPU >= 0 {
		cpus = append(cpus, cfg.serverCPU)
	}
	type cpuUse struct{ server, others time.Duration }
	cpu := make(chan cpuUse, 1)
	go func() {
		read := func() (srv, mine time.Duration, busy int64) {
			srv, _ = harness.CPUTime(pid)
			for _, q := range ours {
				t, _ := harness.CPUTime(q) // a flooder not yet started, or gone: 0
				mine += t
			}
			busy, _ = harness.BusyTicks(cpus)
			return
		}
		harness.Sleep(ctx, time.Until(from))
		s0, m0, b0 := read()
		harness.Sleep(ctx, time.Until(until))
		s1, m1, b1 := read()
		others := time.Duration(b1-b0)*10*time.Millisecond - (m1 - m0)
		cpu <- cpuUse{server: s1 - s0, others: max(others, 0)}
	}()

	rtts, stalled, perr := pingPong(ctx, addr, cfg.size, from, until, cfg.grace)
	if perr != nil {
		p.Errors = append(p.Errors, "ping-pong: "+perr.Error())
	}
	p.Stalled = stalled
	slices.Sort(rtts)
	p.RoundTrips = len(rtts)
	p.Rate = float64(len(rtts)) / cfg.duration.Seconds()
	p.P50 = harness.Percentile(rtts, 0.50)
	p.P90 = harness.Percentile(rtts, 0.90)
	p.P99 = harness.Percentile(rtts, 0.99)
	p.P999 = harness.Percentile(rtts, 0.999)
	p.Max = harness.Percentile(rtts, 1)
	use := <-cpu
	p.ServerCPU = use.server
	p.ServerShare = p.ServerCPU.Seconds() / cfg.duration.Seconds()
	p.Others = use.others.Seconds() / cfg.duration.Seconds() / float64(len(cpus))
	var secs float64
	for range floods {
		fr := <-results
		if fr.err != nil {
			p.Errors = append(p.Errors, fr.err.Error())
			continue
		}
		if fr.res.Error != "" {
			p.Errors = append(p.Errors, "flooder: "+fr.res.Error)
		}
		p.FloodBytes += fr.res.WindowBytes
		secs = max(secs, fr.res.WindowNs.Seconds())
	}
	if secs > 0 {
		p.FloodMBps = float64(p.FloodBytes) / 1e6 / secs
	}
	return p, nil
}

// pingPong runs one ping-pong connection to addr, first byte 'E', from now
// until until, and returns the round-trip times of the messages sent
// within [from, until). A round trip still unanswered at until+grace ends
// it with stalled set, its time so far counted as a sample (a lower
// bound).
func pingPong(ctx context.Context, addr string, size int, from, until time.Time, grace time.Duration) (rtts []time.Duration, stalled bool, err error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	c.SetDeadline(until.Add(grace))
	if _, err := c.Write([]byte{'E'}); err != nil {
		return nil, false, err
	}
	msg, back := make([]byte, size), make([]byte, size)
	for i := range msg {
		msg[i] = byte('a' + i%26)
	}
	rtts = make([]time.Duration, 0, 1<<16)
	for seq := uint64(0); ; seq++ {
		t0 := time.Now()
		if !t0.Before(until) || ctx.Err() != nil {
			return rtts, false, nil
		}
		binary.BigEndian.PutUint64(msg, seq)
		if _, err := c.Write(msg); err != nil {
			return rtts, isTimeout(err), err
		}
		if _, err := io.ReadFull(c, back); err != nil {
			if isTimeout(err) && !t0.Before(from) {
				rtts = append(rtts, time.Since(t0))
			}
			return rtts, isTimeout(err), err
		}
		rtt := time.Since(t0)
		if !bytes.Equal(msg, back) {
			return rtts, false, fmt.Errorf("round trip %d: the echo differs from the message", seq)
		}
		if !t0.Before(from) {
			rtts = append(rtts, rtt)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// spin keeps a CPU busy until until: the -hog-worker role.
func spin(until time.Time) {
	x := uint64(1)
	for time.Now().Before(until) {
		for range 1 << 16 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	if x == 0 {
		fmt.Println(x) // keeps the loop from being optimised away
	}
}

// A floodWorker is the -flood-worker role: one flooding connection.
type floodWorker struct {
	addr              string
	size              int
	echo              bool  // the server echoes: read it back
	from, until, stop int64 // Unix ns
}

// floodReport is what a flood worker prints, as JSON.
type floodReport struct {
	TotalBytes  int64         `json:"total_bytes"`
	WindowBytes int64         `json:"window_bytes"` // written between the first write to end after from and the first after until
	WindowNs    time.Duration `json:"window_ns"`
	Error       string        `json:"error,omitempty"`
}

// run floods w.addr with w.size-byte writes, after the byte 'D' (or 'E',
// for an echo, which it reads and discards), until w.stop, and prints its
// report.
func (w *floodWorker) run(stdout io.Writer) error {
	var rep floodReport
	from, until, stop := time.Unix(0, w.from), time.Unix(0, w.until), time.Unix(0, w.stop)
	err := w.flood(&rep, from, until, stop)
	if err != nil && !isTimeout(err) {
		rep.Error = err.Error()
	}
	bw := bufio.NewWriter(stdout)
	json.NewEncoder(bw).Encode(rep)
	return bw.Flush()
}

func (w *floodWorker) flood(rep *floodReport, from, until, stop time.Time) error {
	c, err := net.DialTimeout("tcp", w.addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(stop)
	buf := make([]byte, w.size)
	buf[0] = 'D'
	if w.echo {
		buf[0] = 'E'
		done := make(chan struct{})
		defer func() { <-done }() // after Close: the read fails at once
		defer c.Close()
		go func() {
			// Bounded by the deadline, or the Close above.
			defer close(done)
			io.Copy(io.Discard, c)
		}()
	}
	var t0, t1 time.Time
	var b0, b1 int64
	for {
		n, err := c.Write(buf)
		rep.TotalBytes += int64(n)
		buf[0] = 1
		now := time.Now()
		if t0.IsZero() && !now.Before(from) {
			t0, b0 = now, rep.TotalBytes
		}
		if t1.IsZero() && !now.Before(until) {
			t1, b1 = now, rep.TotalBytes
		}
		if !t1.IsZero() {
			rep.WindowBytes, rep.WindowNs = b1-b0, t1.Sub(t0)
		}
		if err != nil || !now.Before(stop) {
			if t1.IsZero() && !t0.IsZero() { // cut short: the window so far
				rep.WindowBytes, rep.WindowNs = rep.TotalBytes-b0, now.Sub(t0)
			}
			return err
		}
	}
}
