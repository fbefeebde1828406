// Package streamtest holds test helpers that stream data through an echo
// server and check what comes back, for the tests of several packages.
package streamtest

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
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
