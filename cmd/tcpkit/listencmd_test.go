package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit"
)

// listenServer is tcpkit listen running in-process.
type listenServer struct {
	addr   string      // the first bound address, in tcpkit's grammar
	stdout *syncBuffer // what it wrote to standard output
	stderr *syncBuffer // its log
	cancel context.CancelFunc
	done   chan int // receives the exit code
	code   int
	exited bool
}

// startListen runs `tcpkit listen args...` in-process with stdin as its
// standard input and waits until it listens. A run still going when the
// test ends is cancelled and waited for.
func startListen(t *testing.T, stdin io.Reader, args ...string) *listenServer {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	l := &listenServer{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan int, 1)}
	ready := make(chan string, 1)
	a := &app{
		stdin:   stdin,
		stdout:  l.stdout,
		stderr:  l.stderr,
		signals: func() (<-chan os.Signal, func()) { return make(chan os.Signal), func() {} },
		ready:   func(_ *tcpkit.Server, addrs []string) { ready <- addrs[0] },
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() { l.done <- a.run(ctx, append([]string{"listen"}, args...)) }()
	t.Cleanup(func() {
		cancel()
		if !l.exited {
			select {
			case <-l.done:
			case <-time.After(waitLimit):
				t.Errorf("tcpkit listen did not stop within %v of being cancelled:\n%s", waitLimit, l.stderr.String())
			}
		}
	})
	select {
	case l.addr = <-ready:
	case code := <-l.done:
		l.code, l.exited = code, true
		t.Fatalf("tcpkit listen exited with %d before listening:\n%s", code, l.stderr.String())
	case <-time.After(waitLimit):
		t.Fatalf("tcpkit listen did not listen within %v:\n%s", waitLimit, l.stderr.String())
	}
	return l
}

// wait waits for the run to end and returns its exit code.
func (l *listenServer) wait(t *testing.T) int {
	t.Helper()
	if l.exited {
		return l.code
	}
	select {
	case l.code = <-l.done:
		l.exited = true
		return l.code
	case <-time.After(waitLimit):
		t.Fatalf("tcpkit listen did not exit within %v:\n%s", waitLimit, l.stderr.String())
		panic("unreachable")
	}
}

// stop cancels the run, as SIGINT would, and checks that it exits 0.
func (l *listenServer) stop(t *testing.T) {
	t.Helper()
	l.cancel()
	if code := l.wait(t); code != 0 {
		t.Errorf("tcpkit listen exited with %d:\n%s", code, l.stderr.String())
	}
}

// forEachListen runs f on each engine and transport.
func forEachListen(t *testing.T, f func(t *testing.T, engine string, tr transport)) {
	for _, engine := range serverEngines {
		for _, tr := range transports {
			t.Run(engine+"/"+tr.name, func(t *testing.T) { f(t, engine, tr) })
		}
	}
}

// ncArgs are OpenBSD nc's arguments to connect to addr and half-close at
// the end of its input.
func ncArgs(addr string) []string {
	if host, port, err := net.SplitHostPort(addr); err == nil {
		return []string{"-N", host, port}
	}
	return []string{"-N", "-U", addr}
}

// socatTarget is socat's address for addr.
func socatTarget(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return "TCP:" + addr
	}
	return "UNIX-CONNECT:" + addr
}

// sameBytes fails the test unless got equals want, naming the first
// difference.
func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	n := 0
	for n < len(got) && n < len(want) && got[n] == want[n] {
		n++
	}
	t.Errorf("%s: got %d bytes, want %d; first difference at byte %d", what, len(got), len(want), n)
}

// TestListenRelay drives tcpkit listen with nc, socat and Node, over TCP
// and a Unix socket, on both engines: 1 MiB of every byte value each way
// (Node sends less), half-closes both ways, exit status 0.
func TestListenRelay(t *testing.T) {
	fromServer := binaryData(1 << 20)
	fromClient := bytes.Repeat([]byte{0, '\r', '\n', 0xff, 'x'}, 1<<20/5)
	forEachListen(t, func(t *testing.T, engine string, tr transport) {
		clients := []struct {
			name string
			sent []byte
			run  func(addr string) []byte
		}{
			{"nc", fromClient, func(addr string) []byte { return runPeer(t, fromClient, "nc", ncArgs(addr)...) }},
			{"socat", fromClient, func(addr string) []byte {
				return runPeer(t, fromClient, "socat", "-t", "10", "-", socatTarget(addr))
			}},
			{"node", append([]byte("world!\r\n"), binaryData(256)...), func(addr string) []byte {
				return runPeer(t, nil, "node", "-e", nodeClient, nodeOptions(t, addr))
			}},
		}
		for _, cl := range clients {
			t.Run(cl.name, func(t *testing.T) {
				l := startListen(t, bytes.NewReader(fromServer), "--engine", engine, tr.listen(t))
				got := cl.run(l.addr)
				if code := l.wait(t); code != 0 {
					t.Fatalf("exit code %d:\n%s", code, l.stderr.String())
				}
				sameBytes(t, "the client got", got, fromServer)
				sameBytes(t, "standard output got", []byte(l.stdout.String()), cl.sent)
			})
		}
	})
}

