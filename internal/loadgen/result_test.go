package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestResultOutput checks the JSON form and the table of a result.
func TestResultOutput(t *testing.T) {
	addr := startEcho(t, "127.0.0.1:0", "")
	res, err := Run(context.Background(), Config{Addr: addr, Mode: Pipeline, Conns: 2, Count: 1000,
		Warmup: 10 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Errors[Timeout] = 2 // as if: to see errors in both forms
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"addr", "mode", "conns", "size", "depth", "elapsed_ns", "messages",
		"msgs_per_sec", "bytes_per_sec", "latency", "errors", "load_cpu_ns", "load_cpu_per_msg_ns"} {
		if _, ok := m[key]; !ok {
			t.Errorf("JSON has no %q: %s", key, b)
		}
	}
	if m["mode"] != "pipeline" || m["errors"].(map[string]any)["timeout"] != float64(2) {
		t.Errorf("JSON mode %v, errors %v", m["mode"], m["errors"])
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Messages != res.Messages || back.Errors[Timeout] != 2 || *back.Latency != *res.Latency {
		t.Errorf("JSON round trip: %+v", back)
	}
	if res.Histogram() == nil || res.Histogram().TotalCount() != res.Messages {
		t.Errorf("Histogram() does not hold the messages")
	}

	var out bytes.Buffer
	if err := res.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pipeline, 2 connections, 64-byte messages, 16 in flight", "measured",
		"after 10.0ms warmup", "msgs/s", "p99.9", "timeout 2", "load CPU"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestCheckMessage checks the wire format's verdicts.
func TestCheckMessage(t *testing.T) {
	pattern := make([]byte, 64)
	fillPattern(pattern, 7)
	msg := append([]byte(nil), pattern...)
	putHeader(msg, 3, 9)
	if v, seq := checkMessage(msg, 3, pattern, 9); v != msgOK || seq != 9 {
		t.Errorf("intact message: %v, %d", v, seq)
	}
	if v, _ := checkMessage(msg, 3, pattern, 8); v != msgOutOfSeq {
		t.Errorf("wrong sequence: %v", v)
	}
	if v, _ := checkMessage(msg, 4, pattern, 9); v != msgCorrupt {
		t.Errorf("another connection's message: %v", v)
	}
	for _, i := range []int{0, 9, 13, 16, 63} {
		bad := append([]byte(nil), msg...)
		bad[i] ^= 0x80
		if v, _ := checkMessage(bad, 3, pattern, 9); v != msgCorrupt {
			t.Errorf("byte %d flipped: %v", i, v)
		}
	}
	if s := (ErrorCounts{Reset: 1, Corrupt: 1234}).String(); s != "corrupt 1,234, reset 1" {
		t.Errorf("ErrorCounts.String() = %q", s)
	}
	if s := (ErrorCounts{}).String(); s != "none" {
		t.Errorf("empty ErrorCounts.String() = %q", s)
	}
	if len(ErrorKinds) != numKinds {
		t.Errorf("ErrorKinds lists %d kinds, want %d", len(ErrorKinds), numKinds)
	}
	if c := count(-1234567); c != "-1,234,567" {
		t.Errorf("count = %q", c)
	}
}
