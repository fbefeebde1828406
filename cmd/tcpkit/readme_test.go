package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/tcpkit/tcpkit/internal/testenv"
)

// readme returns the repository's README.md.
func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReadmeQuickStart checks the README's two set-up commands, and the
// ways to try the server, word for word.
func TestReadmeQuickStart(t *testing.T) {
	text := readme(t)
	_, quick, _ := strings.Cut(text, "## Quick start")
	quick, _, _ = strings.Cut(quick, "### Try it")
	var commands []string
	for _, line := range strings.Split(quick, "\n") {
		if strings.HasPrefix(line, "    ") {
			commands = append(commands, strings.TrimSpace(line))
		}
	}
	if want := []string{"go run ./cmd/tcpkit echo", "go test -race ./..."}; strings.Join(commands, "|") != strings.Join(want, "|") {
		t.Errorf("Quick start commands %q, want exactly %q", commands, want)
	}
	for _, try := range []string{"telnet localhost 8124", "nc localhost 8124", "go run ./cmd/tcpkit connect localhost:8124"} {
		if !strings.Contains(text, "    "+try+"\n") {
			t.Errorf("README does not show %q", try)
		}
	}
}

// TestReadmeFlags checks that the CLI reference lists every flag.
func TestReadmeFlags(t *testing.T) {
	text := readme(t)
	a := &app{}
	for _, cmd := range []string{"echo", "connect", "listen", "forward", "bench"} {
		c, _, err := a.rootCommand().Find([]string{cmd})
		if err != nil {
			t.Fatal(err)
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "help" && !strings.Contains(text, "`--"+f.Name) && !strings.Contains(text, "`-"+f.Shorthand+"`, `--"+f.Name) {
				t.Errorf("README's reference of tcpkit %s lacks --%s", cmd, f.Name)
			}
		})
	}
}

// TestReadmeExamplesCompile builds every Go program in the README, as it
// stands, against this module. The programs are laid over the module with
// go build -overlay, so nothing is written into the repository.
func TestReadmeExamplesCompile(t *testing.T) {
	goTool := testenv.LookPath(t, "go")
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(readme(t), -1)
	if len(blocks) < 3 {
		t.Fatalf("found %d Go blocks in the README, want the server, the Unix server and the client", len(blocks))
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	overlay := map[string]string{}
	var pkgs []string
	for i, b := range blocks {
		if !strings.HasPrefix(b[1], "package main\n") {
			t.Errorf("README Go block %d is not a whole program:\n%s", i+1, b[1])
			continue
		}
		src := filepath.Join(dir, fmt.Sprintf("example%d.go", i+1))
		if err := os.WriteFile(src, []byte(b[1]), 0o644); err != nil {
			t.Fatal(err)
		}
		pkg := fmt.Sprintf("readme_example_%d", i+1)
		overlay[filepath.Join(wd, pkg, "main.go")] = src
		pkgs = append(pkgs, "./"+pkg)
	}
	js, err := json.Marshal(map[string]any{"Replace": overlay})
	if err != nil {
		t.Fatal(err)
	}
	overlayFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayFile, js, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit*2)
	defer cancel()
	for _, pkg := range pkgs {
		cmd := exec.CommandContext(ctx, goTool, "build", "-overlay", overlayFile, "-o", os.DevNull, pkg)
		cmd.WaitDelay = stopLimit // the compiler go build started may hold the output open
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("README example %s does not build: %v\n%s", pkg, err, out)
		}
	}
}
