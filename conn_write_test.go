package tcpkit

import (
	"bytes"
	"testing"
)

// flushNow under a peer that opens its window a little at a time: each
// write takes 1 KiB of a 4 MiB queue. The queue must not be compacted with
// a copy after each partial write, which made this quadratic (about 8 GB
// of copying per flush of 4 MiB).
func BenchmarkFlushNowTrickle(b *testing.B) {
	const queued, step = 4 << 20, 1 << 10
	cfg, _ := ConnConfig{MaxBuffered: 2 * queued}.resolve()
	d := &fakeDriver{}
	c := newConn(d, &cfg, nil, discardLogger())
	payload := bytes.Repeat([]byte("x"), queued)
	trickle := func(p []byte) (int, error) { return min(len(p), step), nil }
	b.SetBytes(queued)
	for b.Loop() {
		c.mu.Lock()
		c.enqueueLocked(payload)
		c.mu.Unlock()
		if !c.flushNow(trickle) {
			b.Fatal("flushNow left bytes queued")
		}
	}
}

// flushNow delivers every byte in order whatever the size of each write,
// and empties the queue.
func TestFlushNowPartialWrites(t *testing.T) {
	cfg, _ := ConnConfig{}.resolve()
	d := &fakeDriver{}
	c := newConn(d, &cfg, nil, failOnPanicLogger(t))
	var want, got bytes.Buffer
	sizes := []int{1, 7, 4096, 3, 65536, 11}
	i := 0
	write := func(p []byte) (int, error) {
		n := min(len(p), sizes[i%len(sizes)])
		i++
		if i%5 == 0 {
			return 0, nil // full for now
		}
		got.Write(p[:n])
		return n, nil
	}
	for round := range 50 {
		p := bytes.Repeat([]byte{byte(round)}, 1000+round*517)
		want.Write(p)
		c.mu.Lock()
		c.enqueueLocked(p)
		c.mu.Unlock()
		for !c.flushNow(write) {
		}
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) || c.Buffered() != 0 {
		t.Fatalf("flushed %d bytes (equal %v), %d still queued; want the %d written, in order",
			got.Len(), bytes.Equal(got.Bytes(), want.Bytes()), c.Buffered(), want.Len())
	}
}
