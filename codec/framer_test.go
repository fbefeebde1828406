package codec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// within reports whether msg lies inside p's backing array.
func within(msg, p []byte) bool {
	if len(msg) == 0 || len(p) == 0 {
		return true
	}
	m, s := uintptr(unsafe.Pointer(unsafe.SliceData(msg))), uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	return m >= s && m+uintptr(len(msg)) <= s+uintptr(len(p))
}

func TestFramerZeroCopy(t *testing.T) {
	var p []byte
	var got []string
	var copied int
	f := NewFramer(Lines(64), 64, func(msg []byte) {
		got = append(got, string(msg))
		if !within(msg, p) {
			copied++
		}
	})
	p = []byte("one\ntwo\nthr")
	if err := f.Feed(p); err != nil {
		t.Fatalf("Feed(%q): %v", p, err)
	}
	if copied != 0 {
		t.Errorf("%d whole frames were copied", copied)
	}
	p = []byte("ee\nfour\n")
	if err := f.Feed(p); err != nil {
		t.Fatalf("Feed(%q): %v", p, err)
	}
	if copied != 1 {
		t.Errorf("%d frames not in the chunk, want 1 (the frame cut across chunks)", copied)
	}
	if want := []string{"one", "two", "three", "four"}; !slices.Equal(got, want) {
		t.Errorf("messages %q, want %q", got, want)
	}
}

func TestFramerCarryOverBounded(t *testing.T) {
	cases := []struct {
		name  string
		split bufio.SplitFunc
		max   int
		in    string
	}{
		{name: "Lines", split: Lines(100), max: 100, in: strings.Repeat("x", 1000) + "\n"},
		{name: "bufio.ScanLines bounded by the Framer", split: bufio.ScanLines, max: 100, in: strings.Repeat("x", 1000) + "\n"},
		{name: "Delimited", split: Delimited([]byte("||"), 100), max: 100, in: strings.Repeat("|", 1) + strings.Repeat("x", 1000)},
	}
	for _, tc := range cases {
		for _, chunk := range []int{1, 7, 64, 99, 100, 101, 4096} {
			var got []string
			f := NewFramer(tc.split, tc.max, func(msg []byte) { got = append(got, string(msg)) })
			var err error
			in := []byte(tc.in)
			for len(in) > 0 && err == nil {
				n := min(chunk, len(in))
				err = f.Feed(in[:n])
				in = in[n:]
				if f.Buffered() > tc.max || cap(f.buf) > tc.max {
					t.Fatalf("%s, chunks of %d: holds %d bytes (cap %d), max %d", tc.name, chunk, f.Buffered(), cap(f.buf), tc.max)
				}
			}
			if !errors.Is(err, ErrFrameTooLong) || len(got) != 0 {
				t.Errorf("%s, chunks of %d: got %q, %v; want ErrFrameTooLong", tc.name, chunk, got, err)
			}
			if consumed := len(tc.in) - len(in); consumed > tc.max+chunk {
				t.Errorf("%s, chunks of %d: error after %d bytes, want by max + one chunk", tc.name, chunk, consumed)
			}
		}
	}
}

func TestFramerHugeHeaderAllocatesNothing(t *testing.T) {
	// A 4 GiB announcement over max is refused with the header alone.
	f := NewFramer(LengthPrefixed(LengthPrefix{Size: 4}, 1<<20), 1<<20, func([]byte) {})
	if err := f.Feed([]byte{0xff, 0xff}); err != nil || f.Buffered() != 2 {
		t.Fatalf("half a header: %v, %d buffered", err, f.Buffered())
	}
	if err := f.Feed([]byte{0xff, 0xff, 'x'}); !errors.Is(err, ErrFrameTooLong) {
		t.Fatalf("Feed = %v, want ErrFrameTooLong", err)
	}
	if f.buf != nil {
		t.Errorf("buffer kept after the error")
	}

	// Within a large max, the buffer grows with the data that has come,
	// not with the size announced.
	const max = 1 << 40
	f = NewFramer(LengthPrefixed(LengthPrefix{Size: 8}, max), max, func([]byte) {})
	chunk := make([]byte, 1000)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err1 := f.Feed([]byte("\x00\x00\x00\x01\x00\x00\x00\x00abc"))
	err2 := f.Feed(chunk)
	runtime.ReadMemStats(&after)
	if err1 != nil || err2 != nil {
		t.Fatalf("Feed: %v, %v; want no error within max", err1, err2)
	}
	if f.Buffered() != 1011 {
		t.Errorf("%d bytes buffered, want all 1011 fed", f.Buffered())
	}
	if cap(f.buf) > 4096 {
		t.Errorf("buffer cap %d after 1011 bytes of a 4 GiB frame", cap(f.buf))
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("%d bytes allocated for a 4 GiB frame's first KiB", n)
	}
}

