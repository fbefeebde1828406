package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/tcpkit/tcpkit"
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
