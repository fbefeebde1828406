package tcpkit

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// The schedule test (issue 17) drives one connection's event rules
// (conn_state.go, conn_write.go, conn.go) over a simulated socket, with
// Writes, Ends, EndWithErrors, Pauses, Resumes, Resets, Closes,
// SetTimeouts, Server.Shutdown's posts (evIdleCheck, evShutdown) and cut,
// and the peer's data, reads, FIN and RST interleaved, from several
// goroutines and the peer's side, in an order drawn from a seed, and
// checks every run with an oracle.
//
//	schedule_test.go         the tests, a run's plan and the actions
//	schedule_sim_test.go     the scheduler, the simulated socket and its peer
//	schedule_driver_test.go  the driver, and the two engine loops over it
//	schedule_coord_test.go   the coordinator: choices, phases, liveness checks
//	schedule_oracle_test.go  the oracle
//
// How to run it:
//
//	go test -race -run TestSchedule .                   # CI: 2000 seeds, the race fuzz, the replay check
//	go test -run 'TestSchedule$' -schedule.seed=N -v .  # one seed, with its trace
//	go test -run 'TestSchedule$' -schedule.seeds=1000000 -schedule.first=M .  # a long run
//	go test -run 'TestSchedule$' -schedule.known .      # the same, with the known bug's mask off
//	TCPKIT_SCHEDULE_KNOWN=1 go test -run TestScheduleKnownBugs -v .  # the open bug, reproduced
//
// A failure prints the failing seeds, each with its first problem, and the
// first one's plan and trace: a seed replays exactly (TestScheduleReplays
// checks it), whatever the machine, as the clock is testing/synctest's.
//
// The oracle checks, for every run:
//   - events: the handler first; data, end at most once and never before
//     data that came before the FIN, nor without the peer's FIN; drain only
//     after the queue went over HighWater, and as soon as it is at
//     LowWater; timeout only after the idle period, once per period;
//     shutdown only when posted; error at most once, just before close,
//     with the close's error; close exactly once and last; nothing while
//     paused (but the end after EndWithError), after EndWithError (data),
//     or once the connection is closing; every callback on the event
//     goroutine;
//   - bytes: the socket took a prefix of what the Writes accepted, all of
//     it if our FIN went out; the peer read a prefix of that, all of it
//     and then our FIN after a clean close; OnData delivered a prefix of
//     what the peer sent, all of it before a clean close (but after
//     EndWithError); Write never accepted after End, never over
//     MaxBuffered, and failed with ErrSlowConsumer only over it;
//   - the close: exactly the error of its cause (nil for Close, Reset and
//     a clean end; CloseWithError's; Shutdown's cut; the Write's
//     ErrSlowConsumer or write error; a *PanicError; ErrIdleTimeout only
//     after IdleTimeout; EndWithError's only after both ends or its
//     deadline; a reset error only if the peer reset); an RST to the peer
//     after Reset or Shutdown's cut, a FIN after Close and a clean end;
//     Done closed, Err, Buffered 0, BytesRead and BytesWritten;
//   - liveness: a drained queue's drain event, the timeout and IdleTimeout
//     once the clock passes them, EndWithError's deadline, the end of our
//     side after the peer's end without AllowHalfOpen, a close after a
//     graceful end (Resume, End, the peer's FIN), an abortive one, or the
//     peer's reset; a Write after a drained flush goes out intact;
//   - the driver: no write, flush, FIN or timer after finish; a direct
//     write only with c.mu held, the queue empty and no flush; no write
//     after our FIN; setTimer on the event goroutine;
//   - for a Server's connection, Stats: Accepted = Open + Dropped.Total() +
//     Closed.Total(), the close counted under its cause, BytesIn and
//     BytesOut; and Server.Done after Close;
//   - no goroutine left: synctest.Test waits for every goroutine of the run.
var (
	scheduleSeed  = flag.Int64("schedule.seed", -1, "run the schedule test for this seed only, and log its trace")
	scheduleSeeds = flag.Int("schedule.seeds", 0, "how many seeds the schedule test runs (default 2000, 400 with -short)")
	scheduleFirst = flag.Uint64("schedule.first", 0, "the first seed of the schedule test's range")
	scheduleKnown = flag.Bool("schedule.known", false, "turn the known bug's mask off")
	scheduleFree  = flag.Int("schedule.free", 0, "how many seeds the free-running (race) schedule fuzz runs (default 400, 100 with -short)")
)

