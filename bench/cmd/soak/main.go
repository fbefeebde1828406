// Command soak puts tcpkit servers through minutes of mixed adversaries at
// once and checks that nothing is lost silently, that latency stays low
// and that the server process gives back what it took (GitHub issue 17).
// It is not a test: bench/soak.sh runs it, for 3 minutes by default.
//
// It starts one bin/soakserver process per engine (-engines), each pinned
// to -server-cpu: a TLS echo server, Pipe(c, c), with the PROXY protocol
// optional, and an HTTP endpoint that reports its descriptors, goroutines
// and heap. Then, against every server at once, for -duration:
//
//	silent TLS            connect, send nothing, wait for the server to close
//	partial PROXY header  send half a v1 or v2 header, then nothing
//	flooder               send as fast as the server takes it, read the echo
//	resetter              send, then RST (SO_LINGER 0 and close)
//	urgent data           TLS records with a MSG_OOB byte between them
//	slow reader           read the echo 16 KiB every 20 ms
//	half-close            send, close_notify and FIN, then read the echo
//	connect and leave     a stream of short connections
//
// and, from a separate process (so that the kernel, not Go's scheduler,
// runs it promptly beside the adversaries), a ping-pong probe on each
// server every -probe-interval. Every echoed byte is checked against what
// was sent. Before the clients start, every -sample-every during, and
// after they have all stopped (polled until back to the baseline, up to
// -settle), it reads the server's descriptors, goroutines and heap; at the
// end it stops each server with SIGTERM and reads its log for panics.
//
// It prints Markdown tables and writes them, with the raw figures
// (results.json) and each server's output, to -out.
//
//	soak -bin bin -out results/soak-X [-duration 3m] [-engines goroutine,epoll]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
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
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	bin              string
	out              string
	duration         time.Duration
	engines          []string
	serverCPU        int
	settle           time.Duration
	minSettle        time.Duration
	stall            time.Duration
	dialTimeout      time.Duration
	proxy            string
	proxyTimeout     time.Duration
	handshakeTimeout time.Duration
	seed             uint64
	probeInterval    time.Duration
	sampleEvery      time.Duration
	counts           map[string]int
	churnRate        float64
	clientsNice      int
	probeNice        int
	args             []string // the command line, for the workers
	targetProbe      time.Duration
	targetHeap       int64
}

