package codec

import (
	"bufio"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// errClass names the kind of a framing error, so that results can be
// compared whatever sizes their messages mention.
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrFrameTooLong):
		return "too long"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	}
	return "other: " + err.Error()
}

// decode runs input through a Framer in the given chunks, then ends it, and
// returns copies of the messages and the framing error.
func decode(split func(data []byte, atEOF bool) (int, []byte, error), max int, chunks ...[]byte) ([]string, error) {
	var msgs []string
	f := NewFramer(split, max, func(msg []byte) { msgs = append(msgs, string(msg)) })
	for _, p := range chunks {
		if err := f.Feed(p); err != nil {
			return msgs, err
		}
		if f.Buffered() > max {
			panic("Framer holds more than max bytes")
		}
	}
	return msgs, f.End()
}

// splitString cuts s into chunks at the given lengths; the rest of s is the
// last chunk.
func splitString(s string, sizes ...int) [][]byte {
	var chunks [][]byte
	for _, n := range sizes {
		n = min(n, len(s))
		chunks = append(chunks, []byte(s[:n]))
		s = s[n:]
	}
	return append(chunks, []byte(s))
}

// A splitCase is one call of a split function and what it should return.
type splitCase struct {
	name    string
	data    string
	atEOF   bool
	wantAdv int
	wantTok *string // nil: no token
	wantErr error
}

func tok(s string) *string { return &s }

// runSplitCases checks each case against split.
func runSplitCases(t *testing.T, split bufio.SplitFunc, cases []splitCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			adv, token, err := split([]byte(tc.data), tc.atEOF)
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if adv != tc.wantAdv {
				t.Errorf("advance = %d, want %d", adv, tc.wantAdv)
			}
			switch {
			case tc.wantTok == nil && token != nil:
				t.Errorf("token = %q, want none", token)
			case tc.wantTok != nil && token == nil:
				t.Errorf("no token, want %q", *tc.wantTok)
			case tc.wantTok != nil && string(token) != *tc.wantTok:
				t.Errorf("token = %q, want %q", token, *tc.wantTok)
			}
		})
	}
}

// An encodeCase is one message and the frame, or error, an Encoder gives.
type encodeCase struct {
	name    string
	msg     string
	want    string
	wantErr error
}

// runEncodeCases checks each case against enc, and that an error leaves
// dst as it was.
func runEncodeCases(t *testing.T, enc Encoder, cases []encodeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("prefix")
			got, err := enc(dst, []byte(tc.msg))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if string(got) != "prefix" {
					t.Errorf("dst changed on error: %q", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if string(got) != "prefix"+tc.want {
				t.Errorf("got %q, want %q", got, "prefix"+tc.want)
			}
		})
	}
}

// A streamCase is an input, cut into chunks, and the messages and error a
// Framer should give for it.
type streamCase struct {
	name    string
	in      string
	sizes   []int // chunk lengths; the rest of in is the last chunk
	want    []string
	wantErr error
}

// runStreamCases decodes each case with a Framer, chunked as given and one
// byte at a time, and also with a bufio.Scanner.
func runStreamCases(t *testing.T, split bufio.SplitFunc, max int, cases []streamCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ones := make([]int, len(tc.in))
			for i := range ones {
				ones[i] = 1
			}
			for _, sizes := range [][]int{tc.sizes, ones} {
				got, err := decode(split, max, splitString(tc.in, sizes...)...)
				if !slices.Equal(got, tc.want) {
					t.Errorf("chunks %v: messages %q, want %q", sizes, got, tc.want)
				}
				if errClass(err) != errClass(tc.wantErr) {
					t.Errorf("chunks %v: err = %v, want %v", sizes, err, tc.wantErr)
				}
			}
			sc := bufio.NewScanner(strings.NewReader(tc.in))
			sc.Buffer(nil, max)
			sc.Split(split)
			var got []string
			for sc.Scan() {
				got = append(got, sc.Text())
			}
			if !slices.Equal(got, tc.want) || errClass(sc.Err()) != errClass(tc.wantErr) {
				t.Errorf("bufio.Scanner: %q, %v; want %q, %v", got, sc.Err(), tc.want, tc.wantErr)
			}
		})
	}
}