// TestListenHalfClose checks each direction's end on its own: after the
// end of standard input the client still sends, and after the client's
// end standard input still goes to it.
func TestListenHalfClose(t *testing.T) {
	forEachListen(t, func(t *testing.T, engine string, tr transport) {
		t.Run("stdin ends first", func(t *testing.T) {
			l := startListen(t, strings.NewReader("server data"), "--engine", engine, tr.listen(t))
			nc := dial(t, l.addr)
			got, err := io.ReadAll(nc) // until the FIN at the end of stdin
			if err != nil || string(got) != "server data" {
				t.Fatalf("read %q, %v; want the server's data and its end", got, err)
			}
			if _, err := nc.Write([]byte("sent after your end")); err != nil {
				t.Fatal(err)
			}
			nc.(interface{ CloseWrite() error }).CloseWrite()
			if code := l.wait(t); code != 0 {
				t.Fatalf("exit code %d:\n%s", code, l.stderr.String())
			}
			if got := l.stdout.String(); got != "sent after your end" {
				t.Errorf("standard output %q", got)
			}
		})
		t.Run("client ends first", func(t *testing.T) {
			pr, pw := io.Pipe()
			t.Cleanup(func() { pw.Close() })
			l := startListen(t, pr, "--engine", engine, tr.listen(t))
			nc := dial(t, l.addr)
			nc.Write([]byte("client data"))
			nc.(interface{ CloseWrite() error }).CloseWrite()
			waitContains(t, l.stderr, "client ended its side")
			go func() {
				pw.Write([]byte("sent after your end"))
				pw.Close()
			}()
			got, err := io.ReadAll(nc)
			if err != nil || string(got) != "sent after your end" {
				t.Fatalf("read %q, %v", got, err)
			}
			if code := l.wait(t); code != 0 {
				t.Fatalf("exit code %d:\n%s", code, l.stderr.String())
			}
			if got := l.stdout.String(); got != "client data" {
				t.Errorf("standard output %q", got)
			}
		})
	})
}

// TestListenOneConnection checks that without -k a second client, while
// the first is served, is refused or closed without data, and that the
// first is served in full.
func TestListenOneConnection(t *testing.T) {
	forEachListen(t, func(t *testing.T, engine string, tr transport) {
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.Close() })
		l := startListen(t, pr, "--engine", engine, tr.listen(t))
		first := dial(t, l.addr)
		waitContains(t, l.stderr, "client connected")
		network, address, _ := tcpkit.ParseAddr(l.addr)
		if second, err := net.DialTimeout(network, address, waitLimit); err == nil {
			second.SetDeadline(time.Now().Add(waitLimit))
			n, err := second.Read(make([]byte, 1))
			second.Close()
			if n != 0 || err == nil {
				t.Errorf("second client: read %d bytes, %v; want it closed", n, err)
			}
		}
		go func() {
			pw.Write([]byte("to the first"))
			pw.Close()
		}()
		first.Write([]byte("from the first"))
		first.(interface{ CloseWrite() error }).CloseWrite()
		got, err := io.ReadAll(first)
		if err != nil || string(got) != "to the first" {
			t.Errorf("first client read %q, %v", got, err)
		}
		if code := l.wait(t); code != 0 {
			t.Fatalf("exit code %d:\n%s", code, l.stderr.String())
		}
		if got := l.stdout.String(); got != "from the first" {
			t.Errorf("standard output %q", got)
		}
	})
}

// TestListenKeepOpen serves three nc clients in a row with -k: standard
// input goes to the first, the later ones are ended at once, and what all
// of them send reaches standard output.
func TestListenKeepOpen(t *testing.T) {
	forEachListen(t, func(t *testing.T, engine string, tr transport) {
		l := startListen(t, strings.NewReader("the file\n"), "-k", "--engine", engine, tr.listen(t))
		for i := 1; i <= 3; i++ {
			msg := fmt.Sprintf("client %d\n", i)
			got := runPeer(t, []byte(msg), "nc", ncArgs(l.addr)...)
			want := ""
			if i == 1 {
				want = "the file\n"
			}
			if string(got) != want {
				t.Errorf("client %d got %q, want %q", i, got, want)
			}
			waitContains(t, l.stdout, msg)
		}
		l.stop(t)
		if got, want := l.stdout.String(), "client 1\nclient 2\nclient 3\n"; got != want {
			t.Errorf("standard output %q, want %q", got, want)
		}
	})
}

