package activation

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// childEnv, set, makes the test binary act as a service started by a
// service manager: it takes its sockets and reports them on stdout.
const childEnv = "ACTIVATION_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		child()
		return
	}
	goleak.VerifyTestMain(m)
}

// child reports what Sockets returns, accepts one connection on each
// socket and greets it with the socket's name.
func child() {
	socks, err := Sockets()
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(0)
	}
	fmt.Println("env left:", os.Getenv("LISTEN_FDS") != "")
	for _, s := range socks {
		fmt.Printf("socket %s %s %s\n", s.Name, s.Listener.Addr().Network(), s.Listener.Addr())
	}
	for _, s := range socks {
		c, err := s.Listener.Accept()
		if err != nil {
			fmt.Println("accept:", err)
			os.Exit(1)
		}
		fmt.Fprintf(c, "hello from %s\n", s.Name)
		c.Close()
		s.Listener.Close()
	}
}

// runChild starts the test binary as a service with files as its passed
// descriptors (3 up) and env, and returns its stdout, line by line.
func runChild(t *testing.T, files []*os.File, env ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{childEnv + "=1"}, env...)...)
	cmd.ExtraFiles = files
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}

func TestSocketsTCPAndUnix(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	path := filepath.Join(t.TempDir(), "s.sock")
	unix, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	unix.(*net.UnixListener).SetUnlinkOnClose(false)
	defer unix.Close()
	tf, _ := tcp.(*net.TCPListener).File()
	uf, _ := unix.(*net.UnixListener).File()
	_, sc := runChild(t, []*os.File{tf, uf}, "LISTEN_FDS=2", "LISTEN_FDNAMES=web:admin")
	tf.Close()
	uf.Close()
	want := []string{
		"env left: false",
		"socket web tcp " + tcp.Addr().String(),
		"socket admin unix " + path,
	}
	for _, w := range want {
		if !sc.Scan() || sc.Text() != w {
			t.Fatalf("child said %q, want %q", sc.Text(), w)
		}
	}
	for _, d := range []struct{ network, addr, name string }{{"tcp", tcp.Addr().String(), "web"}, {"unix", path, "admin"}} {
		c, err := net.DialTimeout(d.network, d.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if line != "hello from "+d.name+"\n" {
			t.Errorf("%s: %q, %v", d.network, line, err)
		}
	}
	// The child closed its Unix listener: the file, the manager's, stays.
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the socket file is gone: %v", err)
	}
}

func TestSocketsRefusesWhatIsNotAListener(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "plain")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, sc := runChild(t, []*os.File{f}, "LISTEN_FDS=1", "LISTEN_FDNAMES=notes")
	if !sc.Scan() || !strings.Contains(sc.Text(), "descriptor 3 (notes)") || !strings.Contains(sc.Text(), "not a socket") {
		t.Fatalf("child said %q", sc.Text())
	}
}

func TestSocketsForAnotherProcess(t *testing.T) {
	_, sc := runChild(t, nil, "LISTEN_FDS=1", "LISTEN_PID=1")
	if !sc.Scan() || sc.Text() != "env left: false" || sc.Scan() {
		t.Fatalf("child said %q; want no sockets", sc.Text())
	}
}

func TestSocketsNone(t *testing.T) {
	t.Setenv("LISTEN_FDS", "")
	socks, err := Sockets()
	if socks != nil || err != nil {
		t.Fatalf("Sockets() = %v, %v without LISTEN_FDS", socks, err)
	}
	t.Setenv("LISTEN_FDS", "two")
	if _, err := Sockets(); err == nil || !strings.Contains(err.Error(), `LISTEN_FDS="two"`) {
		t.Fatalf("Sockets() with LISTEN_FDS=two: %v", err)
	}
}
