package main

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit"
	"github.com/tcpkit/tcpkit/tlsutil"
)

func TestPattern(t *testing.T) {
	off := int64(patLen - 10) // the stream wraps round the pattern's end
	p := append([]byte(nil), patternAt(off, 0, 64)...)
	if bad := matchPattern(off, 0, p); bad != 0 {
		t.Errorf("matchPattern of the pattern itself = %d, want 0", bad)
	}
	if bad := matchPattern(off, 1, p); bad == 0 {
		t.Error("matchPattern of a stream shifted by one byte = 0, want mismatches")
	}
	p[3] ^= 1
	p[40] ^= 1
	if bad := matchPattern(off, 0, p); bad != 2 {
		t.Errorf("matchPattern with 2 flipped bytes = %d, want 2", bad)
	}
}

func TestEndSession(t *testing.T) {
	timeout := &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}
	reset := &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, tc := range []struct {
		name                   string
		sent, echoed, corrupt  int64
		err                    error
		clean, lost, cut, bad  int64
		stalls, verified, errs int64
	}{
		{name: "all echoed", sent: 100, echoed: 100, clean: 1, verified: 100},
		{name: "clean end, short", sent: 100, echoed: 60, lost: 40, verified: 60, errs: 1},
		{name: "stall", sent: 100, echoed: 60, err: timeout, lost: 40, stalls: 1, verified: 60, errs: 1},
		{name: "reset", sent: 100, echoed: 60, err: reset, cut: 40, verified: 60, errs: 1},
		{name: "corrupt", sent: 100, echoed: 100, corrupt: 3, bad: 3, verified: 97},
		{name: "more than sent", sent: 100, echoed: 110, bad: 10, verified: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c classStats
			c.endSession(time.Now(), tc.sent, tc.echoed, tc.corrupt, tc.err, false, "test")
			var errs int64
			for _, n := range c.Errors {
				errs += n
			}
			got := [...]int64{c.Clean, c.LostSilently, c.CutByError, c.Corrupt, c.Stalls, c.Verified, errs}
			want := [...]int64{tc.clean, tc.lost, tc.cut, tc.bad, tc.stalls, tc.verified, tc.errs}
			if got != want {
				t.Errorf("clean, lost, cut, corrupt, stalls, verified, errors = %v, want %v", got, want)
			}
		})
	}
}

func TestProxyHeader(t *testing.T) {
	src, dst := netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:8124")
	if got, want := string(proxyHeader(proxyV1, src, dst, 7)), "PROXY TCP4 192.0.2.7 127.0.0.1 40000 8124\r\n"; got != want {
		t.Errorf("v1 header = %q, want %q", got, want)
	}
	if v2 := proxyHeader(proxyV2, src, dst, 7); len(v2) != 28 || v2[12] != 0x21 || v2[13] != 0x11 {
		t.Errorf("v2 header = %x, want 28 bytes, version 2 PROXY, TCP over IPv4", v2)
	}
	if proxyHeader(noHeader, src, dst, 7) != nil {
		t.Error("no header: got one")
	}
}

