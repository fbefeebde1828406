package codec

import (
	"bufio"
	"fmt"
	"io"
	"testing"
)

// benchCodecs are the decoders measured, with 64-byte messages.
var benchCodecs = []struct {
	name  string
	split bufio.SplitFunc
	enc   Encoder
	max   int
	size  int // message size
}{
	{name: "Lines", split: Lines(4096), enc: LinesEncoder(4096), max: 4096, size: 64},
	{name: "Delimited", split: Delimited([]byte("\r\n"), 4096), enc: DelimitedEncoder([]byte("\r\n"), 4096), max: 4096, size: 64},
	{name: "LengthPrefixed", split: LengthPrefixed(LengthPrefix{Size: 4}, 4096), enc: LengthPrefixedEncoder(LengthPrefix{Size: 4}, 4096), max: 4096, size: 64},
	{name: "Fixed", split: Fixed(64), enc: FixedEncoder(64), max: 64, size: 64},
	{name: "LengthPrefixed4K", split: LengthPrefixed(LengthPrefix{Size: 4}, 8192), enc: LengthPrefixedEncoder(LengthPrefix{Size: 4}, 8192), max: 8192, size: 4096},
}

// BenchmarkFramer measures the steady-state decoding of a stream of
// frames fed in data events of 16 KiB (tcpkit's default read size). One op
// is one frame: allocs/op is allocs/frame, and ns/frame is ns/op counted
// exactly.
//   - whole: each event holds whole frames only (the zero-copy path);
//   - cut:   events of exactly 16 KiB, so that frames are cut across them
//     and go through the carry-over buffer.
func BenchmarkFramer(b *testing.B) {
	for _, bc := range benchCodecs {
		stream := encodeStream(b, bc.enc, bc.size, 1024)
		frame := len(stream) / 1024
		for _, mode := range []string{"whole", "cut"} {
			chunk := 16 << 10
			if mode == "whole" {
				chunk = max(chunk/frame, 1) * frame
			}
			var chunks [][]byte
			for p := stream; len(p) > 0; p = p[min(chunk, len(p)):] {
				chunks = append(chunks, p[:min(chunk, len(p))])
			}
			b.Run(fmt.Sprintf("%s/%s", bc.name, mode), func(b *testing.B) {
				frames := 0
				f := NewFramer(bc.split, bc.max, func([]byte) { frames++ })
				b.SetBytes(int64(frame))
				b.ReportAllocs()
				b.ResetTimer()
				for frames < b.N {
					for _, p := range chunks {
						if err := f.Feed(p); err != nil {
							b.Fatal(err)
						}
					}
				}
				// The last round may deliver a few frames more than b.N:
				// count them all.
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames), "ns/frame")
			})
		}
	}
}

// loopReader returns stream, in chunks of up to 16 KiB, over and over.
type loopReader struct {
	stream []byte
	off    int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p[:min(len(p), 16<<10)], r.stream[r.off:])
	r.off = (r.off + n) % len(r.stream)
	return n, nil
}

var _ io.Reader = (*loopReader)(nil)

// BenchmarkScanner is the yardstick: bufio.Scanner with the same splits.
func BenchmarkScanner(b *testing.B) {
	for _, bc := range benchCodecs {
		stream := encodeStream(b, bc.enc, bc.size, 1024)
		b.Run(bc.name, func(b *testing.B) {
			sc := bufio.NewScanner(&loopReader{stream: stream})
			sc.Buffer(make([]byte, 32<<10), bc.max)
			sc.Split(bc.split)
			b.SetBytes(int64(len(stream) / 1024))
			b.ReportAllocs()
			for b.Loop() {
				if !sc.Scan() {
					b.Fatal(sc.Err())
				}
			}
		})
	}
}

// BenchmarkEncoder measures appending one frame to a reused buffer.
func BenchmarkEncoder(b *testing.B) {
	for _, bc := range benchCodecs {
		msg := make([]byte, bc.size)
		for i := range msg {
			msg[i] = 'a'
		}
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 2*bc.size+16)
			b.SetBytes(int64(bc.size))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = bc.enc(buf[:0], msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
