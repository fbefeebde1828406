package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// idleDialers is the number of goroutines that open, and later check, the
// connections of an idle run: enough to open thousands a second without
// overflowing the server's listen backlog.
const idleDialers = 32

// Stages of an idle run, for the status line.
const (
	stageConnecting int32 = iota
	stageHolding
	stageChecking
)

// runIdle is idle mode: open Conns connections, each checked with one
// message; hold them for Duration without traffic; check each again with
// one message; close them.
func (r *runner) runIdle(ctx context.Context, progress io.Writer) (*Result, error) {
	cfg := &r.cfg
	n := cfg.Conns
	sessions := make([]*session, n)
	pool := r.newWorkers(min(n, idleDialers))
	var (
		stage      atomic.Int32
		stageStart atomic.Int64
		alive      atomic.Int64
		held       atomic.Int64
	)
	stageStart.Store(r.now())
	p := startProgress(progress, func() (string, int64, int64) {
		var total, errs int64
		for _, w := range pool {
			total += w.total.Load()
			errs += w.errs.Load()
		}
		secs := float64(r.now()-stageStart.Load()) / 1e9
		switch stage.Load() {
		case stageConnecting:
			return fmt.Sprintf("connecting %5.1fs", secs), total, errs
		case stageHolding:
			return fmt.Sprintf("holding %d idle %5.1fs/%.0fs", held.Load(), secs, cfg.Duration.Seconds()), total, errs
		}
		return fmt.Sprintf("checking %5.1fs", secs), total, errs
	})
	defer p.stop()

	// each runs f(w, i) for every connection index i, spread over the pool.
	each := func(f func(w *worker, i int)) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for _, w := range pool {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= n || r.aborted.Load() {
						return
					}
					f(w, i)
				}
			})
		}
		wg.Wait()
	}
	stop := context.AfterFunc(ctx, r.abortNow) // an interrupted idle run keeps nothing
	defer stop()

	before, perr := sampleProc(cfg.ServerPID)
	t0 := time.Now()
	each(func(w *worker, i int) {
		start := r.now()
		s, f := r.dial(i, w, w.rbuf)
		if f == nil {
			if f = r.exchangeOne(s, w.rbuf, w.sbuf, w.pattern, 0); f != nil {
				s.c.Close()
			}
		}
		if f != nil {
			r.record(w, f)
			return
		}
		w.hist.RecordValue(min(r.now()-start, maxLatency))
		w.total.Add(1)
		sessions[i] = s
		held.Add(1)
	})
	connectTime := time.Since(t0)
	if ctx.Err() != nil {
		closeAll(sessions)
		return nil, ctx.Err()
	}
	if held.Load() == 0 {
		return nil, fmt.Errorf("%w to %s: %w", ErrNoConnection, cfg.Addr, r.firstError())
	}

	mid, merr := sampleProc(cfg.ServerPID)
	stage.Store(stageHolding)
	stageStart.Store(r.now())
	cpu0 := selfCPU()
	t1 := time.Now()
	sleepCtx(ctx, cfg.Duration)
	hold := time.Since(t1)
	loadCPU := selfCPU() - cpu0
	after, aerr := sampleProc(cfg.ServerPID)

	stage.Store(stageChecking)
	stageStart.Store(r.now())
	each(func(w *worker, i int) {
		s := sessions[i]
		if s == nil {
			return
		}
		w.track(s.c)
		f := r.exchangeOne(s, w.rbuf, w.sbuf, w.pattern, 1)
		s.c.Close()
		sessions[i] = nil
		if f != nil {
			r.record(w, f)
			return
		}
		w.total.Add(1)
		alive.Add(1)
	})
	closeAll(sessions) // any the check skipped, if interrupted
	p.stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	res := Result{Start: t1, Elapsed: hold, LoadCPU: loadCPU}
	res.fill(cfg)
	hist := newHistogram(cfg.Conns)
	for _, w := range pool {
		res.Messages += w.total.Load()
		hist.Merge(w.hist)
	}
	res.setLatency(hist)
	res.setErrors(pool, r.samplesCopy())
	res.Idle = &IdleStats{
		Established: held.Load(),
		Alive:       alive.Load(),
		ConnectTime: connectTime,
		ConnectRate: float64(held.Load()) / connectTime.Seconds(),
	}
	res.setServer(cfg.ServerPID, mid, after, errors.Join(perr, merr, aerr))
	if res.Server != nil && before.ok {
		res.Server.RSSBefore = before.rss
		res.Idle.ServerConnectCPU = mid.cpu - before.cpu
		res.Idle.RSSPerConn = float64(after.rss-before.rss) / float64(held.Load())
	}
	return &res, nil
}

// closeAll closes every session left in ss.
func closeAll(ss []*session) {
	for i, s := range ss {
		if s != nil {
			s.c.Close()
			ss[i] = nil
		}
	}
}
