package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// forwardPair is a tcpkit echo and a tcpkit forward in front of it.
func forwardPair(t *testing.T, engine, listen, target string, echoArgs, fwdArgs []string) (fwd, echo *echoServer) {
	t.Helper()
	echo = startEcho(t, append(append([]string{"--engine", engine}, echoArgs...), target)...)
	fwd = startCommand(t, "forward", append(append([]string{"--engine", engine}, fwdArgs...), listen, echo.addr())...)
	return fwd, echo
}

// TestForwardInterop sends 16 MiB each way through tcpkit forward, TCP to
// Unix and Unix to TCP, from nc, socat and Node, to tcpkit echo, and
// checks every byte; the client's half-close travels across, and the
// echo's end comes back.
func TestForwardInterop(t *testing.T) {
	data := make([]byte, 16<<20)
	rand.Read(data)
	for _, engine := range serverEngines {
		for _, dir := range []struct{ name, listen, target string }{
			{"tcp-to-unix", "127.0.0.1:0", ""},
			{"unix-to-tcp", "", "127.0.0.1:0"},
		} {
			t.Run(engine+"/"+dir.name, func(t *testing.T) {
				listen, target := dir.listen, dir.target
				if listen == "" {
					listen = sockPath(t)
				}
				if target == "" {
					target = sockPath(t)
				}
				fwd, _ := forwardPair(t, engine, listen, target, []string{"--quiet"}, nil)
				addr := fwd.addr()
				host, port, _ := net.SplitHostPort(addr)
				unix := strings.Contains(addr, "/")
				t.Run("nc", func(t *testing.T) {
					args := []string{"-N", host, port}
					if unix {
						args = []string{"-N", "-U", addr}
					}
					checkEcho(t, runPeer(t, data, "nc", args...), data)
				})
				t.Run("socat", func(t *testing.T) {
					target := "TCP:" + addr
					if unix {
						target = "UNIX-CONNECT:" + addr
					}
					checkEcho(t, runPeer(t, data, "socat", "-t", "20", "-", target), data)
				})
				t.Run("node", func(t *testing.T) {
					got := runPeer(t, nil, "node", "-e", nodeClient, nodeOptions(t, addr))
					checkEcho(t, got, append([]byte("world!\r\n"), binaryData(256)...))
				})
			})
		}
	}
}

// TestForwardTargetDown: a client of a forward whose TARGET is down gets
// its connection closed, at once, and the log says why in one line.
func TestForwardTargetDown(t *testing.T) {
	for _, engine := range serverEngines {
		t.Run(engine, func(t *testing.T) {
			down := freeLoopbackAddr(t) // nothing listens there
			fwd := startCommand(t, "forward", "--engine", engine, "--connect-timeout", "2s", "127.0.0.1:0", down)
			for range 3 {
				c, err := net.DialTimeout("tcp", fwd.addr(), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				start := time.Now()
				n, err := c.Read(make([]byte, 1))
				c.Close()
				if n != 0 || err == nil || time.Since(start) > 2*time.Second {
					t.Fatalf("read %d, %v after %v; want the connection closed at once", n, err, time.Since(start))
				}
			}
			log := fwd.stderr.String()
			if got := strings.Count(log, "cannot reach the target"); got != 1 || !strings.Contains(log, "connection refused") {
				t.Errorf("%d lines about the target, want one saying connection refused:\n%s", got, log)
			}
		})
	}
}

// TestForwardSendProxy: --send-proxy v2 into tcpkit echo --proxy-protocol
// shows the client's own address in the echo server's log.
func TestForwardSendProxy(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) { forwardSendProxy(t, engine) })
}

func forwardSendProxy(t *testing.T, engine string) {
	for _, version := range []string{"v1", "v2"} {
		t.Run(version, func(t *testing.T) {
			fwd, echo := forwardPair(t, engine, "127.0.0.1:0", "127.0.0.1:0",
				[]string{"--proxy-protocol", "required", "--trusted-proxies", "127.0.0.1/32"},
				[]string{"--send-proxy", version})
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.7")}, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", fwd.addr())
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(waitLimit))
			io.WriteString(c, "who am I\n")
			c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil || string(got) != "hello\r\nwho am I\n" {
				t.Fatalf("got %q, %v", got, err)
			}
			waitContains(t, echo.stderr, "remote="+c.LocalAddr().String())
			c.Close()
		})
	}
}

// A reset travels as a reset: the client resets, and the echo server
// behind sees its connection reset too.
func TestForwardResetTravels(t *testing.T) {
	forEachEngine(t, forwardResetTravels)
}

func forwardResetTravels(t *testing.T, engine string) {
	fwd, echo := forwardPair(t, engine, "127.0.0.1:0", "127.0.0.1:0", nil, nil)
	c, err := net.DialTimeout("tcp", fwd.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.ReadFull(c, make([]byte, 7)); err != nil { // the greeting, through
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	waitContains(t, echo.stderr, "reset by peer")
}

// TestForwardTLSBothEnds terminates TLS on LISTEN and originates it to a
// TLS echo server: tcpkit connect --tls → forward → tcpkit echo --tls-cert.
func TestForwardTLSBothEnds(t *testing.T) {
	forEachEngine(t, forwardTLSBothEnds)
}

func forwardTLSBothEnds(t *testing.T, engine string) {
	cert, key, _ := certFiles(t, t.TempDir(), "fwd", time.Hour)
	fwd, _ := forwardPair(t, engine, "127.0.0.1:0", "127.0.0.1:0",
		[]string{"--tls-cert", cert, "--tls-key", key},
		[]string{"--tls-cert", cert, "--tls-key", key, "--target-tls", "--target-ca", cert, "--target-server-name", "localhost"})
	in := binaryData(256 << 10)
	r := runCLI(t, bytes.NewReader(in), "connect", "--tls", "--ca", cert, "--server-name", "localhost", fwd.addr())
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	checkEcho(t, []byte(r.stdout), in)

	// TARGET with a certificate forward does not trust: one line, closed.
	other := startEcho(t, "--engine", engine, "--tls-self-signed", "127.0.0.1:0")
	bad := startCommand(t, "forward", "--engine", engine, "--target-tls", "127.0.0.1:0", other.addr())
	c, err := net.DialTimeout("tcp", bad.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(waitLimit))
	n, _ := c.Read(make([]byte, 1))
	c.Close()
	if n != 0 {
		t.Fatal("served through an untrusted TARGET")
	}
	if m := regexp.MustCompile(`cannot reach the target.*unknown authority`).FindString(bad.stderr.String()); m == "" {
		t.Errorf("no line about the untrusted target:\n%s", bad.stderr.String())
	}
}

// TestForwardShutdown: SIGTERM lets a pair finish, then exits 0.
func TestForwardShutdown(t *testing.T) {
	forEachEngine(t, forwardShutdown)
}

func forwardShutdown(t *testing.T, engine string) {
	fwd, _ := forwardPair(t, engine, "127.0.0.1:0", "127.0.0.1:0", []string{"--quiet"}, []string{"--shutdown-idle", "200ms"})
	c, err := net.DialTimeout("tcp", fwd.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(waitLimit))
	io.ReadFull(c, make([]byte, 7))
	fwd.sigs <- syscall.SIGTERM
	// The idle pair is ended: the client reads the end, not a reset.
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("client: %v", err)
	}
	c.Close()
	if code := fwd.wait(t); code != 0 {
		t.Errorf("exit %d:\n%s", code, fwd.stderr.String())
	}
}
