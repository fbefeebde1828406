package main

import (
	"errors"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests check tcpkit listen against the rule that input is never
// lost silently: bytes the client sent, which TCP acknowledged, reach the
// process or standard output, or the client is reset and the exit status
// says so. They use TCP, where a reset is an RST: on a Unix socket the
// client sees ECONNRESET only if the socket still held its input.

// sendAndRead writes data to nc from a goroutine, half-closing after it,
// and reads until the end or an error. It returns what was read and the
// read's and the write's errors; the read's is nil at a clean end.
func sendAndRead(t *testing.T, nc net.Conn, data []byte) (got []byte, readErr, writeErr error) {
	t.Helper()
	wrote := make(chan error, 1)
	go func() {
		_, err := nc.Write(data)
		if err == nil {
			err = nc.(interface{ CloseWrite() error }).CloseWrite()
		}
		wrote <- err
	}()
	got, readErr = io.ReadAll(nc) // bounded: dial set the deadline
	return got, readErr, await(t, wrote, waitLimit, "the client's writes")
}

// wantReset fails the test unless the client saw ECONNRESET, on a read or
// a write, rather than a clean end.
func wantReset(t *testing.T, readErr, writeErr error) {
	t.Helper()
	if !errors.Is(readErr, syscall.ECONNRESET) && !errors.Is(writeErr, syscall.ECONNRESET) {
		t.Errorf("the client read until %v and its writes ended with %v; want ECONNRESET", errOrEOF(readErr), writeErr)
	}
}

// errOrEOF names a nil error from io.ReadAll: a clean end.
func errOrEOF(err error) error {
	if err == nil {
		return io.EOF
	}
	return err
}

// TestListenExecUnreadInput: an --exec process that exits with input the
// client sent still unread, here head -c 5, gets its client reset, not
// ended, and tcpkit listen exits 1 saying why. When the process read all
// that came, the end is clean; when the client sends after it, it is told.
func TestListenExecUnreadInput(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		t.Run("a stream", func(t *testing.T) {
			l := startListen(t, nil, "--exec", "head -c 5", "--engine", engine, "127.0.0.1:0")
			_, readErr, writeErr := sendAndRead(t, dial(t, l.addr), binaryData(1<<20))
			wantReset(t, readErr, writeErr)
			if code := l.wait(t); code != exitError {
				t.Errorf("exit code %d, want %d:\n%s", code, exitError, l.stderr.String())
			}
			if log := l.stderr.String(); !strings.Contains(log, "from the client not delivered") {
				t.Errorf("the log does not say why the client was reset:\n%s", log)
			}
		})
		t.Run("a few bytes, then the end", func(t *testing.T) {
			// All of it fits in the pipe, and the process exits without
			// reading half of it: no write to it fails.
			l := startListen(t, nil, "--exec", "head -c 5", "--engine", engine, "127.0.0.1:0")
			_, readErr, writeErr := sendAndRead(t, dial(t, l.addr), []byte("helloworld"))
			wantReset(t, readErr, writeErr)
			if code := l.wait(t); code != exitError || !strings.Contains(l.stderr.String(), "5 bytes from the client not delivered") {
				t.Errorf("exit code %d, want %d and the 5 bytes lost:\n%s", code, exitError, l.stderr.String())
			}
		})
		t.Run("all of it read", func(t *testing.T) {
			l := startListen(t, nil, "--exec", "head -c 5", "--engine", engine, "127.0.0.1:0")
			got, readErr, writeErr := sendAndRead(t, dial(t, l.addr), []byte("hello"))
			if string(got) != "hello" || readErr != nil || writeErr != nil {
				t.Errorf("the client read %q until %v, its writes ended with %v; want hello and a clean end", got, errOrEOF(readErr), writeErr)
			}
			if code := l.wait(t); code != 0 {
				t.Errorf("exit code %d:\n%s", code, l.stderr.String())
			}
		})
		t.Run("sent after the process exited", func(t *testing.T) {
			l := startListen(t, nil, "--exec", "echo done", "--engine", engine, "127.0.0.1:0")
			nc := dial(t, l.addr)
			if got, err := io.ReadAll(nc); string(got) != "done\n" || err != nil {
				t.Fatalf("read %q, %v; want the output and the end", got, err)
			}
			// The client has read the server's FIN, so the reset that
			// answers its late bytes shows as EPIPE on a later write
			// (Linux's reset in CLOSE-WAIT), or ECONNRESET.
			var err error
			for range 500 { // about 5s at most
				if _, err = io.WriteString(nc, "late"); err != nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("after sending late bytes the client got %v; want EPIPE or ECONNRESET", errOrEOF(err))
			}
			if code := l.wait(t); code != exitError {
				t.Errorf("exit code %d, want %d:\n%s", code, exitError, l.stderr.String())
			}
		})
	})
}

