package tcpkit

import (
	"fmt"
	"slices"
	"time"
)

// The schedule test's coordinator (see schedule_test.go): in scheduled
// mode it makes every choice of a run, from the run's PCG: which
// participant runs next, what the peer does, when the clock moves; it runs
// the phases of a run (random, scripts, quiet checks, teardown). In free
// mode the test's goroutine only plays the peer.

// A simOpt is one of the coordinator's choices.
type simOpt struct {
	weight int
	kind   int
	p      *simPart
}

const (
	optRun = iota
	optPeerRead
	optPeerSend
	optPeerFIN
	optPeerRST
	optClock
)

const (
	phaseRandom = iota
	phaseScripts
	phaseQuiet
	phaseTeardown
)

// coordStep makes one choice: run a participant, act as the peer, or move
// the clock. It reports false if there was nothing to do.
func (w *simWorld) coordStep(phase int) bool {
	opts := w.opts[:0]
	for _, p := range w.parts {
		if !w.runnable(p) {
			continue
		}
		wt := 2
		switch {
		case p == w.loop:
			wt = 4
		case p.name == "writer":
			wt = 3
		}
		opts = append(opts, simOpt{wt, optRun, p})
	}
	plan := w.plan
	rng := w.rng
	if phase == phaseRandom || phase == phaseScripts || phase == phaseTeardown {
		if w.peerHasToRead() {
			wt := 3
			if phase == phaseTeardown {
				wt = 6
			}
			opts = append(opts, simOpt{wt, optPeerRead, nil})
		}
	}
	if phase == phaseRandom || phase == phaseScripts {
		if w.peerCanSend() {
			opts = append(opts, simOpt{2, optPeerSend, nil})
		}
		if plan.finWeight > 0 {
			opts = append(opts, simOpt{plan.finWeight, optPeerFIN, nil})
		}
		if plan.rstWeight > 0 && w.peerCanRST() && rng.IntN(4) == 0 {
			opts = append(opts, simOpt{plan.rstWeight, optPeerRST, nil})
		}
		opts = append(opts, simOpt{1, optClock, nil})
	}
	if phase == phaseTeardown && plan.teardown == "graceful" {
		w.mu.Lock()
		fin := w.sock.peerFIN
		w.mu.Unlock()
		if !fin {
			opts = append(opts, simOpt{1, optPeerFIN, nil})
		}
	}
	w.opts = opts
	if len(opts) == 0 {
		return false
	}
	total := 0
	for _, o := range opts {
		total += o.weight
	}
	k := rng.IntN(total)
	for _, o := range opts {
		if k >= o.weight {
			k -= o.weight
			continue
		}
		switch o.kind {
		case optRun:
			w.resume(o.p)
		case optPeerRead:
			w.peerRead(1 + rng.IntN(2*plan.sndCap))
		case optPeerSend:
			w.peerSend(rng)
		case optPeerFIN:
			w.peerSendFIN()
		case optPeerRST:
			w.peerSendRST()
		case optClock:
			w.sleep(time.Duration(rng.IntN(6000)) * time.Microsecond)
		}
		return true
	}
	panic("unreachable")
}

func (w *simWorld) sleep(d time.Duration) {
	w.tracef("clock +%v", d)
	time.Sleep(d)
}

// sleepToTimer moves the clock to the loop's timer, if it has one.
func (w *simWorld) sleepToTimer() bool {
	w.mu.Lock()
	at := w.timer
	w.mu.Unlock()
	if at.IsZero() {
		return false
	}
	w.sleep(max(time.Until(at), 0))
	return true
}

func (w *simWorld) allDone(ps []*simPart) bool {
	for _, p := range ps {
		if !p.done {
			return false
		}
	}
	return true
}

// quiesce runs the connection's own goroutines (not the scripts, not the
// peer, not the clock) until none can go on.
func (w *simWorld) quiesce() {
	for range 10000 {
		if !w.coordStep(phaseQuiet) {
			return
		}
	}
	w.problem("the connection's goroutines never settle")
}

func (w *simWorld) runScheduled(scripts []*simPart) {
	plan := w.plan
	for range plan.steps {
		w.coordStep(phaseRandom)
	}
	for i := 0; !w.allDone(scripts); i++ {
		if i > 20000 {
			w.problem("the foreign goroutines never finish")
			w.abort()
			return
		}
		w.coordStep(phaseScripts)
	}
	w.mu.Lock()
	w.rec.passive = true
	w.mu.Unlock()
	w.tracef("--- scripts done; quiet checks")
	w.quietChecks()
	w.tracef("--- teardown: %s", plan.teardown)
	w.teardown()
	if !w.aborting {
		for range 100000 {
			if !w.peerHasToRead() {
				break
			}
			w.peerRead(1 << 20)
		}
	}
}