// TestListenExec runs processes for nc, socat and Go clients: cat echoes
// byte for byte, wc -c counts, and the environment names the addresses. A
// process that exits early, leaving input unread, is in
// TestListenExecUnreadInput.
func TestListenExec(t *testing.T) {
	data := binaryData(1 << 20)
	forEachListen(t, func(t *testing.T, engine string, tr transport) {
		t.Run("cat", func(t *testing.T) {
			l := startListen(t, nil, "-k", "--exec", "cat", "--engine", engine, tr.listen(t))
			sameBytes(t, "nc got", runPeer(t, data, "nc", ncArgs(l.addr)...), data)
			sameBytes(t, "socat got", runPeer(t, data, "socat", "-t", "10", "-", socatTarget(l.addr)), data)
			l.stop(t)
		})
		t.Run("wc", func(t *testing.T) {
			l := startListen(t, nil, "--exec", "wc -c", "--engine", engine, tr.listen(t))
			got := runPeer(t, data, "nc", ncArgs(l.addr)...)
			if strings.TrimSpace(string(got)) != strconv.Itoa(len(data)) {
				t.Errorf("wc -c said %q, want %d", got, len(data))
			}
			if code := l.wait(t); code != 0 {
				t.Fatalf("exit code %d:\n%s", code, l.stderr.String())
			}
		})
		t.Run("environment", func(t *testing.T) {
			l := startListen(t, nil, "--exec", `printf '%s|%s' "$TCPKIT_REMOTE_ADDR" "$TCPKIT_LOCAL_ADDR"`, "--engine", engine, tr.listen(t))
			nc := dial(t, l.addr)
			nc.(interface{ CloseWrite() error }).CloseWrite()
			got, _ := io.ReadAll(nc)
			want := peer(nc.LocalAddr()) + "|" + peer(nc.RemoteAddr())
			if tr.name == "unix" {
				want = "unix (unnamed)|" + l.addr
			}
			if string(got) != want {
				t.Errorf("got %q, want %q", got, want)
			}
			l.wait(t)
		})
		t.Run("failing command", func(t *testing.T) {
			l := startListen(t, nil, "--exec", "exit 7", "--engine", engine, tr.listen(t))
			exchange(t, l.addr, nil)
			if code := l.wait(t); code != exitError || !strings.Contains(l.stderr.String(), "exit status 7") {
				t.Errorf("exit code %d, want %d and the status:\n%s", code, exitError, l.stderr.String())
			}
		})
	})
}