// closeBound is how long a silent or partial-header client may wait for
// the server to close it: the PROXY header's timeout, then the TLS
// handshake's, and 3 s for a loaded machine.
func (cfg *config) closeBound() time.Duration {
	return cfg.proxyTimeout + cfg.handshakeTimeout + 3*time.Second
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{counts: map[string]int{}}
	var engines string
	var probe probeWorker
	fs.StringVar(&cfg.bin, "bin", "", "directory holding soakserver (default: this program's)")
	fs.StringVar(&cfg.out, "out", "", "directory for the raw results and summary.md (default results/soak-<UTC time>)")
	fs.DurationVar(&cfg.duration, "duration", 3*time.Minute, "how long the clients run")
	fs.StringVar(&engines, "engines", "goroutine,epoll", "servers, one process each, all at once: goroutine, epoll")
	fs.IntVar(&cfg.serverCPU, "server-cpu", 0, "CPU the servers are pinned to (-1: not pinned)")
	fs.DurationVar(&cfg.settle, "settle", 30*time.Second, "after the clients stop, how long to wait at most for the server to come back to its baseline")
	fs.DurationVar(&cfg.minSettle, "min-settle", 3*time.Second, "after the clients stop, how long to wait at least")
	fs.DurationVar(&cfg.stall, "stall", 5*time.Second, "a connection on which nothing moves for this long is given up as stalled")
	fs.DurationVar(&cfg.dialTimeout, "dial-timeout", 5*time.Second, "bound on a connect, PROXY header and TLS handshake")
	fs.StringVar(&cfg.proxy, "proxy", "optional", "the servers' PROXY protocol policy: optional or required (required turns off clients without a header)")
	fs.DurationVar(&cfg.proxyTimeout, "proxy-timeout", 3*time.Second, "the servers' ProxyHeaderTimeout")
	fs.DurationVar(&cfg.handshakeTimeout, "handshake-timeout", 5*time.Second, "the servers' HandshakeTimeout")
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed of the clients' random choices")
	fs.DurationVar(&cfg.probeInterval, "probe-interval", 10*time.Millisecond, "time between a probe's round trips")
	fs.DurationVar(&cfg.sampleEvery, "sample-every", 5*time.Second, "how often to read the servers' descriptors, goroutines and heap while the clients run")
	for _, c := range []struct {
		flag, class string
		n           int
	}{
		{"silent", classSilent, 8},
		{"partial", classPartial, 8},
		{"flooders", classFlood, 2},
		{"resetters", classReset, 2},
		{"urgent", classUrgent, 2},
		{"slow", classSlow, 2},
		{"halfclose", classHalfClose, 2},
	} {
		fs.Func(c.flag, fmt.Sprintf("%s clients per server, at once (default %d)", c.class, c.n), func(s string) error {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 || n > 1000 {
				return fmt.Errorf("want 0 to 1000")
			}
			cfg.counts[c.class] = n
			return nil
		})
		cfg.counts[c.class] = c.n
	}
	fs.Float64Var(&cfg.churnRate, "churn-rate", 20, "connect-and-leave connections per second per server")
	fs.DurationVar(&cfg.targetProbe, "target-probe", 50*time.Millisecond, "target: no probe round trip over this")
	fs.Int64Var(&cfg.targetHeap, "target-heap", 1<<20, "target: the heap after, collected, at most this many bytes over the baseline")
	fs.IntVar(&cfg.probeNice, "probe-nice", 0, "niceness of the probes' process (below 0 needs the privilege to raise priority)")
	fs.IntVar(&cfg.clientsNice, "clients-nice", 10, "niceness of the clients' process, so that the probes' process, on the same CPU, runs first (0: none)")
	var clientsWorker string
	var startNs int64
	fs.StringVar(&probe.targets, "probe-worker", "", "(internal) run the probes against engine=addr,...")
	fs.StringVar(&clientsWorker, "clients-worker", "", "(internal) run the clients against engine=addr,...")
	fs.Int64Var(&probe.until, "until", 0, "(internal) when the probes or the clients stop, Unix ns")
	fs.Int64Var(&startNs, "start", 0, "(internal) when the soak started, Unix ns")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg.args = args
	if probe.targets != "" {
		probe.interval, probe.target, probe.timeout = cfg.probeInterval, cfg.targetProbe, 10*time.Second
		return probe.run(ctx, stdout)
	}
	if clientsWorker != "" {
		return runClients(ctx, &cfg, clientsWorker, time.Unix(0, startNs), time.Unix(0, probe.until), stdout)
	}
	cfg.engines = strings.Split(engines, ",")
	for _, e := range cfg.engines {
		if e != "goroutine" && e != "epoll" {
			return fmt.Errorf("unknown engine %q (want goroutine or epoll)", e)
		}
	}
	switch cfg.proxy {
	case "optional":
	case "required":
		cfg.counts[classSilent] = 0 // a client without a header is closed at once: nothing to wait for
	default:
		return fmt.Errorf("-proxy must be optional or required")
	}
	if cfg.duration <= 0 || cfg.stall <= 0 || cfg.probeInterval <= 0 || cfg.sampleEvery <= 0 {
		return errors.New("-duration, -stall, -probe-interval and -sample-every must be positive")
	}
	if cfg.bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.bin = filepath.Dir(exe)
	}
	if cfg.out == "" {
		cfg.out = filepath.Join("results", "soak-"+time.Now().UTC().Format("20060102T150405Z"))
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "soak: raw results in %s\n", cfg.out)
	res, err := soak(ctx, &cfg, stderr)
	if err != nil {
		return err
	}
	raw, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.out, "results.json"), append(raw, '\n'), 0o644); err != nil {
		return err
	}
	var md bytes.Buffer
	writeSummary(&md, &cfg, res)
	if err := os.WriteFile(filepath.Join(cfg.out, "summary.md"), md.Bytes(), 0o644); err != nil {
		return err
	}
	_, err = stdout.Write(md.Bytes())
	return err
}

// A server is one soakserver process and what was seen of it.
type server struct {
	Engine   string                 `json:"engine"`
	PID      int                    `json:"pid"`
	Addr     string                 `json:"addr"`
	Before   *Snapshot              `json:"before"`
	During   []*Snapshot            `json:"during"`
	After    *Snapshot              `json:"after"`
	AfterIn  time.Duration          `json:"after_in_ns"` // from the clients' stop to After
	Settled  bool                   `json:"settled"`     // After is back to the baseline
	Clients  map[string]*classStats `json:"clients"`     // by class
	Probe    *probeResult           `json:"probe"`
	Exit     string                 `json:"exit"`      // how it ended at SIGTERM
	ExitedOK bool                   `json:"exited_ok"` // within the grace, status 0
	LogLines map[string]int         `json:"log_lines"` // its log lines, by level
	Panics   []string               `json:"panics,omitempty"`

	proc  *harness.Proc
	debug string
}