func TestFramerZeroAllocs(t *testing.T) {
	lp := LengthPrefix{Size: 4}
	cases := []struct {
		name  string
		split bufio.SplitFunc
		enc   Encoder
		max   int
	}{
		{name: "Lines", split: Lines(256), enc: LinesEncoder(256), max: 256},
		{name: "Delimited", split: Delimited([]byte("\r\n"), 256), enc: DelimitedEncoder([]byte("\r\n"), 256), max: 256},
		{name: "LengthPrefixed", split: LengthPrefixed(lp, 256), enc: LengthPrefixedEncoder(lp, 256), max: 256},
		{name: "Fixed", split: Fixed(64), enc: FixedEncoder(64), max: 64},
	}
	const size, count = 64, 100
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stream := encodeStream(t, tc.enc, size, count)
			want := streamMessages(size, count)
			// onMessage checks each message against the one expected next,
			// without allocating; the counts are checked after each run.
			var n, bad int
			var firstBad string
			f := NewFramer(tc.split, tc.max, func(msg []byte) {
				if !bytes.Equal(msg, want[n%count]) {
					if bad == 0 {
						firstBad = fmt.Sprintf("message %d is %q, want %q", n, msg, want[n%count])
					}
					bad++
				}
				n++
			})
			feed := func(chunk int) {
				for p := stream; len(p) > 0; p = p[min(chunk, len(p)):] {
					if err := f.Feed(p[:min(chunk, len(p))]); err != nil {
						t.Fatalf("chunks of %d: Feed: %v", chunk, err)
					}
				}
			}
			for _, chunk := range []int{len(stream), 1000, 7} {
				n, bad = 0, 0
				feed(len(stream)) // warm up: the carry-over buffer reaches its size
				const runs = 10
				allocs := testing.AllocsPerRun(runs, func() { feed(chunk) })
				if allocs != 0 {
					t.Errorf("chunks of %d: %v allocations per %d frames, want 0", chunk, allocs, count)
				}
				// The warm-up, AllocsPerRun's own warm-up run, then the runs:
				// each delivers every message of the stream, in order.
				if wantN := (2 + runs) * count; n != wantN || bad != 0 {
					t.Errorf("chunks of %d: %d messages, %d of them wrong, want %d (%s)", chunk, n, bad, wantN, firstBad)
				}
				if f.Buffered() != 0 {
					t.Errorf("chunks of %d: %d bytes left buffered after whole frames", chunk, f.Buffered())
				}
			}
		})
	}
}

// encodeStream encodes the count messages of streamMessages(size, count)
// and returns the stream.
func encodeStream(tb testing.TB, enc Encoder, size, count int) []byte {
	tb.Helper()
	var stream []byte
	for _, msg := range streamMessages(size, count) {
		var err error
		if stream, err = enc(stream, msg); err != nil {
			tb.Fatal(err)
		}
	}
	return stream
}

// streamMessages returns count messages of size bytes: "aaa...", "bbb...",
// and so on, so that a message lost or repeated shows.
func streamMessages(size, count int) [][]byte {
	msgs := make([][]byte, count)
	for i := range msgs {
		msgs[i] = bytes.Repeat([]byte{'a' + byte(i%26)}, size)
	}
	return msgs
}

