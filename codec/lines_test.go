package codec

import (
	"strings"
	"testing"
)

func TestLinesSplit(t *testing.T) {
	runSplitCases(t, Lines(8), []splitCase{
		{name: "empty", data: "", wantAdv: 0},
		{name: "empty at EOF", data: "", atEOF: true, wantAdv: 0},
		{name: "LF", data: "abc\ndef", wantAdv: 4, wantTok: tok("abc")},
		{name: "CRLF", data: "abc\r\ndef", wantAdv: 5, wantTok: tok("abc")},
		{name: "only one CR dropped", data: "abc\r\r\n", wantAdv: 6, wantTok: tok("abc\r")},
		{name: "CR inside kept", data: "a\rb\n", wantAdv: 4, wantTok: tok("a\rb")},
		{name: "empty line", data: "\nabc", wantAdv: 1, wantTok: tok("")},
		{name: "empty CRLF line", data: "\r\n", wantAdv: 2, wantTok: tok("")},
		{name: "partial", data: "abc", wantAdv: 0},
		{name: "partial CR", data: "abcdef\r", wantAdv: 0},
		{name: "final line at EOF", data: "abc", atEOF: true, wantAdv: 3, wantTok: tok("abc")},
		{name: "final CR at EOF dropped", data: "abc\r", atEOF: true, wantAdv: 4, wantTok: tok("abc")},
		{name: "frame of exactly max", data: "1234567\nx", wantAdv: 8, wantTok: tok("1234567")},
		{name: "CRLF frame of exactly max", data: "123456\r\n", wantAdv: 8, wantTok: tok("123456")},
		{name: "frame of max+1", data: "12345678\n", wantErr: ErrFrameTooLong},
		{name: "CRLF frame of max+1", data: "1234567\r\n", wantErr: ErrFrameTooLong},
		{name: "max bytes without LF", data: "12345678", wantErr: ErrFrameTooLong},
		{name: "max bytes without LF at EOF", data: "12345678", atEOF: true, wantErr: ErrFrameTooLong},
		{name: "max-1 bytes at EOF", data: "1234567", atEOF: true, wantAdv: 7, wantTok: tok("1234567")},
		{name: "long data, line within max", data: "ab\n" + strings.Repeat("x", 100), wantAdv: 3, wantTok: tok("ab")},
	})
}

func TestLinesEncoder(t *testing.T) {
	runEncodeCases(t, LinesEncoder(8), []encodeCase{
		{name: "line", msg: "abc", want: "abc\n"},
		{name: "empty", msg: "", want: "\n"},
		{name: "exactly max", msg: "1234567", want: "1234567\n"},
		{name: "over max", msg: "12345678", wantErr: ErrFrameTooLong},
		{name: "ends in CR", msg: "abc\r", want: "abc\r\r\n"},
		{name: "ends in CR, over max with CRLF", msg: "123456\r", wantErr: ErrFrameTooLong},
		{name: "contains LF", msg: "a\nb", wantErr: ErrMalformed},
	})
}

func TestLinesStream(t *testing.T) {
	runStreamCases(t, Lines(8), 8, []streamCase{
		{name: "split and merged", in: "hello\nworld\n", sizes: []int{3, 5}, want: []string{"hello", "world"}},
		{name: "CRLF cut between CR and LF", in: "ab\r\ncd\r\n", sizes: []int{3}, want: []string{"ab", "cd"}},
		{name: "several in one chunk", in: "a\nb\nc\n", want: []string{"a", "b", "c"}},
		{name: "empty lines", in: "\n\r\n\n", want: []string{"", "", ""}},
		{name: "final line", in: "a\nbc", sizes: []int{1}, want: []string{"a", "bc"}},
		{name: "too long after good lines", in: "ok\n123456789\n", sizes: []int{4}, want: []string{"ok"}, wantErr: ErrFrameTooLong},
		{name: "too long final line", in: "ok\n12345678", want: []string{"ok"}, wantErr: ErrFrameTooLong},
	})
}