// A mask keeps the default runs away from what a known, reported bug needs,
// so that CI stays green until it is fixed, without skipping any check:
// TestScheduleKnownBugs shows the bug unmasked, under
// TCPKIT_SCHEDULE_KNOWN=1, and fails until it is fixed; -schedule.known
// runs any range unmasked. Drop a mask once its bug is fixed.
const (
	// maskWriteResetRace: a call off the event goroutine that takes the
	// socket's pending reset (Write's direct write in writeRaw; End, whose
	// sendFINLocked asks soError after shutdown's ENOTCONN; the goroutine
	// engine's writer) releases c.mu before it closes the connection. In
	// that window the event goroutine's read returns 0 (Linux reports an
	// end once a reset's error has been taken), so OnEnd fires for a peer
	// that sent no FIN, and the rules may then close the connection
	// cleanly (nil), or with EndWithError's error, while the Write or End
	// that met the reset returned ECONNRESET. The window has no driver
	// call, so no yield point: only the free mode meets it.
	//
	// Fixed: the engines answer a read of 0 by looking at the socket's
	// state (endOrReset), which says it was reset, and the simulated
	// socket's read does as they do. The constant stays, true, to name the
	// behaviour; TestScheduleKnownBugs hunts for the race, now passing.
	maskWriteResetRace = true
)

// regressionSeeds are the shortest seeds that showed the outside review's
// defects at 2a29428 (each of them fails there, about one seed in 100 to
// 400 did), fixed since in f317ee4; TestSchedule runs them first, always.
var regressionSeeds = []struct {
	seed uint64
	bug  string
}{
	// Server.Shutdown's cut (resetWith) from another goroutine: shut
	// published closing and released c.mu before drv.close(reset)
	// recorded the reset; the epoll engine's event goroutine ran finish
	// and its release, which closed the socket with a FIN, in between.
	{8121, "Reset from another goroutine sent FIN, not RST"},
	// The peer's FIN, then its RST with 11 bytes of ours unread: the read
	// returns 0 (Linux), OnEnd, End's shutdown gets ENOTCONN, which
	// sendFINLocked took for a clean end: OnClose(nil).
	{7791, "a reset after the peer's FIN reported as a clean close, bytes lost"},
	// The same reset, on a half-open connection that does not write: the
	// rules, past the peer's end, read no more and never close.
	{725, "a reset after the peer's FIN never noticed: the connection stays open"},
}

func TestSchedule(t *testing.T) {
	if *scheduleSeed >= 0 {
		w := runScheduleSeed(t, uint64(*scheduleSeed), false, *scheduleKnown, true)
		for _, l := range w.trace {
			t.Log(l)
		}
		if len(w.rec.problems) > 0 {
			t.Errorf("seed %d: %s", w.seed, strings.Join(w.rec.problems, "\n\t"))
		}
		return
	}
	for _, r := range regressionSeeds {
		if w := runScheduleSeed(t, r.seed, false, *scheduleKnown, false); len(w.rec.problems) > 0 {
			t.Errorf("regression seed %d (%s) fails again: %s (rerun with -schedule.seed=%d -v)", r.seed, r.bug, strings.Join(w.rec.problems, "; "), r.seed)
		}
	}
	n := *scheduleSeeds
	if n == 0 {
		n = 2000
		if testing.Short() {
			n = 400
		}
	}
	runScheduleRange(t, *scheduleFirst, n, false)
}

// TestScheduleFree is the race fuzz: the same runs with real goroutines,
// which the race detector watches. It is not reproducible from its seed
// (the goroutines' order is the Go scheduler's), so its oracle checks only
// what holds whatever that order.
func TestScheduleFree(t *testing.T) {
	n := *scheduleFree
	if n == 0 {
		n = 400
		if testing.Short() {
			n = 100
		}
	}
	if *scheduleSeed >= 0 {
		w := runScheduleSeed(t, uint64(*scheduleSeed), true, *scheduleKnown, true)
		if len(w.rec.problems) > 0 {
			t.Errorf("free seed %d: %s\n%s", w.seed, strings.Join(w.rec.problems, "\n\t"), strings.Join(w.trace, "\n"))
		}
		return
	}
	runScheduleRange(t, *scheduleFirst, n, true)
}

