package main

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEchoSocketActivation runs tcpkit echo under systemd-socket-activate,
// which binds the sockets, waits for the first connection and then starts
// the service with them: the connection waiting in the backlog is served,
// on TCP and on a Unix socket, and the Unix socket's file, the manager's,
// outlives the service's graceful exit.
func TestEchoSocketActivation(t *testing.T) {
	forEachEngine(t, echoSocketActivation)
}

func echoSocketActivation(t *testing.T, engine string) {
	tcpAddr := freeLoopbackAddr(t)
	dir, err := os.MkdirTemp("/tmp", "tk") // a short path for sun_path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "echo.sock")
	p := startPeer(t, true, "systemd-socket-activate",
		"-l", tcpAddr, "-l", sock, "--fdname=web:local",
		"-E", asMainEnv+"=1", "-E", "GORACE=atexit_sleep_ms=100",
		os.Args[0], "echo", "--engine", engine)
	p.line(t, "Listening on "+sock)

	// The first connection makes the manager start tcpkit echo.
	for _, d := range []struct{ network, addr string }{{"tcp", tcpAddr}, {"unix", sock}} {
		c, err := net.DialTimeout(d.network, d.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(waitLimit))
		c.Write([]byte("activated\n"))
		r := bufio.NewReader(c)
		for _, want := range []string{"hello\r\n", "activated\n"} {
			if line, err := r.ReadString('\n'); line != want {
				t.Fatalf("%s: read %q, %v; want %q; stderr:\n%s", d.network, line, err, want, p.stderr.String())
			}
		}
		c.Close()
	}
	p.line(t, `msg="socket passed by the service manager" name=web addr=`+tcpAddr)
	p.line(t, "msg=listening")

	// systemd-socket-activate execs the service: its process is tcpkit echo.
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatalf("tcpkit echo exited with %v; stderr:\n%s", err, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "msg=stopped") {
		t.Errorf("no clean stop:\n%s", p.stderr.String())
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("the manager's socket file is gone: %v", err)
	}
}

// ADDR and passed sockets together are a usage error.
func TestEchoSocketActivationWithAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, _ := ln.(*net.TCPListener).File()
	defer f.Close()
	p := startProcessWith(t, []*os.File{f}, []string{"LISTEN_FDS=1"}, "echo", "127.0.0.1:0")
	if code := p.wait(t); code != exitUsage || !strings.Contains(p.stderr.String(), "drop ADDR") {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr.String())
	}
}
