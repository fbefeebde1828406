package codec

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
)

// The fuzz tests check, for each decoder, that
//   - any chunking of the input gives the same messages and error: all at
//     once, one byte at a time, and random chunk sizes drawn from the fuzz
//     input, through a Framer, and through a bufio.Scanner;
//   - those are what a simple reference model of the format gives;
//   - encoding messages cut from the input, then decoding the stream in
//     random chunks, gives back exactly the messages that the encoder
//     accepted, and the encoder refuses exactly the messages the model
//     says it must.

// chunkReader is an io.Reader that returns its chunks one Read at a time.
type chunkReader struct{ chunks [][]byte }

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.chunks) > 0 && len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	return n, nil
}

// randomChunks cuts data into chunks of random sizes from 1 to limit.
func randomChunks(data []byte, rng *rand.Rand, limit int) [][]byte {
	var chunks [][]byte
	for len(data) > 0 {
		n := min(1+rng.IntN(limit), len(data))
		chunks = append(chunks, data[:n])
		data = data[n:]
	}
	return chunks
}

// checkDecode decodes data with split in several chunkings, and checks
// each result against the reference model's want and wantErr.
func checkDecode(t *testing.T, split bufio.SplitFunc, max int, data []byte, seed uint64, want []string, wantErr string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	ones := make([][]byte, len(data))
	for i := range data {
		ones[i] = data[i : i+1]
	}
	chunkings := map[string][][]byte{
		"one shot":     {data},
		"byte by byte": ones,
		"random":       randomChunks(data, rng, 2*max+3),
		"small random": randomChunks(data, rng, 4),
	}
	for name, chunks := range chunkings {
		// Copy the chunks, and scribble over each after use, to catch a
		// Framer that keeps a reference to its input.
		var copies [][]byte
		for _, c := range chunks {
			copies = append(copies, bytes.Clone(c))
		}
		var got []string
		f := NewFramer(split, max, func(msg []byte) { got = append(got, string(msg)) })
		var err error
		for _, c := range copies {
			if err = f.Feed(c); err != nil {
				break
			}
			if f.Buffered() > max {
				t.Fatalf("%s: Framer holds %d bytes, max %d", name, f.Buffered(), max)
			}
			for i := range c {
				c[i] = '#'
			}
		}
		if err == nil {
			err = f.End()
		}
		if !slices.Equal(got, want) || errClass(err) != wantErr {
			t.Fatalf("%s: Framer gives %q, %v\nwant %q, %s", name, got, err, want, wantErr)
		}

		sc := bufio.NewScanner(&chunkReader{chunks: slices.Clone(chunks)})
		sc.Buffer(nil, max)
		sc.Split(split)
		got = got[:0]
		for sc.Scan() {
			got = append(got, sc.Text())
		}
		if !slices.Equal(got, want) || errClass(sc.Err()) != wantErr {
			t.Fatalf("%s: bufio.Scanner gives %q, %v\nwant %q, %s", name, got, sc.Err(), want, wantErr)
		}
	}
}

// checkRoundTrip cuts data into messages of random lengths up to max+2,
// encodes each with enc, checks the encoder's verdict against refuse (the
// model's error class, "ok" if the message must be accepted), then decodes
// the stream in random chunks and checks it gives back the accepted
// messages.
func checkRoundTrip(t *testing.T, split bufio.SplitFunc, enc Encoder, max int, data []byte, seed uint64, refuse func(msg []byte) string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 2))
	var stream []byte
	var want []string
	for len(data) > 0 {
		n := min(rng.IntN(max+3), len(data))
		msg := data[:n]
		data = data[n:]
		var err error
		before := len(stream)
		stream, err = enc(stream, msg)
		if errClass(err) != refuse(msg) {
			t.Fatalf("encoding %q: %v, want %s", msg, err, refuse(msg))
		}
		if err != nil {
			if len(stream) != before {
				t.Fatalf("encoding %q failed but changed dst", msg)
			}
			continue
		}
		want = append(want, string(msg))
	}
	var got []string
	f := NewFramer(split, max, func(msg []byte) { got = append(got, string(msg)) })
	for _, c := range randomChunks(stream, rng, 2*max+3) {
		if err := f.Feed(c); err != nil {
			t.Fatalf("decoding the encoded stream %q: %v", stream, err)
		}
	}
	if err := f.End(); err != nil {
		t.Fatalf("decoding the encoded stream %q: End: %v", stream, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("round trip of %q: got %q", want, got)
	}
}

// refDelimited is the reference model of Delimited and, with lines set, of
// Lines: it finds each delimiter in the whole input, then checks sizes.
func refDelimited(data, delim []byte, max int, lines bool) ([]string, string) {
	var msgs []string
	for len(data) > 0 {
		i := bytes.Index(data, delim)
		if i < 0 {
			if len(data) >= max {
				return msgs, "too long"
			}
			i = len(data)
		} else if i+len(delim) > max {
			return msgs, "too long"
		}
		msg := data[:i]
		if lines {
			msg = bytes.TrimSuffix(msg, []byte("\r"))
		}
		msgs = append(msgs, string(msg))
		data = data[min(i+len(delim), len(data)):]
	}
	return msgs, "ok"
}

