package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpkit/tcpkit/bench/internal/harness"
)

// maxSessions bounds the connections one worker makes, whatever the
// duration.
const maxSessions = 1 << 20

// clients runs the adversaries against the targets until ctx is done.
type clients struct {
	cfg   *config
	start time.Time
}

// A worker is one client goroutine: it makes connections of one class to
// one target, one after another.
type worker struct {
	cl  *clients
	t   *target
	cls *classStats
	r   *rand.Rand
	id  int
	n   int // connections made
}

// run starts every worker on every target and returns once all have
// stopped: each stops making connections when ctx is done, and finishes
// the one in hand within the stall bound.
func (cl *clients) run(ctx context.Context, targets []*target) {
	var wg sync.WaitGroup
	id := 0
	for _, t := range targets {
		for _, class := range classOrder {
			if class == classChurn {
				wg.Go(func() { cl.churn(ctx, t) })
				continue
			}
			for range cl.cfg.counts[class] {
				id++
				w := &worker{cl: cl, t: t, cls: t.stats.class(class), r: rand.New(rand.NewPCG(cl.cfg.seed, uint64(id))), id: id}
				wg.Go(func() { w.loop(ctx, class) })
			}
		}
	}
	wg.Wait()
}

// loop makes connections of class until ctx is done.
func (w *worker) loop(ctx context.Context, class string) {
	// Spread the workers' starts over the first second.
	harness.Sleep(ctx, time.Duration(w.r.Int64N(int64(time.Second))))
	for ; w.n < maxSessions && ctx.Err() == nil; w.n++ {
		switch class {
		case classSilent:
			w.silent(ctx, false)
		case classPartial:
			w.silent(ctx, true)
		case classFlood:
			w.stream(ctx, streamOpts{
				until: time.Now().Add(2*time.Second + time.Duration(w.r.Int64N(int64(6*time.Second)))),
				chunk: 64 << 10,
			})
		case classSlow:
			w.stream(ctx, streamOpts{
				total:     int64(1<<20 + w.r.IntN(3<<20)),
				chunk:     16 << 10,
				readChunk: 16 << 10,
				readPause: 20 * time.Millisecond,
			})
		case classHalfClose:
			w.stream(ctx, streamOpts{
				total:      int64(1 + w.r.IntN(64<<10)),
				chunk:      16 << 10,
				sequential: true,
			})
			harness.Sleep(ctx, time.Duration(w.r.Int64N(int64(100*time.Millisecond))))
		case classReset:
			w.reset(ctx)
			harness.Sleep(ctx, time.Duration(20+w.r.IntN(80))*time.Millisecond)
		case classUrgent:
			w.urgent(ctx)
		}
	}
}

// header picks the PROXY header of the worker's next connection, in turn:
// none, v1, v2; under -proxy required, v1 and v2.
func (w *worker) header() headerKind { return w.cl.cfg.headerKind(w.n + w.id) }

// headerKind returns the i-th PROXY header of a rotation: none, v1, v2;
// under -proxy required, v1 and v2 only.
func (cfg *config) headerKind(i int) headerKind {
	if cfg.proxy == "required" {
		return proxyV1 + headerKind(i%2)
	}
	return headerKind(i % int(numHeaderKinds))
}