// Snapshot mirrors soakserver's /stats.
type Snapshot struct {
	Time            time.Time        `json:"time"`
	FDs             int              `json:"fds"`
	Goroutines      int              `json:"goroutines"`
	HeapAlloc       uint64           `json:"heap_alloc"`
	HeapInuse       uint64           `json:"heap_inuse"`
	HeapObjs        uint64           `json:"heap_objects"`
	RSS             int64            `json:"rss"`
	GC              bool             `json:"gc"`
	Stats           json.RawMessage  `json:"stats"`
	HandshakeErrors map[string]int64 `json:"handshake_errors"`
	open            int64
}

// results is everything a soak measured.
type results struct {
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	Servers  []*server     `json:"servers"`
	// ClientsStopped says how long after the duration the last client
	// finished (its last connection's verification).
	ClientsStopped time.Duration `json:"clients_stopped_after_ns"`
	ProbeError     string        `json:"probe_error,omitempty"`
	// Others is, for each sampling interval, the share of the CPUs (the
	// servers' and the clients') that other processes took.
	Others   []float64 `json:"others_cpu_share"`
	Revision string    `json:"revision"`
}

var httpClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// stats reads a server's /stats, after a collection if gc.
func (s *server) stats(gc bool) (*Snapshot, error) {
	u := "http://" + s.debug + "/stats"
	if gc {
		u += "?gc=1"
	}
	resp, err := httpClient.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var snap Snapshot
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&snap); err != nil {
		return nil, err
	}
	var st struct{ Open int64 }
	json.Unmarshal(snap.Stats, &st)
	snap.open = st.Open
	return &snap, nil
}

func soak(ctx context.Context, cfg *config, stderr io.Writer) (*results, error) {
	res := &results{Duration: cfg.duration, Revision: revision()}
	for _, e := range cfg.engines {
		s, err := startServer(cfg, e)
		if err != nil {
			return nil, err
		}
		defer s.proc.Stop(10 * time.Second)
		res.Servers = append(res.Servers, s)
	}
	harness.Sleep(ctx, time.Second)
	for _, s := range res.Servers {
		snap, err := s.stats(true)
		if err != nil {
			return nil, fmt.Errorf("%s: the baseline: %w", s.Engine, err)
		}
		s.Before = snap
	}

	res.Start = time.Now()
	end := res.Start.Add(cfg.duration)
	cctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	fmt.Fprintf(stderr, "soak: clients running for %v, until %s\n", cfg.duration, end.Format(time.TimeOnly))

	var probePrefix []string
	if cfg.probeNice != 0 {
		probePrefix = []string{"nice", "-n", strconv.Itoa(cfg.probeNice)}
	}
	probeDone, probePID, err := startWorker(cfg, "probe", probePrefix, "-probe-worker", targetList(res.Servers), "-until", strconv.FormatInt(end.UnixNano(), 10))
	if err != nil {
		return nil, err
	}
	var prefix []string
	if cfg.clientsNice != 0 {
		prefix = []string{"nice", "-n", strconv.Itoa(cfg.clientsNice)}
	}
	clientsDone, clientsPID, err := startWorker(cfg, "clients", prefix, "-clients-worker", targetList(res.Servers),
		"-start", strconv.FormatInt(res.Start.UnixNano(), 10), "-until", strconv.FormatInt(end.UnixNano(), 10))
	if err != nil {
		probeDone() // bounded: the probes stop at the end
		return nil, err
	}
	ours := []int{os.Getpid(), probePID, clientsPID}
	for _, s := range res.Servers {
		ours = append(ours, s.PID)
	}
	res.Others = sample(cctx, cfg, res.Servers, ours, stderr)
	// The clients finish the connection in hand: each is bounded by the
	// stall bound, and a slow reader's by the data in flight.
	var cr map[string]map[string]*classStats
	if out, err := clientsDone(); err != nil {
		return nil, fmt.Errorf("the clients: %w", err)
	} else if err := json.Unmarshal(out, &cr); err != nil {
		return nil, fmt.Errorf("the clients' results: %w", err)
	}
	res.ClientsStopped = time.Since(end)
	for _, s := range res.Servers {
		s.Clients = cr[s.Engine]
		for _, c := range classOrder {
			if s.Clients[c] == nil {
				s.Clients[c] = &classStats{}
			}
		}
	}
	var pr []probeResult
	if out, err := probeDone(); err != nil {
		res.ProbeError = err.Error()
	} else if err := json.Unmarshal(out, &pr); err != nil {
		res.ProbeError = "the probes' results: " + err.Error()
	}
	for _, s := range res.Servers {
		for i := range pr {
			if pr[i].Engine == s.Engine {
				s.Probe = &pr[i]
			}
		}
	}
	stoppedAt := time.Now()
	fmt.Fprintf(stderr, "soak: clients stopped %.1fs after the end; waiting for the servers to settle\n", res.ClientsStopped.Seconds())

	harness.Sleep(ctx, cfg.minSettle)
	for _, s := range res.Servers {
		s.settle(ctx, cfg, stoppedAt)
		fmt.Fprintf(stderr, "soak: %s: after %.1fs: %d fds (before %d), %d goroutines (before %d), heap %s (before %s)\n",
			s.Engine, s.AfterIn.Seconds(), s.After.FDs, s.Before.FDs, s.After.Goroutines, s.Before.Goroutines,
			harness.Bytes(float64(s.After.HeapAlloc)), harness.Bytes(float64(s.Before.HeapAlloc)))
	}
	for _, s := range res.Servers {
		exited, err := s.proc.Stop(10 * time.Second)
		switch {
		case !exited:
			s.Exit = "did not exit within 10 s of SIGTERM: killed"
		case err != nil:
			s.Exit = "exited with " + err.Error()
		default:
			s.Exit, s.ExitedOK = "exited 0", true
		}
		s.readLog(filepath.Join(cfg.out, s.Engine+".stderr"))
	}
	return res, nil
}

