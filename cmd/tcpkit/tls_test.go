package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit/tlsutil"
)

// These tests check tcpkit's TLS against the TLS programs people use:
// openssl s_client and s_server, Node's tls module and socat's OPENSSL
// addresses, in both directions, over TCP and (where the peer can) Unix
// sockets.

// certFiles writes a self-signed certificate for hosts, valid for validFor
// (negative: expired), and its key, as PEM files under dir; it returns
// their paths and the certificate's fingerprint.
func certFiles(t *testing.T, dir, name string, validFor time.Duration, hosts ...string) (cert, key, fp string) {
	t.Helper()
	c, err := tlsutil.SelfSigned(validFor, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key, tlsutil.Fingerprint(c.Certificate[0])
}

// nodeTLSClient is nodeClient over TLS, trusting the CA file given.
const nodeTLSClient = `
const tls = require('tls'), fs = require('fs');
const opts = Object.assign(JSON.parse(process.argv[1]), {ca: fs.readFileSync(process.argv[2]), servername: 'localhost'});
const chunks = [];
const client = tls.connect(opts, () => {
  client.write('world!\r\n');
  client.write(Buffer.from(Array.from({length: 256}, (_, i) => i)));
  client.end();
});
client.on('data', (data) => chunks.push(data));
client.on('end', () => process.stdout.write(Buffer.concat(chunks)));
client.on('error', (err) => { console.error(err.message); process.exit(1); });
`

// nodeTLSServer is the seed's echo server over TLS.
const nodeTLSServer = `
const tls = require('tls'), fs = require('fs');
const server = tls.createServer({cert: fs.readFileSync(process.argv[2]), key: fs.readFileSync(process.argv[3])}, (c) => {
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

// TestEchoTLSInterop drives tcpkit echo --tls-cert with TLS clients.
func TestEchoTLSInterop(t *testing.T) {
	cert, key, _ := certFiles(t, t.TempDir(), "echo", time.Hour)
	bin := binaryData(64 << 10)
	for _, tr := range transports {
		for _, engine := range serverEngines {
			t.Run(tr.name+"/"+engine, func(t *testing.T) { echoTLSInterop(t, tr, engine, cert, key, bin) })
		}
	}
}

func echoTLSInterop(t *testing.T, tr transport, engine, cert, key string, bin []byte) {
	e := startEcho(t, "--engine", engine, "--tls-cert", cert, "--tls-key", key, tr.listen(t))
	addr := e.addr()
	host, port, _ := net.SplitHostPort(addr)
	t.Run("tcpkit-connect", func(t *testing.T) {
		r := runCLI(t, bytes.NewReader(bin), "connect", "--tls", "--ca", cert, "--server-name", "localhost", addr)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		checkEcho(t, []byte(r.stdout), bin)
	})
	t.Run("node", func(t *testing.T) {
		got := runPeer(t, nil, "node", "-e", nodeTLSClient, nodeOptions(t, addr), cert)
		checkEcho(t, got, append([]byte("world!\r\n"), binaryData(256)...))
	})
	if tr.name == "tcp" { // socat's OPENSSL address is TCP only
		t.Run("socat", func(t *testing.T) {
			got := runPeer(t, bin, "socat", "-t", "10", "-", "OPENSSL:"+addr+",cafile="+cert+",commonname=localhost")
			checkEcho(t, got, bin)
		})
	}
	t.Run("openssl-s_client", func(t *testing.T) {
		target := []string{"-connect", net.JoinHostPort(host, port)}
		if tr.name == "unix" {
			target = []string{"-unix", addr}
		}
		p := startPeer(t, false, "openssl", append([]string{"s_client", "-quiet", "-verify_return_error",
			"-CAfile", cert, "-servername", "localhost"}, target...)...)
		p.line(t, "hello")
		if _, err := p.stdin.Write([]byte("ping from openssl\n")); err != nil {
			t.Fatal(err)
		}
		p.line(t, "ping from openssl")
	})
	if strings.Contains(e.stderr.String(), "handshake") {
		t.Errorf("a handshake failed:\n%s", e.stderr)
	}
}

// TestConnectTLSInterop points tcpkit connect --tls at TLS servers.
func TestConnectTLSInterop(t *testing.T) {
	cert, key, _ := certFiles(t, t.TempDir(), "peer", time.Hour)
	for _, tr := range transports {
		t.Run(tr.name+"/node", func(t *testing.T) {
			addr := tr.listen(t)
			opts := nodeOptions(t, addr)
			if tr.name == "tcp" {
				opts = `{"host":"127.0.0.1","port":0}`
			}
			p := startPeer(t, false, "node", "-e", nodeTLSServer, opts, cert, key)
			l := p.line(t, "listening ")
			if tr.name == "tcp" {
				addr = "127.0.0.1:" + strings.TrimPrefix(l, "listening ")
			}
			in := binaryData(32 << 10)
			r := runCLI(t, bytes.NewReader(in), "connect", "--tls", "--ca", cert, "--server-name", "localhost", addr)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			checkEcho(t, []byte(r.stdout), in)
		})
		t.Run(tr.name+"/openssl-s_server", func(t *testing.T) {
			var addr string
			args := []string{"s_server", "-rev", "-quiet", "-cert", cert, "-key", key}
			if tr.name == "tcp" {
				addr = freeLoopbackAddr(t)
				args = append(args, "-accept", addr)
			} else {
				// s_server fails on a long path (BIO addr_strings): keep it short.
				dir, err := os.MkdirTemp("/tmp", "tk")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(dir) })
				addr = filepath.Join(dir, "s.sock")
				args = append(args, "-unix", addr)
			}
			srv := startPeer(t, false, "openssl", args...)
			waitDialable(t, addr, srv)
			r := runCLI(t, strings.NewReader("hello tcpkit\n"), "connect", "--tls", "--ca", cert, "--server-name", "localhost", addr)
			if r.code != 0 || !strings.Contains(r.stdout, "tikpct olleh") {
				t.Fatalf("exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
			}
		})
	}
	t.Run("tcp/socat", func(t *testing.T) {
		addr := freeLoopbackAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		srv := startPeer(t, false, "socat", "OPENSSL-LISTEN:"+port+",bind=127.0.0.1,reuseaddr,fork,cert="+cert+",key="+key+",verify=0", "PIPE")
		waitDialable(t, addr, srv)
		in := binaryData(32 << 10)
		r := runCLI(t, bytes.NewReader(in), "connect", "--tls", "--ca", cert, addr)
		if r.code != 0 || r.stdout != string(in) {
			t.Fatalf("exit %d, %d bytes back of %d, stderr %s", r.code, len(r.stdout), len(in), r.stderr)
		}
	})
}

// TestConnectTLSRefusals checks that tcpkit connect refuses a server it
// must not trust, with one line that says why.
func TestConnectTLSRefusals(t *testing.T) {
	dir := t.TempDir()
	good, goodKey, fp := certFiles(t, dir, "good", time.Hour)
	expired, expiredKey, _ := certFiles(t, dir, "expired", -time.Minute)
	other, otherKey, _ := certFiles(t, dir, "other", time.Hour, "example.com")
	cases := []struct {
		name, cert, key string
		args            []string
		want            string
	}{
		{"unknown-authority", good, goodKey, nil, "unknown authority"},
		{"expired", expired, expiredKey, []string{"--ca", expired}, "expired"},
		{"name-mismatch", other, otherKey, []string{"--ca", other}, "name mismatch"},
		{"pin-mismatch", other, otherKey, []string{"--pin", fp}, "pin mismatch"},
	}
	for i, tc := range cases { // the servers alternate engines
		t.Run(tc.name, func(t *testing.T) {
			e := startEcho(t, "--engine", serverEngines[i%len(serverEngines)], "--tls-cert", tc.cert, "--tls-key", tc.key, "127.0.0.1:0")
			r := runCLI(t, strings.NewReader("x"), append(append([]string{"connect", "--tls"}, tc.args...), e.addr())...)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != 1 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) || r.stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and one line saying %q", r.code, r.stdout, r.stderr, tc.want)
			}
		})
	}
	t.Run("pin-match", func(t *testing.T) {
		e := startEcho(t, "--tls-cert", good, "--tls-key", goodKey, "127.0.0.1:0")
		r := runCLI(t, strings.NewReader("pinned\n"), "connect", "--tls", "--pin", strings.ToUpper(fp), e.addr())
		if r.code != 0 || r.stdout != "hello\r\npinned\n" {
			t.Fatalf("exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
		}
	})
}

// TestEchoTLSSelfSigned checks that --tls-self-signed logs a fingerprint
// that --pin accepts as it is written.
func TestEchoTLSSelfSigned(t *testing.T) {
	forEachEngine(t, echoTLSSelfSigned)
}

func echoTLSSelfSigned(t *testing.T, engine string) {
	e := startEcho(t, "--engine", engine, "--tls-self-signed", "127.0.0.1:0")
	m := regexp.MustCompile(`fingerprint=([0-9a-f]{64})`).FindStringSubmatch(e.stderr.String())
	if m == nil {
		t.Fatalf("no fingerprint in the log:\n%s", e.stderr)
	}
	r := runCLI(t, strings.NewReader("self\n"), "connect", "--tls", "--pin", m[1], e.addr())
	if r.code != 0 || r.stdout != "hello\r\nself\n" {
		t.Fatalf("exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
}

// TestEchoTLSReloadsOnSIGHUP replaces the certificate files under a
// running tcpkit echo and sends SIGHUP: new connections get the new
// certificate.
func TestEchoTLSReloadsOnSIGHUP(t *testing.T) {
	forEachEngine(t, echoTLSReloadsOnSIGHUP)
}

func echoTLSReloadsOnSIGHUP(t *testing.T, engine string) {
	dir := t.TempDir()
	cert, key, fp1 := certFiles(t, dir, "cert", time.Hour)
	p, addr := startEchoProcess(t, "--engine", engine, "--tls-cert", cert, "--tls-key", key, "127.0.0.1:0")
	pinned := func(fp string) int {
		return runCLI(t, strings.NewReader("x"), "connect", "--tls", "--pin", fp, addr).code
	}
	if code := pinned(fp1); code != 0 {
		t.Fatalf("first certificate: exit %d", code)
	}
	_, _, fp2 := certFiles(t, dir, "cert", time.Hour) // overwrites the files
	p.signal(t, syscall.SIGHUP)
	p.line(t, "certificate reloaded")
	if code := pinned(fp2); code != 0 {
		t.Fatalf("after SIGHUP, the new certificate: exit %d", code)
	}
	if code := pinned(fp1); code != 1 {
		t.Fatalf("after SIGHUP, the old certificate is still served (exit %d)", code)
	}
	// A broken file keeps the certificate in use.
	os.WriteFile(cert, []byte("not PEM"), 0o644)
	p.signal(t, syscall.SIGHUP)
	p.line(t, "keeping the old certificate")
	if code := pinned(fp2); code != 0 {
		t.Fatalf("after a failed reload: exit %d", code)
	}
}

// freeLoopbackAddr returns a 127.0.0.1 address with a port free just now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitDialable waits, for at most waitLimit, until addr accepts a
// connection.
func waitDialable(t *testing.T, addr string, p *program) {
	t.Helper()
	network := "tcp"
	if strings.Contains(addr, "/") {
		network = "unix"
	}
	deadline := time.Now().Add(waitLimit)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not accepting within %v: %v; its stderr:\n%s", addr, waitLimit, err, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
