package codec

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestLengthPrefixedSplit(t *testing.T) {
	t.Run("uint16 big-endian", func(t *testing.T) {
		runSplitCases(t, LengthPrefixed(LengthPrefix{Size: 2}, 10), []splitCase{
			{name: "empty", data: ""},
			{name: "half a header", data: "\x00"},
			{name: "half a header at EOF", data: "\x00", atEOF: true, wantErr: io.ErrUnexpectedEOF},
			{name: "header only", data: "\x00\x03ab"},
			{name: "header only at EOF", data: "\x00\x03ab", atEOF: true, wantErr: io.ErrUnexpectedEOF},
			{name: "frame", data: "\x00\x03abcd", wantAdv: 5, wantTok: tok("abc")},
			{name: "empty payload", data: "\x00\x00", wantAdv: 2, wantTok: tok("")},
			{name: "exactly max", data: "\x00\x0812345678", wantAdv: 10, wantTok: tok("12345678")},
			{name: "over max, told by the header", data: "\x00\x09", wantErr: ErrFrameTooLong},
			{name: "huge", data: "\xff\xff", wantErr: ErrFrameTooLong},
		})
	})
	t.Run("uint32 little-endian", func(t *testing.T) {
		runSplitCases(t, LengthPrefixed(LengthPrefix{Size: 4, Order: binary.LittleEndian}, 1<<20), []splitCase{
			{name: "frame", data: "\x02\x00\x00\x00hi", wantAdv: 6, wantTok: tok("hi")},
			{name: "4 GiB rejected before the payload", data: "\xff\xff\xff\xff", wantErr: ErrFrameTooLong},
		})
	})
	t.Run("uint8 counts itself", func(t *testing.T) {
		runSplitCases(t, LengthPrefixed(LengthPrefix{Size: 1, Adjust: -1}, 8), []splitCase{
			{name: "frame", data: "\x03ab", wantAdv: 3, wantTok: tok("ab")},
			{name: "header only", data: "\x01", wantAdv: 1, wantTok: tok("")},
			{name: "shorter than itself", data: "\x00", wantErr: ErrMalformed},
			{name: "over max", data: "\x09", wantErr: ErrFrameTooLong},
		})
	})
	t.Run("uint64 with positive adjust", func(t *testing.T) {
		// A header that leaves out a 2-byte trailer.
		runSplitCases(t, LengthPrefixed(LengthPrefix{Size: 8, Adjust: 2}, 16), []splitCase{
			{name: "frame", data: "\x00\x00\x00\x00\x00\x00\x00\x01abc", wantAdv: 11, wantTok: tok("abc")},
			{name: "largest", data: "\x00\x00\x00\x00\x00\x00\x00\x06" + strings.Repeat("x", 8), wantAdv: 16, wantTok: tok(strings.Repeat("x", 8))},
			{name: "over max", data: "\x00\x00\x00\x00\x00\x00\x00\x07", wantErr: ErrFrameTooLong},
			{name: "2^64-1", data: "\xff\xff\xff\xff\xff\xff\xff\xff", wantErr: ErrFrameTooLong},
		})
	})
}

func TestLengthPrefixedEncoder(t *testing.T) {
	t.Run("uint16", func(t *testing.T) {
		runEncodeCases(t, LengthPrefixedEncoder(LengthPrefix{Size: 2}, 10), []encodeCase{
			{name: "frame", msg: "abc", want: "\x00\x03abc"},
			{name: "empty", msg: "", want: "\x00\x00"},
			{name: "exactly max", msg: "12345678", want: "\x00\x0812345678"},
			{name: "over max", msg: "123456789", wantErr: ErrFrameTooLong},
		})
	})
	t.Run("little-endian counts itself", func(t *testing.T) {
		runEncodeCases(t, LengthPrefixedEncoder(LengthPrefix{Size: 4, Order: binary.LittleEndian, Adjust: -4}, 100), []encodeCase{
			{name: "frame", msg: "ab", want: "\x06\x00\x00\x00ab"},
		})
	})
	t.Run("uint8 with max beyond its reach", func(t *testing.T) {
		runEncodeCases(t, LengthPrefixedEncoder(LengthPrefix{Size: 1}, 1000), []encodeCase{
			{name: "255 fits", msg: strings.Repeat("x", 255), want: "\xff" + strings.Repeat("x", 255)},
			{name: "256 does not fit the header", msg: strings.Repeat("x", 256), wantErr: ErrFrameTooLong},
		})
	})
	t.Run("positive adjust", func(t *testing.T) {
		runEncodeCases(t, LengthPrefixedEncoder(LengthPrefix{Size: 2, Adjust: 2}, 100), []encodeCase{
			{name: "frame", msg: "abc", want: "\x00\x01abc"},
			{name: "shorter than adjust", msg: "a", wantErr: ErrMalformed},
		})
	})
}

func TestLengthPrefixedStream(t *testing.T) {
	lp := LengthPrefix{Size: 2}
	runStreamCases(t, LengthPrefixed(lp, 8), 8, []streamCase{
		{name: "header cut", in: "\x00\x02ab\x00\x01c", sizes: []int{1, 4}, want: []string{"ab", "c"}},
		{name: "truncated", in: "\x00\x02ab\x00\x05c", want: []string{"ab"}, wantErr: io.ErrUnexpectedEOF},
		{name: "too long after good frame", in: "\x00\x01a\x01\x00", want: []string{"a"}, wantErr: ErrFrameTooLong},
	})
}

func TestLengthPrefixInvalid(t *testing.T) {
	cases := []struct {
		name string
		lp   LengthPrefix
		max  int
	}{
		{name: "zero size", lp: LengthPrefix{}, max: 10},
		{name: "size 3", lp: LengthPrefix{Size: 3}, max: 10},
		{name: "max below header", lp: LengthPrefix{Size: 4}, max: 3},
		{name: "adjust beyond max", lp: LengthPrefix{Size: 4, Adjust: 7}, max: 10},
		{name: "adjust too negative", lp: LengthPrefix{Size: 4, Adjust: -(1 << 33)}, max: 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for name, f := range map[string]func(){
				"split":   func() { LengthPrefixed(tc.lp, tc.max) },
				"encoder": func() { LengthPrefixedEncoder(tc.lp, tc.max) },
			} {
				if !panics(f) {
					t.Errorf("%s: no panic", name)
				}
			}
		})
	}
}

// panics reports whether f panics.
func panics(f func()) (did bool) {
	defer func() { did = recover() != nil }()
	f()
	return false
}

func TestLengthPrefixedErrorSizes(t *testing.T) {
	split := LengthPrefixed(LengthPrefix{Size: 4}, 1024)
	_, _, err := split([]byte("\xff\xff\xff\xff"), false)
	if !errors.Is(err, ErrFrameTooLong) || !strings.Contains(err.Error(), "4294967295") || !strings.Contains(err.Error(), "1024") {
		t.Errorf("err = %v; want ErrFrameTooLong naming the header value and max", err)
	}
}