// startServer starts soakserver -engine e pinned to the server CPU.
func startServer(cfg *config, e string) (*server, error) {
	p, err := harness.Start(filepath.Join(cfg.bin, "soakserver"), []string{
		"-engine", e, "-proxy", cfg.proxy,
		"-proxy-timeout", cfg.proxyTimeout.String(), "-handshake-timeout", cfg.handshakeTimeout.String(),
	}, cfg.serverCPU, nil, filepath.Join(cfg.out, e+".stdout"), filepath.Join(cfg.out, e+".stderr"), 10*time.Second)
	if err != nil {
		return nil, err
	}
	ap, err := netip.ParseAddrPort(p.Ready["addr"])
	if err != nil {
		p.Stop(time.Second)
		return nil, fmt.Errorf("soakserver said %v: %w", p.Ready, err)
	}
	return &server{Engine: e, PID: p.PID, Addr: ap.String(), proc: p, debug: p.Ready["debug"]}, nil
}

// targetList names the servers for a worker: engine=addr,...
func targetList(servers []*server) string {
	var ts []string
	for _, s := range servers {
		ts = append(ts, s.Engine+"="+s.Addr)
	}
	return strings.Join(ts, ",")
}

// startWorker starts this program again, behind the command prefix (which
// must exec it), with this run's command line and role, and returns a
// function that waits for its standard output: the worker's results, as
// JSON. A worker still running 2 minutes and 4 stall bounds after the
// soak's end is killed.
func startWorker(cfg *config, name string, prefix []string, role ...string) (wait func() ([]byte, error), pid int, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, 0, err
	}
	argv := append(append(append(prefix, exe), cfg.args...), role...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	errf, err := os.Create(filepath.Join(cfg.out, name+".stderr"))
	if err != nil {
		return nil, 0, err
	}
	cmd.Stdout, cmd.Stderr = &out, errf
	if err := cmd.Start(); err != nil {
		errf.Close()
		return nil, 0, err
	}
	deadline := time.Now().Add(cfg.duration + 2*time.Minute + 4*cfg.stall)
	return func() ([]byte, error) {
		defer errf.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				return nil, fmt.Errorf("the %s process: %v (see %s.stderr)", name, err, name)
			}
			return out.Bytes(), nil
		case <-time.After(time.Until(deadline)):
			cmd.Process.Kill()
			return nil, fmt.Errorf("the %s process overran: killed (%v)", name, <-done)
		}
	}, cmd.Process.Pid, nil // nice execs the worker: the pid is the worker's
}