// silent connects and sends nothing (partial: half a PROXY header), then
// waits for the server to close the connection, up to the bound that the
// server's timeouts set.
func (w *worker) silent(ctx context.Context, partial bool) {
	cfg := w.cl.cfg
	w.cls.conn()
	raw, err := dialTCP(ctx, w.t, cfg.dialTimeout)
	if err != nil {
		w.cls.connFailed(err)
		harness.Sleep(ctx, 100*time.Millisecond)
		return
	}
	defer raw.Close()
	t0 := time.Now()
	detail := "nothing sent"
	if partial {
		h := proxyHeader(proxyV1+headerKind(w.n%2), netipAddrPort(raw.LocalAddr()), w.t.addr, 1)
		h = h[:len(h)/2]
		detail = fmt.Sprintf("%d bytes of a PROXY %s header sent", len(h), proxyV1+headerKind(w.n%2))
		if _, err := raw.Write(h); err != nil {
			w.cls.connFailed(err)
			return
		}
	}
	bound := cfg.closeBound()
	raw.SetReadDeadline(t0.Add(bound))
	stop := context.AfterFunc(ctx, func() { raw.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 4096)
	got := 0
	for range 1000 { // the server may send an alert first; bounded anyway by the deadline
		n, err := raw.Read(buf)
		got += n
		if err == nil {
			continue
		}
		if isTimeout(err) && ctx.Err() == nil {
			// Closed meanwhile, while this process waited for a CPU? Then
			// it was not the server's delay: counted closed, late.
			raw.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err2 := raw.Read(buf); err2 != nil && !isTimeout(err2) {
				err = err2
			}
		}
		wait := time.Since(t0)
		switch {
		case ctx.Err() != nil && wait < bound:
			// The soak ended first: not counted.
		case isTimeout(err):
			w.cls.tooLate(w.cl.start, bound, detail)
		default:
			w.cls.serverClosed(wait, err)
		}
		return
	}
}

// streamOpts shapes a verified connection.
type streamOpts struct {
	total      int64     // bytes to send (0: no limit but until)
	until      time.Time // stop sending then (zero: no limit but total)
	chunk      int       // bytes per write
	sequential bool      // send everything and end before reading (half-close)
	readChunk  int       // bytes per read (default 64 KiB)
	readPause  time.Duration
}

// stream makes one verified connection: it sends the pattern, ends its
// side (close_notify and FIN), and reads the echo to the server's end,
// checking every byte; the sending and the reading run at once unless
// o.sequential.
func (w *worker) stream(ctx context.Context, o streamOpts) {
	cfg := w.cl.cfg
	w.cls.conn()
	h := w.header()
	tc, raw, err := dialTLS(ctx, w.t, h, w.r, cfg.dialTimeout)
	if err != nil {
		w.cls.connFailed(err)
		harness.Sleep(ctx, 100*time.Millisecond)
		return
	}
	defer raw.Close()
	off := w.r.Int64N(patLen)
	var sent, echoed, corrupt atomic.Int64
	write := func() error {
		for range maxSessions {
			if ctx.Err() != nil || (o.total > 0 && sent.Load() >= o.total) || (!o.until.IsZero() && !time.Now().Before(o.until)) {
				break
			}
			n := o.chunk
			if o.total > 0 {
				n = int(min(int64(n), o.total-sent.Load()))
			}
			raw.SetWriteDeadline(time.Now().Add(2 * cfg.stall)) // the reader, which checks for our own delays, judges a stall first
			m, err := tc.Write(patternAt(off, sent.Load(), n))
			sent.Add(int64(m))
			if err != nil {
				return err
			}
		}
		raw.SetWriteDeadline(time.Now().Add(2 * cfg.stall))
		return closeWrite(tc, raw)
	}
	read := func() error {
		buf := make([]byte, max(o.readChunk, 64<<10))
		if o.readChunk > 0 {
			buf = buf[:o.readChunk]
		}
		for range 1 << 30 {
			n, err := readStalling(tc, raw, buf, cfg.stall+o.readPause)
			if n > 0 {
				corrupt.Add(matchPattern(off, echoed.Load(), buf[:n]))
				echoed.Add(int64(n))
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if o.readPause > 0 {
				time.Sleep(o.readPause)
			}
		}
		return errors.New("read loop bound reached")
	}
	var werr, rerr error
	if o.sequential {
		werr = write()
		if werr == nil {
			rerr = read()
		}
	} else {
		done := make(chan struct{})
		go func() {
			defer close(done)
			werr = write()
		}()
		rerr = read()
		if rerr != nil {
			raw.SetWriteDeadline(time.Now()) // the writer may wait on a server that will never read
		}
		<-done
	}
	err = rerr
	if err == nil && werr != nil {
		err = fmt.Errorf("write: %w", werr)
	}
	if rerr != nil && werr != nil && isTimeout(werr) && !isTimeout(rerr) {
		err = rerr
	}
	w.cls.endSession(w.cl.start, sent.Load(), echoed.Load(), corrupt.Load(), err, false,
		fmt.Sprintf("PROXY header %s, %s", h, tlsState(tc)))
}

func tlsState(tc *tls.Conn) string {
	cs := tc.ConnectionState()
	return tls.VersionName(cs.Version)
}

// reset sends and then resets the connection: a quarter of them after the
// PROXY header, before TLS; the rest after sending up to 256 KiB, half of
// those after reading some of the echo.
func (w *worker) reset(ctx context.Context) {
	cfg := w.cl.cfg
	w.cls.conn()
	mode := w.r.IntN(4)
	if mode == 0 {
		raw, err := dialTCP(ctx, w.t, cfg.dialTimeout)
		if err != nil {
			w.cls.connFailed(err)
			return
		}
		raw.Write(proxyHeader(proxyV1, netipAddrPort(raw.LocalAddr()), w.t.addr, 2))
		resetClose(raw)
		defer w.cls.lock()()
		w.cls.Reset++
		return
	}
	tc, raw, err := dialTLS(ctx, w.t, w.header(), w.r, cfg.dialTimeout)
	if err != nil {
		w.cls.connFailed(err)
		return
	}
	n := 1 + w.r.IntN(256<<10)
	raw.SetDeadline(time.Now().Add(cfg.stall))
	m, _ := tc.Write(patternAt(w.r.Int64N(patLen), 0, n))
	if mode == 2 {
		buf := make([]byte, 1+w.r.IntN(n))
		io.ReadFull(tc, buf)
	}
	resetClose(raw)
	defer w.cls.lock()()
	w.cls.Reset++
	w.cls.Sent += int64(m)
}

// urgent sends, in rounds, a record of A bytes, one byte of TCP urgent
// data (MSG_OOB, outside the TLS stream), and a record of B bytes, then
// waits for the echo of A and B. The server's socket has SO_OOBINLINE off,
// so the kernel takes the urgent byte out of the stream: the TLS stream
// the server reads is whole, and A and B must come back, the urgent byte
// not. One urgent byte at a time: the next goes only once the echo of B
// shows that the server has read past the last.
func (w *worker) urgent(ctx context.Context) {
	cfg := w.cl.cfg
	w.cls.conn()
	h := w.header()
	tc, raw, err := dialTLS(ctx, w.t, h, w.r, cfg.dialTimeout)
	if err != nil {
		w.cls.connFailed(err)
		harness.Sleep(ctx, 100*time.Millisecond)
		return
	}
	defer raw.Close()
	off := w.r.Int64N(patLen)
	var sent, echoed, corrupt int64
	stalled := false
	buf := make([]byte, 64<<10)
	end := func(err error, detail string) {
		w.cls.endSession(w.cl.start, sent, echoed, corrupt, err, stalled, fmt.Sprintf("PROXY header %s, %s", h, detail))
	}
	rounds := 5 + w.r.IntN(20)
	for round := 1; round <= rounds && ctx.Err() == nil; round++ {
		a, b := 1+w.r.IntN(16<<10), 1+w.r.IntN(16<<10)
		raw.SetWriteDeadline(time.Now().Add(2 * cfg.stall))
		if _, err := tc.Write(patternAt(off, sent, a)); err != nil {
			end(err, "writing A")
			return
		}
		sent += int64(a)
		if err := sendUrgent(raw, []byte{'!'}); err != nil {
			end(err, "sending the urgent byte")
			return
		}
		if _, err := tc.Write(patternAt(off, sent, b)); err != nil {
			end(err, "writing B")
			return
		}
		sent += int64(b)
		for echoed < sent {
			n, err := readStalling(tc, raw, buf[:min(int64(len(buf)), sent-echoed)], cfg.stall)
			corrupt += matchPattern(off, echoed, buf[:n])
			echoed += int64(n)
			if err != nil && isTimeout(err) {
				// Nothing for the stall bound: see whether our FIN
				// brings the rest.
				stalled = true
				w.cls.stall(w.cl.start, "round %d (A %d B, urgent byte, B %d B): %d of %d bytes echoed within %v; then FIN sent",
					round, a, b, echoed, sent, cfg.stall)
				break
			}
			if err != nil {
				end(err, fmt.Sprintf("round %d", round))
				return
			}
		}
		if stalled {
			break
		}
		harness.Sleep(ctx, time.Duration(w.r.IntN(50))*time.Millisecond)
	}
	raw.SetWriteDeadline(time.Now().Add(2 * cfg.stall))
	if err := closeWrite(tc, raw); err != nil {
		end(err, "ending")
		return
	}
	before := echoed
	for range 1 << 20 {
		n, err := readStalling(tc, raw, buf, cfg.stall)
		corrupt += matchPattern(off, echoed, buf[:n])
		echoed += int64(n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			if stalled && echoed == sent && echoed > before {
				w.cls.late(w.cl.start, echoed-before)
			}
			end(err, "after FIN")
			return
		}
	}
}

// churn makes short connections to t at cfg.churnRate a second, at most
// 32 at once: each sends 64 bytes and reads the echo, then closes with
// close_notify, or without it, or leaves before the echo, or connects and
// leaves at once.
func (cl *clients) churn(ctx context.Context, t *target) {
	cls := t.stats.class(classChurn)
	if cl.cfg.churnRate <= 0 {
		return
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / cl.cfg.churnRate))
	defer tick.Stop()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	defer wg.Wait()
	r := rand.New(rand.NewPCG(cl.cfg.seed, 1<<32))
	for i := 0; i < maxSessions; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // 32 in flight already: the server is slow; skip a beat
		}
		mode, hk, seed := r.IntN(4), cl.cfg.headerKind(r.IntN(6)), r.Uint64()
		wg.Go(func() {
			defer func() { <-sem }()
			w := &worker{cl: cl, t: t, cls: cls, r: rand.New(rand.NewPCG(seed, 0))}
			w.leave(ctx, mode, hk)
		})
	}
}

