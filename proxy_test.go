package tcpkit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// proxyServer serves an echo that first writes the remote and local
// addresses it sees, with policy and trusted, and records failures and
// headers.
type proxyServer struct {
	addr     string
	s        *Server
	failures chan *HandshakeError
	headers  chan *proxyproto.Header
}

func startProxyServer(t *testing.T, e engine, addr string, policy ProxyPolicy, trusted ...string) *proxyServer {
	ps := &proxyServer{failures: make(chan *HandshakeError, 16), headers: make(chan *proxyproto.Header, 16)}
	ps.s = &Server{
		ProxyProtocol:      policy,
		ProxyHeaderTimeout: 2 * time.Second,
		Logger:             failOnPanicLogger(t),
		Handler: func(c *Conn) {
			ps.headers <- c.ProxyHeader()
			c.WriteString(c.RemoteAddr().String() + " " + c.LocalAddr().String() + "\n")
			Pipe(c, c)
		},
		OnHandshakeError: func(err *HandshakeError) { ps.failures <- err },
	}
	for _, p := range trusted {
		ps.s.TrustedProxies = append(ps.s.TrustedProxies, netip.MustParsePrefix(p))
	}
	ps.addr = startServer(t, e, ps.s, addr)
	return ps
}

// exchange sends pre (a header, or nothing) and then msg in chunks of at
// most chunk bytes, half-closes, and returns everything read back.
func exchange(t *testing.T, addr string, pre []byte, msg string, chunk int) (string, error) {
	t.Helper()
	nc := dialRaw(t, addr)
	all := append(bytes.Clone(pre), msg...)
	for len(all) > 0 {
		n := min(len(all), chunk)
		if _, err := nc.Write(all[:n]); err != nil {
			return "", err
		}
		all = all[n:]
		if chunk < 8 {
			time.Sleep(time.Millisecond) // separate reads on the server
		}
	}
	nc.(interface{ CloseWrite() error }).CloseWrite() // fails if the server has closed already
	got, err := io.ReadAll(nc)
	return string(got), err
}

func header(t *testing.T, version byte, src, dst string) *proxyproto.Header {
	h := proxyproto.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)),
		net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
	if version == 2 {
		if err := h.SetTLVs([]proxyproto.TLV{{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("example.com")}}); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func formatHeader(t *testing.T, h *proxyproto.Header) []byte {
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestProxyHeaderGivesRealAddresses(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		ps := startProxyServer(t, e, addr, ProxyRequired)
		for _, version := range []byte{1, 2} {
			for _, chunk := range []int{1, 5, 4096} {
				h := header(t, version, "203.0.113.7:40001", "198.51.100.1:443")
				got, err := exchange(t, ps.addr, formatHeader(t, h), "payload after the header", chunk)
				want := "203.0.113.7:40001 198.51.100.1:443\npayload after the header"
				if err != nil || got != want {
					t.Fatalf("v%d chunk %d: got %q, %v; want %q", version, chunk, got, err, want)
				}
				seen := waitFor(t, ps.headers, 5*time.Second, "header")
				if seen == nil || seen.Version != version {
					t.Fatalf("ProxyHeader = %+v", seen)
				}
				if version == 2 {
					tlvs, err := seen.TLVs()
					if err != nil || len(tlvs) != 1 || string(tlvs[0].Value) != "example.com" {
						t.Errorf("TLVs = %v, %v", tlvs, err)
					}
				}
			}
		}
	})
}

func TestProxyLocalCommandKeepsSocketAddresses(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		ps := startProxyServer(t, e, "127.0.0.1:0", ProxyRequired)
		h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
		got, err := exchange(t, ps.addr, formatHeader(t, h), "hc", 4096)
		if err != nil || !strings.HasPrefix(got, "127.0.0.1:") || !strings.HasSuffix(got, " "+ps.addr+"\nhc") {
			t.Fatalf("got %q, %v", got, err)
		}
	})
}