// TestScheduleReplays checks that a seed replays exactly: the same trace,
// event for event, twice.
func TestScheduleReplays(t *testing.T) {
	for seed := range uint64(30) {
		a := runScheduleSeed(t, seed, false, false, true)
		b := runScheduleSeed(t, seed, false, false, true)
		if !slices.Equal(a.trace, b.trace) {
			t.Fatalf("seed %d ran two ways: %d and %d trace lines, first difference at line %d",
				seed, len(a.trace), len(b.trace), firstDiffString(a.trace, b.trace))
		}
	}
}

func firstDiffString(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestScheduleKnownBugs hunts for the race that maskWriteResetRace names,
// fixed since (endOrReset): it runs only with TCPKIT_SCHEDULE_KNOWN=1, for
// as long as a hunt takes.
func TestScheduleKnownBugs(t *testing.T) {
	if os.Getenv("TCPKIT_SCHEDULE_KNOWN") != "1" {
		t.Skip("set TCPKIT_SCHEDULE_KNOWN=1 to reproduce the known bug")
	}
	// No scheduled seed reaches it, as it needs the Go scheduler to run the
	// event goroutine between a Write's (or End's) release of c.mu and its
	// close; a free run this small meets it about once in a thousand.
	t.Run("write-reset-race", func(t *testing.T) {
		for seed := range uint64(50000) {
			w := runSchedulePlan(t, seed, true, true, true, writeResetRacePlan)
			if len(w.rec.problems) > 0 {
				t.Fatalf("free seed %d, try %d: %s\nplan: %s\ntrace:\n%s", seed, seed+1, strings.Join(w.rec.problems, "\n\t"),
					w.plan, strings.Join(w.trace, "\n"))
			}
		}
	})
}

// writeResetRacePlan is the smallest run that meets maskWriteResetRace:
// the peer resets a paused connection, and another goroutine resumes it
// and writes or ends while the event goroutine reads.
func writeResetRacePlan(p *schedPlan) {
	p.foreign, p.script, p.closers, p.finWeight, p.rstWeight, p.panics = 0, 0, false, 0, 0, false
	p.teardown, p.steps, p.server = "rstEnd", 0, false
	p.cfg.AllowHalfOpen, p.cfg.PauseOnConnect, p.cfg.Timeout, p.cfg.IdleTimeout = true, true, 0, 0
}

// runScheduleRange runs n seeds from first and reports the failing ones:
// all by seed, the first with its trace (run again, traced: a seed replays
// exactly).
func runScheduleRange(t *testing.T, first uint64, n int, free bool) {
	var failed []uint64
	var firstProblems, summary []string
	for seed := first; seed < first+uint64(n); seed++ {
		w := runScheduleSeed(t, seed, free, *scheduleKnown, false)
		if len(w.rec.problems) > 0 {
			if failed == nil {
				firstProblems = w.rec.problems
			}
			failed = append(failed, seed)
			summary = append(summary, fmt.Sprintf("seed %d: %s", seed, w.rec.problems[0]))
			if len(failed) >= 40 {
				break
			}
		}
	}
	if len(failed) == 0 {
		return
	}
	w := runScheduleSeed(t, failed[0], free, *scheduleKnown, true)
	trace := w.trace
	if len(trace) > 600 {
		trace = append([]string{fmt.Sprintf("... %d lines before", len(trace)-600)}, trace[len(trace)-600:]...)
	}
	how := "-schedule.seed=%d"
	if free {
		how += " (free mode: the Go scheduler's order may differ)"
	}
	t.Errorf("%d failing seeds:\n\t%s\nfirst, seed %d (rerun with -run 'TestSchedule%s$' "+how+" -v):\n\t%s\nplan: %s\ntrace:\n%s",
		len(failed), strings.Join(summary, "\n\t"), failed[0], map[bool]string{false: "", true: "Free"}[free], failed[0],
		strings.Join(firstProblems, "\n\t"), w.plan, strings.Join(trace, "\n"))
}

// A schedPlan is a run's configuration, drawn from its seed.
type schedPlan struct {
	cfg              ConnConfig
	server           bool
	shutdownListener bool
	shutdownIdle     time.Duration
	goEngine         bool
	sndCap, rcvCap   int
	foreign          int // goroutines calling the Conn's methods
	script           int // the actions each of them makes
	steps            int // the coordinator's choices before teardown
	closers          bool
	panics           bool
	finWeight        int
	rstWeight        int
	maxBody          int
	teardown         string // graceful, close, reset, cut, peerRST
}

func (p schedPlan) String() string {
	c := p.cfg
	return fmt.Sprintf("engine=%s server=%v HighWater=%d LowWater=%d MaxBuffered=%d ReadBufferSize=%d AllowHalfOpen=%v PauseOnConnect=%v Timeout=%v IdleTimeout=%v "+
		"sndCap=%d rcvCap=%d foreign=%dx%d steps=%d closers=%v panics=%v fin=%d rst=%d maxBody=%d shutdownListener=%v teardown=%s",
		map[bool]string{false: "epoll", true: "goroutine"}[p.goEngine], p.server, c.HighWater, c.LowWater, c.MaxBuffered, c.ReadBufferSize,
		c.AllowHalfOpen, c.PauseOnConnect, c.Timeout, c.IdleTimeout, p.sndCap, p.rcvCap, p.foreign, p.script, p.steps,
		p.closers, p.panics, p.finWeight, p.rstWeight, p.maxBody, p.shutdownListener, p.teardown)
}

func makePlan(rng *rand.Rand) schedPlan {
	var p schedPlan
	hw := 16 + rng.IntN(240)
	rbs := 1 + rng.IntN(64)
	p.cfg = ConnConfig{
		HighWater:      hw,
		LowWater:       rng.IntN(hw + 1),
		ReadBufferSize: rbs,
		MaxBuffered:    hw + rbs + rng.IntN(700),
		AllowHalfOpen:  rng.IntN(2) == 0,
		PauseOnConnect: rng.IntN(6) == 0,
	}
	p.maxBody = 1 + rng.IntN(hw)
	switch rng.IntN(40) {
	case 0: // big writes: the queue buffer's 64 KiB cap (maxSpare)
		p.cfg.HighWater, p.cfg.LowWater, p.cfg.MaxBuffered, p.cfg.ReadBufferSize = 64<<10, 16<<10, 1<<20, 32<<10
		p.maxBody = 100 << 10
	case 1, 2, 3, 4, 5, 6, 7, 8, 9, 10: // medium: a queue buffer worth keeping (minSpare)
		hw = 1<<10 + rng.IntN(7<<10)
		rbs = 1 + rng.IntN(4<<10)
		p.cfg.HighWater, p.cfg.LowWater, p.cfg.ReadBufferSize = hw, rng.IntN(hw+1), rbs
		p.cfg.MaxBuffered = hw + rbs + rng.IntN(16<<10)
		p.maxBody = 1 + rng.IntN(hw/2) // several Writes per queue buffer: appends grow it, leaving room
	}
	if rng.IntN(4) == 0 {
		p.cfg.Timeout = time.Duration(1+rng.IntN(30)) * time.Millisecond
	}
	if rng.IntN(6) == 0 {
		p.cfg.IdleTimeout = time.Duration(5+rng.IntN(80)) * time.Millisecond
	}
	p.server = rng.IntN(3) != 0
	p.shutdownListener = p.server && rng.IntN(2) == 0
	p.shutdownIdle = time.Duration(1+rng.IntN(20)) * time.Millisecond
	p.goEngine = rng.IntN(2) == 0
	p.sndCap = 1 + rng.IntN(128)
	switch {
	case p.maxBody > 16<<10:
		p.sndCap = 8<<10 + rng.IntN(56<<10)
	case p.cfg.HighWater >= 1<<10:
		p.sndCap = 256 + rng.IntN(8<<10)
	}
	p.rcvCap = 1 + rng.IntN(128)
	p.foreign = rng.IntN(4)
	p.script = rng.IntN(16)
	p.steps = 10 + rng.IntN(150)
	p.closers = rng.IntN(3) == 0
	p.panics = rng.IntN(12) == 0
	p.finWeight = rng.IntN(3)
	p.rstWeight = []int{0, 0, 0, 1, 2}[rng.IntN(5)]
	p.teardown = []string{"graceful", "graceful", "graceful", "close", "reset", "cut", "peerRST", "rstEnd"}[rng.IntN(8)]
	if p.teardown == "cut" && !p.server {
		p.teardown = "reset"
	}
	return p
}

// runScheduleSeed runs one seed in a synctest bubble and returns its world.
func runScheduleSeed(t *testing.T, seed uint64, free, known, tracing bool) *simWorld {
	return runSchedulePlan(t, seed, free, known, tracing, nil)
}

// runSchedulePlan is runScheduleSeed with the seed's plan changed by tweak.
func runSchedulePlan(t *testing.T, seed uint64, free, known, tracing bool, tweak func(*schedPlan)) *simWorld {
	var w *simWorld
	synctest.Test(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		plan := makePlan(rng)
		if tweak != nil {
			tweak(&plan)
		}
		w = &simWorld{seed: seed, free: free, goEngine: plan.goEngine, known: known, rng: rng, tracing: tracing,
			changed: make(chan struct{}), back: make(chan struct{}), plan: plan, logs: &simLog{}}
		w.sock.sndCap, w.sock.rcvCap = plan.sndCap, plan.rcvCap
		w.start = w.now()
		w.sock.lastTraffic = w.start
		w.rec.writes, w.rec.seq, w.rec.explicit = map[byte][]schedWrite{}, map[byte]int{}, map[string]bool{}
		w.rec.eweAll = map[error]time.Duration{}
		w.rec.firedSince = -1
		w.tracef("seed %d free=%v plan: %s", seed, free, plan)
		w.run()
	})
	return w
}

