// Command matrix runs the side-by-side benchmark of tcpkit's echo server,
// on both of its engines, against its peers (Go's net, gnet, a C epoll
// loop, Node), and the yardstick of the load generator against a minimal Go
// client loop. It starts each server pinned to CPU 0 and each load pinned
// to CPU 1 (taskset), or, with -unpinned, both free on every CPU with
// -procs loops or threads per server; one fresh server process per run. It
// writes every raw result as JSON under -out, and prints Markdown tables to
// stdout. bench/run.sh builds the binaries and calls it.
//
//	matrix -bin bin -peers peers -out results/2026-11-30 [-quick] [-unpinned]
//	matrix -bin bin -out results/scale -scale 19000
//
// -scale N runs only the scale cell: N connections held idle on each of
// tcpkit-epoll, gnet and c (or -servers), the server's memory per
// connection.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tcpkit/tcpkit/internal/loadgen"
)

// A server is one echo server under test.
type server struct {
	name string
	argv func(m *matrix, addr string) []string
}

// Pinned, the Go servers see one CPU, so GOMAXPROCS is 1 and tcpkit-epoll
// and gnet run one loop each; unpinned, the matrix sets GOMAXPROCS to
// m.procs, and gives gnet and cecho as many loops.
var servers = []server{
	{"tcpkit", func(m *matrix, addr string) []string { return []string{m.bin("tcpkitecho"), "-addr", addr} }},
	{"tcpkit-epoll", func(m *matrix, addr string) []string {
		return []string{m.bin("tcpkitecho"), "-addr", addr, "-engine", "epoll"}
	}},
	{"std", func(m *matrix, addr string) []string { return []string{m.bin("stdecho"), "-addr", addr} }},
	{"gnet", func(m *matrix, addr string) []string {
		argv := []string{m.bin("gnetecho"), "-addr", addr, "-multicore"}
		if m.unpinned {
			argv = append(argv, "-loops", strconv.Itoa(m.procs))
		}
		return argv
	}},
	{"c", func(m *matrix, addr string) []string {
		argv := []string{m.bin("cecho"), "-addr", addr}
		if m.unpinned {
			argv = append(argv, "-t", strconv.Itoa(m.procs))
		}
		return argv
	}},
	{"node", func(m *matrix, addr string) []string {
		return []string{"node", filepath.Join(m.peers, "nodeecho.js"), addr}
	}},
}

// Default server lists of the matrix and of the scale cell.
const (
	defaultServers      = "tcpkit,tcpkit-epoll,std,gnet,c,node"
	defaultScaleServers = "tcpkit-epoll,gnet,c"
)

// A cell is one load shape of the matrix.
type cell struct {
	name string
	args []string // loadgen flags
}

// mainCells are the message cells; the idle cell is added separately.
var mainCells = []cell{
	{"ping-pong 1×64B", []string{"-mode", "ping-pong", "-conns", "1", "-size", "64"}},
	{"ping-pong 1×4KiB", []string{"-mode", "ping-pong", "-conns", "1", "-size", "4096"}},
	{"ping-pong 50×64B", []string{"-mode", "ping-pong", "-conns", "50", "-size", "64"}},
	{"ping-pong 50×4KiB", []string{"-mode", "ping-pong", "-conns", "50", "-size", "4096"}},
	{"ping-pong 1000×64B", []string{"-mode", "ping-pong", "-conns", "1000", "-size", "64"}},
	{"ping-pong 1000×4KiB", []string{"-mode", "ping-pong", "-conns", "1000", "-size", "4096"}},
	{"pipeline 50×4KiB d16", []string{"-mode", "pipeline", "-conns", "50", "-size", "4096", "-depth", "16"}},
}

// yardCells are the shapes on which loadgen is compared with clientloop.
var yardCells = []struct {
	name        string
	conns, size int
}{{"1×64B", 1, 64}, {"50×64B", 50, 64}}

type matrix struct {
	binDir, peers, out string
	reps               int
	duration, warmup   time.Duration
	idleConns          int
	idleHold           time.Duration
	scale              int  // connections of the scale cell; 0: run the matrix
	unpinned           bool // no taskset; GOMAXPROCS=procs, procs loops
	procs              int
	servers            []server
	messageCells       int // message cells selected to run
	log                io.Writer
}