// runClients is the -clients-worker role: it runs the clients against
// the targets until until, then prints what they saw, by engine and class.
func runClients(ctx context.Context, cfg *config, targets string, start, until time.Time, stdout io.Writer) error {
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	var ts []*target
	for _, kv := range strings.Split(targets, ",") {
		e, a, ok := strings.Cut(kv, "=")
		ap, err := netip.ParseAddrPort(a)
		if !ok || err != nil {
			return fmt.Errorf("bad -clients-worker entry %q", kv)
		}
		ts = append(ts, &target{engine: e, addr: ap, stats: newSoakStats()})
	}
	cl := &clients{cfg: cfg, start: start}
	cl.run(ctx, ts)
	out := map[string]map[string]*classStats{}
	for _, t := range ts {
		out[t.engine] = t.stats.classes
	}
	return json.NewEncoder(stdout).Encode(out)
}

// sample reads every server's stats every cfg.sampleEvery until ctx is
// done. It returns, for each interval, the share of the CPUs concerned
// (the servers' and this process's) that processes other than ours took.
func sample(ctx context.Context, cfg *config, servers []*server, ours []int, stderr io.Writer) (others []float64) {
	cpus, _ := harness.AllowedCPUs()
	if cfg.serverCPU >= 0 && !slices.Contains(cpus, cfg.serverCPU) {
		cpus = append(cpus, cfg.serverCPU)
	}
	use := func() (busy int64, mine time.Duration) {
		busy, _ = harness.BusyTicks(cpus)
		for _, p := range ours {
			t, _ := harness.CPUTime(p)
			mine += t
		}
		return busy, mine
	}
	b0, m0 := use()
	t0 := time.Now()
	for n := 1; harness.Sleep(ctx, cfg.sampleEvery); n++ {
		b1, m1 := use()
		t1 := time.Now()
		o := (time.Duration(b1-b0)*10*time.Millisecond - (m1 - m0)).Seconds() / t1.Sub(t0).Seconds() / float64(len(cpus))
		others = append(others, max(o, 0))
		b0, m0, t0 = b1, m1, t1
		line := []string{"others " + harness.Pct(max(o, 0))}
		for _, s := range servers {
			snap, err := s.stats(false)
			if err != nil {
				line = append(line, fmt.Sprintf("%s: stats: %v", s.Engine, err))
				continue
			}
			s.During = append(s.During, snap)
			line = append(line, fmt.Sprintf("%s: %d conns, %d fds, %d goroutines, heap %s",
				s.Engine, snap.open, snap.FDs, snap.Goroutines, harness.Bytes(float64(snap.HeapAlloc))))
		}
		fmt.Fprintf(stderr, "soak: t+%v: %s\n", time.Duration(n)*cfg.sampleEvery, strings.Join(line, "; "))
	}
	return others
}

// settle polls the server, collecting first, until it is back to its
// baseline (descriptors, goroutines, no open connection, heap within the
// target) or cfg.settle has passed since the clients stopped.
func (s *server) settle(ctx context.Context, cfg *config, stoppedAt time.Time) {
	for range 1000 {
		snap, err := s.stats(true)
		if err == nil {
			s.After, s.AfterIn = snap, time.Since(stoppedAt)
			if s.back(cfg) {
				s.Settled = true
				return
			}
		}
		if time.Since(stoppedAt) >= cfg.settle || !harness.Sleep(ctx, time.Second) {
			break
		}
	}
	if s.After == nil {
		s.After = &Snapshot{FDs: -1, Goroutines: -1}
	}
}

// back reports whether After is back to Before.
func (s *server) back(cfg *config) bool {
	a, b := s.After, s.Before
	return a.FDs <= b.FDs && a.Goroutines <= b.Goroutines && a.open == 0 &&
		int64(a.HeapAlloc) <= int64(b.HeapAlloc)+cfg.targetHeap
}

// readLog counts the server's log lines by level and keeps any that
// mention a panic.
func (s *server) readLog(path string) {
	s.LogLines = map[string]int{}
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		lvl := "other"
		if _, v, ok := strings.Cut(line, "level="); ok {
			lvl, _, _ = strings.Cut(v, " ")
		}
		s.LogLines[lvl]++
		if strings.Contains(strings.ToLower(line), "panic") && len(s.Panics) < 5 {
			s.Panics = append(s.Panics, line)
		}
	}
}

// revision says which tcpkit the servers were built from: the
// TCPKIT_REVISION environment variable that soak.sh sets, else git's HEAD
// of the working directory.
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
