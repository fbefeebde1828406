package loadgen

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// stream is stream mode on s. A second goroutine writes batches of messages
// as fast as the connection takes them, while this one reads the echoes
// and checks every one. When the run stops, or the quota is done, the
// writer half-closes the connection; the reader carries on until every
// message sent has come back. It returns the number of messages echoed.
func (w *worker) stream(s *session) (int64, *failure) {
	r := w.r
	size, timeout := r.cfg.Size, r.cfg.Timeout
	batch := uint64(len(w.sbuf) / size)

	var (
		stopWriting atomic.Bool
		sentTotal   uint64 // set by the writer before writerDone is closed
		mu          sync.Mutex
		first       *failure // the first failure on either side
	)
	report := func(f *failure) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = f
			s.c.Close() // stops the other side
		}
	}
	failed := func() *failure {
		mu.Lock()
		defer mu.Unlock()
		return first
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		var seq uint64
		for !stopWriting.Load() && r.phase.Load() != phaseStop {
			s.refreshWrite(r.now(), timeout)
			for i := range batch {
				putHeader(w.sbuf[i*uint64(size):], s.id, seq+i)
			}
			if _, err := s.c.Write(w.sbuf); err != nil {
				report(classify(err, false))
				return
			}
			seq += batch
		}
		sentTotal = seq
		if cw, ok := s.c.(interface{ CloseWrite() error }); ok {
			if err := cw.CloseWrite(); err != nil {
				report(classify(err, false))
			}
		}
	}()

	var got uint64
	have := 0
	s.refreshRead(r.now(), timeout)
	for {
		n, err := s.c.Read(w.rbuf[have:])
		have += n
		ph := r.phase.Load()
		k := 0
		off := 0
		for ; off+size <= have; off += size {
			if v, seq := checkMessage(w.rbuf[off:off+size], s.id, w.pattern, got); v != msgOK {
				report(w.streamMisfit(s, v, seq, got, w.rbuf[off:have]))
				break
			}
			got++
			k++
		}
		if off > 0 {
			have = copy(w.rbuf, w.rbuf[off:have])
		}
		w.count(r.now(), k, ph)
		if !stopWriting.Load() && w.done(ph) {
			stopWriting.Store(true)
		}
		if f := failed(); f != nil {
			<-writerDone
			return int64(got), f
		}
		if err != nil {
			var f *failure
			switch {
			case errors.Is(err, io.EOF):
				stopWriting.Store(true)
				<-writerDone
				switch {
				case got == sentTotal && have == 0:
				case have > 0:
					f = failf(Short, "connection %d closed after %d of the %d bytes of an echo (%d messages outstanding)",
						s.id, have, size, sentTotal-got)
				default:
					f = failf(Lost, "connection %d closed with %d of %d messages not echoed", s.id, sentTotal-got, sentTotal)
				}
			default:
				f = classify(err, false)
			}
			if f != nil {
				report(f)
				<-writerDone
				return int64(got), failed()
			}
			return int64(got), nil
		}
		select {
		case <-writerDone:
			if got == sentTotal && have == 0 {
				return int64(got), failed()
			}
		default:
		}
		s.refreshRead(r.now(), timeout)
	}
}

// streamMisfit makes the failure for a message that did not check out in
// stream mode, looking only through what has been read already (msg holds
// the message and what came after it) to tell reordering from loss.
func (w *worker) streamMisfit(s *session, v verdict, seq, want uint64, msg []byte) *failure {
	size := w.r.cfg.Size
	switch {
	case v == msgCorrupt:
		return failf(Corrupt, "connection %d, message %d: %s", s.id, want, describeCorrupt(msg[:size], s.id, w.pattern))
	case seq < want:
		return failf(Reordered, "connection %d: message %d came back again after message %d", s.id, seq, want-1)
	}
	for off := size; off+size <= len(msg); off += size {
		if v, _ := checkMessage(msg[off:off+size], s.id, w.pattern, want); v == msgOK {
			return failf(Reordered, "connection %d: message %d came back after message %d, sent later", s.id, want, seq)
		}
	}
	return failf(Lost, "connection %d: message %d did not come back; message %d came instead", s.id, want, seq)
}