func (m *matrix) bin(name string) string { return filepath.Join(m.binDir, name) }

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	m := &matrix{log: os.Stderr}
	quick := flag.Bool("quick", false, "a short run: 1s windows, one repetition, 1,000 idle connections")
	only := flag.String("servers", defaultServers, "servers to run, comma-separated (with -scale: "+defaultScaleServers+")")
	skipYard := flag.Bool("no-yardstick", false, "skip the loadgen-versus-clientloop comparison")
	skipIdle := flag.Bool("no-idle", false, "skip the idle-memory cell")
	cellsRE := flag.String("cells", "", "run only the message cells whose name matches this regular expression")
	flag.StringVar(&m.binDir, "bin", "bin", "directory of the built binaries")
	flag.StringVar(&m.peers, "peers", "peers", "directory of nodeecho.js")
	flag.StringVar(&m.out, "out", "results", "directory for the raw JSON results")
	flag.IntVar(&m.reps, "reps", 5, "repetitions of each cell")
	flag.DurationVar(&m.duration, "duration", 2*time.Second, "measured window of each run")
	flag.DurationVar(&m.warmup, "warmup", 300*time.Millisecond, "warmup of each run")
	flag.IntVar(&m.idleConns, "idle-conns", 10000, "connections of the idle-memory cell")
	flag.DurationVar(&m.idleHold, "idle-hold", 3*time.Second, "hold time of the idle-memory and scale cells")
	flag.IntVar(&m.scale, "scale", 0, "run only the scale cell: hold this many connections, each echoed once, on each server")
	flag.BoolVar(&m.unpinned, "unpinned", false, "run servers and load without taskset, the servers with GOMAXPROCS=-procs (and as many loops or threads)")
	flag.IntVar(&m.procs, "procs", 2, "with -unpinned: GOMAXPROCS of the Go servers, loops of gnet, threads of cecho")
	flag.Parse()
	if *quick {
		m.reps, m.duration, m.warmup, m.idleConns, m.idleHold = 1, time.Second, 200*time.Millisecond, 1000, time.Second
	}
	if m.procs < 1 {
		return fmt.Errorf("-procs must be positive")
	}
	if m.scale > 0 && !flagSet("servers") {
		*only = defaultScaleServers
	}
	for _, name := range strings.Split(*only, ",") {
		i := slices.IndexFunc(servers, func(s server) bool { return s.name == name })
		if i < 0 {
			return fmt.Errorf("unknown server %q", name)
		}
		m.servers = append(m.servers, servers[i])
	}
	if err := os.MkdirAll(m.out, 0o755); err != nil {
		return err
	}
	var err error
	if m.binDir, err = filepath.Abs(m.binDir); err != nil { // taskset looks up a bare name in PATH
		return err
	}
	start := time.Now()
	re, err := regexp.Compile(*cellsRE)
	if err != nil {
		return err
	}
	for _, c := range mainCells {
		if re.MatchString(c.name) {
			m.messageCells++
		}
	}
	var rep report
	rep.header = m.describe()
	if m.scale > 0 {
		rep.scale = m.runIdle(m.scale, "scale")
	} else {
		for _, c := range mainCells {
			if re.MatchString(c.name) {
				rep.cells = append(rep.cells, m.runCell(c))
			}
		}
		if !*skipIdle {
			rep.idle = m.runIdle(m.idleConns, "idle")
		}
		if !*skipYard {
			rep.yard = m.runYardstick()
		}
	}
	rep.took = time.Since(start)
	md := rep.markdown(m)
	fmt.Print(md)
	if err := os.WriteFile(filepath.Join(m.out, "summary.md"), []byte(md), 0o644); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep.jsonForm(m), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(m.out, "summary.json"), append(b, '\n'), 0o644)
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// describe returns the lines that say what ran where.
func (m *matrix) describe() []string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimLeft(v, " \t:"))
				break
			}
		}
	}
	var uts syscall.Utsname
	syscall.Uname(&uts)
	kernel := cstr(uts.Release[:])
	nodeV, _ := exec.Command("node", "--version").Output()
	rev, _ := exec.Command("git", "-C", "..", "log", "-1", "--format=%h (%cs) %s").Output()
	dirty := ""
	if st, _ := exec.Command("git", "-C", "..", "status", "--porcelain", "--untracked-files=no").Output(); len(st) > 0 {
		dirty = ", with uncommitted changes"
	}
	ccV, _ := exec.Command("cc", "--version").Output()
	ccLine, _, _ := strings.Cut(string(ccV), "\n")
	lines := []string{
		fmt.Sprintf("tcpkit at %s%s", strings.TrimSpace(string(rev)), dirty),
		fmt.Sprintf("%s, %d CPUs, Linux %s, %s, Node %s, cc: %s", cpu, runtime.NumCPU(), kernel, runtime.Version(),
			strings.TrimSpace(string(nodeV)), strings.TrimSpace(ccLine)),
		"mode: " + m.modeLine(),
	}
	switch {
	case m.scale > 0:
		return append(lines, fmt.Sprintf("scale cell only: %s connections per server, held %s", num(float64(m.scale)), m.idleHold))
	case m.messageCells == 0:
		return append(lines, fmt.Sprintf("idle cell only: %s connections per server, held %s, one run each", num(float64(m.idleConns)), m.idleHold))
	}
	return append(lines, fmt.Sprintf("%d run(s) per cell, each %s after a %s warmup, a fresh server process per run",
		m.reps, m.duration, m.warmup))
}