// testServer serves a tcpkit TLS echo on the goroutine engine with the
// PROXY protocol optional, as soakserver does, and returns its target.
// timeout is its PROXY header and TLS handshake timeouts.
func testServer(t *testing.T, timeout time.Duration) *target {
	t.Helper()
	cert, err := tlsutil.SelfSigned(time.Hour, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tcpkit.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &tcpkit.Server{
		Handler:            func(c *tcpkit.Conn) { tcpkit.Pipe(c, c) },
		TLS:                &tls.Config{Certificates: []tls.Certificate{cert}},
		HandshakeTimeout:   timeout,
		ProxyProtocol:      tcpkit.ProxyOptional,
		TrustedProxies:     []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		ProxyHeaderTimeout: timeout,
		Logger:             slog.New(slog.DiscardHandler),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return &target{engine: "goroutine", addr: netip.MustParseAddrPort(ln.Addr().String()), stats: newSoakStats()}
}

// lossyServer is a TLS server that echoes all but the last byte of what
// it reads and then ends cleanly: a server that loses data silently.
func lossyServer(t *testing.T) *target {
	t.Helper()
	cert, err := tlsutil.SelfSigned(time.Hour, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		if len(b) > 0 {
			c.Write(b[:len(b)-1])
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return &target{engine: "lossy", addr: netip.MustParseAddrPort(ln.Addr().String()), stats: newSoakStats()}
}

// silentTimeout is the PROXY header and TLS handshake timeouts of the
// server that TestSilent's clients wait on.
const silentTimeout = 100 * time.Millisecond

func testWorker(tg *target, class string) *worker {
	cfg := &config{stall: 5 * time.Second, dialTimeout: 5 * time.Second, proxyTimeout: silentTimeout, handshakeTimeout: silentTimeout}
	return &worker{cl: &clients{cfg: cfg, start: time.Now()}, t: tg, cls: tg.stats.class(class), r: rand.New(rand.NewPCG(1, 2))}
}

// TestClients runs one connection of each verified kind against a tcpkit
// server: each must come back clean.
func TestClients(t *testing.T) {
	tg := testServer(t, 0) // the defaults: 5 s, 10 s
	ctx := context.Background()
	for _, tc := range []struct {
		class string
		run   func(w *worker)
	}{
		{class: classHalfClose, run: func(w *worker) {
			w.stream(ctx, streamOpts{total: 48 << 10, chunk: 16 << 10, sequential: true})
		}},
		{class: classFlood, run: func(w *worker) {
			w.n = 1 // a PROXY v1 header
			w.stream(ctx, streamOpts{total: 1 << 20, chunk: 64 << 10})
		}},
		{class: classUrgent, run: func(w *worker) {
			w.n = 2 // a PROXY v2 header
			w.urgent(ctx)
		}},
		{class: classChurn, run: func(w *worker) { w.leave(ctx, 0, proxyV1) }},
	} {
		t.Run(tc.class, func(t *testing.T) {
			w := testWorker(tg, tc.class)
			tc.run(w)
			c := w.cls
			if c.Sessions != 1 || c.Clean != 1 || c.Sent == 0 || c.Verified != c.Sent {
				t.Errorf("sessions %d, clean %d, sent %d, verified %d; errors %v, notes %v; want one clean session, every byte verified",
					c.Sessions, c.Clean, c.Sent, c.Verified, c.Errors, c.Notes)
			}
		})
	}
}

// TestLostSilently checks that a server that ends cleanly without echoing
// everything is counted as losing bytes silently.
func TestLostSilently(t *testing.T) {
	tg := lossyServer(t)
	w := testWorker(tg, classHalfClose)
	w.stream(context.Background(), streamOpts{total: 1000, chunk: 1000, sequential: true})
	if c := w.cls; c.LostSilently != 1 || c.Verified != 999 || c.Clean != 0 {
		t.Errorf("lost silently %d, verified %d, clean %d; errors %v; want 1, 999, 0", c.LostSilently, c.Verified, c.Clean, c.Errors)
	}
}

// TestSilent checks that silent and partial-header clients see the server
// close them, and that one cut short by the end of the soak is not
// counted.
func TestSilent(t *testing.T) {
	tg := testServer(t, silentTimeout)
	ctx := context.Background()
	for _, partial := range []bool{false, true} {
		class := map[bool]string{false: classSilent, true: classPartial}[partial]
		w := testWorker(tg, class)
		w.silent(ctx, partial)
		if c := w.cls; c.Closed != 1 || c.TooLate != 0 || c.CloseMax > w.cl.cfg.closeBound() {
			t.Errorf("%s: closed %d (after %v), too late %d; want closed once within %v", class, c.Closed, c.CloseMax, c.TooLate, w.cl.cfg.closeBound())
		}
	}
	fresh := &target{engine: tg.engine, addr: tg.addr, stats: newSoakStats()}
	w := testWorker(fresh, classSilent)
	ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	w.silent(ctx, false)
	if c := w.cls; c.Closed != 0 || c.TooLate != 0 {
		t.Errorf("a silent client cut short by the end of the soak: closed %d, too late %d; want neither counted", c.Closed, c.TooLate)
	}
}

func TestHeaderRotation(t *testing.T) {
	for _, tc := range []struct {
		proxy string
		want  []headerKind
	}{
		{proxy: "optional", want: []headerKind{noHeader, proxyV1, proxyV2, noHeader}},
		{proxy: "required", want: []headerKind{proxyV1, proxyV2, proxyV1, proxyV2}},
	} {
		cfg := &config{proxy: tc.proxy}
		for i, want := range tc.want {
			if got := cfg.headerKind(i); got != want {
				t.Errorf("-proxy %s: header %d = %v, want %v", tc.proxy, i, got, want)
			}
		}
	}
}
