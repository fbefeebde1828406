package loadgen

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// openStats are the figures of an open-loop session, kept by its sender.
type openStats struct {
	sent   int64 // messages written in the measured window
	held   int64 // messages that waited for the in-flight bound
	unsent int64 // messages due, but not sent, when the run stopped
	// abandoned counts the messages still in flight when the finish was
	// cut short.
	abandoned int64
}

// scheduledInWindow reports whether a message scheduled at sched, and
// completed in phase ph, belongs in the latencies of an open-loop run:
// those of every message scheduled in the measured window, whenever its
// echo came back. Counting by completion instead would leave out the
// messages that a server stalled at the end of the window is holding:
// the very omission that the schedule corrects.
func (w *worker) scheduledInWindow(ph int32, sched int64) bool {
	if ph == phaseWarmup {
		return false
	}
	stop := w.r.stopAt.Load()
	return sched >= w.r.measureStart.Load() && (stop == 0 || sched < stop)
}

// sendAhead is how early a message may be sent. Timers wake a sleeping
// sender up to a millisecond late (the poller's resolution); were messages
// sent only once due, that lateness would count in every latency. So the
// sender wakes sendAhead before a message is due and sends the messages
// due by then: a message that goes out early has its latency counted from
// its write, one that goes out late from its schedule. The load keeps its
// rate, in bursts of at most sendAhead.
const sendAhead = time.Millisecond

// openLoop is an open-loop session on s (Config.Rate): a sender goroutine
// writes messages on this connection's schedule, Conns/Rate apart, whether
// or not their echoes have come back, while this goroutine reads and
// checks the echoes. Each message's latency runs from its scheduled send
// time, not from when it was written, so a server that falls behind is
// charged for the wait of every message queued behind the slow one (the
// correction for coordinated omission that wrk2 makes).
//
// The latencies are those of every message scheduled in the measured
// window, including those whose echoes come back after it, while the run
// finishes; the counts and the per-second series are of the messages
// completed in the window, as in a closed-loop run.
//
// At most Depth messages are in flight. A message due when Depth are out
// waits for a free slot and goes out late, its latency still counted from
// its schedule; the schedule itself does not slip (wrk2's rule), so the
// wait shows as latency, and the message is counted in RateStats.Held.
// It returns the number of messages completed.
func (w *worker) openLoop(s *session) (int64, *failure) {
	r := w.r
	size, depth, timeout := r.cfg.Size, r.cfg.Depth, r.cfg.Timeout
	if w.done(r.phase.Load()) {
		return 0, nil
	}
	var (
		// inflight carries each message's scheduled time from the
		// sender to the reader, in order; its capacity is the bound.
		inflight  = make(chan int64, depth)
		quit      = make(chan struct{}) // closed by the reader to stop the sender
		quitOnce  sync.Once
		sentCount atomic.Uint64
		finished  atomic.Bool           // set by the sender when it has sent its last message
		senderEnd = make(chan struct{}) // closed when the sender is done
		stats     openStats
		mu        sync.Mutex
		first     *failure
	)
	report := func(f *failure) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = f
			s.c.Close() // stops the other side
		}
	}
	stopSender := func() { quitOnce.Do(func() { close(quit) }) }
	go func() {
		defer close(senderEnd)
		stats = w.send(s, inflight, quit, &sentCount, &finished, report)
	}()

	var got uint64
	have := 0
	s.refreshRead(r.now(), timeout)
	var f *failure
	for {
		n, err := s.c.Read(w.rbuf[have:])
		have += n
		now := r.now()
		ph := r.phase.Load()
		k := 0
		off := 0
		for ; off+size <= have; off += size {
			if v, seq := checkMessage(w.rbuf[off:off+size], s.id, w.pattern, got); v != msgOK {
				stopSender()
				f = w.misfit(s, v, seq, got, sentCount.Load(), w.rbuf[off:have])
				break
			}
			sched := <-inflight // sent before the message was written
			if w.scheduledInWindow(ph, sched) {
				lat := min(now-sched, maxLatency)
				w.hist.RecordValue(lat)
				if ph == phaseMeasure {
					w.observeSecond(now, lat)
				}
			}
			got++
			k++
		}
		w.count(now, k, ph)
		if f != nil {
			break
		}
		if off > 0 {
			have = copy(w.rbuf, w.rbuf[off:have])
		}
		if w.done(ph) {
			stopSender()
		}
		if err != nil {
			outstanding := sentCount.Load() - got
			ended := finished.Load()
			switch {
			case have == 0 && outstanding == 0 && ended && (errors.Is(err, io.EOF) || isTimeout(err)):
				// The server closed after the last echo, as it should
				// (or did not close, and the read timed out).
			case have == 0 && outstanding == 0 && !ended && isTimeout(err) && !r.aborted.Load():
				// Idle between messages at a low rate: not an error.
				s.rd = 0
				s.refreshRead(now, timeout)
				continue
			default:
				f = w.readFailure(err, have, outstanding)
			}
			break
		}
		s.refreshRead(now, timeout)
	}
	if f != nil {
		report(f) // first, so that what the sender hits next (a closed connection) does not count
	}
	stopSender()
	<-senderEnd
	if f != nil && r.aborted.Load() {
		stats.abandoned = int64(sentCount.Load() - got)
	}
	w.open.sent += stats.sent
	w.open.held += stats.held
	w.open.unsent += stats.unsent
	w.open.abandoned += stats.abandoned
	mu.Lock()
	defer mu.Unlock()
	return int64(got), first
}