// leave is one connect-and-leave connection.
func (w *worker) leave(ctx context.Context, mode int, h headerKind) {
	cfg := w.cl.cfg
	w.cls.conn()
	if mode == 3 {
		raw, err := dialTCP(ctx, w.t, cfg.dialTimeout)
		if err != nil {
			w.cls.connFailed(err)
			return
		}
		raw.Close()
		defer w.cls.lock()()
		w.cls.LeftEarly++
		return
	}
	tc, raw, err := dialTLS(ctx, w.t, h, w.r, cfg.dialTimeout)
	if err != nil {
		w.cls.connFailed(err)
		return
	}
	defer raw.Close()
	off := w.r.Int64N(patLen)
	raw.SetDeadline(time.Now().Add(cfg.stall))
	if _, err := tc.Write(patternAt(off, 0, 64)); err != nil {
		w.cls.endSession(w.cl.start, 0, 0, 0, err, false, "writing")
		return
	}
	if mode == 2 {
		raw.Close()
		defer w.cls.lock()()
		w.cls.LeftEarly++
		return
	}
	buf := make([]byte, 64)
	n, err := io.ReadFull(tc, buf)
	corrupt := matchPattern(off, 0, buf[:n])
	if mode == 0 {
		tc.Close() // close_notify, then close
	}
	w.cls.endSession(w.cl.start, 64, int64(n), corrupt, err, false, fmt.Sprintf("PROXY header %s", h))
}

// netipAddrPort returns a's address and port.
func netipAddrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	return netip.AddrPort{}
}
