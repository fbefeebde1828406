package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tcpkit/tcpkit/internal/testenv"
)

// TestSystemdUnits checks deploy/systemd: systemd-analyze verifies the
// units (with ExecStart pointed at a binary that exists), and the command
// line of ExecStart is one tcpkit accepts.
func TestSystemdUnits(t *testing.T) {
	analyze := testenv.LookPath(t, "systemd-analyze")
	dir := t.TempDir()
	var execStart string
	for _, name := range []string{"tcpkit-echo.socket", "tcpkit-echo.service"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if m := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/tcpkit (.*)$`).FindStringSubmatch(text); m != nil {
			execStart = m[1]
			text = strings.Replace(text, "/usr/local/bin/tcpkit", os.Args[0], 1)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(analyze, "verify", "--man=no",
		filepath.Join(dir, "tcpkit-echo.socket"), filepath.Join(dir, "tcpkit-echo.service")).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	if execStart == "" {
		t.Fatal("no ExecStart=/usr/local/bin/tcpkit ... in tcpkit-echo.service")
	}
	r := runCLI(t, nil, append(strings.Fields(execStart), "--help")...)
	if r.code != 0 {
		t.Fatalf("tcpkit %s: exit %d: %s", execStart, r.code, r.stderr)
	}
}
