package tcpkit

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"
)

// The schedule test's oracle (see schedule_test.go): what it records of a
// run, the rules it checks as each event comes, and its checks once the
// run is over.

// schedRecord is what the oracle records of a run.
type schedRecord struct {
	problems []string
	events   []string

	data    []byte // what OnData delivered
	written []byte // what the Writes accepted, in order (scheduled mode)
	writes  map[byte][]schedWrite
	seq     map[byte]int

	closeErr, errErr error
	closes           int

	ended         bool // End or EndWithError returned
	ewe           bool // EndWithError was called (input is dropped from then on)
	eweErr        error
	eweBy         time.Duration
	eweAll        map[error]time.Duration // free mode: every EndWithError's error and deadline
	arms          int                     // the queue went over HighWater (OnDrain armed)
	drainedUpTo   int                     // drain events posted as of the last one delivered
	drains        int
	timeout       time.Duration // the notification's current duration
	timeoutSet    time.Duration
	firedSince    time.Duration
	timeouts      int
	shutdownPosts int
	shutdowns     int
	panics        int
	slowConsumer  bool // a Write returned ErrSlowConsumer
	explicit      map[string]bool
	passive       bool // teardown: callbacks act no more
}

type schedWrite struct {
	seq  int
	full bool // Write succeeded; else n > 0 bytes of a failed Write went out
}

var (
	errSchedApp   = errors.New("schedule test: CloseWithError")
	schedPanicVal = "schedule test: panic on purpose"
)

func (w *simWorld) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.mu.Lock()
	w.rec.problems = append(w.rec.problems, msg)
	w.mu.Unlock()
	w.tracef("PROBLEM: %s", msg)
}

func (w *simWorld) event(name string) {
	w.mu.Lock()
	r := &w.rec
	var probs []string
	if !w.free && w.cur != w.loop {
		probs = append(probs, name+" event off the event goroutine")
	}
	switch {
	case len(r.events) == 0 && name != "open":
		probs = append(probs, name+" before the handler")
	case slices.Contains(r.events, "close"):
		probs = append(probs, name+" after close")
	case name != "close" && len(r.events) > 0 && r.events[len(r.events)-1] == "error":
		probs = append(probs, name+" between error and close")
	case name == "error" && slices.Contains(r.events, "error"):
		probs = append(probs, "second error")
	case name == "end" && slices.Contains(r.events, "end"):
		probs = append(probs, "second end")
	case name == "data" && slices.Contains(r.events, "end"):
		probs = append(probs, "data after end")
	}
	r.events = append(r.events, name)
	w.mu.Unlock()
	if !w.free && name != "open" && name != "error" && name != "close" && w.c.isClosing() {
		probs = append(probs, name+" delivered while closing")
	}
	for _, p := range probs {
		w.problem("%s", p)
	}
}

func (w *simWorld) onData(p []byte) {
	w.event("data")
	w.tracef("cb data %d", len(p))
	if !w.free {
		if w.c.Paused() {
			w.problem("data delivered while paused")
		}
		w.mu.Lock()
		ewe := w.rec.ewe
		w.mu.Unlock()
		if ewe {
			w.problem("data delivered after EndWithError")
		}
	}
	if bytes.Contains(p, []byte{0xEE, 0xEE, 0xEE, 0xEE}) {
		w.mu.Lock()
		in := w.sock.in
		w.mu.Unlock()
		if !bytes.Contains(in, []byte{0xEE, 0xEE, 0xEE, 0xEE}) {
			w.problem("data delivered from a read buffer already reused")
		}
	}
	w.mu.Lock()
	w.rec.data = append(w.rec.data, p...)
	bad := !bytes.HasPrefix(w.sock.in, w.rec.data)
	w.mu.Unlock()
	if bad {
		w.problem("data delivered is not a prefix of what the peer sent")
	}
	w.yield() // after the checks: other goroutines may act while a callback runs
	w.callbackActs("data")
}

func (w *simWorld) onEnd() {
	w.event("end")
	w.tracef("cb end")
	w.mu.Lock()
	fin, ewe := w.sock.peerFIN, w.rec.ewe
	full := bytes.Equal(w.rec.data, w.sock.in)
	w.mu.Unlock()
	if !fin {
		w.problem("end delivered, but the peer sent no FIN")
	}
	if !ewe && !full {
		w.problem("end delivered before all the peer's data")
	}
	if !w.free && !ewe && w.c.Paused() { // after EndWithError, input is read to its end paused or not
		w.problem("end delivered while paused")
	}
	w.yield() // after the checks: other goroutines may act while a callback runs
	w.callbackActs("end")
}

