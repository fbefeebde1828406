package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tcpkit/tcpkit/bench/internal/harness"
)

// probeResult is what the probes measured on one server.
type probeResult struct {
	Engine string        `json:"engine"`
	Count  int           `json:"count"`
	P50    time.Duration `json:"p50_ns"`
	P90    time.Duration `json:"p90_ns"`
	P99    time.Duration `json:"p99_ns"`
	P999   time.Duration `json:"p999_ns"`
	Max    time.Duration `json:"max_ns"`
	// Worst lists the slowest round trips, slowest first, with when they
	// began (seconds after the probe's start).
	Worst []probeSample `json:"worst"`
	Over  int           `json:"over_target"` // round trips over the target
	// OverShared counts the round trips over the target that overlapped
	// one over the target on another server: more likely the machine's
	// doing (the client CPU, another process) than this server's.
	OverShared int              `json:"over_target_shared"`
	over       []probeSample    // the round trips over the target, the first 10,000
	Errors     map[string]int64 `json:"errors,omitempty"`
	Connects   int              `json:"connects"`
	ConnectMax time.Duration    `json:"connect_max_ns"` // the slowest connect, PROXY header and TLS handshake
	// LateP99 and LateMax say how late the probe's own timer woke it: the
	// client side's scheduling delay, which every round trip may carry.
	LateP99 time.Duration `json:"late_p99_ns"`
	LateMax time.Duration `json:"late_max_ns"`
}

type probeSample struct {
	At  float64       `json:"at_s"`
	RTT time.Duration `json:"rtt_ns"`
}

// probeWorker is the -probe-worker role: one ping-pong connection per
// server, a 64-byte round trip every interval, until until.
type probeWorker struct {
	targets  string // engine=addr,...
	until    int64  // Unix ns
	interval time.Duration
	target   time.Duration
	timeout  time.Duration
}

func (p *probeWorker) run(ctx context.Context, stdout io.Writer) error {
	var ts []*target
	for _, kv := range strings.Split(p.targets, ",") {
		e, a, ok := strings.Cut(kv, "=")
		ap, err := netip.ParseAddrPort(a)
		if !ok || err != nil {
			return fmt.Errorf("bad -probe-targets entry %q", kv)
		}
		ts = append(ts, &target{engine: e, addr: ap})
	}
	until := time.Unix(0, p.until)
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	res := make([]probeResult, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Go(func() { res[i] = p.probe(ctx, t, uint64(i)) })
	}
	wg.Wait()
	for i := range res {
		for _, a := range res[i].over {
			for j := range res {
				if j != i && overlaps(a, res[j].over) {
					res[i].OverShared++
					break
				}
			}
		}
	}
	return json.NewEncoder(stdout).Encode(res)
}

// probe measures round trips to t until ctx is done, reconnecting after
// an error.
func (p *probeWorker) probe(ctx context.Context, t *target, seed uint64) probeResult {
	res := probeResult{Engine: t.engine, Errors: map[string]int64{}}
	r := rand.New(rand.NewPCG(seed, 99))
	start := time.Now()
	var rtts, late []time.Duration
	var worst, over []probeSample
	keep := func(s probeSample) {
		if s.RTT > p.target && len(over) < 10_000 {
			over = append(over, s)
		}
		worst = append(worst, s)
		slices.SortFunc(worst, func(a, b probeSample) int { return int(b.RTT - a.RTT) })
		if len(worst) > 10 {
			worst = worst[:10]
		}
	}
	msg, back := make([]byte, 64), make([]byte, 64)
	for conns := 0; conns < 100_000 && ctx.Err() == nil; conns++ {
		t0 := time.Now()
		tc, raw, err := dialTLS(ctx, t, proxyV1, r, p.timeout)
		res.Connects++
		if err != nil {
			if ctx.Err() == nil {
				res.Errors["connect: "+errKind(err)]++
			}
			harness.Sleep(ctx, 100*time.Millisecond)
			continue
		}
		res.ConnectMax = max(res.ConnectMax, time.Since(t0))
		next := time.Now()
		for ctx.Err() == nil {
			next = next.Add(p.interval)
			if d := time.Until(next); d > 0 {
				harness.Sleep(ctx, d)
				late = append(late, time.Since(next))
			} else {
				next = time.Now() // behind: no catching up in a burst
			}
			if ctx.Err() != nil {
				break
			}
			copy(msg, patternAt(r.Int64N(patLen), 0, 64))
			t1 := time.Now()
			raw.SetDeadline(t1.Add(p.timeout))
			_, err := tc.Write(msg)
			if err == nil {
				_, err = io.ReadFull(tc, back)
			}
			rtt := time.Since(t1)
			if err == nil && string(msg) != string(back) {
				err = fmt.Errorf("the echo differs from the message")
			}
			if err != nil {
				if ctx.Err() == nil {
					res.Errors[errKind(err)]++
					if isTimeout(err) { // no answer within the timeout: a sample, and a lower bound
						rtts = append(rtts, rtt)
						keep(probeSample{At: t1.Sub(start).Seconds(), RTT: rtt})
					}
				}
				break
			}
			rtts = append(rtts, rtt)
			if len(worst) < 10 || rtt > worst[len(worst)-1].RTT || rtt > p.target {
				keep(probeSample{At: t1.Sub(start).Seconds(), RTT: rtt})
			}
		}
		raw.Close()
	}
	slices.Sort(rtts)
	slices.Sort(late)
	res.Count = len(rtts)
	res.P50 = harness.Percentile(rtts, 0.50)
	res.P90 = harness.Percentile(rtts, 0.90)
	res.P99 = harness.Percentile(rtts, 0.99)
	res.P999 = harness.Percentile(rtts, 0.999)
	res.Max = harness.Percentile(rtts, 1)
	res.Worst = worst
	for _, d := range rtts {
		if d > p.target {
			res.Over++
		}
	}
	res.over = over
	res.LateP99 = harness.Percentile(late, 0.99)
	res.LateMax = harness.Percentile(late, 1)
	return res
}

// overlaps reports whether sample a's round trip overlapped one of bs's.
func overlaps(a probeSample, bs []probeSample) bool {
	a0, a1 := a.At, a.At+a.RTT.Seconds()
	for _, b := range bs {
		if b.At < a1 && a0 < b.At+b.RTT.Seconds() {
			return true
		}
	}
	return false
}
