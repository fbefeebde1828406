package loadgen

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// A worker drives one connection at a time, with blocking I/O on its own
// goroutine and buffers allocated once. Everything on the per-message path
// is worker-local: the histogram, the counts, the buffers. The only shared
// writes are two uncontended atomic adds that the progress line reads.
type worker struct {
	r       *runner
	idx     int
	quota   int64  // measured messages to complete; -1 for no bound
	pattern []byte // the payload pattern, Size bytes
	sbuf    []byte // staging for writes: Depth (or a batch of) messages, pattern-filled
	rbuf    []byte // reads
	sendAt  []int64
	hist    *hdrhistogram.Histogram

	// The worker's current second of the per-second series (see
	// series.go): its number, its count and its latencies.
	sec     int64
	secN    int64
	secHist *hdrhistogram.Histogram

	open openStats // open-loop figures, summed over sessions

	measured int64 // messages completed in the measured window; read after the run
	total    atomic.Int64
	errs     atomic.Int64
	kinds    [numKinds]atomic.Int64

	mu   sync.Mutex
	conn net.Conn // the open connection, for interrupt

	_ [64]byte // keep the atomics of neighbouring workers off one cache line
}

func newWorker(r *runner, idx int, quota int64) *worker {
	cfg := &r.cfg
	w := &worker{r: r, idx: idx, quota: quota, hist: newHistogram(cfg.Conns), sec: -1}
	w.pattern = make([]byte, cfg.Size)
	fillPattern(w.pattern, uint64(idx)+1)
	slots := cfg.Depth
	rlen := cfg.Depth * cfg.Size
	switch cfg.Mode {
	case Stream:
		slots = max(1, streamBatch/cfg.Size)
		rlen = max(streamBatch, 2*cfg.Size)
	case Idle, Connect:
		slots, rlen = 1, cfg.Size
	}
	w.sbuf = make([]byte, slots*cfg.Size)
	for i := 0; i < len(w.sbuf); i += cfg.Size {
		copy(w.sbuf[i:], w.pattern)
	}
	w.rbuf = make([]byte, rlen)
	w.sendAt = make([]int64, cfg.Depth)
	return w
}

// streamBatch is the size of the writes (and reads) in stream mode.
const streamBatch = 64 << 10

// run is the worker's goroutine in every mode but idle.
func (w *worker) run() {
	r := w.r
	defer r.workerExit()
	defer w.flushSecond()
	s, f := w.connect()
	if f != nil {
		r.record(w, f)
	} else {
		r.initialOK.Add(1)
	}
	r.ready.Done()
	<-r.start
	backoff := time.Duration(0)
	for {
		if s == nil {
			if !w.sleep(&backoff) {
				return
			}
			if s, f = w.connect(); f != nil {
				r.record(w, f)
				continue
			}
		}
		var n int64
		switch {
		case r.cfg.Mode == Connect:
			n, f = w.connectLoop(s) // closes s
		case r.cfg.Mode == Stream:
			n, f = w.stream(s)
			w.close(s)
		case r.cfg.Rate > 0:
			n, f = w.openLoop(s)
			w.close(s)
		default:
			n, f = w.pipeline(s)
			if f == nil {
				f = w.closeGracefully(s)
			}
			w.close(s)
		}
		s = nil
		if n > 0 {
			backoff = 0
		}
		if f != nil {
			r.record(w, f)
		}
		if f == nil || w.done(r.phase.Load()) {
			return // the run stopped, or this worker's quota is done
		}
	}
}

// sleep waits before a new connection after a failure, 10ms the first time
// and twice as long each time after, up to half a second. It reports false
// if the run stopped meanwhile.
func (w *worker) sleep(backoff *time.Duration) bool {
	*backoff = min(max(2**backoff, 10*time.Millisecond), 500*time.Millisecond)
	t := time.NewTimer(*backoff)
	defer t.Stop()
	select {
	case <-t.C:
		return w.r.phase.Load() != phaseStop
	case <-w.r.stopped:
		return false
	}
}

// done reports whether the worker should send no more: the run has
// stopped, or the worker's quota is complete.
func (w *worker) done(ph int32) bool {
	return ph == phaseStop || ph == phaseMeasure && w.quota >= 0 && w.measured >= w.quota
}