func (w *simWorld) onDrain() {
	w.event("drain")
	w.tracef("cb drain")
	posted := w.c.drainCount() // drain events posted so far
	w.mu.Lock()
	w.rec.drains++
	arms, upTo := w.rec.arms, w.rec.drainedUpTo
	w.rec.drainedUpTo = int(posted)
	w.mu.Unlock()
	switch {
	case w.free:
	case int(posted) <= upTo:
		w.problem("drain event with no drain posted since the last (posted %d)", posted)
	case int(posted) > arms:
		w.problem("%d drain events posted, the queue went over HighWater %d times", posted, arms)
	}
	w.yield() // after the checks: other goroutines may act while a callback runs
	w.callbackActs("drain")
}

func (w *simWorld) onTimeout() {
	w.event("timeout")
	w.tracef("cb timeout")
	w.mu.Lock()
	r := &w.rec
	r.timeouts++
	since := max(w.sock.lastTraffic, r.timeoutSet)
	now, d := w.now(), r.timeout
	again := since == r.firedSince
	r.firedSince = since
	w.mu.Unlock()
	if !w.free {
		switch {
		case d <= 0:
			w.problem("timeout with no timeout set")
		case now-since < d:
			w.problem("timeout after %v idle, timeout %v", now-since, d)
		case again:
			w.problem("second timeout in one idle period")
		}
	}
	w.yield() // after the checks: other goroutines may act while a callback runs
	w.callbackActs("timeout")
}

func (w *simWorld) onShutdown() {
	w.event("shutdown")
	w.tracef("cb shutdown")
	w.mu.Lock()
	w.rec.shutdowns++
	bad := w.rec.shutdowns > w.rec.shutdownPosts
	w.mu.Unlock()
	if bad {
		w.problem("more shutdown events than posts")
	}
	w.yield() // after the checks: other goroutines may act while a callback runs
	w.callbackActs("shutdown")
}

func (w *simWorld) onError(err error) {
	w.event("error")
	w.tracef("cb error %v", err)
	w.mu.Lock()
	w.rec.errErr = err
	w.mu.Unlock()
}

func (w *simWorld) onClose(err error) {
	w.event("close")
	w.tracef("cb close %v", err)
	w.mu.Lock()
	w.rec.closeErr = err
	w.rec.closes++
	w.mu.Unlock()
}

func (w *simWorld) check() {
	c := w.c
	r := &w.rec
	if w.aborting {
		return
	}
	select {
	case <-c.Done():
	default:
		w.problem("Done not closed after the close event")
	}
	if r.closes != 1 {
		w.problem("%d close events", r.closes)
	}
	if len(r.events) == 0 || r.events[0] != "open" {
		w.problem("the handler did not come first: %v", compact(r.events))
	}
	if len(r.events) > 0 && r.events[len(r.events)-1] != "close" {
		w.problem("close is not the last event: %v", compact(r.events))
	}
	if got := c.Err(); got != r.closeErr {
		w.problem("Err() = %v, the close event had %v", got, r.closeErr)
	}
	hadError := slices.Contains(r.events, "error")
	switch {
	case r.closeErr != nil && !hadError:
		w.problem("close error %v without an error event", r.closeErr)
	case r.closeErr == nil && hadError:
		w.problem("error event (%v), then a clean close", r.errErr)
	case hadError && r.errErr != r.closeErr:
		w.problem("error event with %v, close event with %v", r.errErr, r.closeErr)
	}
	if b := c.Buffered(); b != 0 {
		w.problem("%d bytes still queued after close", b)
	}
	for _, l := range w.lateCalls {
		w.problem("driver %s after finish", l)
	}
	for _, l := range w.contract {
		w.problem("driver contract: %s", l)
	}
	if w.sock.writeAfterFIN {
		w.problem("a write after our FIN")
	}
	if n, _ := w.logs.count(); n != r.panics {
		w.problem("%d recovered panics logged, %d raised", n, r.panics)
	}
	if got, want := c.BytesWritten(), int64(len(w.sock.out)); got != want {
		w.problem("BytesWritten %d, the socket took %d", got, want)
	}
	if got, want := c.BytesRead(), int64(w.sock.readTotal); got != want {
		w.problem("BytesRead %d, the socket gave %d", got, want)
	}
	w.checkCloseError()
	w.checkBytes()
	w.checkStats()
}