// TestListenExecBackpressure checks that a process that does not read
// stops the connection being read: the client can send only what the
// buffers on the way hold, and the rest once the process reads.
func TestListenExecBackpressure(t *testing.T) {
	forEachListen(t, func(t *testing.T, engine string, tr transport) {
		gate := filepath.Join(t.TempDir(), "go")
		l := startListen(t, nil, "--exec", "while [ ! -e "+gate+" ]; do sleep 0.05; done; wc -c", "--engine", engine, tr.listen(t))
		nc := dial(t, l.addr)
		const total = 64 << 20
		var sent atomic.Int64
		wrote := make(chan error, 1)
		go func() {
			chunk := make([]byte, 64<<10)
			for sent.Load() < total {
				n, err := nc.Write(chunk)
				sent.Add(int64(n))
				if err != nil {
					wrote <- err
					return
				}
			}
			wrote <- nc.(interface{ CloseWrite() error }).CloseWrite()
		}()
		// The client stalls once the buffers are full.
		var last int64 = -1
		for sent.Load() != last {
			last = sent.Load()
			time.Sleep(300 * time.Millisecond)
		}
		if last > 24<<20 {
			t.Errorf("the client could send %d bytes to a process that does not read; want it held back", last)
		}
		if err := os.WriteFile(gate, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := await(t, wrote, waitLimit, "the client's writes"); err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(nc)
		if strings.TrimSpace(string(got)) != strconv.Itoa(total) {
			t.Errorf("wc -c said %q, want %d", got, total)
		}
		if code := l.wait(t); code != 0 {
			t.Fatalf("exit code %d:\n%s", code, l.stderr.String())
		}
	})
}

// TestListenBroker relays among three clients, then cuts off a fourth
// that stops reading while the others go on.
func TestListenBroker(t *testing.T) {
	forEachListen(t, func(t *testing.T, engine string, tr transport) {
		l := startListen(t, nil, "--broker", "--max-buffered", "262144", "--engine", engine, tr.listen(t))
		c := []net.Conn{dial(t, l.addr), dial(t, l.addr), dial(t, l.addr)}
		waitContains(t, l.stderr, "conn=3")
		for i, from := range c {
			msg := fmt.Sprintf("from %d\n", i)
			from.Write([]byte(msg))
			for j, to := range c {
				if j != i {
					if got := readN(t, to, len(msg)); string(got) != msg {
						t.Errorf("client %d got %q from client %d", j, got, i)
					}
				}
			}
		}
		// A client that stops reading.
		slow := dial(t, l.addr)
		if tc, ok := slow.(*net.TCPConn); ok {
			tc.SetReadBuffer(4096)
		}
		waitContains(t, l.stderr, "conn=4")
		chunk := binaryData(64 << 10)
		for i := 0; !strings.Contains(l.stderr.String(), "stopped reading"); i++ {
			if i == 1024 {
				t.Fatalf("the client that does not read was not cut off after 64 MiB:\n%s", l.stderr.String())
			}
			c[0].Write(chunk)
			sameBytes(t, "client 1", readN(t, c[1], len(chunk)), chunk)
			sameBytes(t, "client 2", readN(t, c[2], len(chunk)), chunk)
		}
		c[1].Write([]byte("still here\n"))
		if got := readN(t, c[0], 11); string(got) != "still here\n" {
			t.Errorf("after the cut-off, client 0 got %q", got)
		}
		for _, nc := range c {
			nc.Close() // a client that leaves is disconnected
		}
		l.stop(t)
	})
}

// TestListenErrors checks the one line and the exit status of a bad
// command line or address.
func TestListenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{name: "bad address", args: []string{"listen", "x:y"}, code: exitError, want: "cannot listen on x:y: bad address"},
		{name: "not a socket", args: []string{"listen", file}, code: exitError, want: "not a socket"},
		{name: "no address", args: []string{"listen"}, code: exitUsage, want: "accepts 1 arg"},
		{name: "broker and exec", args: []string{"listen", "--broker", "--exec", "cat", "x:1"}, code: exitUsage, want: "exclude each other"},
		{name: "max-conns without -k", args: []string{"listen", "--max-conns", "5", "x:1"}, code: exitUsage, want: "--max-conns needs -k"},
		{name: "zero max-conns", args: []string{"listen", "--max-conns", "0", "x:1"}, code: exitUsage, want: "--max-conns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tt.code, tt.want)
			}
			if tt.code == exitError && strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("stderr %q is not one line", r.stderr)
			}
		})
	}
	if b, _ := os.ReadFile(file); string(b) != "data" {
		t.Errorf("the regular file was changed: %q", b)
	}
}

// TestListenTLS relays through --tls-self-signed to tcpkit connect --tls.
// The reply waits for the request: tcpkit connect stops sending once the
// server has closed.
func TestListenTLS(t *testing.T) {
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	l := startListen(t, pr, "--tls-self-signed", "127.0.0.1:0")
	go func() {
		defer pw.Close()
		for deadline := time.Now().Add(waitLimit); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if l.stdout.String() == "secret request" {
				pw.Write([]byte("secret reply"))
				return
			}
		}
	}()
	r := runCLI(t, strings.NewReader("secret request"), "connect", "--tls", "--insecure", l.addr)
	if r.code != 0 || r.stdout != "secret reply" {
		t.Errorf("connect: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if code := l.wait(t); code != 0 || l.stdout.String() != "secret request" {
		t.Errorf("exit %d, standard output %q:\n%s", code, l.stdout.String(), l.stderr.String())
	}
}

// TestListenSignals sends SIGTERM to a real tcpkit listen -k --exec with a
// client connected: the process is told to stop, the connection ends, and
// the exit status is 0.
func TestListenSignals(t *testing.T) {
	p := startProcess(t, "listen", "-k", "--exec", "cat", "127.0.0.1:0")
	l := p.line(t, "msg=listening")
	addr := strings.Fields(l[strings.Index(l, "addr=")+5:])[0]
	nc := dial(t, addr)
	nc.Write([]byte("ping"))
	if got := readN(t, nc, 4); string(got) != "ping" {
		t.Fatalf("got %q", got)
	}
	p.signal(t, syscall.SIGTERM)
	p.line(t, "process exited")
	if _, err := io.ReadAll(nc); err != nil {
		t.Errorf("the client's connection did not end cleanly: %v", err)
	}
	nc.Close()
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status %d:\n%s", code, p.stderr.String())
	}
}

// TestListenHelp checks that --help says what the flags do with standard
// input, and how --exec runs its command.
func TestListenHelp(t *testing.T) {
	r := runCLI(t, nil, "listen", "--help")
	if r.code != 0 {
		t.Fatalf("exit code %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{"tcpkit listen ADDR", "Examples:", "-k, --keep-open", "--max-conns", "--exec",
		"/bin/sh -c", "TCPKIT_REMOTE_ADDR", "TCPKIT_LOCAL_ADDR", "--broker", "--max-buffered", "--engine",
		"--grace", "--tls-self-signed", "--proxy-protocol", "Standard input is read once", "half-close"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}
