package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit"
	"github.com/tcpkit/tcpkit/internal/loadgen"
)

// TestBenchAgainstEcho measures tcpkit echo, greeting and all, over TCP and
// a Unix socket, in each mode, and checks the report.
func TestBenchAgainstEcho(t *testing.T) {
	for _, tr := range []struct{ name, addr string }{
		{"tcp", "127.0.0.1:0"},
		{"unix", sockPath(t)},
	} {
		t.Run(tr.name, func(t *testing.T) {
			e := startEcho(t, "--quiet", tr.addr)
			for _, mode := range []string{"ping-pong", "pipeline", "stream", "connect"} {
				r := runCLI(t, nil, "bench", "--mode", mode, "--greeting", `hello\r\n`, "-c", "2",
					"-n", "300", "--warmup", "0", e.addr())
				if r.code != exitOK {
					t.Fatalf("bench --mode %s exited %d:\n%s\n%s", mode, r.code, r.stdout, r.stderr)
				}
				for _, want := range []string{mode, "/s", "errors       none"} {
					if !strings.Contains(r.stdout, want) {
						t.Errorf("bench --mode %s report lacks %q:\n%s", mode, want, r.stdout)
					}
				}
			}
			r := runCLI(t, nil, "bench", "--json", "--greeting", `hello\r\n`, "-n", "200", "--warmup", "0", e.addr())
			var res struct {
				Messages int64            `json:"messages"`
				Errors   map[string]int64 `json:"errors"`
				Latency  struct {
					P99 int64 `json:"p99_ns"`
				} `json:"latency"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != exitOK {
				t.Fatalf("bench --json exited %d, output %q: %v", r.code, r.stdout, err)
			}
			if res.Messages < 200 || len(res.Errors) != 0 || res.Latency.P99 <= 0 {
				t.Errorf("bench --json: %+v", res)
			}
		})
	}
}

// TestBenchCatchesCorruption runs bench against a server that damages one
// byte of its echo now and then: bench must say so and exit 1.
func TestBenchCatchesCorruption(t *testing.T) {
	n := 0
	srv := tcpkit.NewServer(func(c *tcpkit.Conn) {
		c.OnData(func(p []byte) {
			if n++; n%50 == 0 {
				p[len(p)/2] ^= 0xff
			}
			c.Write(p)
		})
	})
	ln, err := tcpkit.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopLimit)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := await(t, served, stopLimit, "Serve to return after Shutdown"); !errors.Is(err, tcpkit.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	}()
	r := runCLI(t, nil, "bench", "-n", "2000", "--warmup", "0", ln.Addr().String())
	if r.code != exitError || !strings.Contains(r.stderr, "corrupt") || !strings.Contains(r.stdout, "corrupt") {
		t.Errorf("bench against a corrupting server exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestBenchRefused reports a server that is not there in one line.
func TestBenchRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := runCLI(t, nil, "bench", "-n", "10", "--warmup", "0", "--timeout", "2s", addr)
	if r.code != exitError || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "refused") {
		t.Errorf("bench against a closed port exited %d, stderr %q", r.code, r.stderr)
	}
}

// slowService is how long the slow server takes over each message.
const slowService = 20 * time.Millisecond

// startSlowServer starts a TCP server on loopback that echoes each
// 64-byte message slowService after reading it, one at a time per
// connection: each connection serves at most 50 messages a second, and
// what comes faster queues up. It is closed when the test ends.
func startSlowServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					time.Sleep(slowService)
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// runBenchJSON runs tcpkit bench --json with args and returns the result.
func runBenchJSON(t *testing.T, args ...string) *loadgen.Result {
	t.Helper()
	r := runCLI(t, nil, append([]string{"bench", "--json"}, args...)...)
	var res loadgen.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != exitOK {
		t.Fatalf("bench %s exited %d, output %q, stderr %q: %v", strings.Join(args, " "), r.code, r.stdout, r.stderr, err)
	}
	if res.Latency == nil {
		t.Fatalf("bench %s: no latency", strings.Join(args, " "))
	}
	t.Logf("bench %s: %.0f msgs/s, p50 %v p99 %v max %v, open loop %+v", strings.Join(args, " "),
		res.MsgsPerSec, res.Latency.P50, res.Latency.P99, res.Latency.Max, res.Open)
	return &res
}

// TestBenchRate runs --rate against a server that answers each message
// after 20ms, one at a time, on two connections: 100 msgs/s at most.
// Open loop at 200 msgs/s, messages queue up and the latency, counted from
// each message's schedule, includes the queueing; closed loop on the same
// connections sees 20ms; open loop under capacity, 20ms too.
func TestBenchRate(t *testing.T) {
	common := []string{"-c", "2", "-d", "1s", "--warmup", "0"}
	// About 20ms: the histogram's buckets are 0.1% wide, so 20ms may read
	// as 19.98ms.
	about := func(d time.Duration) bool {
		return slowService-time.Millisecond <= d && d < slowService+15*time.Millisecond
	}

	t.Run("overloaded", func(t *testing.T) {
		res := runBenchJSON(t, append(common, "--rate", "200", startSlowServer(t))...)
		if l := res.Latency; l.P99 < 10*slowService {
			t.Errorf("open loop at twice capacity: p99 %v, want the queueing counted: well above %v", l.P99, slowService)
		}
		if o := res.Open; o == nil || o.Requested != 200 || o.Sent < 150 || res.MsgsPerSec > 110 {
			t.Errorf("requested/sent %+v, achieved %v msgs/s; want 200, about 200, at most about 100", o, res.MsgsPerSec)
		}
		var top time.Duration
		for _, s := range res.Series {
			top = max(top, s.P99)
		}
		if len(res.Series) == 0 || len(res.Series) > 2 || top < 5*slowService {
			t.Errorf("series %+v: want one second (two if the window ran over), whose p99 shows the queue", res.Series)
		}
	})
	t.Run("closed", func(t *testing.T) {
		res := runBenchJSON(t, append(common, startSlowServer(t))...)
		if l := res.Latency; !about(l.P50) || l.P99 > 5*slowService {
			t.Errorf("closed loop: p50 %v, p99 %v; want about %v", l.P50, l.P99, slowService)
		}
	})
	t.Run("under-capacity", func(t *testing.T) {
		res := runBenchJSON(t, append(common, "--rate", "40", startSlowServer(t))...)
		if l := res.Latency; !about(l.P50) || l.P99 > 5*slowService {
			t.Errorf("open loop at 40%% of capacity: p50 %v, p99 %v; want about %v", l.P50, l.P99, slowService)
		}
	})
	t.Run("table", func(t *testing.T) {
		r := runCLI(t, nil, append([]string{"bench", "--rate", "40"}, append(common, startSlowServer(t))...)...)
		for _, want := range []string{"open loop, up to 1024 in flight", "requested 40 msgs/s", "achieved", "latency*", "scheduled send"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("table lacks %q:\n%s", want, r.stdout)
			}
		}
	})
}

// TestBenchRateTransports runs --rate against tcpkit echo over TCP, a
// Unix socket and TLS, checking every byte as ever.
func TestBenchRateTransports(t *testing.T) {
	cert, key, _ := certFiles(t, t.TempDir(), "bench", time.Hour, "localhost", "127.0.0.1")
	for _, tt := range []struct {
		name       string
		echo, args []string
	}{
		{"tcp", []string{"127.0.0.1:0"}, nil},
		{"unix", []string{sockPath(t)}, []string{"--mode", "pipeline", "--depth", "64"}},
		{"tls", []string{"--tls-cert", cert, "--tls-key", key, "127.0.0.1:0"}, []string{"--tls", "--ca", cert, "--server-name", "localhost"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := startEcho(t, append([]string{"--quiet", "--greeting", ""}, tt.echo...)...)
			args := append([]string{"--rate", "3000", "-c", "3", "-n", "1500", "--warmup", "100ms"}, tt.args...)
			res := runBenchJSON(t, append(args, e.addr())...)
			if res.Messages < 1500 || res.Errors.Total() != 0 || res.Open == nil || res.Open.Sent <= 0 {
				t.Errorf("%d messages, errors %v, open loop %+v", res.Messages, res.Errors, res.Open)
			}
			if res.Open != nil && tt.name == "unix" && res.Open.Depth != 64 {
				t.Errorf("--depth 64 gave a bound of %d", res.Open.Depth)
			}
		})
	}
}

// TestBenchRateUsage checks that a bad --rate is a usage error.
func TestBenchRateUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--rate", "-5"},
		{"--rate", "NaN"},
		{"--rate", "100", "--mode", "stream"},
		{"--rate", "fast"},
	} {
		r := runCLI(t, nil, append(append([]string{"bench"}, args...), "127.0.0.1:1")...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--rate") {
			t.Errorf("bench %v: exit %d, stderr %q; want a usage error about --rate", args, r.code, r.stderr)
		}
	}
}