// clean reports whether the connection closed by its own rule for both
// sides having ended: nil, or EndWithError's error.
func (w *simWorld) clean() bool {
	r := &w.rec
	if !w.free {
		switch w.winner {
		case "", "End", "EndWithError", "ShutdownIdle", "ShutdownNotify", "Resume", "Pause", "SetTimeout":
		default:
			return false
		}
	} else if r.explicit["Close"] || r.explicit["Reset"] {
		return false
	}
	return w.bothEnded() && (r.closeErr == nil || r.eweErr != nil && r.closeErr == r.eweErr || w.free && r.eweAll[r.closeErr] != 0)
}

// checkCloseError checks that the close error is the one the close's
// cause calls for.
func (w *simWorld) checkCloseError() {
	r := &w.rec
	err := r.closeErr
	var pe *PanicError
	if !w.free {
		want, explicit := error(nil), true
		switch w.winner {
		case "Close", "Reset":
		case "CloseWithError":
			want = errSchedApp
		case "ShutdownCut":
			want = errShutdownCut
		case "panic":
			if !errors.As(err, &pe) || pe.Value != schedPanicVal {
				w.problem("closed by a callback's panic, close error %v", err)
			}
			return
		case "Write":
			want = w.winnerWriteErr
			if want == nil {
				w.problem("closed by a Write that returned no error")
			}
		default:
			explicit = false
		}
		if explicit {
			if err != want {
				w.problem("closed by %s (%s): close error %v, want %v", w.winner, w.winnerPart, err, want)
			}
			if w.winner != "Write" {
				return
			}
		}
	}
	ok := false
	switch {
	case err == nil:
		ok = w.free && (r.explicit["Close"] || r.explicit["Reset"])
		if !ok {
			ok = w.bothEnded() && r.eweErr == nil
			if !ok {
				w.problem("clean close (nil) without both sides having ended (end event %v, FIN sent %v, EndWithError %v)",
					slices.Contains(r.events, "end"), w.sock.shutWR || w.sock.enotconn, r.eweErr != nil)
				return
			}
		}
	case r.eweErr != nil && err == r.eweErr:
		ok = w.bothEnded() || w.closeAt >= r.eweBy
	case w.free && r.eweAll[err] != 0:
		ok = w.bothEnded() || w.closeAt >= r.eweAll[err]
	case errors.Is(err, ErrIdleTimeout):
		ok = w.cfg.IdleTimeout > 0 && w.closeAt-w.closeTraffic >= w.cfg.IdleTimeout
	case errors.Is(err, ErrSlowConsumer):
		ok = r.slowConsumer
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ENOTCONN):
		ok = w.sock.peerRST // ENOTCONN: shutdown after the reset, its error taken by another call
	case err == errSchedApp:
		ok = w.free && r.explicit["CloseWithError"]
	case err == errShutdownCut:
		ok = w.free && r.explicit["ShutdownCut"]
	case errors.As(err, &pe):
		ok = w.free && pe.Value == schedPanicVal
	}
	if !ok {
		w.problem("unexpected close error %v (closed by %q)", err, w.winner)
	}
}

// bothEnded reports whether the peer's end was delivered and our FIN sent.
func (w *simWorld) bothEnded() bool {
	return slices.Contains(w.rec.events, "end") && w.sock.peerFIN && (w.sock.shutWR || w.sock.enotconn)
}

