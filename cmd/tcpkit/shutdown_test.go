package main

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit/internal/streamtest"
)

// TestEchoShutdownUnderLoad runs the real tcpkit echo and sends it SIGTERM
// while clients stream megabytes, pausing 10-50ms between some writes:
// every stream must come back whole, new connections must be refused at
// once, and the server must exit 0 only after the last client finished.
func TestEchoShutdownUnderLoad(t *testing.T) {
	for _, tr := range transports {
		for _, engine := range serverEngines {
			t.Run(tr.name+"/"+engine, func(t *testing.T) { testEchoShutdownUnderLoad(t, tr, engine) })
		}
	}
}

func testEchoShutdownUnderLoad(t *testing.T, tr transport, engine string) {
	const clients, size, chunk = 12, 2 << 20, 64 << 10
	p, addr := startEchoProcess(t, "--greeting=", "--grace", "60s", "--engine", engine, tr.listen(t))
	conns := make([]net.Conn, clients)
	for i := range conns {
		conns[i] = dial(t, addr)
	}
	streams := streamtest.Start(conns, size, chunk)
	for range clients {
		p.line(t, "client connected")
	}
	for range clients {
		select {
		case <-streams.Half:
		case <-time.After(waitLimit):
			t.Fatal("the clients did not get half way")
		}
	}
	p.signal(t, syscall.SIGTERM)
	p.line(t, "shutting down")
	network, address := splitAddr(t, addr)
	if nc, err := net.DialTimeout(network, address, time.Second); err == nil {
		nc.Close()
		t.Error("a new connection was accepted after shutting down began")
	}
	lastEnd, errs, ok := streams.Wait(2 * waitLimit)
	if !ok {
		t.Fatal("the clients did not finish")
	}
	for _, err := range errs {
		t.Error(err)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status %d, want 0:\n%s", code, p.stderr.String())
	}
	if p.at.Before(lastEnd) {
		t.Errorf("exited %v before the last client finished sending", lastEnd.Sub(p.at))
	}
	log := p.stderr.String()
	if n := strings.Count(log, "client disconnected"); n != clients || strings.Contains(log, "cut off") {
		t.Errorf("%d clean disconnects of %d, or a cut connection:\n%s", n, clients, log)
	}
}

// TestEchoGraceRunsOut: a client still open when --grace runs out is reset,
// its log line says why, and the exit status is 3.
func TestEchoGraceRunsOut(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			p, addr := startEchoProcess(t, "--grace", "300ms", tr.listen(t))
			nc := dial(t, addr)
			readN(t, nc, len("hello\r\n"))
			io.WriteString(nc, "unfinished") // never half-closes: stays busy
			readN(t, nc, len("unfinished"))
			start := time.Now()
			p.signal(t, syscall.SIGTERM)
			if code := p.wait(t); code != exitCut {
				t.Errorf("exit status %d, want %d:\n%s", code, exitCut, p.stderr.String())
			}
			if d := p.at.Sub(start); d < 250*time.Millisecond {
				t.Errorf("exited %v after the signal, before --grace", d)
			}
			_, err := io.ReadAll(nc)
			if tr.name == "tcp" && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("the cut client read until %v, want ECONNRESET", err)
			}
			log := p.stderr.String()
			for _, want := range []string{`msg="client cut off by shutdown"`, "--grace is shorter than --shutdown-idle", `err="tcpkit: server closed: the shutdown grace period ran out`,
				`msg="grace period over: reset the remaining connections" cut=1`} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %s:\n%s", want, log)
				}
			}
		})
	}
}

// TestEchoClientSendsAfterEnd: a client that keeps sending after the
// server has ended its side, during a shutdown, gets a reset, never a clean
// end with its data dropped; the exit status is 3.
func TestEchoClientSendsAfterEnd(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			p, addr := startEchoProcess(t, "--shutdown-idle", "50ms", "--grace", "10s", tr.listen(t))
			nc := dial(t, addr)
			readN(t, nc, len("hello\r\n"))
			p.signal(t, syscall.SIGTERM)
			if b, err := io.ReadAll(nc); err != nil || len(b) != 0 {
				t.Fatalf("after SIGTERM the idle client read %q, %v; want the server's end", b, err)
			}
			var err error
			for range 500 { // about 5s at most
				if _, err = io.WriteString(nc, "more"); err != nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
				t.Errorf("writing after the server's end: %v, want ECONNRESET or EPIPE", err)
			}
			if code := p.wait(t); code != exitCut {
				t.Errorf("exit status %d, want %d:\n%s", code, exitCut, p.stderr.String())
			}
			if log := p.stderr.String(); !strings.Contains(log, `err="tcpkit: pipe: input could not be passed on, connection reset: tcpkit: write after end: the server is shutting down"`) {
				t.Errorf("log does not say why the client was cut:\n%s", log)
			}
		})
	}
}

// TestEchoSignals: the first SIGINT or SIGTERM drains and exits 0; a second
// one forces the exit with 128 plus the signal's number.
func TestEchoSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			p, _ := startEchoProcess(t, "127.0.0.1:0")
			p.signal(t, sig)
			if code := p.wait(t); code != 0 {
				t.Errorf("exit status %d after one %v, want 0:\n%s", code, sig, p.stderr.String())
			}
		})
		t.Run(sig.String()+" twice", func(t *testing.T) {
			p, addr := startEchoProcess(t, "--grace", "1m", "127.0.0.1:0")
			nc := dial(t, addr)
			readN(t, nc, len("hello\r\n"))
			p.signal(t, sig)
			p.line(t, "shutting down")
			p.signal(t, sig)
			if code, want := p.wait(t), 128+int(sig); code != want {
				t.Errorf("exit status %d after a second %v, want %d:\n%s", code, sig, want, p.stderr.String())
			}
			p.line(t, "second signal")
		})
	}
}

// splitAddr turns an address in tcpkit's grammar into net.Dial's
// arguments.
func splitAddr(t *testing.T, addr string) (network, address string) {
	t.Helper()
	if strings.HasPrefix(addr, "unix:") || strings.Contains(addr, "/") {
		return "unix", strings.TrimPrefix(addr, "unix:")
	}
	return "tcp", addr
}