func TestFramerSplitConventions(t *testing.T) {
	cases := []struct {
		name    string
		split   bufio.SplitFunc
		chunks  []string
		want    []string
		wantErr error
	}{
		{
			name: "final token stops the input",
			split: func(data []byte, atEOF bool) (int, []byte, error) {
				if i := bytes.IndexByte(data, '.'); i >= 0 {
					return i + 1, data[:i], bufio.ErrFinalToken
				}
				return Lines(100)(data, atEOF)
			},
			chunks: []string{"a\nb", ".c\n", "d\n"},
			want:   []string{"a", "b"},
		},
		{
			name:    "advance too far",
			split:   func(data []byte, atEOF bool) (int, []byte, error) { return len(data) + 1, nil, nil },
			chunks:  []string{"abc"},
			wantErr: bufio.ErrAdvanceTooFar,
		},
		{
			name:    "negative advance",
			split:   func(data []byte, atEOF bool) (int, []byte, error) { return -1, nil, nil },
			chunks:  []string{"abc"},
			wantErr: bufio.ErrNegativeAdvance,
		},
		{
			name:    "no progress",
			split:   func(data []byte, atEOF bool) (int, []byte, error) { return 0, data[:0], nil },
			chunks:  []string{"abc"},
			want:    slices.Repeat([]string{""}, maxEmptyTokens),
			wantErr: errNoProgress,
		},
		{
			name:    "split's own error",
			split:   func(data []byte, atEOF bool) (int, []byte, error) { return 0, nil, ErrMalformed },
			chunks:  []string{"abc"},
			wantErr: ErrMalformed,
		},
		{
			name: "skipping input",
			split: func(data []byte, atEOF bool) (int, []byte, error) {
				return bufio.ScanWords(data, atEOF)
			},
			chunks: []string{"  a", "b  c", "d e "},
			want:   []string{"ab", "cd", "e"},
		},
		{
			// Needs 4 bytes to start, then hands out one byte at a time:
			// frames end inside the bytes carried over.
			name: "frame inside the carry-over",
			split: func(data []byte, atEOF bool) (int, []byte, error) {
				if len(data) < 4 && !atEOF {
					return 0, nil, nil
				}
				if len(data) == 0 {
					return 0, nil, nil
				}
				return 1, data[:1], nil
			},
			chunks: []string{"abc", "def", "g"},
			want:   []string{"a", "b", "c", "d", "e", "f", "g"},
		},
		{
			name:    "unterminated frame at EOF",
			split:   func(data []byte, atEOF bool) (int, []byte, error) { return 0, nil, nil },
			chunks:  []string{"abc"},
			wantErr: errTruncated,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var chunks [][]byte
			for _, c := range tc.chunks {
				chunks = append(chunks, []byte(c))
			}
			got, err := decode(tc.split, 100, chunks...)
			if !slices.Equal(got, tc.want) {
				t.Errorf("messages %q, want %q", got, tc.want)
			}
			if tc.wantErr == errTruncated {
				if errClass(err) != "truncated" {
					t.Errorf("err = %v, want an unexpected EOF", err)
				}
			} else if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// errTruncated stands for any error that wraps io.ErrUnexpectedEOF.
var errTruncated = errors.New("truncated")

func TestFramerSpent(t *testing.T) {
	var got []string
	f := NewFramer(Lines(4), 4, func(msg []byte) { got = append(got, string(msg)) })
	err := f.Feed([]byte("a\nbcdef\ng\n"))
	if !errors.Is(err, ErrFrameTooLong) || !slices.Equal(got, []string{"a"}) {
		t.Fatalf("Feed: %q, %v", got, err)
	}
	if err2 := f.Feed([]byte("h\n")); err2 != err {
		t.Errorf("second Feed = %v, want the same error", err2)
	}
	if err2 := f.End(); err2 != err || f.Err() != err {
		t.Errorf("End = %v, Err = %v, want the same error", err2, f.Err())
	}
	if len(got) != 1 {
		t.Errorf("messages after the error: %q", got)
	}

	f = NewFramer(Lines(4), 4, func([]byte) {})
	if err := f.End(); err != nil {
		t.Fatal(err)
	}
	if err := f.Feed([]byte("a\n")); err == nil {
		t.Error("Feed after End: no error")
	}
}

// TestFramerLimitIsChunkingIndependent checks that a Framer whose max is
// below its split's gives the same outcome however the input is cut.
func TestFramerLimitIsChunkingIndependent(t *testing.T) {
	in := "abc\nabcdefgh\nx\n"
	for _, max := range []int{3, 4, 5, 9, 10, 100} {
		want, wantErr := decode(bufio.ScanLines, max, []byte(in))
		for chunk := 1; chunk <= len(in); chunk++ {
			var chunks [][]byte
			for s := in; len(s) > 0; s = s[min(chunk, len(s)):] {
				chunks = append(chunks, []byte(s[:min(chunk, len(s))]))
			}
			got, err := decode(bufio.ScanLines, max, chunks...)
			if !slices.Equal(got, want) || errClass(err) != errClass(wantErr) {
				t.Errorf("max %d, chunks of %d: %q, %v; one shot: %q, %v", max, chunk, got, err, want, wantErr)
			}
		}
	}
}
