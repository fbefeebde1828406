//go:build linux

package tcpkit

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit/internal/fault"
)

// The fault seam (internal/fault): at each system-call site of each
// engine, the faults the kernel can give it, injected at random into an
// echo under load. An engine must survive every one without losing a byte
// silently: a fault that the kernel would retry (EINTR), or that only
// shortens a call, changes nothing the clients see; one that fails the
// connection (ECONNRESET, EPIPE, ENOTCONN) ends it with an error that says
// so, and its client sees a reset, never an orderly end after a short or
// wrong echo. Each case is reproducible from TCPKIT_FAULT_SEED.

type faultCase struct {
	site  fault.Site
	errno syscall.Errno // 0: a short call
	prob  float64
	epoll bool // the site is the epoll engine's alone
}

func (fc faultCase) String() string {
	what := "short"
	if fc.errno != 0 {
		what = unixErrnoName(fc.errno)
	}
	return fc.site.String() + "/" + what
}

// lossy reports whether the fault fails connections.
func (fc faultCase) lossy() bool {
	switch fc.errno {
	case 0, syscall.EINTR:
		return false
	}
	return fc.site != fault.Accept && fc.site != fault.EpollWait
}

func unixErrnoName(e syscall.Errno) string {
	for _, n := range []struct {
		e    syscall.Errno
		name string
	}{{syscall.EINTR, "EINTR"}, {syscall.EAGAIN, "EAGAIN"}, {syscall.ECONNRESET, "ECONNRESET"}, {syscall.EPIPE, "EPIPE"},
		{syscall.ENOTCONN, "ENOTCONN"}, {syscall.ECONNABORTED, "ECONNABORTED"}, {syscall.EMFILE, "EMFILE"},
		{syscall.ENOMEM, "ENOMEM"}, {syscall.ENETUNREACH, "ENETUNREACH"}} {
		if n.e == e {
			return n.name
		}
	}
	return strconv.Itoa(int(e))
}

var faultCases = []faultCase{
	{site: fault.Read, errno: syscall.EINTR, prob: 0.3},
	{site: fault.Read, prob: 0.5},
	{site: fault.Read, errno: syscall.ECONNRESET, prob: 0.15},
	{site: fault.Write, errno: syscall.EINTR, prob: 0.3},
	{site: fault.Write, prob: 0.5},
	{site: fault.Write, errno: syscall.EPIPE, prob: 0.15},
	{site: fault.Write, errno: syscall.ECONNRESET, prob: 0.15},
	{site: fault.Shutdown, errno: syscall.ENOTCONN, prob: 0.5},
	{site: fault.Shutdown, errno: syscall.EPIPE, prob: 0.5},
	{site: fault.Accept, errno: syscall.EINTR, prob: 0.3},
	{site: fault.Accept, errno: syscall.EAGAIN, prob: 0.3},
	{site: fault.Accept, errno: syscall.ECONNABORTED, prob: 0.3},
	{site: fault.Accept, errno: syscall.EMFILE, prob: 0.3},
	{site: fault.Accept, errno: syscall.ENETUNREACH, prob: 0.3},
	{site: fault.EpollWait, errno: syscall.EINTR, prob: 0.3, epoll: true},
	{site: fault.EpollCtl, errno: syscall.ENOMEM, prob: 0.2, epoll: true},
}

func TestFaultInjection(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TCPKIT_FAULT_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("TCPKIT_FAULT_SEED=%d", seed)
	forEachEngine(t, func(t *testing.T, e engine) {
		for i, fc := range faultCases {
			if fc.epoll && e.name != "epoll" {
				continue
			}
			t.Run(fc.String(), func(t *testing.T) { runFaultCase(t, e, fc, seed+uint64(i)) })
		}
	})
}