// A session is one connection of a worker.
type session struct {
	c      net.Conn
	id     uint32 // the connection id in every message header
	rd, wd int64  // the read and write deadlines now set, in runner.now() time
}

// connect dials the server from the worker's source address, and reads and
// checks the greeting.
func (w *worker) connect() (*session, *failure) {
	return w.r.dial(w.idx, w, w.rbuf)
}

// dial makes connection number n, from source address n mod the number of
// sources, checks the greeting into buf, and registers the connection with
// w (if not nil) so that an abort can interrupt it.
func (r *runner) dial(n int, w *worker, buf []byte) (*session, *failure) {
	d := &r.dialers[n%len(r.dialers)]
	c, err := d.DialContext(r.ctx, r.cfg.network, r.cfg.address)
	if err != nil {
		return nil, classify(err, true)
	}
	if r.cfg.TLS != nil {
		tc := tls.Client(c, r.cfg.TLS)
		c.SetDeadline(time.Now().Add(r.cfg.Timeout))
		if err := tc.HandshakeContext(r.ctx); err != nil {
			c.Close()
			return nil, classify(fmt.Errorf("TLS handshake: %w", err), true)
		}
		c.SetDeadline(time.Time{})
		c = tc
	}
	s := &session{c: c, id: r.nextID.Add(1)}
	if w != nil {
		w.track(c)
	}
	if f := r.readGreeting(s, buf); f != nil {
		if w != nil {
			w.close(s)
		} else {
			c.Close()
		}
		return nil, f
	}
	return s, nil
}

// readGreeting reads the greeting, if one is expected, using buf.
func (r *runner) readGreeting(s *session, buf []byte) *failure {
	g := r.cfg.Greeting
	if len(g) == 0 {
		return nil
	}
	s.refresh(r.now(), r.cfg.Timeout)
	got := make([]byte, len(g)) // once per connection
	n, err := io.ReadFull(s.c, got)
	switch {
	case err == nil && !bytes.Equal(got, g):
		return failf(Greeting, "got greeting %q, want %q", got, g)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return failf(Greeting, "connection closed after %d of the %d greeting bytes (%q)", n, len(g), got[:n])
	case err != nil:
		return classify(err, false)
	}
	return nil
}

// track registers c as the worker's connection, the one an abort
// interrupts.
func (w *worker) track(c net.Conn) {
	w.mu.Lock()
	w.conn = c
	w.mu.Unlock()
	if w.r.aborted.Load() { // abortNow ran before w.conn was set
		c.SetDeadline(time.Unix(1, 0))
	}
}

// close closes s and forgets it.
func (w *worker) close(s *session) {
	w.mu.Lock()
	if w.conn == s.c {
		w.conn = nil
	}
	w.mu.Unlock()
	s.c.Close()
}

// interrupt makes the worker's blocked read or write return at once.
func (w *worker) interrupt() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		w.conn.SetDeadline(time.Unix(1, 0))
	}
}

// refresh moves the connection's deadline to now+timeout once less than
// half of timeout is left, so that deadlines cost a system call or two per
// timeout period rather than one per message.
func (s *session) refresh(now int64, timeout time.Duration) {
	if now+int64(timeout)/2 > min(s.rd, s.wd) {
		s.rd, s.wd = now+int64(timeout), now+int64(timeout)
		s.c.SetDeadline(time.Now().Add(timeout))
	}
}

// refreshRead is refresh for the read deadline only.
func (s *session) refreshRead(now int64, timeout time.Duration) {
	if now+int64(timeout)/2 > s.rd {
		s.rd = now + int64(timeout)
		s.c.SetReadDeadline(time.Now().Add(timeout))
	}
}

// refreshWrite is refresh for the write deadline only.
func (s *session) refreshWrite(now int64, timeout time.Duration) {
	if now+int64(timeout)/2 > s.wd {
		s.wd = now + int64(timeout)
		s.c.SetWriteDeadline(time.Now().Add(timeout))
	}
}

