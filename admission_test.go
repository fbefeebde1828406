package tcpkit

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// dropRecorder collects a Server's drops; record is its OnDrop.
type dropRecorder struct{ drops chan Drop }

func newDropRecorder() *dropRecorder { return &dropRecorder{drops: make(chan Drop, 16)} }

func (r *dropRecorder) record(d Drop) { r.drops <- d }

// reasons waits for n drops (OnDrop runs after the dropped client already
// sees its connection closed) and returns their reasons, with any more
// that have come by then.
func (r *dropRecorder) reasons(t *testing.T, n int) []DropReason {
	t.Helper()
	var out []DropReason
	for range n {
		out = append(out, waitFor(t, r.drops, 5*time.Second, "a drop").Reason)
	}
	for {
		select {
		case d := <-r.drops:
			out = append(out, d.Reason)
		default:
			return out
		}
	}
}

// dialFrom connects to addr from the source address src ("" for any),
// and reports whether the server serves it: an echo of a ping comes back.
// A connection the server drops reads EOF or a reset instead.
func dialFrom(t *testing.T, src, addr string) (nc net.Conn, served bool) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	network, address, err := ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	nc, err = d.Dial(network, address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(nc, "ping")
	buf := make([]byte, 4)
	_, err = io.ReadFull(nc, buf)
	nc.SetDeadline(time.Time{})
	return nc, err == nil && string(buf) == "ping"
}

func TestServerMaxConnsPerIP(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		r := newDropRecorder()
		conns := make(chan *Conn, 8)
		s := &Server{Handler: func(c *Conn) { Pipe(c, c); conns <- c }, MaxConnsPerIP: 2, OnDrop: r.record}
		addr, served := serveOn(t, e, s, "127.0.0.1:0")
		first, ok1 := dialFrom(t, "127.0.0.1", addr)
		firstConn := waitFor(t, conns, 5*time.Second, "the first connection")
		_, ok2 := dialFrom(t, "127.0.0.1", addr)
		_, ok3 := dialFrom(t, "127.0.0.1", addr)
		_, other := dialFrom(t, "127.0.0.2", addr)
		if !ok1 || !ok2 || ok3 || !other {
			t.Fatalf("served: 127.0.0.1 ×3 %v %v %v, 127.0.0.2 %v; want the third from 127.0.0.1 alone refused", ok1, ok2, ok3, other)
		}
		if got := r.reasons(t, 1); len(got) != 1 || got[0] != DropPerIP {
			t.Errorf("drops %q, want one %q", got, string(DropPerIP))
		}
		first.Close() // its slot is given back once it has closed
		waitFor(t, firstConn.Done(), 5*time.Second, "the first connection's close")
		if _, ok := dialFrom(t, "127.0.0.1", addr); !ok {
			t.Fatal("a client's slot was not given back after its connection closed")
		}
		s.Close()
		waitFor(t, served, 5*time.Second, "Serve to return")
		for _, c := range s.openConns() {
			go c.Close() // the test's other clients
		}
		waitFor(t, s.Done(), 5*time.Second, "the server's close event")
		s.mu.Lock()
		left := len(s.admission.perIP)
		s.mu.Unlock()
		if left != 0 {
			t.Errorf("after every connection closed, %d client addresses are still counted", left)
		}
	})
}

func TestServerAcceptRate(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		r := newDropRecorder()
		s := &Server{Handler: func(c *Conn) { Pipe(c, c) }, AcceptRate: 0.01, AcceptBurst: 2, OnDrop: r.record}
		addr, served := serveOn(t, e, s, addr)
		_, ok1 := dialFrom(t, "", addr)
		_, ok2 := dialFrom(t, "", addr)
		_, ok3 := dialFrom(t, "", addr)
		if !ok1 || !ok2 || ok3 {
			t.Fatalf("served %v %v %v; want a burst of 2, then a refusal", ok1, ok2, ok3)
		}
		if got := r.reasons(t, 1); len(got) != 1 || got[0] != DropRate {
			t.Errorf("drops %q, want one %q", got, string(DropRate))
		}
		s.Close()
		waitFor(t, served, 5*time.Second, "Serve to return")
	})
}

func TestServerAllowDeny(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		r := newDropRecorder()
		s := &Server{
			Handler: func(c *Conn) { Pipe(c, c) },
			Allow:   []netip.Prefix{netip.MustParsePrefix("127.0.0.0/30")},
			Deny:    []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
			OnDrop:  r.record,
		}
		addr, served := serveOn(t, e, s, "127.0.0.1:0")
		for _, tt := range []struct {
			src  string
			want bool
		}{{"127.0.0.1", true}, {"127.0.0.2", false}, {"127.0.0.3", true}, {"127.0.0.4", false}} {
			if _, ok := dialFrom(t, tt.src, addr); ok != tt.want {
				t.Errorf("from %s: served %v, want %v", tt.src, ok, tt.want)
			}
		}
		if got := r.reasons(t, 2); len(got) != 2 || got[0] != DropDenied || got[1] != DropDenied {
			t.Errorf("drops %q, want two %q", got, string(DropDenied))
		}
		s.Close()
		waitFor(t, served, 5*time.Second, "Serve to return")
	})
}