func FuzzLines(f *testing.F) {
	f.Add([]byte("hello\nworld\r\n"), uint16(8), uint64(1))
	f.Add([]byte("a\r\r\n\r\nb\r"), uint16(3), uint64(2))
	f.Add([]byte("1234567\n12345678\n"), uint16(7), uint64(3))
	f.Add([]byte("\n\n\n"), uint16(0), uint64(4))
	f.Fuzz(func(t *testing.T, data []byte, maxSeed uint16, seed uint64) {
		max := 1 + int(maxSeed%300)
		want, wantErr := refDelimited(data, []byte("\n"), max, true)
		checkDecode(t, Lines(max), max, data, seed, want, wantErr)
		checkRoundTrip(t, Lines(max), LinesEncoder(max), max, data, seed, func(msg []byte) string {
			n := len(msg) + 1
			if bytes.HasSuffix(msg, []byte("\r")) {
				n++
			}
			switch {
			case n > max:
				return "too long"
			case bytes.Contains(msg, []byte("\n")):
				return "malformed"
			}
			return "ok"
		})
	})
}

func FuzzDelimited(f *testing.F) {
	f.Add([]byte("ab\r\ncd\r\n"), []byte("\r\n"), uint16(6), uint64(1))
	f.Add([]byte("aaaaba"), []byte("aa"), uint16(3), uint64(2))
	f.Add([]byte("x\x00y\x00\x00"), []byte{0}, uint16(1), uint64(3))
	f.Add([]byte("--a---b"), []byte("--"), uint16(4), uint64(4))
	f.Fuzz(func(t *testing.T, data, delim []byte, maxSeed uint16, seed uint64) {
		if len(delim) == 0 {
			delim = []byte{0}
		}
		delim = delim[:min(len(delim), 4)]
		max := len(delim) + int(maxSeed%300)
		want, wantErr := refDelimited(data, delim, max, false)
		checkDecode(t, Delimited(delim, max), max, data, seed, want, wantErr)
		checkRoundTrip(t, Delimited(delim, max), DelimitedEncoder(delim, max), max, data, seed, func(msg []byte) string {
			switch {
			case len(msg)+len(delim) > max:
				return "too long"
			case bytes.Index(append(bytes.Clone(msg), delim...), delim) != len(msg):
				return "malformed"
			}
			return "ok"
		})
	})
}

func FuzzLengthPrefixed(f *testing.F) {
	f.Add([]byte("\x00\x03abc\x00\x00\x00\x01x"), uint8(1), false, int16(0), uint16(10), uint64(1))
	f.Add([]byte("\x06\x00\x00\x00ab"), uint8(2), true, int16(-4), uint16(20), uint64(2))
	f.Add([]byte("\xff\xff\xff\xff\xff\xff\xff\xff"), uint8(3), false, int16(0), uint16(100), uint64(3))
	f.Add([]byte("\x00\x01abc\x02"), uint8(0), false, int16(2), uint16(8), uint64(4))
	f.Add([]byte("\x01"), uint8(0), false, int16(-3), uint16(8), uint64(5))
	f.Fuzz(func(t *testing.T, data []byte, sizeSel uint8, little bool, adjust int16, maxSeed uint16, seed uint64) {
		size := []int{1, 2, 4, 8}[sizeSel%4]
		max := size + int(maxSeed%600)
		adj := int(adjust)
		if adj > max-size {
			adj %= max - size + 1
		}
		lp := LengthPrefix{Size: size, Adjust: adj}
		var order binary.ByteOrder = binary.BigEndian
		if little {
			lp.Order, order = binary.LittleEndian, binary.LittleEndian
		}
		want, wantErr := refLengthPrefixed(data, size, order, adj, max)
		checkDecode(t, LengthPrefixed(lp, max), max, data, seed, want, wantErr)
		checkRoundTrip(t, LengthPrefixed(lp, max), LengthPrefixedEncoder(lp, max), max, data, seed, func(msg []byte) string {
			switch {
			case len(msg)+size > max:
				return "too long"
			case len(msg) < adj:
				return "malformed"
			case size < 8 && len(msg)-adj >= 1<<(8*size):
				return "too long"
			}
			return "ok"
		})
	})
}

// refLengthPrefixed is the reference model of LengthPrefixed.
func refLengthPrefixed(data []byte, size int, order binary.ByteOrder, adj, max int) ([]string, string) {
	var msgs []string
	for len(data) > 0 {
		if len(data) < size {
			return msgs, "truncated"
		}
		var v uint64
		switch size {
		case 1:
			v = uint64(data[0])
		case 2:
			v = uint64(order.Uint16(data))
		case 4:
			v = uint64(order.Uint32(data))
		case 8:
			v = order.Uint64(data)
		}
		if v > 1<<40 {
			return msgs, "too long"
		}
		n := int(v) + adj
		switch {
		case n < 0:
			return msgs, "malformed"
		case size+n > max:
			return msgs, "too long"
		case len(data) < size+n:
			return msgs, "truncated"
		}
		msgs = append(msgs, string(data[size:size+n]))
		data = data[size+n:]
	}
	return msgs, "ok"
}

func FuzzFixed(f *testing.F) {
	f.Add([]byte("abcdefgh"), uint8(3), uint64(1))
	f.Add([]byte("abcdef"), uint8(2), uint64(2))
	f.Add([]byte(""), uint8(0), uint64(3))
	f.Fuzz(func(t *testing.T, data []byte, nSeed uint8, seed uint64) {
		n := 1 + int(nSeed%64)
		var want []string
		wantErr := "ok"
		for d := data; len(d) > 0; d = d[min(n, len(d)):] {
			if len(d) < n {
				wantErr = "truncated"
				break
			}
			want = append(want, string(d[:n]))
		}
		checkDecode(t, Fixed(n), n, data, seed, want, wantErr)
		checkRoundTrip(t, Fixed(n), FixedEncoder(n), n, data, seed, func(msg []byte) string {
			switch {
			case len(msg) > n:
				return "too long"
			case len(msg) < n:
				return "malformed"
			}
			return "ok"
		})
	})
}
