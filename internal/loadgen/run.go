package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// ErrNoConnection is returned by Run when not one connection to the server
// could be made. It wraps the first dial error.
var ErrNoConnection = errors.New("loadgen: no connection could be made")

// Run puts the load cfg describes on an echo server, and returns what it
// measured. It makes the connections, runs the Warmup, then the measured
// window, bounded by Duration and Count, then lets every connection finish:
// no new messages, the echoes in flight read and checked, and the write
// side half-closed, so that the server sees an orderly end.
//
// Errors on connections (a corrupt echo, a reset, a timeout...) do not end
// the run: each is counted in Result.Errors under its kind, the connection
// is closed, and a new one is made after a short backoff. Run returns an
// error only for an invalid cfg, when not one connection could be made
// (ErrNoConnection), or when ctx ends before the measured window starts.
// If ctx ends during the measured window, the window ends there and the
// result, marked Interrupted, is returned.
//
// If progress is a terminal, Run shows a live status line on it, refreshed
// four times a second; otherwise it writes nothing there. progress may be
// nil.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Result, error) {
	rc, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	r := newRunner(rc)
	defer r.abortNow()
	if rc.Mode == Idle {
		return r.runIdle(ctx, progress)
	}
	return r.runLoad(ctx, progress)
}

// The phases of a run, in order.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

var phaseNames = [...]string{"warmup", "measuring", "finishing"}

// maxLatency is the largest latency the histograms hold; longer ones are
// recorded as maxLatency.
const maxLatency = int64(time.Minute)

// A runner holds the state of one run that its workers share. Workers read
// it, and write only atomics, a mutex-guarded sample list, and their own
// worker structs.
type runner struct {
	cfg     resolved
	base    time.Time // the origin of now()
	dialers []net.Dialer

	phase    atomic.Int32
	stopOnce sync.Once
	stopped  chan struct{} // closed when phase becomes phaseStop
	start    chan struct{} // closed when the warmup starts
	ctx      context.Context
	cancel   context.CancelFunc // hard abort: dials fail, deadlines pass
	aborted  atomic.Bool

	measureStart atomic.Int64 // now() at the start of the measured window
	stopAt       atomic.Int64 // now() at its end; 0 before
	series       series       // the window second by second

	nextID    atomic.Uint32
	ready     sync.WaitGroup // workers that made their first dial attempt
	initialOK atomic.Int32   // ... and succeeded
	running   sync.WaitGroup
	left      atomic.Int32  // workers still running
	allDone   chan struct{} // closed when left reaches 0

	mu       sync.Mutex
	workers  []*worker
	firstErr error    // the first failure, for ErrNoConnection
	samples  []string // the first few failures, one or two per kind
	perKind  [numKinds]int
}