// pipeline exchanges messages on s with Depth of them in flight (one in
// ping-pong mode) until the run stops or the quota is done, then reads the
// echoes still in flight. It returns the number of messages completed.
func (w *worker) pipeline(s *session) (int64, *failure) {
	r := w.r
	size, depth := r.cfg.Size, r.cfg.Depth
	timeout := r.cfg.Timeout
	if w.done(r.phase.Load()) {
		return 0, nil
	}
	now := r.now()
	s.refresh(now, timeout)
	for i := range depth {
		putHeader(w.sbuf[i*size:], s.id, uint64(i))
		w.sendAt[i] = now
	}
	if _, err := s.c.Write(w.sbuf[:depth*size]); err != nil {
		return 0, classify(err, false)
	}
	sent, got := uint64(depth), uint64(0)
	sending := true
	have := 0
	for got < sent {
		n, err := s.c.Read(w.rbuf[have:])
		have += n
		now = r.now()
		ph := r.phase.Load()
		k := 0
		off := 0
		for ; off+size <= have; off += size {
			v, seq := checkMessage(w.rbuf[off:off+size], s.id, w.pattern, got)
			if v != msgOK {
				return int64(got), w.misfit(s, v, seq, got, sent, w.rbuf[off:have])
			}
			if ph == phaseMeasure {
				w.observe(now, now-w.sendAt[got%uint64(depth)])
			}
			got++
			k++
		}
		if off > 0 {
			have = copy(w.rbuf, w.rbuf[off:have])
		}
		w.count(now, k, ph)
		if err != nil {
			return int64(got), w.readFailure(err, have, sent-got)
		}
		if sending && w.done(ph) {
			sending = false
		}
		s.refresh(now, timeout)
		if k == 0 || !sending {
			continue
		}
		for i := range k {
			seq := sent + uint64(i)
			putHeader(w.sbuf[i*size:], s.id, seq)
			w.sendAt[seq%uint64(depth)] = now
		}
		if _, err := s.c.Write(w.sbuf[:k*size]); err != nil {
			return int64(got), classify(err, false)
		}
		sent += uint64(k)
	}
	return int64(got), nil
}

// count adds k checked echoes, completed at now, to the worker's totals,
// and to its measured count and its second during the measured window.
func (w *worker) count(now int64, k int, ph int32) {
	if k == 0 {
		return
	}
	w.total.Add(int64(k))
	if ph == phaseMeasure {
		w.measured += int64(k)
		w.tally(now, k, ph)
	}
}

// readFailure makes the failure for a read error err, with have bytes of
// a partial message read and outstanding messages not yet echoed.
func (w *worker) readFailure(err error, have int, outstanding uint64) *failure {
	if errors.Is(err, io.EOF) {
		if have > 0 {
			return failf(Short, "connection closed after %d of the %d bytes of an echo (%d messages outstanding)",
				have, w.r.cfg.Size, outstanding)
		}
		return failf(Lost, "connection closed with %d messages not echoed", outstanding)
	}
	return classify(err, false)
}

// misfit makes the failure for a message that did not check out: msg holds
// it and whatever was read after it. want is the sequence number expected
// and sent the number of messages sent.
func (w *worker) misfit(s *session, v verdict, seq, want, sent uint64, msg []byte) *failure {
	size := w.r.cfg.Size
	switch {
	case v == msgCorrupt:
		return failf(Corrupt, "connection %d, message %d: %s", s.id, want, describeCorrupt(msg[:size], s.id, w.pattern))
	case seq < want:
		return failf(Reordered, "connection %d: message %d came back again after message %d", s.id, seq, want-1)
	case seq >= sent:
		return failf(Corrupt, "connection %d: message %d came back, but only %d were sent", s.id, seq, sent)
	}
	// An intact later message came first: either the server reordered
	// messages, or it dropped message want. Read on through the messages
	// still in flight to tell which.
	have := copy(w.rbuf, msg)
	off, seen, outstanding := size, uint64(1), sent-want
	s.c.SetDeadline(time.Now().Add(min(w.r.cfg.Timeout, time.Second)))
	for seen < outstanding {
		for ; off+size <= have && seen < outstanding; off += size {
			if v, later := checkMessage(w.rbuf[off:off+size], s.id, w.pattern, want); v == msgOK {
				return failf(Reordered, "connection %d: message %d came back after %d message(s) sent later, the first %d",
					s.id, want, seen, seq)
			} else if later == want {
				return failf(Corrupt, "connection %d: message %d came back late and damaged", s.id, want)
			}
			seen++
		}
		if seen >= outstanding {
			break
		}
		have = copy(w.rbuf, w.rbuf[off:have])
		off = 0
		if seen == outstanding-1 {
			// Every later message is in: want is either just behind
			// them or lost. Do not wait long.
			s.c.SetDeadline(time.Now().Add(min(w.r.cfg.Timeout, 100*time.Millisecond)))
		}
		n, err := s.c.Read(w.rbuf[have:])
		have += n
		if err != nil && n == 0 {
			break
		}
	}
	return failf(Lost, "connection %d: message %d never came back; message %d came instead", s.id, want, seq)
}