// On a dual-stack listener an IPv4 client's address arrives IPv4-mapped;
// it is unmapped before it is matched, and a mapped prefix matches too.
func TestServerDenyMappedAddresses(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::]:0"); err != nil {
		t.Skipf("no dual-stack listener: %v", err)
	} else {
		ln.Close()
	}
	forEachEngine(t, func(t *testing.T, e engine) {
		var log logBuffer
		s := &Server{
			Handler: func(c *Conn) { Pipe(c, c) },
			Deny: []netip.Prefix{
				netip.MustParsePrefix("127.0.0.2/32"),
				netip.MustParsePrefix("::ffff:127.0.0.3/128"),
			},
			Logger: log.logger(),
		}
		addr, served := serveOn(t, e, s, "[::]:0")
		_, port, _ := net.SplitHostPort(addr)
		for _, tt := range []struct {
			src  string
			want bool
		}{{"127.0.0.1", true}, {"127.0.0.2", false}, {"127.0.0.3", false}} {
			if _, ok := dialFrom(t, tt.src, "127.0.0.1:"+port); ok != tt.want {
				t.Errorf("from %s to a dual-stack listener: served %v, want %v", tt.src, ok, tt.want)
			}
		}
		// Without OnDrop, the first drop of a run is logged, with its reason.
		// (logged after the client already sees its connection closed)
		l := log.String()
		for deadline := time.Now().Add(5 * time.Second); strings.Count(l, "dropping connections") < 1 && time.Now().Before(deadline); l = log.String() {
			time.Sleep(5 * time.Millisecond)
		}
		if strings.Count(l, "dropping connections") != 1 || !strings.Contains(l, "reason=denied") {
			t.Errorf("log %q: want one drop line, with reason=denied", l)
		}
		s.Close()
		waitFor(t, served, 5*time.Second, "Serve to return")
	})
}

// Allow alone admits only its prefixes; MaxConnsPerIP and Deny unset.
func TestServerAllowOnly(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		s := &Server{Handler: func(c *Conn) { Pipe(c, c) }, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			Logger: failOnPanicLogger(t)}
		addr, served := serveOn(t, e, s, "127.0.0.1:0")
		if _, ok := dialFrom(t, "127.0.0.1", addr); !ok {
			t.Error("a client in Allow was refused")
		}
		if _, ok := dialFrom(t, "127.0.0.2", addr); ok {
			t.Error("a client outside Allow was served")
		}
		s.mu.Lock()
		counted := len(s.admission.perIP)
		s.mu.Unlock()
		if counted != 0 {
			t.Errorf("without MaxConnsPerIP, %d client addresses are counted", counted)
		}
		s.Close()
		waitFor(t, served, 5*time.Second, "Serve to return")
	})
}

// AcceptRate alone allows bursts of its own size, and its bucket refills
// at the rate. (A token per 500ms: the burst's three dials take far less.)
func TestServerAcceptRateDefaultBurstAndRefill(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		r := newDropRecorder()
		s := &Server{Handler: func(c *Conn) { Pipe(c, c) }, AcceptRate: 2, OnDrop: r.record}
		addr, served := serveOn(t, e, s, "127.0.0.1:0")
		var got []bool
		for range 3 { // a burst of 2, then one too many
			_, ok := dialFrom(t, "", addr)
			got = append(got, ok)
		}
		if !got[0] || !got[1] || got[2] {
			t.Fatalf("served %v; want the first 2 (the default burst, AcceptRate) and not the third", got)
		}
		time.Sleep(700 * time.Millisecond) // a token and more
		if _, ok := dialFrom(t, "", addr); !ok {
			t.Fatal("after the bucket refilled for 700ms at 2/s, a connection was refused")
		}
		s.Close()
		waitFor(t, served, 5*time.Second, "Serve to return")
	})
}

func TestAdmissionPrefixMatch(t *testing.T) {
	for _, tt := range []struct {
		prefix, ip string
		want       bool
	}{
		{"127.0.0.0/8", "127.1.2.3", true},
		{"127.0.0.0/8", "10.0.0.1", false},
		{"::ffff:0.0.0.0/96", "10.0.0.1", true}, // every IPv4 address, mapped
		{"::ffff:10.0.0.0/104", "10.9.9.9", true},
		{"::ffff:10.0.0.0/104", "11.0.0.1", false},
		{"::1/128", "::1", true},
		{"::1/128", "127.0.0.1", false},
	} {
		got := matches([]netip.Prefix{netip.MustParsePrefix(tt.prefix)}, netip.MustParseAddr(tt.ip))
		if got != tt.want {
			t.Errorf("matches(%s, %s) = %v, want %v", tt.prefix, tt.ip, got, tt.want)
		}
	}
}
