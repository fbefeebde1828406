package loadgen

import (
	"context"
	"errors"
	"testing"
	"time"
)

// checkClean fails t unless res reports no error and sane figures.
func checkClean(t *testing.T, res *Result, wantMsgs int64) {
	t.Helper()
	if n := res.Errors.Total(); n != 0 {
		t.Errorf("errors %v: %q", res.Errors, res.ErrorSamples)
	}
	if res.Messages < wantMsgs {
		t.Errorf("Messages = %d, want at least %d", res.Messages, wantMsgs)
	}
	if res.Elapsed <= 0 || res.MsgsPerSec <= 0 || res.BytesPerSec != res.MsgsPerSec*float64(res.Size) {
		t.Errorf("Elapsed %v, MsgsPerSec %v, BytesPerSec %v: not sane", res.Elapsed, res.MsgsPerSec, res.BytesPerSec)
	}
	if res.Mode == Stream {
		if res.Latency != nil {
			t.Errorf("stream mode reported a latency: %+v", res.Latency)
		}
		return
	}
	l := res.Latency
	switch {
	case l == nil:
		t.Fatal("no latency")
	case res.Open == nil && l.Count != res.Messages:
		t.Errorf("latency count %d, messages %d", l.Count, res.Messages)
	case !(0 < l.Min && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max):
		t.Errorf("latency percentiles out of order: %+v", l)
	case l.Max > 5*time.Second:
		t.Errorf("latency max %v on loopback", l.Max)
	}
}

// TestModes runs every mode briefly against tcpkit's echo server, over TCP
// and a Unix socket, and expects no error.
func TestModes(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = unixAddr(t)
			}
			addr = startEcho(t, addr, "")
			tests := []struct {
				name string
				cfg  Config
				want int64
			}{
				{"ping-pong", Config{Mode: PingPong, Conns: 4, Size: 64, Count: 2000, Warmup: 20 * time.Millisecond}, 2000},
				{"ping-pong-4KiB", Config{Mode: PingPong, Conns: 2, Size: 4096, Count: 500}, 500},
				{"pipeline", Config{Mode: Pipeline, Conns: 3, Size: 100, Depth: 8, Count: 3000}, 3000},
				{"stream", Config{Mode: Stream, Conns: 2, Size: 512, Duration: 150 * time.Millisecond}, 1000},
				{"stream-count", Config{Mode: Stream, Conns: 2, Size: 64, Count: 5000}, 5000},
				{"connect", Config{Mode: Connect, Conns: 4, Size: 64, Count: 200}, 200},
				{"duration", Config{Mode: PingPong, Conns: 2, Size: 64, Duration: 150 * time.Millisecond}, 100},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					cfg := tt.cfg
					cfg.Addr = addr
					cfg.Timeout = 5 * time.Second
					res, err := Run(context.Background(), cfg, nil)
					if err != nil {
						t.Fatal(err)
					}
					checkClean(t, res, tt.want)
					if cfg.Duration > 0 && (res.Elapsed < cfg.Duration || res.Elapsed > cfg.Duration+time.Second) {
						t.Errorf("Elapsed %v for a Duration of %v", res.Elapsed, cfg.Duration)
					}
				})
			}
			t.Run("idle", func(t *testing.T) {
				res, err := Run(context.Background(), Config{Addr: addr, Mode: Idle, Conns: 40, Size: 64,
					Duration: 100 * time.Millisecond}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if res.Errors.Total() != 0 {
					t.Errorf("errors %v: %q", res.Errors, res.ErrorSamples)
				}
				if res.Idle == nil || res.Idle.Established != 40 || res.Idle.Alive != 40 || res.Messages != 80 {
					t.Errorf("idle: %+v, messages %d; want 40 established and alive, 80 messages", res.Idle, res.Messages)
				}
				if res.Latency == nil || res.Latency.Count != 40 {
					t.Errorf("idle latency %+v, want 40 open times", res.Latency)
				}
			})
		})
	}
}

// TestGreeting checks that an expected greeting is read and checked, and
// that a greeting nobody expects is caught as corrupt data.
func TestGreeting(t *testing.T) {
	addr := startEcho(t, "127.0.0.1:0", "hello\r\n")
	t.Run("expected", func(t *testing.T) {
		for _, mode := range []Mode{PingPong, Pipeline, Stream, Connect} {
			res, err := Run(context.Background(), Config{Addr: addr, Mode: mode, Conns: 2, Count: 200,
				Greeting: []byte("hello\r\n")}, nil)
			if err != nil {
				t.Fatal(mode, err)
			}
			checkClean(t, res, 200)
		}
	})
	t.Run("wrong", func(t *testing.T) {
		_, err := Run(context.Background(), Config{Addr: addr, Conns: 2, Count: 10, Greeting: []byte("howdy\r\n")}, nil)
		var f *failure
		if !errors.As(err, &f) || f.kind != Greeting || !errors.Is(err, ErrNoConnection) {
			t.Fatalf("err = %v, want ErrNoConnection with a greeting failure", err)
		}
	})
	t.Run("unexpected", func(t *testing.T) {
		res, err := Run(context.Background(), Config{Addr: addr, Conns: 1, Duration: 100 * time.Millisecond}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors[Corrupt] == 0 {
			t.Errorf("errors %v, want corrupt: the greeting came before the echo", res.Errors)
		}
	})
}

// TestContextCancel ends a run from its context: during the measured
// window the result comes back marked Interrupted.
func TestContextCancel(t *testing.T) {
	addr := startEcho(t, "127.0.0.1:0", "")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, Config{Addr: addr, Conns: 2, Duration: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || time.Since(start) > 5*time.Second {
		t.Errorf("Interrupted %v after %v", res.Interrupted, time.Since(start))
	}
	checkClean(t, res, 1)

	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Run(ctx, Config{Addr: addr, Conns: 2, Warmup: time.Minute}, nil); err != context.DeadlineExceeded {
		t.Errorf("cancelled in warmup: err = %v, want context.DeadlineExceeded", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Run(ctx, Config{Addr: addr, Mode: Idle, Conns: 3, Duration: time.Minute}, nil); err != context.DeadlineExceeded {
		t.Errorf("cancelled idle run: err = %v, want context.DeadlineExceeded", err)
	}
}

// TestConfigErrors checks that a bad Config is refused before anything is
// dialled.
func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Addr: "127.0.0.1:99999"},
		{Addr: "127.0.0.1:1", Mode: "flood"},
		{Addr: "127.0.0.1:1", Size: 8},
		{Addr: "127.0.0.1:1", Conns: -1},
		{Addr: "127.0.0.1:1", Mode: Pipeline, Depth: 1024, Size: 1 << 20},
		{Addr: "/tmp/x.sock", SourceIPs: LoopbackSources(2)},
	} {
		if _, err := Run(context.Background(), cfg, nil); err == nil {
			t.Errorf("Run(%+v) succeeded", cfg)
		}
	}
}
