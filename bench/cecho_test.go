package bench

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"time"

	"github.com/tcpkit/tcpkit/internal/testenv"
)

// TestCEcho checks the C peer, peers/cecho, the way the benchmarks rely on
// it: it echoes every byte in order under backpressure (the client writes
// megabytes before it reads any), on one thread and on several, and closes
// a connection once the client ends it.
func TestCEcho(t *testing.T) {
	cc := testenv.LookPath(t, "cc") // CI installs it; elsewhere the test skips
	bin := filepath.Join(t.TempDir(), "cecho")
	if out, err := exec.Command(cc, "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o", bin, "peers/cecho/cecho.c").CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	for _, threads := range []string{"1", "2"} {
		t.Run("threads="+threads, func(t *testing.T) {
			addr := startCEcho(t, bin, "-t", threads)
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() { echoUnderBackpressure(t, addr, 4<<20, byte(i)) })
			}
			wg.Wait()
		})
	}
}

// startCEcho starts cecho on a free loopback port and returns the address
// it reports listening on.
func startCEcho(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		addr, ok := strings.CutPrefix(strings.TrimSpace(s), "listening ")
		if !ok {
			t.Fatalf("cecho printed %q, want \"listening ADDR\"", s)
		}
		return addr
	case <-time.After(10 * time.Second):
		t.Fatal("cecho did not report listening within 10s")
	}
	return ""
}

// echoUnderBackpressure writes size bytes, starting to read the echo only
// once a good part of them is sent, and checks that the echo is the same
// bytes, then that the server closes the connection after the client's
// end.
func echoUnderBackpressure(t *testing.T, addr string, size int, seed byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i*7) ^ byte(i>>12) ^ seed
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond) // let the buffers on both sides fill
	got, err := io.ReadAll(c)          // to EOF: the server closes after the client's end
	if err != nil {
		t.Errorf("reading the echo: %v (after %d of %d bytes)", err, len(got), size)
		return
	}
	if werr := <-errc; werr != nil {
		t.Errorf("writing: %v", werr)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Errorf("echo differs: got %d bytes, want %d; first difference at byte %d", len(got), len(want), i)
	}
}