// TestListenExecShutdownUnreadInput sends SIGTERM or SIGINT to a real
// tcpkit listen --exec while its client streams: the process is stopped
// with the client's bytes in its input, so the client is reset, the log
// says it was cut off, and the exit status is 3.
func TestListenExecShutdownUnreadInput(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
			t.Run(sig.String(), func(t *testing.T) {
				// head -c 1 shows the client's bytes have reached the
				// process; sleep leaves the rest in its input.
				p := startProcess(t, "listen", "--engine", engine, "--exec", "head -c 1; exec sleep 30", "127.0.0.1:0")
				nc := dial(t, listenAddr(t, p.line(t, "msg=listening")))
				data := binaryData(256 << 10)
				wrote := make(chan error, 1)
				go func() {
					_, err := nc.Write(data)
					wrote <- err
				}()
				if got := readN(t, nc, 1); got[0] != data[0] {
					t.Fatalf("read %q, want the first byte sent", got)
				}
				p.signal(t, sig)
				_, readErr := io.ReadAll(nc)
				wantReset(t, readErr, await(t, wrote, waitLimit, "the client's write"))
				nc.Close() // as a client does at the end: no wait for --grace
				if code := p.wait(t); code != exitCut {
					t.Errorf("exit status %d, want %d:\n%s", code, exitCut, p.stderr.String())
				}
				if log := p.stderr.String(); !strings.Contains(log, "client cut off by shutdown") {
					t.Errorf("the log does not say the client was cut off:\n%s", log)
				}
			})
		}
	})
}

// TestListenStdoutFails runs `tcpkit listen ADDR | head -c 5` while a
// client streams: once standard output is a broken pipe, what the client
// sends can reach no one, so it is reset, and tcpkit exits 1 saying why,
// rather than being killed by SIGPIPE or ending the client cleanly.
func TestListenStdoutFails(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		// Standard input stays open: the connection is not ended first.
		script := `{ TCPKIT_TEST_AS_MAIN=1 GORACE=atexit_sleep_ms=100 "$0" "$@"; echo "tcpkit exit status $?" >&2; } | head -c 5 >/dev/null`
		p := startPeer(t, true, "sh", "-c", script, os.Args[0], "listen", "--engine", engine, "127.0.0.1:0")
		nc := dial(t, listenAddr(t, p.line(t, "msg=listening")))
		_, readErr, writeErr := sendAndRead(t, nc, binaryData(1<<20))
		wantReset(t, readErr, writeErr)
		l := p.line(t, "tcpkit exit status")
		if code, _ := strconv.Atoi(l[strings.LastIndex(l, " ")+1:]); code != exitError {
			t.Errorf("exit status %d, want %d:\n%s", code, exitError, p.stderr.String())
		}
		if log := p.stderr.String(); !strings.Contains(log, "writing standard output") || !strings.Contains(log, "broken pipe") {
			t.Errorf("stderr does not say standard output failed:\n%s", log)
		}
		nc.Close()
		if err := p.wait(t); err != nil {
			t.Errorf("sh: %v", err)
		}
	})
}

// listenAddr is the address of a "listening" log line.
func listenAddr(t *testing.T, line string) string {
	t.Helper()
	m := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no address in %q", line)
	}
	return m[1]
}
