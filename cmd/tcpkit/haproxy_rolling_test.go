package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit/internal/loadgen"
	"github.com/tcpkit/tcpkit/internal/testenv"
)

// instance is one tcpkit echo behind HAProxy.
type instance struct {
	name, addr, agent, engine string
	p                         *process
}

func (in *instance) start(t *testing.T) {
	t.Helper()
	in.p = startProcess(t, "echo", "--engine", in.engine, "--proxy-protocol", "required", "--trusted-proxies", "127.0.0.9/32",
		"--haproxy-agent", in.agent, "--drain-delay", "1500ms", "--shutdown-idle", "100ms", "--grace", "10s", in.addr)
	in.p.line(t, "msg=listening")
}

// TestHAProxyRollingRestart runs three tcpkit echo behind a real HAProxy,
// configured with deploy/haproxy/haproxy.cfg as it is (PROXY v2, health
// checks, agent checks, redispatch). While tcpkit bench --mode connect
// makes connections through HAProxy from three source addresses, each
// instance in turn is stopped with SIGTERM (its agent says drain, it goes
// on accepting for the drain delay, then closes and drains) and started
// again: bench sees no error at all, and each instance saw the clients'
// own addresses.
func TestHAProxyRollingRestart(t *testing.T) {
	haproxy := testenv.LookPath(t, "haproxy")
	frontend := freeLoopbackAddr(t)
	// HAProxy connects from 127.0.0.9, the one trusted proxy (and its
	// connections' TIME_WAIT stays off 127.0.0.1, where tests bind port 0).
	env := []string{"TCPKIT_FRONTEND=" + frontend, "TCPKIT_SOURCE=127.0.0.9"}
	var ins []*instance
	for i := 1; i <= 3; i++ {
		in := &instance{name: fmt.Sprintf("s%d", i), addr: freeLoopbackAddr(t), agent: freeLoopbackAddr(t),
			engine: serverEngines[i%len(serverEngines)]} // both engines behind one HAProxy
		_, agentPort, _ := net.SplitHostPort(in.agent)
		env = append(env, fmt.Sprintf("TCPKIT_S%d=%s", i, in.addr), fmt.Sprintf("TCPKIT_A%d=%s", i, agentPort))
		in.start(t)
		ins = append(ins, in)
	}

	var hlog syncBuffer
	cmd := exec.Command(haproxy, "-db", "-f", filepath.Join("..", "..", "deploy", "haproxy", "haproxy.cfg"))
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &hlog, &hlog
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitEchoThrough(t, frontend, &hlog)

	bench := startProcess(t, "bench", "--mode", "connect", "-c", "1", "-d", "11s", "--warmup", "0s",
		"--greeting", `hello\r\n`, "--sources", "3", "--json", "--timeout", "5s", frontend)
	time.Sleep(time.Second)
	for _, in := range ins {
		in.p.signal(t, syscall.SIGTERM)
		if code := in.p.wait(t); code != 0 {
			t.Fatalf("%s exited with %d:\n%s", in.name, code, in.p.stderr.String())
		}
		log := in.p.stderr.String()
		if !strings.Contains(log, "draining: the HAProxy agent says drain") {
			t.Errorf("%s did not drain:\n%s", in.name, log)
		}
		if !strings.Contains(log, "remote=127.0.0.2:") && !strings.Contains(log, "remote=127.0.0.3:") {
			t.Errorf("%s never saw a client's own address (127.0.0.2 or .3):\n%s", in.name, log)
		}
		in.start(t)
		// Clients come again once HAProxy's agent check hears "up".
		in.p.line(t, `msg="client connected"`)
	}
	if code := bench.wait(t); code != 0 {
		t.Errorf("bench exited with %d:\n%s", code, bench.stderr.String())
	}
	var res loadgen.Result
	if err := json.Unmarshal(benchJSON(t, bench), &res); err != nil {
		t.Fatalf("bench's JSON: %v", err)
	}
	t.Logf("through HAProxy, three rolling restarts: %d connections, %.0f/s, errors %v", res.Messages, res.MsgsPerSec, res.Errors)
	if res.Errors.Total() != 0 || res.Messages < 300 {
		t.Errorf("bench: %d connections, errors %v, samples %v\nHAProxy:\n%s", res.Messages, res.Errors, res.ErrorSamples, hlog.String())
	}
}

// benchJSON returns the JSON result bench printed on its stdout.
func benchJSON(t *testing.T, p *process) []byte {
	t.Helper()
	b := bytes.TrimSpace([]byte(p.stdout.String()))
	if len(b) == 0 {
		t.Fatalf("bench printed no result; stderr:\n%s", p.stderr.String())
	}
	return b
}

// waitEchoThrough waits until a client gets the greeting through HAProxy.
func waitEchoThrough(t *testing.T, addr string, hlog *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			g := make([]byte, 7)
			_, err = c.Read(g)
			c.Close()
			if err == nil && string(g) == "hello\r\n" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no greeting through HAProxy at %s within %v: %v\n%s", addr, waitLimit, err, hlog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
