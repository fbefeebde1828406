// Package streamtest holds test helpers that stream data through an echo
// server and check what comes back, for the tests of several packages.
package streamtest

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Echo sends size bytes of a seeded pseudo-random stream to nc in
// chunk-sized writes, pausing 10-50ms before about one write in four, then
// half-closes, and checks that the echo comes back whole and in order. It
// signals half when half the stream has been written. It returns a moment
// just before it half-closed, so that a server that closed before it can
// be told from one that waited, and an error rather than failing the test,
// so that it can run on any goroutine.
func Echo(nc net.Conn, seed uint64, size, chunk int, half chan<- struct{}) (ended time.Time, err error) {
	rng := rand.New(rand.NewPCG(seed, seed))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	wrote := make(chan error, 1)
	go func() {
		for off := 0; off < size; off += chunk {
			if off >= size/2 && half != nil {
				half <- struct{}{}
				half = nil
			}
			if rng.IntN(4) == 0 {
				time.Sleep(time.Duration(10+rng.IntN(41)) * time.Millisecond)
			}
			if _, err := nc.Write(data[off:min(off+chunk, size)]); err != nil {
				wrote <- fmt.Errorf("write at %d: %w", off, err)
				return
			}
		}
		ended = time.Now() // the FIN goes out after this moment, never before
		wrote <- nc.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, rerr := io.ReadAll(nc)
	werr := <-wrote
	switch {
	case werr != nil:
		return ended, werr
	case rerr != nil:
		return ended, fmt.Errorf("read after %d of %d bytes: %w", len(got), size, rerr)
	case len(got) != size:
		return ended, fmt.Errorf("echo ended after %d of %d bytes", len(got), size)
	case !bytes.Equal(got, data):
		i := 0
		for got[i] == data[i] {
			i++
		}
		return ended, fmt.Errorf("echo differs from the stream at byte %d of %d", i, size)
	}
	return ended, nil
}

// A Group runs Echo on several connections at once, with seeds 1, 2, ...
type Group struct {
	Half chan struct{} // gets a value as each stream passes half way

	wg    sync.WaitGroup
	mu    sync.Mutex
	ended time.Time // the latest of the streams' half-closes
	errs  []error
}

// Start runs Echo, with size and chunk, on each of conns.
func Start(conns []net.Conn, size, chunk int) *Group {
	g := &Group{Half: make(chan struct{}, len(conns))}
	for i, nc := range conns {
		g.wg.Go(func() {
			ended, err := Echo(nc, uint64(i+1), size, chunk, g.Half)
			g.mu.Lock()
			defer g.mu.Unlock()
			if ended.After(g.ended) {
				g.ended = ended
			}
			if err != nil {
				g.errs = append(g.errs, fmt.Errorf("client %d: %w", i, err))
			}
		})
	}
	return g
}

// Wait waits, for at most timeout, for every stream to finish, and returns
// the moment just before the last one half-closed and the errors of those
// that failed; ok is false if the streams did not finish in time.
func (g *Group) Wait(timeout time.Duration) (lastEnd time.Time, errs []error, ok bool) {
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		return time.Time{}, nil, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ended, g.errs, true
}
