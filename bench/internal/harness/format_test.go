package harness

import (
	"fmt"
	"math"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		name string
		q    float64
		want time.Duration
	}{
		{name: "p50", q: 0.5, want: 50 * time.Millisecond},
		{name: "p99", q: 0.99, want: 99 * time.Millisecond},
		{name: "max", q: 1, want: 100 * time.Millisecond},
		{name: "min", q: 0, want: time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(s, tc.q); got != tc.want {
				t.Errorf("Percentile(1..100ms, %v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
	if got := Percentile(nil, 0.5); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		name, got, want string
	}{
		{name: "Num", got: Num(1234567.4), want: "1,234,567"},
		{name: "Num small", got: Num(999), want: "999"},
		{name: "Num negative", got: Num(-1234), want: "-1,234"},
		{name: "Num NaN", got: Num(math.NaN()), want: "–"},
		{name: "Dur µs", got: Dur(61500 * time.Nanosecond), want: "61.5µs"},
		{name: "Dur ms", got: Dur(29 * time.Millisecond), want: "29.0ms"},
		{name: "Dur s", got: Dur(1500 * time.Millisecond), want: "1.50s"},
		{name: "Bytes", got: Bytes(3 << 20), want: "3.00 MiB"},
		{name: "Bytes B", got: Bytes(512), want: "512 B"},
		{name: "Pct", got: Pct(0.018), want: "1.8%"},
		{name: "Pct big", got: Pct(0.93), want: "93%"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if m := Median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("Median = %v, want 2.5", m)
	}
}

func TestFields(t *testing.T) {
	f := Fields("ready addr=127.0.0.1:1 debug=127.0.0.1:2 junk")
	if f["addr"] != "127.0.0.1:1" || f["debug"] != "127.0.0.1:2" || len(f) != 2 {
		t.Errorf("Fields = %v", f)
	}
}

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
	}{
		{in: "1", want: []int{1}},
		{in: "0-2,5", want: []int{0, 1, 2, 5}},
	} {
		got, err := ParseCPUList(tc.in)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := ParseCPUList("x"); err == nil {
		t.Error("ParseCPUList(x): no error")
	}
}
