package tcpkit

import "testing"

func TestReadBufPools(t *testing.T) {
	for _, tt := range []struct {
		n, class int
	}{
		{1, minBufClass}, {1024, 10}, {1025, 11}, {16 << 10, 14}, {64 << 10, 16},
		{(64 << 10) + 1, 17}, {4 << 20, maxBufClass}, {(4 << 20) + 1, -1}, {0, -1},
	} {
		if got := bufClass(tt.n); got != tt.class {
			t.Errorf("bufClass(%d) = %d, want %d", tt.n, got, tt.class)
		}
		b := getReadBuf(tt.n)
		if len(*b) != tt.n || tt.class >= 0 && cap(*b) != 1<<tt.class {
			t.Errorf("getReadBuf(%d): len %d cap %d", tt.n, len(*b), cap(*b))
		}
		putReadBuf(b)
	}
	// A buffer given back is handed out again, at the size asked for, and
	// the round trip allocates nothing.
	putReadBuf(getReadBuf(16 << 10))
	if allocs := testing.AllocsPerRun(100, func() { putReadBuf(getReadBuf(10 << 10)) }); allocs != 0 {
		t.Errorf("get and put allocate %v times", allocs)
	}
}