// run sets the connection up, runs the schedule, tears it down and checks.
func (w *simWorld) run() {
	plan := w.plan
	h := func(c *Conn) {
		w.mu.Lock()
		w.sock.lastTraffic = w.now() // open's touch
		w.mu.Unlock()
		w.event("open")
		c.OnData(w.onData)
		c.OnEnd(w.onEnd)
		c.OnDrain(w.onDrain)
		c.OnTimeout(w.onTimeout)
		c.OnError(w.onError)
		c.OnClose(w.onClose)
		if plan.shutdownListener {
			c.OnShutdown(w.onShutdown)
		}
		w.callbackActs("open")
	}
	w.rec.timeout = plan.cfg.Timeout
	w.rec.timeoutSet = w.now()
	if plan.server {
		w.srv = &Server{ConnConfig: plan.cfg, Handler: h, Logger: w.logs.logger(), Engine: simEngine{w}, ShutdownIdle: plan.shutdownIdle}
		w.srv.init()
		if w.srv.cfgErr != nil {
			panic(w.srv.cfgErr)
		}
		w.cfg = w.srv.cfg
		w.srv.startConn(nil)
	} else {
		cfg, err := plan.cfg.resolve()
		if err != nil {
			panic(err)
		}
		w.cfg = cfg
		w.c = newConn(simDriver{w}, &cfg, nil, w.logs.logger())
		w.startLoop(h)
	}
	var scripts []*simPart
	for i := range plan.foreign {
		n := plan.script
		scripts = append(scripts, w.spawn(fmt.Sprintf("g%d", i+1), func(p *simPart) {
			for range n {
				w.yield()
				w.doAction(p, w.pickForeign(p.rng))
			}
		}))
	}
	if w.free {
		w.runFree(scripts)
	} else {
		w.runScheduled(scripts)
	}
	w.check()
}

