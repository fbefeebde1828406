package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit/internal/testenv"
)

// TestHAProxyForwardsRealClientAddresses puts a real HAProxy in front of
// the real tcpkit echo --proxy-protocol required, on both engines, with
// send-proxy-v2 and send-proxy (v1). It proves that HAProxy's header is
// read and taken off the stream: clients from 127.0.0.2, .3 and .4 get the
// greeting and their bytes back exactly, and the server logs each one with
// its own address and port, not HAProxy's 127.0.0.1. It also proves that
// HAProxy's health checks (check-send-proxy: a LOCAL header for v2, a
// header naming the check's own socket for v1) pass the PROXY stage, are
// served with HAProxy's address (each is logged as a client that HAProxy
// then resets, at level INFO), and cause no warning or error in the
// server's log: a header that failed would log one (the first failure of a
// run is a WARN), and a failed check would never reach "client connected".
func TestHAProxyForwardsRealClientAddresses(t *testing.T) {
	testenv.LookPath(t, "haproxy")
	for _, engine := range serverEngines {
		t.Run(engine, func(t *testing.T) {
			for _, send := range []string{"send-proxy-v2", "send-proxy"} {
				t.Run(send, func(t *testing.T) { testHAProxy(t, engine, send) })
			}
		})
	}
}

func testHAProxy(t *testing.T, engine, send string) {
	p, echoAddr := startEchoProcess(t, "--engine", engine, "--log-level", "debug",
		"--proxy-protocol", "required", "--trusted-proxies", "127.0.0.1/32", "127.0.0.1:0")

	front := freeLoopbackAddr(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	conf := fmt.Sprintf(`global
	maxconn 100
	log stderr format raw local0
defaults
	mode tcp
	log global
	option log-health-checks
	timeout connect 2s
	timeout client 10s
	timeout server 10s
frontend fe
	bind %s
	default_backend be
backend be
	server s1 %s %s check check-send-proxy inter 200ms
`, front, echoAddr, send)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	hap := startPeer(t, true, "haproxy", "-db", "-f", cfg)
	dump := func() string {
		return fmt.Sprintf("\ntcpkit stderr:\n%s\nhaproxy stderr:\n%s", p.stderr.String(), hap.stderr.String())
	}

	// HAProxy is ready once a client gets the greeting through it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", front, time.Second)
		if err == nil {
			nc.SetDeadline(time.Now().Add(2 * time.Second))
			_, err = io.ReadFull(nc, make([]byte, len("hello\r\n")))
			nc.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("HAProxy on %s did not pass a greeting on within 5s: %v%s", front, err, dump())
		}
		time.Sleep(50 * time.Millisecond)
	}

	for i, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		nc, err := d.Dial("tcp", front)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetDeadline(time.Now().Add(waitLimit))
		greeting := make([]byte, len("hello\r\n"))
		if _, err := io.ReadFull(nc, greeting); err != nil || string(greeting) != "hello\r\n" {
			t.Fatalf("client %s: greeting %q, %v; want %q%s", src, greeting, err, "hello\r\n", dump())
		}
		// The server logged the client before it greeted it.
		client := nc.LocalAddr().String()
		if !waitRemote(p, client) {
			t.Fatalf("no client connected line with remote=%s within %v%s", client, waitLimit, dump())
		}
		msg := append([]byte(fmt.Sprintf("client %d via %s\n", i, send)), binaryData(1000)...)
		if _, err := nc.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(nc, got); err != nil {
			t.Fatalf("client %s: reading the echo: %v%s", src, err, dump())
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("client %s: echo differs from what was sent:\n got %q\nwant %q", src, got, msg)
		}
	}

	// Health checks every 200ms: each is a connection from HAProxy itself,
	// logged with its socket address. Counting them shows that the checks
	// did pass the PROXY stage: a check that failed it would log a WARN, and
	// a plain L4 check with no header never even reaches accept (HAProxy
	// resets it before the handshake's last ACK).
	before := len(p.stderr.String())
	time.Sleep(1200 * time.Millisecond)
	checks := 0
	for _, l := range strings.Split(p.stderr.String()[before:], "\n") {
		if r, ok := connectedRemote(l); ok && strings.HasPrefix(r, "127.0.0.1:") {
			checks++
			// v2 checks use the LOCAL command, which tcpkit echo logs at
			// DEBUG, out of the way; v1 has no LOCAL: its checks look
			// like clients.
			if send == "send-proxy-v2" && !strings.Contains(l, "level=DEBUG") {
				t.Errorf("a LOCAL health check logged above DEBUG: %s", l)
			}
		}
	}
	if checks < 3 {
		t.Errorf("%d health checks reached the server in 1.2s; want at least 3 (inter 200ms)%s", checks, dump())
	}
	var bad []string
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			bad = append(bad, l)
		}
	}
	if len(bad) > 0 {
		t.Errorf("server logged warnings or errors:\n%s%s", strings.Join(bad, "\n"), dump())
	}
	for _, l := range strings.Split(hap.stderr.String(), "\n") {
		if strings.Contains(l, "is DOWN") || strings.Contains(l, "Health check") && strings.Contains(l, "failed") {
			t.Errorf("HAProxy: %q%s", l, dump())
		}
	}
}

var connectedRE = regexp.MustCompile(`msg="client connected" .*\bremote=(\S+)`)

// connectedRemote returns the remote= of a "client connected" log line.
func connectedRemote(line string) (string, bool) {
	m := connectedRE.FindStringSubmatch(line)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// waitRemote waits, up to waitLimit, for p to log a "client connected"
// line whose remote= is exactly addr.
func waitRemote(p *process, addr string) bool {
	for deadline := time.Now().Add(waitLimit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, l := range strings.Split(p.stderr.String(), "\n") {
			if r, ok := connectedRemote(l); ok && r == addr {
				return true
			}
		}
	}
	return false
}
