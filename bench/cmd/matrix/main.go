// Command matrix runs the side-by-side benchmark of tcpkit's echo server
// against its peers (Go's net, gnet, Node), and the yardstick of the load
// generator against a minimal Go client loop. It starts each server pinned
// to CPU 0 and each load pinned to CPU 1 (taskset), one fresh server
// process per run, writes every raw result as JSON under -out, and prints
// Markdown tables to stdout. bench/run.sh builds the binaries and calls it.
//
//	matrix -bin bin -peers peers -out results/2026-11-30 [-quick]
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

var servers = []server{
	{"tcpkit", func(m *matrix, addr string) []string { return []string{m.bin("tcpkitecho"), "-addr", addr} }},
	{"std", func(m *matrix, addr string) []string { return []string{m.bin("stdecho"), "-addr", addr} }},
	{"gnet", func(m *matrix, addr string) []string { return []string{m.bin("gnetecho"), "-addr", addr, "-multicore"} }},
	{"node", func(m *matrix, addr string) []string {
		return []string{"node", filepath.Join(m.peers, "nodeecho.js"), addr}
	}},
}

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
	servers            []server
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
	only := flag.String("servers", "tcpkit,std,gnet,node", "servers to run, comma-separated")
	skipYard := flag.Bool("no-yardstick", false, "skip the loadgen-versus-clientloop comparison")
	skipIdle := flag.Bool("no-idle", false, "skip the idle-memory cell")
	cellsRE := flag.String("cells", "", "run only the message cells whose name matches this regular expression")
	flag.StringVar(&m.binDir, "bin", "bin", "directory of the built binaries")
	flag.StringVar(&m.peers, "peers", "peers", "directory of nodeecho.js")
	flag.StringVar(&m.out, "out", "results", "directory for the raw JSON results")
	flag.IntVar(&m.reps, "reps", 5, "repetitions of each cell")
	flag.DurationVar(&m.duration, "duration", 2*time.Second, "measured window of each run")
	flag.DurationVar(&m.warmup, "warmup", 300*time.Millisecond, "warmup of each run")
	flag.IntVar(&m.idleConns, "idle-conns", 5000, "connections of the idle-memory cell")
	flag.DurationVar(&m.idleHold, "idle-hold", 3*time.Second, "hold time of the idle-memory cell")
	flag.Parse()
	if *quick {
		m.reps, m.duration, m.warmup, m.idleConns, m.idleHold = 1, time.Second, 200*time.Millisecond, 1000, time.Second
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
	var rep report
	rep.header = m.describe()
	re, err := regexp.Compile(*cellsRE)
	if err != nil {
		return err
	}
	for _, c := range mainCells {
		if re.MatchString(c.name) {
			rep.cells = append(rep.cells, m.runCell(c))
		}
	}
	if !*skipIdle {
		rep.idle = m.runIdle()
	}
	if !*skipYard {
		rep.yard = m.runYardstick()
	}
	rep.took = time.Since(start)
	md := rep.markdown(m)
	fmt.Print(md)
	if err := os.WriteFile(filepath.Join(m.out, "summary.md"), []byte(md), 0o644); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep.jsonForm(), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(m.out, "summary.json"), append(b, '\n'), 0o644)
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
	return []string{
		fmt.Sprintf("tcpkit at %s%s", strings.TrimSpace(string(rev)), dirty),
		fmt.Sprintf("%s, %d CPUs, Linux %s, %s, Node %s", cpu, runtime.NumCPU(), kernel, runtime.Version(), strings.TrimSpace(string(nodeV))),
		fmt.Sprintf("server pinned to CPU 0, load to CPU 1 (taskset); %d run(s) per cell, each %s after a %s warmup, a fresh server process per run",
			m.reps, m.duration, m.warmup),
	}
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
			fmt.Fprintf(m.log, "%-22s %-7s run %d: %9.0f msgs/s %10.0f msgs/server-CPU-s, errors %d\n",
				c.name, s.name, rep+1, res.MsgsPerSec, serverEff(res), res.Errors.Total())
			cr.runs[s.name][rep] = res
		}
	}
	return cr
}

// runIdle runs the idle-memory cell once per server.
func (m *matrix) runIdle() map[string]*loadgen.Result {
	out := map[string]*loadgen.Result{}
	args := []string{"-mode", "idle", "-conns", strconv.Itoa(m.idleConns), "-size", "64",
		"-duration", m.idleHold.String(), "-sources", "4", "-timeout", "10s"}
	for _, s := range m.servers {
		res, err := m.runOne(s, args, fmt.Sprintf("idle-%d-%s.json", m.idleConns, s.name))
		if err != nil {
			fmt.Fprintf(m.log, "idle, %s: %v\n", s.name, err)
			continue
		}
		fmt.Fprintf(m.log, "idle %d  %-7s: %d alive, %.0f B per connection\n", m.idleConns, s.name,
			res.Idle.Alive, res.Idle.RSSPerConn)
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
	largs := append([]string{"-c", "1", m.bin("loadgen"), "-addr", addr, "-pid", strconv.Itoa(srv.cmd.Process.Pid),
		"-json", path, "-quiet"}, args...)
	if out, err := exec.Command("taskset", largs...).CombinedOutput(); err != nil {
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

// startServer starts s on addr, pinned to CPU 0, and waits until it
// accepts connections. taskset execs the server, so the process's id is
// the server's.
func (m *matrix) startServer(s server, addr string) (*proc, error) {
	cmd := exec.Command("taskset", append([]string{"-c", "0"}, s.argv(m, addr)...)...)
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
// pinned to CPU 1, against one stdecho server on CPU 0, alternating which
// goes first.
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
					args := append([]string{"-c", "1", m.bin("clientloop"), "-json", path}, common...)
					if out, err := exec.Command("taskset", args...).CombinedOutput(); err != nil {
						fmt.Fprintf(m.log, "clientloop: %v\n%s", err, out)
						continue
					}
					var cr clientResult
					if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &cr) == nil {
						yr.clientCPU[rep], yr.clientRate[rep] = cr.CPUPerMsg, cr.MsgsPerSec
					}
				case 1:
					path := filepath.Join(m.out, fmt.Sprintf("yard-%s-loadgen-%d.json", slug(y.name), rep+1))
					args := append([]string{"-c", "1", m.bin("loadgen"), "-json", path, "-quiet"}, common...)
					if out, err := exec.Command("taskset", args...).CombinedOutput(); err != nil {
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
