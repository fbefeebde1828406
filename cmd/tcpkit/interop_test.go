package main

import (
	"bytes"
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"testing"
)

// These tests check tcpkit against the programs people will point at it:
// netcat (OpenBSD), socat, telnet and Node's net module. A missing program
// skips its test, except on CI, where it fails.

// transport is one way to reach an echo server.
type transport struct {
	name   string
	listen func(t *testing.T) string // the address for tcpkit echo
}

var transports = []transport{
	{name: "tcp", listen: func(*testing.T) string { return "127.0.0.1:0" }},
	{name: "unix", listen: sockPath},
}

// nodeClient is the seed's client, made to check what it gets: it writes a
// line and every byte value, half-closes, and prints all it received once
// the server ends.
const nodeClient = `
const net = require('net');
const chunks = [];
const client = net.connect(JSON.parse(process.argv[1]), () => {
  client.write('world!\r\n');
  client.write(Buffer.from(Array.from({length: 256}, (_, i) => i)));
  client.end();
});
client.on('data', (data) => chunks.push(data));
client.on('end', () => process.stdout.write(Buffer.concat(chunks)));
client.on('error', (err) => { console.error(err.message); process.exit(1); });
`

// nodeServer is the seed's echo server on the address given as JSON; it
// prints its port (or path) once listening.
const nodeServer = `
const net = require('net');
const server = net.createServer((c) => {
  c.on('error', () => {});
  c.write('hello\r\n');
  c.pipe(c);
});
server.on('error', (err) => { console.error(err.message); process.exit(1); });
server.listen(JSON.parse(process.argv[1]), () => {
  const a = server.address();
  console.log('listening ' + (typeof a === 'string' ? a : a.port));
});
`

// nodeOptions turns an address of tcpkit's grammar into net.connect or
// server.listen options.
func nodeOptions(t *testing.T, addr string) string {
	t.Helper()
	var opts map[string]any
	if host, port, err := net.SplitHostPort(addr); err == nil {
		opts = map[string]any{"host": host, "port": port}
	} else {
		opts = map[string]any{"path": strings.TrimPrefix(addr, "unix:")}
	}
	b, err := json.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestEchoInterop drives tcpkit echo with each client program, over TCP
// and over a Unix socket.
func TestEchoInterop(t *testing.T) {
	line := []byte("world!\r\n")
	bin := binaryData(64 << 10)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			e := startEcho(t, tr.listen(t))
			addr := e.addr()
			host, port, _ := net.SplitHostPort(addr)

			t.Run("nc", func(t *testing.T) {
				args := []string{"-N", host, port}
				if tr.name == "unix" {
					args = []string{"-N", "-U", addr}
				}
				got := runPeer(t, bin, "nc", args...)
				checkEcho(t, got, bin)
			})
			t.Run("socat", func(t *testing.T) {
				target := "TCP:" + addr
				if tr.name == "unix" {
					target = "UNIX-CONNECT:" + addr
				}
				got := runPeer(t, bin, "socat", "-t", "10", "-", target)
				checkEcho(t, got, bin)
			})
			t.Run("node", func(t *testing.T) {
				got := runPeer(t, nil, "node", "-e", nodeClient, nodeOptions(t, addr))
				want := append(append([]byte{}, line...), binaryData(256)...)
				checkEcho(t, got, want)
			})
			if tr.name == "tcp" {
				t.Run("telnet", func(t *testing.T) {
					telnetSession(t, host, port)
					// telnet sends the line with CRLF: 17 bytes in, and the
					// greeting and the line out.
					waitContains(t, e.stderr, "bytes_in=17 bytes_out=24")
				})
			}
		})
	}
}

// checkEcho checks that an echo server sent the greeting, then sent back
// what it received, byte for byte.
func checkEcho(t *testing.T, got, sent []byte) {
	t.Helper()
	want := append([]byte("hello\r\n"), sent...)
	if !bytes.Equal(got, want) {
		n := 0
		for n < len(got) && n < len(want) && got[n] == want[n] {
			n++
		}
		t.Errorf("got %d bytes, want %d; first difference at byte %d (got %q...)",
			len(got), len(want), n, got[n:min(len(got), n+16)])
	}
}

// telnetSession types a line into telnet, as a person would, waits for it
// to come back, and then ends the input.
func telnetSession(t *testing.T, host, port string) {
	p := startPeer(t, false, "telnet", host, port)
	p.line(t, "Connected to")
	p.line(t, "hello")
	if _, err := p.stdin.Write([]byte("typed in telnet\n")); err != nil {
		t.Fatal(err)
	}
	p.line(t, "typed in telnet")
	p.stdin.Close()
	p.wait(t) // telnet exits at the end of its input
}

// TestConnectInterop drives tcpkit connect against echo servers written
// with socat and with Node, over TCP and over a Unix socket: 1 MiB in,
// half-close, the full reply out, byte-exact.
func TestConnectInterop(t *testing.T) {
	in := binaryData(1 << 20)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Run("socat", func(t *testing.T) {
				listen := "TCP-LISTEN:0,bind=127.0.0.1"
				if tr.name == "unix" {
					listen = "UNIX-LISTEN:" + sockPath(t)
				}
				p := startPeer(t, true, "socat", "-d", "-d", "-t", "10", listen, "EXEC:cat")
				addr := socatAddr(t, p.line(t, "listening on"))
				r := runCLI(t, bytes.NewReader(in), "connect", addr)
				if r.code != 0 || r.stderr != "" {
					t.Fatalf("exit code %d, stderr %q", r.code, r.stderr)
				}
				if !bytes.Equal([]byte(r.stdout), in) {
					t.Errorf("got %d bytes back, want the %d sent, byte-exact", len(r.stdout), len(in))
				}
			})
			t.Run("node", func(t *testing.T) {
				addr := "127.0.0.1:0"
				if tr.name == "unix" {
					addr = sockPath(t)
				}
				p := startPeer(t, false, "node", "-e", nodeServer, nodeOptions(t, addr))
				bound := strings.TrimPrefix(p.line(t, "listening "), "listening ")
				if tr.name == "tcp" {
					bound = "127.0.0.1:" + bound
				}
				r := runCLI(t, bytes.NewReader(in), "connect", bound)
				if r.code != 0 || r.stderr != "" {
					t.Fatalf("exit code %d, stderr %q", r.code, r.stderr)
				}
				checkEcho(t, []byte(r.stdout), in)
			})
		})
	}
}

// socatAddr reads the bound address from socat's "listening on" notice:
// `... N listening on AF=2 127.0.0.1:40123` or `AF=1 "/path"`.
func socatAddr(t *testing.T, notice string) string {
	t.Helper()
	m := regexp.MustCompile(`listening on AF=\d+ "?([^"\s]+)"?`).FindStringSubmatch(notice)
	if m == nil {
		t.Fatalf("no address in socat's notice %q", notice)
	}
	return m[1]
}