func newRunner(cfg resolved) *runner {
	r := &runner{
		cfg:     cfg,
		base:    time.Now(),
		stopped: make(chan struct{}),
		start:   make(chan struct{}),
		allDone: make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.dialers = make([]net.Dialer, max(1, len(cfg.SourceIPs)))
	for i := range r.dialers {
		r.dialers[i] = net.Dialer{Timeout: cfg.Timeout, KeepAlive: -1}
		if len(cfg.SourceIPs) > 0 {
			r.dialers[i].LocalAddr = &net.TCPAddr{IP: cfg.SourceIPs[i].AsSlice()}
		}
	}
	return r
}

// now returns the time since the run began, in nanoseconds.
func (r *runner) now() int64 { return int64(time.Since(r.base)) }

// stop ends the measured window: workers send no new messages, finish the
// ones in flight and close.
func (r *runner) stop() {
	r.stopOnce.Do(func() {
		r.stopAt.Store(r.now())
		r.phase.Store(phaseStop)
		close(r.stopped)
	})
}

// abortNow cuts every connection short: dials are cancelled and blocked
// reads and writes return at once. Errors from then on are not counted.
func (r *runner) abortNow() {
	r.aborted.Store(true)
	r.stop()
	r.cancel()
	r.mu.Lock()
	ws := r.workers
	r.mu.Unlock()
	for _, w := range ws {
		w.interrupt()
	}
}

// record counts f, and keeps its message if it is among the first of its
// kind.
func (r *runner) record(w *worker, f *failure) {
	if r.aborted.Load() {
		return
	}
	w.kinds[f.kind].Add(1)
	w.errs.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.firstErr == nil {
		r.firstErr = f
	}
	if r.perKind[f.kind] < 2 && len(r.samples) < 10 {
		r.perKind[f.kind]++
		r.samples = append(r.samples, f.Error())
	}
}

// newWorkers makes n workers, sharing Count out among them.
func (r *runner) newWorkers(n int) []*worker {
	ws := make([]*worker, n)
	for i := range ws {
		quota := int64(-1)
		if r.cfg.Count > 0 {
			quota = r.cfg.Count / int64(n)
			if int64(i) < r.cfg.Count%int64(n) {
				quota++
			}
		}
		ws[i] = newWorker(r, i, quota)
	}
	r.mu.Lock()
	r.workers = ws
	r.mu.Unlock()
	r.left.Store(int32(n))
	return ws
}

// workerExit is deferred by every worker goroutine.
func (r *runner) workerExit() {
	if r.left.Add(-1) == 0 {
		close(r.allDone)
	}
	r.running.Done()
}

// runLoad runs the modes with a measured window of messages: ping-pong,
// pipeline, stream and connect.
func (r *runner) runLoad(ctx context.Context, progress io.Writer) (*Result, error) {
	cfg := &r.cfg
	ws := r.newWorkers(cfg.Conns)
	r.ready.Add(len(ws))
	r.running.Add(len(ws))
	for _, w := range ws {
		go w.run()
	}
	r.ready.Wait()
	if r.initialOK.Load() == 0 || ctx.Err() != nil {
		r.stop()
		close(r.start)
		r.running.Wait()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w to %s: %w", ErrNoConnection, cfg.Addr, r.firstError())
	}
	var (
		res        Result
		before     procSample
		perr       error
		cpu0       time.Duration
		t0         time.Time
		phaseStart atomic.Int64
	)
	phaseStart.Store(r.now())
	p := startProgress(progress, func() (string, int64, int64) {
		ph := r.phase.Load()
		var total, errs int64
		for _, w := range ws {
			total += w.total.Load()
			errs += w.errs.Load()
		}
		return fmt.Sprintf("%-9s %5.1fs", phaseNames[ph], float64(r.now()-phaseStart.Load())/1e9), total, errs
	})
	defer p.stop()
	begin := func() { // the measured window starts
		before, perr = sampleProc(cfg.ServerPID)
		cpu0 = selfCPU()
		t0 = time.Now()
		phaseStart.Store(r.now())
		r.measureStart.Store(r.now())
		r.phase.Store(phaseMeasure)
	}
	if cfg.Warmup == 0 {
		begin()
		close(r.start)
	} else {
		close(r.start)
		if !sleepCtx(ctx, cfg.Warmup) {
			r.stop()
			r.finish()
			return nil, ctx.Err()
		}
		begin()
	}

	var timeout <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		timeout = t.C
	}
	// A run bounded by Count alone also ends if a whole Timeout passes
	// without a message completing: a dead server would otherwise hold it
	// for ever.
	var stall <-chan time.Time
	if cfg.Duration == 0 {
		t := time.NewTicker(cfg.Timeout)
		defer t.Stop()
		stall = t.C
	}
	// Once a second, the seconds of the series that no worker can still
	// add to are summarised, and their histograms dropped.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := int64(-1)
wait:
	for {
		select {
		case <-tick.C:
			r.series.summarise(int(r.secondOf(r.now())) - seriesLag)
		case <-timeout:
			break wait
		case <-r.allDone:
			break wait
		case <-ctx.Done():
			res.Interrupted = true
			break wait
		case <-stall:
			var total int64
			for _, w := range ws {
				total += w.total.Load()
			}
			if total == last {
				res.Stalled = true
				break wait
			}
			last = total
		}
	}
	res.Elapsed = time.Since(t0)
	r.stop()
	res.LoadCPU = selfCPU() - cpu0
	after, aerr := sampleProc(cfg.ServerPID)
	r.finish()
	p.stop()

	res.fill(cfg)
	res.Start = t0
	res.Warmup = cfg.Warmup
	hist := newHistogram(cfg.Conns)
	for _, w := range ws {
		res.Messages += w.measured
		if w.hist != nil {
			hist.Merge(w.hist)
		}
	}
	if cfg.Mode != Stream {
		res.setLatency(hist)
	}
	res.Series = r.series.result(res.Elapsed)
	if cfg.Rate > 0 {
		res.setOpen(cfg.Rate, ws)
	}
	res.setErrors(ws, r.samplesCopy())
	res.setRates()
	res.setServer(cfg.ServerPID, before, after, errors.Join(perr, aerr))
	return &res, nil
}

// finish waits for the workers to end once the run has stopped. They finish
// the messages in flight and close, each step bounded by Timeout; if they
// are not done within Timeout and two seconds more, they are cut short.
func (r *runner) finish() {
	t := time.NewTimer(r.cfg.Timeout + 2*time.Second)
	defer t.Stop()
	select {
	case <-r.allDone:
	case <-t.C:
		r.abortNow()
	}
	r.running.Wait()
}

func (r *runner) firstError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.firstErr == nil {
		return errors.New("no error recorded")
	}
	return r.firstErr
}

func (r *runner) samplesCopy() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.samples...)
}

// sleepCtx waits for d, and reports false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// newHistogram returns a latency histogram in nanoseconds, from 1ns to a
// minute. With many connections, each worker's histogram holds two
// significant digits (1% buckets, 30 KiB) rather than three (0.1%, 210
// KiB), to keep the memory of a thousand of them reasonable.
func newHistogram(conns int) *hdrhistogram.Histogram {
	digits := 3
	if conns > 64 {
		digits = 2
	}
	return hdrhistogram.New(1, maxLatency, digits)
}