// send is the sender of an open-loop session: it writes every message
// that is due, in one write, then sleeps until the next is due, until quit
// is closed, the run stops, or the worker's quota is done. Each message's
// scheduled time goes into inflight before it is written. It then
// half-closes the connection, so that the server ends it after the last
// echo, and returns its figures. sent counts the messages written, and
// finished is set before the half-close.
func (w *worker) send(s *session, inflight chan<- int64, quit <-chan struct{}, sent *atomic.Uint64,
	finished *atomic.Bool, report func(*failure)) (st openStats) {
	r := w.r
	size, timeout := r.cfg.Size, r.cfg.Timeout
	batch := len(w.sbuf) / size
	// Once the reader has stopped the sender, it has its own failure, or
	// none: what the sender hits then is a consequence, not news.
	report = func(report func(*failure)) func(*failure) {
		return func(f *failure) {
			select {
			case <-quit:
			default:
				report(f)
			}
		}
	}(report)
	interval := float64(time.Second) * float64(r.cfg.Conns) / r.cfg.Rate
	// Connections start their schedules a fraction of an interval apart,
	// so that the load is spread over the interval, not sent in bursts.
	anchor := r.now() + int64(interval*float64(w.idx)/float64(r.cfg.Conns))
	due := func(seq uint64) int64 { return anchor + int64(interval*float64(seq)) }
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	var seq uint64
	staged := 0
	flush := func() bool {
		if staged == 0 {
			return true
		}
		s.refreshWrite(r.now(), timeout)
		sent.Add(uint64(staged)) // before the write: an echo may come back before Write returns
		_, err := s.c.Write(w.sbuf[:staged*size])
		if err != nil {
			report(classify(err, false))
			return false
		}
		if r.phase.Load() == phaseMeasure {
			st.sent += int64(staged)
		}
		staged = 0
		return true
	}
	stopping := func() bool {
		select {
		case <-quit:
			return true
		default:
			return r.phase.Load() == phaseStop
		}
	}
loop:
	for !stopping() {
		now := r.now()
		next := due(seq)
		if next > now+int64(sendAhead) {
			if !flush() {
				return st
			}
			timer.Reset(time.Duration(next - now - int64(sendAhead)))
			select {
			case <-timer.C:
			case <-quit:
				break loop
			case <-r.stopped:
				break loop
			}
			continue
		}
		for next <= now+int64(sendAhead) && staged < batch {
			// A message's latency runs from its schedule if it goes
			// out late, from its write if it goes out early.
			start := max(next, now)
			select {
			case inflight <- start:
			default:
				// Depth messages are out: write what is staged (the
				// reader waits for those echoes too), then wait.
				st.held++
				if !flush() {
					return st
				}
				select {
				case inflight <- start:
				case <-quit:
					break loop
				case <-r.stopped:
					break loop
				}
			}
			putHeader(w.sbuf[staged*size:], s.id, seq)
			staged++
			seq++
			next = due(seq)
		}
		if !flush() {
			return st
		}
	}
	if !flush() {
		return st
	}
	if n := int64(float64(r.now()-anchor)/interval) + 1 - int64(seq); n > 0 && r.phase.Load() == phaseStop {
		st.unsent = n
	}
	finished.Store(true)
	if cw, ok := s.c.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			report(classify(err, false))
		}
	}
	return st
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