// checkBytes checks what went each way, and what the peer saw at the end.
func (w *simWorld) checkBytes() {
	r, s := &w.rec, &w.sock
	// Outbound: the socket took a prefix of what the Writes accepted, all of
	// it if our FIN went out by End.
	if w.free {
		w.checkFrames()
	} else {
		if !bytes.HasPrefix(r.written, s.out) {
			w.problem("the socket took bytes that are not a prefix of what the Writes accepted (took %d, accepted %d, first difference at %d)",
				len(s.out), len(r.written), firstDiff(r.written, s.out))
		}
		if s.shutWR && !bytes.Equal(r.written, s.out) {
			w.problem("FIN sent after %d bytes, but the Writes accepted %d", len(s.out), len(r.written))
		}
	}
	if !bytes.HasPrefix(s.out, s.peerGot) {
		w.problem("simulation: the peer read what was not sent")
	}
	clean := w.clean()
	if clean && s.enotconn && s.lost > 0 && s.rstWhileOpen {
		w.problem("the peer reset the connection (after its FIN) with %d bytes of ours unread, and the close was clean (%v): the reset went unreported", s.lost, r.closeErr)
	}
	if clean && !s.peerRST && (s.peerEnd != "FIN" || !bytes.Equal(s.peerGot, s.out)) {
		w.problem("clean close, but the peer read %d of the %d bytes sent and saw %q", len(s.peerGot), len(s.out), s.peerEnd)
	}
	// Inbound: OnData delivered a prefix of what the peer sent, all of it
	// before a clean end, but after EndWithError.
	if !bytes.HasPrefix(s.in, r.data) {
		w.problem("data delivered is not a prefix of what the peer sent")
	}
	if clean && r.eweErr == nil && !r.ewe && !bytes.Equal(s.in, r.data) {
		w.problem("clean close, but %d of the peer's %d bytes were delivered", len(r.data), len(s.in))
	}
	// What the peer saw of our close.
	if !w.free {
		switch w.winner {
		case "Reset", "ShutdownCut":
			if !s.peerRST && !s.rstOut {
				w.problem("closed by %s, but the peer got no RST (it saw %q)", w.winner, s.peerEnd)
			}
		case "Close", "CloseWithError":
			if s.rstOut && !s.unreadAtClose {
				w.problem("closed by %s, and the peer got an RST", w.winner)
			}
		}
	}
	if clean && s.rstOut && !s.unreadAtClose {
		w.problem("clean close, and the peer got an RST")
	}
}

// checkFrames checks, in free mode, that the socket took each writer's
// frames in order, whole but for the last, and each of them if our FIN
// went out by End.
func (w *simWorld) checkFrames() {
	r, out := &w.rec, w.sock.out
	next := map[byte]int{}
	for pos := 0; pos < len(out); {
		if pos+frameHeader > len(out) {
			break // a header cut short: the end of a failed or dropped Write
		}
		id, seq, n := out[pos], int(out[pos+1])<<8|int(out[pos+2]), int(out[pos+3])<<16|int(out[pos+4])<<8|int(out[pos+5])
		want := frame(id, seq, n)
		got := out[pos:min(pos+len(want), len(out))]
		if !bytes.Equal(got, want[:len(got)]) {
			w.problem("frame %d/%d at %d is corrupt", id, seq, pos)
			return
		}
		ws := r.writes[id]
		if k := next[id]; k >= len(ws) || ws[k].seq != seq {
			w.problem("frame %d/%d at %d is out of order (writer's next accepted Write is #%d)", id, seq, pos, k)
			return
		}
		next[id]++
		pos += len(got)
	}
	if w.sock.shutWR {
		for id, ws := range r.writes {
			full := 0
			for _, x := range ws {
				if x.full {
					full++
				}
			}
			if next[id] < full {
				w.problem("FIN sent, but writer %d's Writes #%d.. are missing", id, next[id])
			}
		}
	}
}

// checkStats checks the server's accounting of the connection.
func (w *simWorld) checkStats() {
	if w.srv == nil {
		return
	}
	st := w.srv.Stats()
	if st.Accepted != 1 || st.Open != 0 || st.Accepted != int64(st.Open)+st.Dropped.Total()+st.Closed.Total() {
		w.problem("Stats: Accepted %d, Open %d, Dropped %d, Closed %d", st.Accepted, st.Open, st.Dropped.Total(), st.Closed.Total())
	}
	err := w.rec.closeErr
	var pe *PanicError
	var field string
	var got int64
	cl := st.Closed
	switch {
	case err == nil:
		field, got = "Clean", cl.Clean
	case errors.As(err, &pe):
		field, got = "Panic", cl.Panic
	case errors.Is(err, ErrIdleTimeout):
		field, got = "IdleTimeout", cl.IdleTimeout
	case errors.Is(err, ErrSlowConsumer):
		field, got = "SlowConsumer", cl.SlowConsumer
	case errors.Is(err, ErrServerClosed):
		field, got = "Shutdown", cl.Shutdown
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		field, got = "PeerReset", cl.PeerReset
	default:
		field, got = "Other", cl.Other
	}
	if got != 1 {
		w.problem("Stats: close error %v counted as %+v, want in %s", err, cl, field)
	}
	if st.BytesIn != int64(w.sock.readTotal) || st.BytesOut != int64(len(w.sock.out)) {
		w.problem("Stats: BytesIn %d, BytesOut %d; the socket gave %d and took %d", st.BytesIn, st.BytesOut, w.sock.readTotal, len(w.sock.out))
	}
	w.srv.Close()
	select {
	case <-w.srv.Done():
	default:
		w.problem("Server.Close with no connection left, and Done is not closed")
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
