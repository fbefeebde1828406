package main

import (
	"strings"
	"testing"
)

func TestUnescape(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string // a part of the error; "" for none
	}{
		{name: "default greeting", in: `hello\r\n`, want: "hello\r\n"},
		{name: "empty", in: ``, want: ""},
		{name: "plain", in: `Echo server`, want: "Echo server"},
		{name: "tab", in: `a\tb`, want: "a\tb"},
		{name: "backslash", in: `C:\\dir`, want: `C:\dir`},
		{name: "escaped backslash before n", in: `\\n`, want: `\n`},
		{name: "hex lower", in: `\x1b[1m`, want: "\x1b[1m"},
		{name: "hex upper", in: `\xFF\x00`, want: "\xff\x00"},
		{name: "utf-8 passes through", in: `héllo\n`, want: "héllo\n"},
		{name: "unknown escape", in: `a\qb`, wantErr: `unknown escape \q`},
		{name: "unknown escape of a multibyte rune", in: `\é`, wantErr: `unknown escape \é`},
		{name: "trailing backslash", in: `abc\`, wantErr: "trailing backslash"},
		{name: "short hex", in: `\x4`, wantErr: `bad escape \x4`},
		{name: "hex at end", in: `ab\x`, wantErr: `bad escape \x`},
		{name: "bad hex digit", in: `\xg0`, wantErr: `bad escape \xg0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := unescape(tt.in)
			switch {
			case tt.wantErr != "" && err == nil:
				t.Fatalf("unescape(%q) = %q, want an error with %q", tt.in, got, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("unescape(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unescape(%q): %v", tt.in, err)
			case tt.wantErr == "" && string(got) != tt.want:
				t.Fatalf("unescape(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestGreetingFlagError checks that a bad escape is a usage error that
// names the flag.
func TestGreetingFlagError(t *testing.T) {
	r := runCLI(t, nil, "echo", "--greeting", `hi\q`, "127.0.0.1:0")
	if r.code != exitUsage {
		t.Errorf("exit code %d, want %d", r.code, exitUsage)
	}
	for _, want := range []string{"--greeting", `unknown escape \q`, "tcpkit echo --help"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q does not contain %q", r.stderr, want)
		}
	}
}

func TestToCRLF(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string // the input, as read
		want   string
	}{
		{name: "lines", chunks: []string{"a\nb\n"}, want: "a\r\nb\r\n"},
		{name: "already CRLF", chunks: []string{"a\r\nb"}, want: "a\r\nb"},
		{name: "CR and LF split across reads", chunks: []string{"a\r", "\nb\n"}, want: "a\r\nb\r\n"},
		{name: "LF first in a read", chunks: []string{"a", "\n"}, want: "a\r\n"},
		{name: "lone CR", chunks: []string{"a\rb"}, want: "a\rb"},
		{name: "blank lines", chunks: []string{"\n\n"}, want: "\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []byte
			prevCR := false
			for _, c := range tt.chunks {
				var out []byte
				out, prevCR = toCRLF(nil, []byte(c), prevCR)
				got = append(got, out...)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