// quietChecks checks liveness where the connection has nothing else to
// do: the drain event once the peer has read everything, the timeout, the
// idle close and EndWithError's deadline once the clock passes them.
func (w *simWorld) quietChecks() {
	c := w.c
	w.quiesce()
	w.drainPeer()
	if !c.isClosing() && c.Buffered() == 0 {
		posted := int(c.drainCount())
		w.mu.Lock()
		arms, upTo := w.rec.arms, w.rec.drainedUpTo
		w.mu.Unlock()
		if arms != posted || upTo != posted {
			w.problem("the queue went over HighWater %d times and emptied: %d drain events posted, the last delivered was #%d", arms, posted, upTo)
		}
	}
	if c.isClosing() {
		return
	}
	// One more Write once the queue has drained: a flush that ended must
	// leave the queue as it found it (empty, no flush running).
	w.mu.Lock()
	ending := w.rec.ended
	w.mu.Unlock()
	if !ending && c.Buffered() == 0 {
		// A burst while the peer is not reading grows the queue by
		// appends, then the peer drains it, then one more Write.
		w.spawn("prober", func(p *simPart) {
			for i := 0; i < 32 && !c.isClosing() && c.Buffered() < w.cfg.MaxBuffered/2; i++ {
				w.doAction(p, "Write")
			}
		})
		w.quiesce()
		w.drainPeer()
		w.spawn("prober", func(p *simPart) { w.doAction(p, "Write") })
		w.quiesce()
		w.drainPeer()
		if c.isClosing() {
			return
		}
	}
	w.mu.Lock()
	ended := slices.Contains(w.rec.events, "end")
	w.mu.Unlock()
	if ended && !w.cfg.AllowHalfOpen {
		w.problem("the peer ended, AllowHalfOpen is off, the peer read everything, and the connection is still open")
	}
	w.mu.Lock()
	d := w.rec.timeout
	since := max(w.sock.lastTraffic, w.rec.timeoutSet)
	fresh := since != w.rec.firedSince
	before := w.rec.timeouts
	w.mu.Unlock()
	if d > 0 && fresh {
		w.sleep(max(since+d-w.now(), 0))
		w.quiesce()
		w.mu.Lock()
		after := w.rec.timeouts
		w.mu.Unlock()
		if after == before && !c.isClosing() {
			w.problem("idle for the timeout (%v), and no timeout event came", d)
		}
	}
	if idle := w.cfg.IdleTimeout; idle > 0 && !c.isClosing() {
		w.mu.Lock()
		last := w.sock.lastTraffic
		w.mu.Unlock()
		w.sleep(max(last+idle-w.now(), 0))
		w.quiesce()
		if !c.isClosing() {
			w.problem("idle for IdleTimeout (%v), and the connection is still open", idle)
		}
	}
	w.mu.Lock()
	ewe, by := w.rec.ewe && w.rec.eweErr != nil, w.rec.eweBy
	w.mu.Unlock()
	if ewe && !c.isClosing() {
		w.sleep(max(by-w.now(), 0))
		w.quiesce()
		if !c.isClosing() {
			w.problem("EndWithError's deadline passed, and the connection is still open")
		}
	}
}

// drainPeer has the peer read everything, letting the connection's own
// goroutines flush what they have.
func (w *simWorld) drainPeer() {
	for range 100000 {
		if !w.peerHasToRead() {
			return
		}
		w.peerRead(1 << 20)
		w.quiesce()
	}
}

// teardown ends the run as its plan says, and runs it until every
// participant has finished.
func (w *simWorld) teardown() {
	plan := w.plan
	switch plan.teardown {
	case "graceful":
		w.spawn("closer", func(p *simPart) {
			w.doAction(p, "Resume")
			w.doAction(p, "End")
		})
	case "close":
		w.spawn("closer", func(p *simPart) { w.doAction(p, "Close") })
	case "reset":
		w.spawn("closer", func(p *simPart) { w.doAction(p, "Reset") })
	case "cut":
		w.spawn("closer", func(p *simPart) { w.doAction(p, "ShutdownCut") })
	case "peerRST", "rstEnd":
		if w.peerCanRST() {
			w.peerSendRST()
			// A paused connection reads nothing, so it learns of the
			// reset once resumed (or at its next write or End).
			w.spawn("closer", func(p *simPart) {
				w.doAction(p, "Resume")
				if plan.teardown == "rstEnd" { // a Write or End takes the reset's error
					w.doAction(p, []string{"Write", "End"}[p.rng.IntN(2)])
					w.doAction(p, "End")
				}
			})
		} else {
			w.spawn("closer", func(p *simPart) { w.doAction(p, "Reset") })
		}
	}
	rescued := false
	for steps := 0; ; steps++ {
		if w.allDone(w.parts) {
			return
		}
		stuck := steps > 20000
		if !stuck && !w.coordStep(phaseTeardown) && !w.sleepToTimer() {
			stuck = true
		}
		if !stuck {
			continue
		}
		if plan.teardown == "graceful" && !w.rec.slowConsumer {
			w.problem("stuck: the connection never closed after the peer's FIN and End (%s)", w.stateString())
		} else {
			w.problem("stuck: the connection never closed (%s)", w.stateString())
		}
		if rescued {
			w.abort()
			return
		}
		rescued = true
		w.spawn("rescuer", func(p *simPart) { w.doAction(p, "Close") })
		steps = 0
	}
}