// pickForeign draws a foreign goroutine's next action.
func (w *simWorld) pickForeign(rng *rand.Rand) string {
	plan := w.plan
	type wa struct {
		name string
		w    int
	}
	as := []wa{{"Write", 30}, {"Pause", 6}, {"Resume", 8}, {"SetTimeout", 4}, {"End", 2}, {"EndWithError", 1}, {"Peek", 3}}
	if plan.closers {
		as = append(as, wa{"Close", 1}, wa{"Reset", 1}, wa{"CloseWithError", 1})
	}
	if plan.server {
		notify := 1
		if plan.shutdownListener {
			notify = 12 // often enough to meet the other posted events in one step
		}
		as = append(as, wa{"ShutdownIdle", 3}, wa{"ShutdownNotify", notify}, wa{"ServerClose", 1})
		if plan.closers {
			as = append(as, wa{"ShutdownCut", 1})
		}
	}
	total := 0
	for _, a := range as {
		total += a.w
	}
	k := rng.IntN(total)
	for _, a := range as {
		if k < a.w {
			return a.name
		}
		k -= a.w
	}
	panic("unreachable")
}

// callbackActs makes the actions a callback takes, on the event goroutine.
func (w *simWorld) callbackActs(where string) {
	if w.passiveNow() {
		return
	}
	rng := w.loopRng()
	if w.plan.panics && rng.IntN(25) == 0 {
		w.mu.Lock()
		w.rec.panics++
		w.mu.Unlock()
		w.setAction(w.loop, "panic")
		w.tracef("cb %s: panic", where)
		panic(schedPanicVal)
	}
	var table []string
	switch where {
	case "open":
		table = []string{"Write", "Write", "Pause", "SetTimeout", "Resume", "", "", ""}
	case "data":
		table = []string{"Write", "Write", "Write", "Write", "Pause", "Resume", "SetTimeout", "", "", "", "", "", "", "End", "EndWithError", "Close", "Reset"}
	case "end":
		table = []string{"Write", "Write", "End", "End", "", "", "Pause", "Resume", "Close"}
	case "drain":
		table = []string{"Write", "Write", "Resume", "", "", "Close", "Close"}
	case "timeout":
		table = []string{"Write", "", "", "", "Close", "End", "SetTimeout"}
	case "shutdown":
		table = []string{"End", "End", "End", "", "Write"}
	}
	for range 1 + rng.IntN(2) {
		a := table[rng.IntN(len(table))]
		if a == "" {
			continue
		}
		if (a == "Close" || a == "Reset") && !w.plan.closers && where != "drain" {
			continue
		}
		w.doAction(w.loop, a)
	}
}