// describeCorrupt says what is wrong with msg, an echo that failed its
// check.
func describeCorrupt(msg []byte, id uint32, pattern []byte) string {
	var h [headerLen]byte
	seq := binary.LittleEndian.Uint64(msg)
	putHeader(h[:], id, seq)
	if !bytes.Equal(msg[:headerLen], h[:]) {
		return fmt.Sprintf("damaged header % x (not a header of this connection)", msg[:headerLen])
	}
	for i := headerLen; i < len(msg); i++ {
		if msg[i] != pattern[i] {
			return fmt.Sprintf("payload byte %d of message %d is %#02x, want %#02x", i, seq, msg[i], pattern[i])
		}
	}
	return "no difference found"
}

// closeGracefully ends a connection whose echoes are all in: it half-closes
// the write side, waits for the server's end (a little while at most) and
// reports any byte that came after the last echo.
func (w *worker) closeGracefully(s *session) *failure {
	cw, ok := s.c.(interface{ CloseWrite() error })
	if !ok {
		return nil
	}
	if err := cw.CloseWrite(); err != nil {
		return classify(err, false)
	}
	s.c.SetDeadline(time.Now().Add(min(w.r.cfg.Timeout, 2*time.Second)))
	extra := 0
	for {
		n, err := s.c.Read(w.rbuf)
		extra += n
		if err != nil {
			break // EOF, as expected; a server that does not close is not an error
		}
	}
	if extra > 0 {
		return failf(Corrupt, "connection %d: %d bytes came after the last echo", s.id, extra)
	}
	return nil
}

// connectLoop is connect mode: it exchanges one message on s, which the
// first round was given, then dials, exchanges and closes new connections
// until the run stops or the quota is done.
func (w *worker) connectLoop(s *session) (int64, *failure) {
	r := w.r
	var n int64
	for i := 0; ; i++ {
		t0 := r.now()
		if s == nil {
			var f *failure
			if s, f = r.dial(w.idx+i*r.cfg.Conns, w, w.rbuf); f != nil {
				return n, f
			}
		}
		f := w.exchangeOne(s, w.rbuf, w.sbuf)
		w.close(s)
		s = nil
		if f != nil {
			return n, f
		}
		now := r.now()
		ph := r.phase.Load()
		if ph == phaseMeasure && i > 0 { // the first connection was made before the warmup
			w.observe(now, now-t0)
			w.measured++
			w.tally(now, 1, ph)
		}
		w.total.Add(1)
		n++
		if w.done(ph) {
			return n, nil
		}
	}
}

// exchangeOne sends one message on s and checks its echo, using the
// buffers given, of Size bytes each; sbuf holds the pattern.
func (r *runner) exchangeOne(s *session, rbuf, sbuf []byte, pattern []byte, seq uint64) *failure {
	size := r.cfg.Size
	s.refresh(r.now(), r.cfg.Timeout)
	putHeader(sbuf, s.id, seq)
	if _, err := s.c.Write(sbuf[:size]); err != nil {
		return classify(err, false)
	}
	n, err := io.ReadFull(s.c, rbuf[:size])
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return failf(Short, "connection %d closed after %d of the %d bytes of an echo", s.id, n, size)
		}
		if errors.Is(err, io.EOF) {
			return failf(Lost, "connection %d closed with a message not echoed", s.id)
		}
		return classify(err, false)
	}
	switch v, got := checkMessage(rbuf[:size], s.id, pattern, seq); v {
	case msgCorrupt:
		return failf(Corrupt, "connection %d, message %d: %s", s.id, seq, describeCorrupt(rbuf[:size], s.id, pattern))
	case msgOutOfSeq:
		return failf(Reordered, "connection %d: message %d came back instead of %d", s.id, got, seq)
	}
	return nil
}

// exchangeOne is runner.exchangeOne with the worker's buffers.
func (w *worker) exchangeOne(s *session, rbuf, sbuf []byte) *failure {
	return w.r.exchangeOne(s, rbuf, sbuf, w.pattern, 0)
}
