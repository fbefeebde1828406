package codec

import "testing"

func TestDelimitedSplit(t *testing.T) {
	runSplitCases(t, Delimited([]byte("\r\n"), 8), []splitCase{
		{name: "empty", data: "", wantAdv: 0},
		{name: "one frame", data: "abc\r\nd", wantAdv: 5, wantTok: tok("abc")},
		{name: "LF alone is data", data: "a\nb\r\n", wantAdv: 5, wantTok: tok("a\nb")},
		{name: "empty frame", data: "\r\n", wantAdv: 2, wantTok: tok("")},
		{name: "half a delimiter", data: "abc\r", wantAdv: 0},
		{name: "final frame at EOF", data: "abc\r", atEOF: true, wantAdv: 4, wantTok: tok("abc\r")},
		{name: "frame of exactly max", data: "123456\r\n", wantAdv: 8, wantTok: tok("123456")},
		{name: "delimiter across max", data: "1234567\r\n", wantErr: ErrFrameTooLong},
		{name: "max bytes without delimiter", data: "12345678", wantErr: ErrFrameTooLong},
	})
	runSplitCases(t, Delimited([]byte{0}, 4), []splitCase{
		{name: "NUL", data: "ab\x00cd\x00", wantAdv: 3, wantTok: tok("ab")},
		{name: "NUL over max", data: "abcd\x00", wantErr: ErrFrameTooLong},
	})
}

func TestDelimitedEncoder(t *testing.T) {
	runEncodeCases(t, DelimitedEncoder([]byte("\r\n"), 8), []encodeCase{
		{name: "frame", msg: "abc", want: "abc\r\n"},
		{name: "LF is fine", msg: "a\nb", want: "a\nb\r\n"},
		{name: "exactly max", msg: "123456", want: "123456\r\n"},
		{name: "over max", msg: "1234567", wantErr: ErrFrameTooLong},
		{name: "contains delimiter", msg: "a\r\nb", wantErr: ErrMalformed},
		{name: "ends in CR, still whole", msg: "ab\r", want: "ab\r\r\n"},
	})
	runEncodeCases(t, DelimitedEncoder([]byte("\n\n"), 8), []encodeCase{
		{name: "ends in half the delimiter", msg: "ab\n", wantErr: ErrMalformed},
	})
	runEncodeCases(t, DelimitedEncoder([]byte("aa"), 8), []encodeCase{
		{name: "overlapping delimiter", msg: "ba", wantErr: ErrMalformed},
		{name: "no overlap", msg: "ab", want: "abaa"},
	})
}

func TestDelimitedStream(t *testing.T) {
	runStreamCases(t, Delimited([]byte("--"), 6), 6, []streamCase{
		{name: "delimiter cut", in: "ab--cd--", sizes: []int{3, 3}, want: []string{"ab", "cd"}},
		{name: "dash in data", in: "a-b--", sizes: []int{2}, want: []string{"a-b"}},
		{name: "triple dash", in: "ab---c--", want: []string{"ab", "-c"}},
		{name: "too long", in: "abcdefgh--", sizes: []int{5}, wantErr: ErrFrameTooLong},
	})
}