func (w *simWorld) stateString() string {
	c := w.c
	c.mu.Lock()
	s := fmt.Sprintf("closing=%v ending=%v finSent=%v paused=%v writing=%v queued=%d eof=%v endSent=%v",
		c.closing, c.ending, c.finSent, c.paused, c.writing, len(c.wq)+c.inflight, c.rs.eof, c.rs.endSent)
	c.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	var parked []string
	for _, p := range w.parts {
		if !p.done {
			parked = append(parked, p.name)
		}
	}
	return s + fmt.Sprintf(" timer=%v parked=%v snd=%d rcv=%d peerFIN=%v peerRST=%v", !w.timer.IsZero(), parked, len(w.sock.snd), len(w.sock.rcv), w.sock.peerFIN, w.sock.peerRST)
}

// abort ends every parked participant (after a problem that left the run
// stuck), so that the bubble can end.
func (w *simWorld) abort() {
	w.aborting = true
	for _, p := range w.parts {
		if !p.done {
			w.resume(p)
		}
	}
}

func (w *simWorld) runFree(scripts []*simPart) {
	plan := w.plan
	rng := w.rng
	for i := range plan.steps {
		switch k := rng.IntN(10); {
		case k < 4:
			w.peerRead(1 + rng.IntN(2*plan.sndCap))
		case k < 7:
			w.peerSend(rng)
		case k == 7 && plan.finWeight > 0 && rng.IntN(3) == 0:
			w.peerSendFIN()
		case k == 8 && plan.rstWeight > 0 && rng.IntN(6) == 0:
			w.peerSendRST()
		default:
			if i%8 == 0 {
				time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
			}
		}
		for range rng.IntN(3) {
			runtimeGosched()
		}
	}
	for _, p := range scripts {
		for !w.partDone(p) {
			w.peerRead(1 << 20)
			time.Sleep(100 * time.Microsecond)
		}
	}
	w.mu.Lock()
	w.rec.passive = true
	w.mu.Unlock()
	switch plan.teardown {
	case "graceful":
		w.spawn("closer", func(p *simPart) {
			w.doAction(p, "Resume")
			w.doAction(p, "End")
		})
		w.peerSendFIN()
	case "close":
		w.spawn("closer", func(p *simPart) { w.doAction(p, "Close") })
	case "reset":
		w.spawn("closer", func(p *simPart) { w.doAction(p, "Reset") })
	case "peerRST", "rstEnd":
		if w.peerCanRST() {
			w.peerSendRST()
			w.spawn("closer", func(p *simPart) {
				w.doAction(p, "Resume")
				if plan.teardown == "rstEnd" { // a Write or End takes the reset's error
					w.doAction(p, []string{"Write", "End"}[p.rng.IntN(2)])
					w.doAction(p, "End")
				}
			})
		} else {
			w.spawn("closer", func(p *simPart) { w.doAction(p, "Reset") })
		}
	case "cut":
		w.spawn("closer", func(p *simPart) { w.doAction(p, "ShutdownCut") })
	}
	deadline := time.Now().Add(time.Minute)
	rescued := false
	for {
		w.mu.Lock()
		ch := w.changed // before looking: a change after this closes it
		w.mu.Unlock()
		w.peerRead(1 << 20)
		if plan.teardown == "graceful" || plan.teardown == "peerRST" || plan.teardown == "rstEnd" {
			// A callback that began before the teardown may pause after
			// the closer's Resume.
			w.c.Resume()
		}
		w.mu.Lock()
		released := w.released
		w.mu.Unlock()
		if released && !w.peerHasToRead() {
			break
		}
		select {
		case <-ch:
		case <-time.After(time.Until(deadline)):
			w.problem("stuck: the connection never closed (%s)", w.stateString())
			if rescued {
				return // the bubble reports the goroutines left
			}
			rescued = true
			w.mu.Lock()
			w.rec.explicit["Close"] = true
			w.mu.Unlock()
			w.c.Close()
			deadline = time.Now().Add(time.Minute)
		}
	}
	w.wg.Wait()
	w.peerRead(1 << 20) // after a close that came after the release
}

func (w *simWorld) partDone(p *simPart) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return p.done
}