func (w *simWorld) passiveNow() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rec.passive
}

// writerID names a participant in the frames it writes.
func writerID(p *simPart) byte {
	switch {
	case p.name == "loop":
		return 1
	case p.name == "closer":
		return 9
	case p.name == "prober":
		return 10
	case strings.HasPrefix(p.name, "g"):
		return 1 + p.name[1] - '0'
	}
	return 15
}

// frame makes a Write's payload: a header (writer, seq, length) and a body
// that the header determines, so that the free mode can parse the stream.
func frame(id byte, seq, n int) []byte {
	p := make([]byte, frameHeader+n)
	p[0], p[1], p[2], p[3], p[4], p[5] = id, byte(seq>>8), byte(seq), byte(n>>16), byte(n>>8), byte(n)
	for i := range n {
		p[frameHeader+i] = byte(int(id)*31 + seq*7 + i*13)
	}
	return p
}

const frameHeader = 6

// doAction makes one call on the Conn, as participant p, and records it.
func (w *simWorld) doAction(p *simPart, name string) {
	c := w.c
	rng := p.rng
	w.setAction(p, name)
	defer w.setAction(p, "")
	switch name {
	case "Write":
		id := writerID(p)
		w.mu.Lock()
		seq := w.rec.seq[id]
		w.rec.seq[id]++
		w.mu.Unlock()
		body := rng.IntN(w.plan.maxBody + 1)
		if rng.IntN(4) == 0 {
			body = rng.IntN(1 + w.plan.maxBody/8)
		}
		var before int
		var wasOver, busy bool
		if !w.free {
			c.mu.Lock()
			before, wasOver, busy = c.bufferedLocked(), c.overHigh, c.writing || len(c.wq) > 0
			c.mu.Unlock()
			// Now and then, a Write that takes the queue to MaxBuffered
			// exactly, or one past it: the limit's edge.
			if k := w.cfg.MaxBuffered - before - frameHeader; busy && k >= 0 && rng.IntN(8) == 0 {
				body = k + rng.IntN(2)
			}
		}
		payload := frame(id, seq, body)
		n, err := c.Write(payload)
		w.tracef("%s: Write(%d) = %d, %v", p.name, len(payload), n, err)
		w.noteWrite(p, id, seq, payload, n, err, before, wasOver)
	case "End":
		err := c.End()
		w.tracef("%s: End() = %v", p.name, err)
		w.mu.Lock()
		w.rec.ended = true
		w.mu.Unlock()
	case "EndWithError":
		e := fmt.Errorf("schedule test: EndWithError by %s", p.name)
		timeout := time.Duration(1+rng.IntN(60)) * time.Millisecond
		first := !c.isClosing()
		w.mu.Lock()
		if first && !w.rec.ewe {
			w.rec.eweErr, w.rec.eweBy = e, w.now()+timeout
		}
		w.rec.ewe = true
		w.rec.eweAll[e] = w.now() + timeout // free mode: which call the Conn keeps is a race
		w.mu.Unlock()
		w.tracef("%s: EndWithError(%v)", p.name, timeout)
		c.EndWithError(e, timeout)
		w.mu.Lock()
		w.rec.ended = true
		w.mu.Unlock()
	case "Pause":
		w.tracef("%s: Pause", p.name)
		c.Pause()
	case "Resume":
		w.tracef("%s: Resume", p.name)
		c.Resume()
	case "SetTimeout":
		d := time.Duration(rng.IntN(25)) * time.Millisecond
		w.mu.Lock()
		w.rec.timeout, w.rec.timeoutSet = d, w.now()
		w.mu.Unlock()
		w.tracef("%s: SetTimeout(%v)", p.name, d)
		c.SetTimeout(d)
	case "Close", "Reset", "CloseWithError", "ShutdownCut":
		w.mu.Lock()
		w.rec.explicit[name] = true
		w.mu.Unlock()
		w.tracef("%s: %s", p.name, name)
		switch name {
		case "Close":
			c.Close()
		case "Reset":
			c.Reset()
		case "CloseWithError":
			c.CloseWithError(errSchedApp)
		case "ShutdownCut":
			c.resetWith(errShutdownCut)
		}
	case "ShutdownIdle":
		w.tracef("%s: post(evIdleCheck)", p.name)
		c.post(evIdleCheck)
	case "ShutdownNotify":
		w.mu.Lock()
		w.rec.shutdownPosts++
		w.mu.Unlock()
		w.tracef("%s: post(evShutdown)", p.name)
		c.post(evShutdown)
	case "ServerClose":
		w.tracef("%s: Server.Close", p.name)
		w.srv.Close()
	case "Peek":
		c.Buffered()
		c.Paused()
		c.Err()
		c.BytesRead()
		c.BytesWritten()
		c.LocalAddr()
	default:
		panic("unknown action " + name)
	}
}