// runFaultCase serves an echo and runs clients through it with fc's fault
// injected.
func runFaultCase(t *testing.T, e engine, fc faultCase, seed uint64) {
	const clients, size = 8, 128 << 10
	closes := make(chan error, 64)
	listening := make(chan struct{})
	s := &Server{Logger: discardLogger(), OnListening: func(net.Addr) { close(listening) }, Handler: func(c *Conn) {
		c.OnClose(func(err error) { closes <- err })
		Pipe(c, c)
	}}
	addr := startServer(t, e, s, "127.0.0.1:0")
	waitFor(t, listening, 5*time.Second, "listening") // the listener is registered: faults are for connections

	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 17))
	injected := 0
	fault.Set(func(site fault.Site, fd int) fault.Fault {
		if site != fc.site {
			return fault.Fault{}
		}
		mu.Lock()
		defer mu.Unlock()
		if injected > 0 && rng.Float64() >= fc.prob || injected >= 200 { // the first call always
			return fault.Fault{}
		}
		injected++
		if fc.errno != 0 {
			return fault.Fault{Errno: fc.errno}
		}
		return fault.Fault{Limit: 1 + rng.IntN(700)}
	})
	defer fault.Set(nil)

	type result struct {
		sent, got []byte
		err       error
	}
	results := make([]result, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			data := make([]byte, size)
			r := rand.New(rand.NewPCG(seed, uint64(i)))
			for j := range data {
				data[j] = byte(r.Uint32())
			}
			results[i].sent = data
			nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				results[i].err = err
				return
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(20 * time.Second))
			var got bytes.Buffer
			read := make(chan error, 1)
			go func() {
				_, err := io.Copy(&got, nc)
				read <- err
			}()
			var werr error
			for off := 0; off < len(data); {
				n := min(len(data)-off, 1+r.IntN(16<<10))
				if _, werr = nc.Write(data[off : off+n]); werr != nil {
					break // the server failed the connection
				}
				off += n
			}
			nc.(*net.TCPConn).CloseWrite()
			results[i].err = <-read
			if results[i].err == nil && werr != nil {
				// The reset reached the write first, which took its error:
				// the read then sees only the end.
				results[i].err = werr
			}
			results[i].got = got.Bytes()
		})
	}
	waitGroup(t, &wg, 30*time.Second, "the clients")
	fault.Set(nil)
	mu.Lock() // a call that began before Set(nil) may still be counting
	n := injected
	mu.Unlock()

	failed := 0
	for i, r := range results {
		intact := r.err == nil && bytes.Equal(r.got, r.sent)
		switch {
		case intact:
		case !fc.lossy():
			t.Errorf("client %d: %d of %d bytes back, %v; a %v fault must change nothing a client sees", i, len(r.got), len(r.sent), r.err, fc)
		case r.err == nil:
			t.Errorf("client %d: an orderly end after %d of %d bytes: lost silently", i, len(r.got), len(r.sent))
		case !bytes.HasPrefix(r.sent, r.got):
			t.Errorf("client %d: the echo is not what was sent (%d bytes back)", i, len(r.got))
		case !errors.Is(r.err, syscall.ECONNRESET) && !errors.Is(r.err, syscall.EPIPE):
			t.Errorf("client %d: %v after %d bytes; want a reset", i, r.err, len(r.got))
		default:
			failed++
		}
	}
	// The server's side: every connection closed, cleanly or with an
	// error that names the fault.
	for range clients {
		err := waitFor(t, closes, 10*time.Second, "a close event")
		if err != nil && (!fc.lossy() || !errors.Is(err, fc.errno) && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE)) {
			t.Errorf("close error %v under %v", err, fc)
		}
	}
	st := s.Stats()
	if int64(st.Open)+st.Dropped.Total()+st.Closed.Total() != st.Accepted {
		t.Errorf("stats: %+v", st)
	}
	t.Logf("%v: %d faults injected, %d of %d connections failed", fc, n, failed, clients)
	if n == 0 {
		t.Errorf("no %v fault was injected: the site was never reached", fc)
	}
}
