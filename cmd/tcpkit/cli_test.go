package main

import (
	"runtime"
	"strings"
	"testing"
)

func TestHelp(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string // parts of the help text
	}{
		{name: "root", args: []string{"--help"},
			want: []string{"Usage:", "Examples:", "echo", "connect", "version"}},
		{name: "echo", args: []string{"echo", "--help"},
			want: []string{"tcpkit echo [ADDR]", "Examples:", "localhost:8124", ":8124",
				"EVERY interface", "--greeting", `hello\r\n`, "--max-conns", "--idle-timeout",
				"--no-delay", "--grace", "--quiet", "--log-format", "Nagle"}},
		{name: "connect", args: []string{"connect", "--help"},
			want: []string{"tcpkit connect ADDR", "Examples:", "--timeout", "-w", "--idle-timeout",
				"--crlf", "-C", "--send-only", "--recv-only", "half-closes"}},
		{name: "version", args: []string{"version", "--help"},
			want: []string{"tcpkit version", "Examples:"}},
		{name: "help command", args: []string{"help", "echo"},
			want: []string{"tcpkit echo [ADDR]", "Examples:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, tt.args...)
			if r.code != exitOK {
				t.Fatalf("exit code %d, stderr %q", r.code, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("help does not contain %q:\n%s", w, r.stdout)
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	r := runCLI(t, nil, "version")
	if r.code != exitOK {
		t.Fatalf("exit code %d, stderr %q", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "tcpkit ") || !strings.HasPrefix(lines[1], runtime.Version()) {
		t.Errorf("version printed %q, want \"tcpkit VERSION\" and the Go version", r.stdout)
	}

	r = runCLI(t, nil, "--version")
	if r.code != exitOK || r.stdout != "tcpkit "+version()+"\n" {
		t.Errorf("--version: exit %d, %q", r.code, r.stdout)
	}
}

// TestUsageErrors checks that a wrong command line exits 2 with the
// problem and where to find help.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown command", args: []string{"bogus"}, want: `unknown command "bogus"`},
		{name: "unknown flag", args: []string{"echo", "--bogus"}, want: "unknown flag: --bogus"},
		{name: "connect without address", args: []string{"connect"}, want: "accepts 1 arg"},
		{name: "echo with two addresses", args: []string{"echo", "1", "2"}, want: "accepts at most 1 arg"},
		{name: "bad log format", args: []string{"echo", "--log-format", "xml"}, want: "must be text or json"},
		{name: "bad duration", args: []string{"echo", "--grace", "soon"}, want: "--grace"},
		{name: "negative max-conns", args: []string{"echo", "--max-conns", "-1"}, want: "--max-conns"},
		{name: "negative max-conns-per-ip", args: []string{"echo", "--max-conns-per-ip", "-1"}, want: "--max-conns-per-ip"},
		{name: "negative accept-rate", args: []string{"echo", "--accept-rate", "-5"}, want: "--accept-rate"},
		{name: "bad allow prefix", args: []string{"echo", "--allow", "10.0.0.0/33"}, want: `--allow "10.0.0.0/33": not an address prefix`},
		{name: "bad deny address", args: []string{"echo", "--deny", "127.0.0.1,localhost"}, want: `--deny "localhost"`},
		{name: "send-only and recv-only", args: []string{"connect", "--send-only", "--recv-only", "x:1"},
			want: "exclude each other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, tt.args...)
			if r.code != exitUsage {
				t.Errorf("exit code %d, want %d", r.code, exitUsage)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tt.want)
			}
		})
	}
}