// noteWrite records a Write and checks its result.
func (w *simWorld) noteWrite(p *simPart, id byte, seq int, payload []byte, n int, err error, before int, wasOver bool) {
	c := w.c
	switch {
	case err == nil && n != len(payload):
		w.problem("Write(%d) = %d, nil", len(payload), n)
	case err != nil && (n < 0 || n > len(payload)):
		w.problem("Write(%d) = %d, %v", len(payload), n, err)
	}
	if !w.free {
		c.mu.Lock()
		after, over := c.bufferedLocked(), c.overHigh
		c.mu.Unlock()
		max := w.cfg.MaxBuffered
		switch {
		case errors.Is(err, ErrSlowConsumer) && before+len(payload)-n <= max:
			w.problem("Write(%d) with %d queued failed with ErrSlowConsumer, MaxBuffered %d", len(payload), before, max)
		case err == nil && after > max:
			w.problem("Write(%d) left %d queued, over MaxBuffered %d", len(payload), after, max)
		case err == nil && w.rec.ended:
			w.problem("Write accepted after End")
		}
		if err == nil && !wasOver && over {
			w.mu.Lock()
			w.rec.arms++
			w.mu.Unlock()
			w.tracef("OnDrain armed (%d queued)", after)
		}
		if err == nil && after > w.cfg.HighWater && !over {
			w.problem("%d queued, over HighWater %d, and OnDrain not armed", after, w.cfg.HighWater)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if errors.Is(err, ErrSlowConsumer) {
		w.rec.slowConsumer = true
	}
	if w.winnerPart == p.name && w.winner == "Write" && w.winnerWriteErr == nil && err != nil {
		w.winnerWriteErr = err
	}
	switch {
	case err == nil:
		w.rec.written = append(w.rec.written, payload...)
		w.rec.writes[id] = append(w.rec.writes[id], schedWrite{seq, true})
	case n > 0:
		w.rec.written = append(w.rec.written, payload[:n]...)
		w.rec.writes[id] = append(w.rec.writes[id], schedWrite{seq, false})
	}
}
