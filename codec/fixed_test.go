package codec

import (
	"io"
	"testing"
)

func TestFixedSplit(t *testing.T) {
	runSplitCases(t, Fixed(3), []splitCase{
		{name: "empty", data: ""},
		{name: "empty at EOF", data: "", atEOF: true},
		{name: "short", data: "ab"},
		{name: "short at EOF", data: "ab", atEOF: true, wantErr: io.ErrUnexpectedEOF},
		{name: "frame", data: "abcd", wantAdv: 3, wantTok: tok("abc")},
	})
}

func TestFixedEncoder(t *testing.T) {
	runEncodeCases(t, FixedEncoder(3), []encodeCase{
		{name: "frame", msg: "abc", want: "abc"},
		{name: "long", msg: "abcd", wantErr: ErrFrameTooLong},
		{name: "short", msg: "ab", wantErr: ErrMalformed},
	})
}

func TestFixedStream(t *testing.T) {
	runStreamCases(t, Fixed(3), 3, []streamCase{
		{name: "cut anywhere", in: "abcdefghi", sizes: []int{1, 4, 2}, want: []string{"abc", "def", "ghi"}},
		{name: "truncated", in: "abcde", want: []string{"abc"}, wantErr: io.ErrUnexpectedEOF},
	})
}

func TestInvalidArguments(t *testing.T) {
	cases := []struct {
		name string
		f    func()
	}{
		{name: "Lines(0)", f: func() { Lines(0) }},
		{name: "LinesEncoder(0)", f: func() { LinesEncoder(0) }},
		{name: "Delimited empty", f: func() { Delimited(nil, 4) }},
		{name: "Delimited over max", f: func() { Delimited([]byte("abc"), 2) }},
		{name: "DelimitedEncoder empty", f: func() { DelimitedEncoder(nil, 4) }},
		{name: "Fixed(0)", f: func() { Fixed(0) }},
		{name: "FixedEncoder(0)", f: func() { FixedEncoder(0) }},
		{name: "NewFramer nil split", f: func() { NewFramer(nil, 1, func([]byte) {}) }},
		{name: "NewFramer nil onMessage", f: func() { NewFramer(Fixed(1), 1, nil) }},
		{name: "NewFramer max 0", f: func() { NewFramer(Fixed(1), 0, func([]byte) {}) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !panics(tc.f) {
				t.Error("no panic")
			}
		})
	}
}