func TestProxyRefusals(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		v1 := formatHeader(t, header(t, 1, "203.0.113.7:1", "198.51.100.1:2"))
		cases := []struct {
			name    string
			policy  ProxyPolicy
			trusted []string
			pre     []byte
			want    string // in the HandshakeError
		}{
			{"none where required", ProxyRequired, nil, []byte("GET / HTTP/1.0\r\n"), "does not begin with a PROXY"},
			{"malformed v1", ProxyRequired, nil, []byte("PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n"), "proxyproto"},
			{"v1 too long", ProxyRequired, nil, []byte("PROXY " + strings.Repeat("x", 120)), "107 bytes"},
			{"malformed v2", ProxyRequired, nil, append(bytes.Clone(proxyV2Sig), 0x21, 0x11, 0, 3, 1, 2, 3), "proxyproto"},
			{"untrusted, optional", ProxyOptional, []string{"10.0.0.0/8"}, v1, "not a trusted proxy"},
			{"untrusted, required", ProxyRequired, []string{"10.0.0.0/8"}, v1, "not a trusted proxy"},
			{"incomplete", ProxyRequired, nil, v1[:10], "before a whole PROXY"},
		}
		for _, tc := range cases {
			t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
				ps := startProxyServer(t, e, "127.0.0.1:0", tc.policy, tc.trusted...)
				got, err := exchange(t, ps.addr, tc.pre, "", 4096)
				if got != "" {
					t.Errorf("the client got %q (%v); want the connection closed unserved", got, err)
				}
				f := waitFor(t, ps.failures, 5*time.Second, "handshake failure")
				if f.Stage != "proxy" || !strings.Contains(f.Error(), tc.want) {
					t.Errorf("failure %q; want stage proxy and %q", f, tc.want)
				}
			})
		}
	})
}

func TestProxyOptionalWithoutHeader(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		ps := startProxyServer(t, e, addr, ProxyOptional)
		// "PRO" looks like the start of a v1 header until the next byte.
		for _, msg := range []string{"hello there", "PROBLEM", "\r\n\r\nnot v2"} {
			got, err := exchange(t, ps.addr, nil, msg, 2)
			if err != nil || !strings.HasSuffix(got, "\n"+msg) {
				t.Fatalf("%q: got %q, %v", msg, got, err)
			}
			if h := waitFor(t, ps.headers, 5*time.Second, "handler"); h != nil {
				t.Errorf("ProxyHeader = %v, want nil", h)
			}
		}
		// A client that sends nothing is served once the header timeout passes.
		nc := dialRaw(t, ps.addr)
		line := make([]byte, 1)
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Read(line); err != nil {
			t.Fatalf("a silent client under ProxyOptional: %v", err)
		}
	})
}

func TestProxyThenTLS(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		remotes := make(chan string, 1)
		s := &Server{ProxyProtocol: ProxyRequired, TLS: testServerTLS(), Logger: failOnPanicLogger(t),
			Handler: func(c *Conn) { remotes <- c.RemoteAddr().String(); Pipe(c, c) }}
		addr := startServer(t, e, s, "127.0.0.1:0")
		d := e.dialer()
		d.TLS = testClientTLS()
		d.ProxyHeader = header(t, 2, "192.0.2.9:5555", "192.0.2.1:443")
		got := make(chan []byte, 8)
		c, err := d.Dial(context.Background(), addr, func(c *Conn) { c.OnData(func(p []byte) { got <- bytes.Clone(p) }) })
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.WriteString("secret")
		if r := waitFor(t, remotes, 5*time.Second, "handler"); r != "192.0.2.9:5555" {
			t.Errorf("RemoteAddr %s", r)
		}
		if p := waitFor(t, got, 5*time.Second, "echo"); string(p) != "secret" {
			t.Errorf("echo %q", p)
		}
	})
}

