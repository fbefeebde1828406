package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// kindServer serves fairserver's protocol with Go's net: 'E' echoes, 'D'
// discards.
func kindServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				kind := make([]byte, 1)
				if _, err := io.ReadFull(c, kind); err != nil {
					return
				}
				if kind[0] == 'E' {
					io.Copy(c, c)
				} else {
					io.Copy(io.Discard, c)
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestPingPong(t *testing.T) {
	addr := kindServer(t)
	from := time.Now().Add(20 * time.Millisecond)
	rtts, stalled, err := pingPong(context.Background(), addr, 64, from, from.Add(100*time.Millisecond), time.Second)
	if err != nil || stalled || len(rtts) == 0 {
		t.Fatalf("pingPong: %d round trips, stalled %v, %v; want some, no error", len(rtts), stalled, err)
	}
}

func TestFloodWorker(t *testing.T) {
	addr := kindServer(t)
	now := time.Now()
	for _, echo := range []bool{false, true} {
		w := floodWorker{addr: addr, size: 64 << 10, echo: echo,
			from: now.Add(20 * time.Millisecond).UnixNano(), until: now.Add(120 * time.Millisecond).UnixNano(),
			stop: now.Add(150 * time.Millisecond).UnixNano()}
		var out bytes.Buffer
		if err := w.run(&out); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), `"window_bytes"`) || strings.Contains(out.String(), `"window_bytes":0,`) ||
			strings.Contains(out.String(), `"error"`) {
			t.Errorf("echo %v: report %s; want bytes in the window and no error", echo, out.String())
		}
		now = time.Now()
	}
}

func TestSummaryVerdict(t *testing.T) {
	cfg := &config{servers: []string{"tcpkit-epoll", "control"}, floods: []int{1}, duration: time.Second,
		size: 64, floodSize: 1 << 18, reps: 1, targetKept: 0.5, targetP99: 2 * time.Millisecond}
	runs := []serverRun{
		{Server: "tcpkit-epoll", Rep: 1, Phases: []phase{
			{Rate: 10000, P99: 100 * time.Microsecond},
			{Floods: 1, Rate: 180, P99: 29 * time.Millisecond, Max: 40 * time.Millisecond},
		}},
		{Server: "control", Rep: 1, Phases: []phase{
			{Rate: 10000},
			{Floods: 1, Rate: 6000, P99: time.Millisecond},
		}},
	}
	var b bytes.Buffer
	writeSummary(&b, cfg, runs)
	out := b.String()
	for _, want := range []string{
		"| tcpkit-epoll | 1 | 10,000/s | 180/s | 1.8% | 0 | 29.0ms | 40.0ms | 100µs |",
		"**missed** (kept, p99)",
		"| control (two processes) | 1 | 10,000/s | 6,000/s | 60% |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}
