package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two small saved results: a closed-loop run, and an open-loop one with
// errors.
const (
	compareA = `{"addr": "127.0.0.1:8124", "network": "tcp", "mode": "ping-pong", "conns": 4, "size": 64, "depth": 1,
 "elapsed_ns": 10000000000, "messages": 200000, "msgs_per_sec": 20000, "bytes_per_sec": 1280000,
 "latency": {"count": 200000, "min_ns": 40000, "mean_ns": 90000, "p50_ns": 80000, "p90_ns": 150000,
             "p99_ns": 1000000, "p999_ns": 5000000, "max_ns": 20000000},
 "errors": {}}`
	compareB = `{"addr": "127.0.0.1:8124", "network": "tcp", "mode": "ping-pong", "conns": 4, "size": 64, "depth": 1024,
 "elapsed_ns": 10000000000, "messages": 150000, "msgs_per_sec": 15000, "bytes_per_sec": 960000,
 "latency": {"count": 150000, "min_ns": 45000, "mean_ns": 120000, "p50_ns": 100000, "p90_ns": 300000,
             "p99_ns": 2500000, "p999_ns": 6000000, "max_ns": 10000000},
 "open_loop": {"requested_msgs_per_sec": 15000, "sent_msgs_per_sec": 14990, "depth": 1024, "held": 0, "unsent": 3},
 "errors": {"timeout": 2}}`
)

// compareGolden is what bench compare prints for a.json and b.json.
const compareGolden = `                        A               B   B/A
file               a.json          b.json
address    127.0.0.1:8124  127.0.0.1:8124
mode            ping-pong       ping-pong
conns                   4               4
size                   64              64
depth                   1            1024
rate          closed loop   15,000 msgs/s
measured              10s             10s

messages          200,000         150,000  0.75
msgs/s             20,000          15,000  0.75
MB/s                  1.3             1.0  0.75
sent/s             20,000          14,990  0.75
p50                  80µs           100µs  1.25
p90                 150µs           300µs  2.00
p99                   1ms           2.5ms  2.50
p99.9                 5ms             6ms  1.20
max                  20ms            10ms  0.50
errors                  0               2   new
  timeout               0               2   new
note: the runs differ in depth, rate: the figures compare different loads
`

// TestBenchCompare sets two saved results side by side and checks the
// output word for word, then the same against itself, and the errors.
func TestBenchCompare(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{"a.json": compareA, "b.json": compareB, "bad.json": `{"messages": 3}`} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)

	r := runCLI(t, nil, "bench", "compare", "a.json", "b.json")
	if r.code != exitOK || r.stdout != compareGolden {
		t.Errorf("bench compare a.json b.json exited %d, stderr %q, printed:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, compareGolden)
	}

	r = runCLI(t, nil, "bench", "compare", "a.json", "a.json")
	for _, want := range []string{"msgs/s 20,000 20,000 1.00", "errors 0 0 ="} {
		if r.code != exitOK || !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), want) {
			t.Errorf("bench compare a.json a.json exited %d, lacks %q:\n%s", r.code, want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "note:") {
		t.Errorf("a run compared with itself has a note:\n%s", r.stdout)
	}

	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"a.json"}, exitUsage, "accepts 2 arg(s)"},
		{[]string{"a.json", "missing.json"}, exitError, "missing.json"},
		{[]string{"a.json", "bad.json"}, exitError, "bad.json: not a bench --json result"},
	} {
		r := runCLI(t, nil, append([]string{"bench", "compare"}, tt.args...)...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("bench compare %v: exit %d, stderr %q; want %d and %q", tt.args, r.code, r.stderr, tt.code, tt.want)
		}
	}
}