func TestProxyLimitsApplyToRealClient(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		r := newDropRecorder()
		s := &Server{ProxyProtocol: ProxyRequired, MaxConnsPerIP: 1, OnDrop: r.record, Logger: failOnPanicLogger(t),
			Deny:    []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
			Handler: func(c *Conn) { Pipe(c, c) }}
		addr := startServer(t, e, s, "127.0.0.1:0")
		send := func(src string) net.Conn {
			nc := dialRaw(t, addr)
			nc.Write(formatHeader(t, header(t, 2, src, "192.0.2.1:80")))
			return nc
		}
		served := func(nc net.Conn) bool {
			io.WriteString(nc, "p")
			b := make([]byte, 1)
			_, err := io.ReadFull(nc, b)
			return err == nil
		}
		a1 := send("203.0.113.1:1000")
		if !served(a1) {
			t.Fatal("first client from 203.0.113.1 not served")
		}
		// All come from 127.0.0.1; the limits see the header's addresses.
		if !served(send("203.0.113.2:1000")) {
			t.Error("a second real client was refused")
		}
		if served(send("203.0.113.1:1001")) {
			t.Error("a second connection from 203.0.113.1 was served past MaxConnsPerIP 1")
		}
		if served(send("198.51.100.5:1000")) {
			t.Error("a denied real client was served")
		}
		reasons := r.reasons(t, 2)
		if len(reasons) != 2 || reasons[0] != DropPerIP || reasons[1] != DropDenied {
			t.Errorf("drops %v", reasons)
		}
		a1.Close()
		deadline := time.Now().Add(5 * time.Second)
		for !served(send("203.0.113.1:1002")) {
			if time.Now().After(deadline) {
				t.Fatal("203.0.113.1 still refused after its connection closed")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func TestParseProxyPolicy(t *testing.T) {
	for _, p := range []ProxyPolicy{ProxyOff, ProxyOptional, ProxyRequired} {
		if got, err := ParseProxyPolicy(p.String()); err != nil || got != p {
			t.Errorf("ParseProxyPolicy(%q) = %v, %v", p.String(), got, err)
		}
	}
	if _, err := ParseProxyPolicy("yes"); err == nil {
		t.Error("ParseProxyPolicy(yes) accepted")
	}
}

// FuzzProxyStage feeds the PROXY stage random bytes in random chunks: it
// must never panic, must agree with itself however the bytes are split,
// and must hand on every byte after a header.
func FuzzProxyStage(f *testing.F) {
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nhello"), uint64(1))
	f.Add([]byte("PROXY UNKNOWN\r\n"), uint64(2))
	f.Add(append(bytes.Clone(proxyV2Sig), 0x21, 0x11, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 'x'), uint64(3))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n"), uint64(4))
	f.Add([]byte("GET /"), uint64(5))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		run := func(chunks bool) (h *proxyproto.Header, rest []byte, done bool, err error) {
			st := &proxyStage{policy: ProxyOptional, trusted: true}
			rng := rand.New(rand.NewPCG(seed, 1))
			b := in
			for len(b) > 0 {
				n := len(b)
				if chunks {
					n = 1 + rng.IntN(len(b))
				}
				h, rest, done, err = st.feed(b[:n])
				b = b[n:]
				if done && err != nil {
					return h, nil, done, err
				}
				if done {
					return h, append(rest, b...), done, err
				}
			}
			return nil, nil, false, nil
		}
		h1, r1, d1, e1 := run(false)
		h2, r2, d2, e2 := run(true)
		if d1 != d2 || (e1 == nil) != (e2 == nil) || (h1 == nil) != (h2 == nil) || !bytes.Equal(r1, r2) {
			t.Fatalf("whole: %v %q %v %v; chunked: %v %q %v %v", h1, r1, d1, e1, h2, r2, d2, e2)
		}
		if d1 && e1 == nil && h1 == nil && !bytes.Equal(r1, in) {
			t.Fatalf("no header, but the bytes changed: %q -> %q", in, r1)
		}
		if errors.Is(e1, errNoProxyHeader) {
			t.Fatalf("optional policy returned errNoProxyHeader")
		}
	})
}