// modeLine says how servers and load were placed on the CPUs.
func (m *matrix) modeLine() string {
	if m.unpinned {
		return fmt.Sprintf("**unpinned**: servers and load free on all %d CPUs (no taskset); Go servers with GOMAXPROCS=%d, "+
			"so tcpkit-epoll runs %d loops; gnet %d loops, c (cecho) %d threads; server CPU can exceed 100%%",
			runtime.NumCPU(), m.procs, m.procs, m.procs, m.procs)
	}
	return "**pinned**: server on CPU 0, load on CPU 1 (taskset); Go servers see one CPU (GOMAXPROCS=1), " +
		"tcpkit-epoll and gnet run one loop, c (cecho) one thread"
}

// command returns the command that runs argv on cpu (taskset), or on any
// CPU when the matrix runs unpinned. taskset execs argv, so the process's
// id is argv's.
func (m *matrix) command(cpu int, argv ...string) *exec.Cmd {
	if m.unpinned {
		return exec.Command(argv[0], argv[1:]...)
	}
	return exec.Command("taskset", append([]string{"-c", strconv.Itoa(cpu)}, argv...)...)
}

func cstr(b []int8) string {
	s := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// cellResult holds the runs of one cell, by server and repetition (nil
// for a run that failed). Runs of the same repetition ran back to back,
// so their ratios are paired.
type cellResult struct {
	cell cell
	runs map[string][]*loadgen.Result
}

// runCell runs c reps times on every server, the servers in a different
// order each repetition so that drift spreads evenly.
func (m *matrix) runCell(c cell) cellResult {
	cr := cellResult{cell: c, runs: map[string][]*loadgen.Result{}}
	for _, s := range m.servers {
		cr.runs[s.name] = make([]*loadgen.Result, m.reps)
	}
	for rep := range m.reps {
		for i := range m.servers {
			s := m.servers[(i+rep)%len(m.servers)]
			args := append(slices.Clone(c.args), "-duration", m.duration.String(), "-warmup", m.warmup.String())
			res, err := m.runOne(s, args, fmt.Sprintf("%s-%s-%d.json", slug(c.name), s.name, rep+1))
			if err != nil {
				fmt.Fprintf(m.log, "%s, %s, run %d: %v\n", c.name, s.name, rep+1, err)
				continue
			}
			fmt.Fprintf(m.log, "%-22s %-12s run %d: %9.0f msgs/s %10.0f msgs/server-CPU-s, errors %d\n",
				c.name, s.name, rep+1, res.MsgsPerSec, serverEff(res), res.Errors.Total())
			cr.runs[s.name][rep] = res
		}
	}
	return cr
}

// connsPerSource bounds the connections an idle or scale run makes from one
// source address. Each is bound to its source before it connects, and
// after the run its port stays in TIME_WAIT for a minute, during the runs
// of the next servers: bind(2) then searches longer and longer for a free
// port (a third run of 19,000 connections from 4 addresses opened 500 a
// second instead of 16,000), and eventually finds none.
const connsPerSource = 800

// idleSources returns how many source addresses, 127.0.0.1 to 127.0.0.N,
// an idle run of conns connections uses: at least 4.
func idleSources(conns int) int { return max(4, (conns+connsPerSource-1)/connsPerSource) }

// runIdle runs an idle cell once per server: conns connections from
// idleSources(conns) source addresses (127.0.0.1–N), each checked with one
// echo, held for m.idleHold, and checked again. name is "idle" or "scale".
func (m *matrix) runIdle(conns int, name string) map[string]*loadgen.Result {
	out := map[string]*loadgen.Result{}
	args := []string{"-mode", "idle", "-conns", strconv.Itoa(conns), "-size", "64",
		"-duration", m.idleHold.String(), "-sources", strconv.Itoa(idleSources(conns)), "-timeout", "20s"}
	for _, s := range m.servers {
		res, err := m.runOne(s, args, fmt.Sprintf("%s-%d-%s.json", name, conns, s.name))
		if err != nil {
			fmt.Fprintf(m.log, "%s, %s: %v\n", name, s.name, err)
			continue
		}
		fmt.Fprintf(m.log, "%s %d  %-12s: %d established, %d alive, %.0f B per connection, errors %d\n", name, conns, s.name,
			res.Idle.Established, res.Idle.Alive, res.Idle.RSSPerConn, res.Errors.Total())
		out[s.name] = res
	}
	return out
}

// runOne starts a fresh server s on CPU 0, runs loadgen with args on CPU
// 1, stops the server, and returns the result, also kept in file name
// under m.out.
func (m *matrix) runOne(s server, args []string, name string) (*loadgen.Result, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	srv, err := m.startServer(s, addr)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	path := filepath.Join(m.out, name)
	largs := append([]string{m.bin("loadgen"), "-addr", addr, "-pid", strconv.Itoa(srv.cmd.Process.Pid),
		"-json", path, "-quiet"}, args...)
	if out, err := m.command(1, largs...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("loadgen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var res loadgen.Result
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &res, nil
}

// A proc is a running server process.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been reaped
}

// startServer starts s on addr, pinned to CPU 0 (unless unpinned), and
// waits until it accepts connections.
func (m *matrix) startServer(s server, addr string) (*proc, error) {
	cmd := m.command(0, s.argv(m, addr)...)
	if m.unpinned {
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(m.procs))
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s exited at start: %s", s.name, stderr.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return p, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.stop()
	return nil, fmt.Errorf("%s did not start listening on %s within 10s: %s", s.name, addr, stderr.String())
}

// stop ends the server: SIGTERM, then SIGKILL after two seconds.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-p.exited:
		return
	case <-t.C:
	}
	p.cmd.Process.Kill()
	<-p.exited
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func slug(s string) string {
	r := strings.NewReplacer(" ", "-", "×", "x")
	return strings.ToLower(r.Replace(s))
}

// serverEff returns a result's messages per second of server CPU, or 0.
func serverEff(res *loadgen.Result) float64 {
	if res.Server == nil {
		return 0
	}
	return res.Server.MsgsPerCPUSecond
}

// yardResult holds the yardstick runs of one shape: CPU per message and
// rate of clientloop and of loadgen.
type yardResult struct {
	name                    string
	clientCPU, loadgenCPU   []float64 // ns per message, by repetition; 0 for a failed run
	clientRate, loadgenRate []float64
}

// clientResult is clientloop's JSON output.
type clientResult struct {
	MsgsPerSec float64 `json:"msgs_per_sec"`
	CPUPerMsg  float64 `json:"cpu_per_msg_ns"`
}

// runYardstick compares loadgen's CPU per message with clientloop's, both
// pinned to CPU 1, against one stdecho server on CPU 0 (or all unpinned),
// alternating which goes first.
func (m *matrix) runYardstick() []yardResult {
	var out []yardResult
	for _, y := range yardCells {
		yr := yardResult{name: y.name, clientCPU: make([]float64, m.reps), loadgenCPU: make([]float64, m.reps),
			clientRate: make([]float64, m.reps), loadgenRate: make([]float64, m.reps)}
		std := servers[slices.IndexFunc(servers, func(s server) bool { return s.name == "std" })]
		for rep := range m.reps {
			addr, err := freeAddr()
			if err != nil {
				continue
			}
			srv, err := m.startServer(std, addr)
			if err != nil {
				fmt.Fprintln(m.log, "yardstick:", err)
				continue
			}
			common := []string{"-addr", addr, "-conns", strconv.Itoa(y.conns), "-size", strconv.Itoa(y.size),
				"-duration", m.duration.String(), "-warmup", m.warmup.String()}
			for i := range 2 {
				switch (i + rep) % 2 {
				case 0:
					path := filepath.Join(m.out, fmt.Sprintf("yard-%s-clientloop-%d.json", slug(y.name), rep+1))
					args := append([]string{m.bin("clientloop"), "-json", path}, common...)
					if out, err := m.command(1, args...).CombinedOutput(); err != nil {
						fmt.Fprintf(m.log, "clientloop: %v\n%s", err, out)
						continue
					}
					var cr clientResult
					if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &cr) == nil {
						yr.clientCPU[rep], yr.clientRate[rep] = cr.CPUPerMsg, cr.MsgsPerSec
					}
				case 1:
					path := filepath.Join(m.out, fmt.Sprintf("yard-%s-loadgen-%d.json", slug(y.name), rep+1))
					args := append([]string{m.bin("loadgen"), "-json", path, "-quiet"}, common...)
					if out, err := m.command(1, args...).CombinedOutput(); err != nil {
						fmt.Fprintf(m.log, "loadgen: %v\n%s", err, out)
						continue
					}
					var res loadgen.Result
					if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &res) == nil {
						yr.loadgenCPU[rep], yr.loadgenRate[rep] = float64(res.LoadCPUPerMsg), res.MsgsPerSec
					}
				}
			}
			srv.stop()
		}
		fmt.Fprintf(m.log, "yardstick %s: clientloop %v ns/msg, loadgen %v ns/msg\n", y.name, yr.clientCPU, yr.loadgenCPU)
		out = append(out, yr)
	}
	return out
}
