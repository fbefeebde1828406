package tcpkit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit/tlsutil"
)

// testCert is a self-signed certificate for localhost, 127.0.0.1 and ::1,
// made once.
var testCert = sync.OnceValue(func() tls.Certificate {
	cert, err := tlsutil.SelfSigned(time.Hour)
	if err != nil {
		panic(err)
	}
	return cert
})

// testServerTLS is a server TLS config with testCert.
func testServerTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{testCert()}, NextProtos: []string{"echo/1"}}
}

// testClientTLS is a client TLS config that trusts testCert.
func testClientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(testCert().Leaf)
	return &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"echo/1"}}
}

// tlsEchoServer serves a greeting then an echo over TLS, recording each
// connection's TLS state and handshake failures.
func tlsEchoServer(t *testing.T, e engine, addr string) (string, *Server, chan *HandshakeError) {
	failures := make(chan *HandshakeError, 16)
	s := &Server{
		TLS:    testServerTLS(),
		Logger: failOnPanicLogger(t),
		Handler: func(c *Conn) {
			st := c.TLS()
			if st == nil || !st.HandshakeComplete {
				c.WriteString("no TLS state\n")
			}
			c.WriteString("hello " + st.NegotiatedProtocol + "\n")
			Pipe(c, c)
		},
		OnHandshakeError: func(err *HandshakeError) { failures <- err },
	}
	return startServer(t, e, s, addr), s, failures
}

// dialTLS connects a crypto/tls client to addr.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	nc := dialRaw(t, addr)
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(context.Background()); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return tc
}

func TestTLSEcho(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		addr, _, failures := tlsEchoServer(t, e, addr)
		tc := dialTLS(t, addr, testClientTLS())
		if v := tc.ConnectionState().Version; v < tls.VersionTLS12 {
			t.Errorf("version %x", v)
		}
		// 1 MiB of random bytes, more than the queue's HighWater and many
		// records, while reading concurrently.
		want := make([]byte, 1<<20)
		rand.Read(want)
		go func() {
			tc.Write(want)
			tc.CloseWrite() // close_notify: the server sees its end
		}()
		got, err := io.ReadAll(tc)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		greeting := "hello echo/1\n"
		if !bytes.HasPrefix(got, []byte(greeting)) {
			t.Fatalf("greeting: %q", got[:min(len(got), 40)])
		}
		if !bytes.Equal(got[len(greeting):], want) {
			t.Fatalf("echo: got %d bytes, want %d, equal %v", len(got)-len(greeting), len(want), false)
		}
		select {
		case f := <-failures:
			t.Fatalf("handshake failure: %v", f)
		default:
		}
	})
}

func TestTLSDialer(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		addr, _, _ = tlsEchoServer(t, e, addr)
		d := e.dialer()
		d.TLS = testClientTLS()
		got := make(chan []byte, 64)
		ended := make(chan error, 1)
		c, err := d.Dial(context.Background(), addr, func(c *Conn) {
			c.OnData(func(p []byte) { got <- bytes.Clone(p) })
			c.OnClose(func(err error) { ended <- err })
		})
		if err != nil {
			t.Fatal(err)
		}
		st := c.TLS()
		if st == nil || st.NegotiatedProtocol != "echo/1" || len(st.PeerCertificates) == 0 {
			t.Fatalf("TLS state %+v", st)
		}
		c.WriteString("ping\n")
		var all []byte
		for !bytes.Contains(all, []byte("ping\n")) {
			all = append(all, waitFor(t, got, 5*time.Second, "echo")...)
		}
		if string(all) != "hello echo/1\nping\n" {
			t.Fatalf("got %q", all)
		}
		c.End() // close_notify, FIN; the server ends too
		if err := waitFor(t, ended, 5*time.Second, "close"); err != nil {
			t.Fatalf("close error %v", err)
		}
	})
}

func TestTLSDialerRefusesUnknownAuthority(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		addr, _, failures := tlsEchoServer(t, e, "127.0.0.1:0")
		d := e.dialer()
		d.TLS = &tls.Config{} // the system's roots, which do not know testCert
		c, err := d.Dial(context.Background(), addr, func(c *Conn) { t.Error("handler called") })
		var he *HandshakeError
		var ua x509.UnknownAuthorityError
		if c != nil || !errors.As(err, &he) || !errors.As(err, &ua) {
			t.Fatalf("Dial = %v, %v; want a HandshakeError with x509.UnknownAuthorityError", c, err)
		}
		// The server hears of it too: the client's alert fails its handshake.
		f := waitFor(t, failures, 5*time.Second, "server handshake failure")
		if f.Stage != "tls" {
			t.Errorf("stage %q", f.Stage)
		}
	})
}

func TestTLSDialerNameMismatch(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		addr, _, _ := tlsEchoServer(t, e, "127.0.0.1:0")
		d := e.dialer()
		d.TLS = testClientTLS()
		d.TLS.ServerName = "example.com"
		_, err := d.Dial(context.Background(), addr, nil)
		var hn x509.HostnameError
		if !errors.As(err, &hn) {
			t.Fatalf("Dial: %v; want x509.HostnameError", err)
		}
	})
}

func TestTLSPlaintextClientFailsAlone(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		addr, s, failures := tlsEchoServer(t, e, "127.0.0.1:0")
		plain := dialRaw(t, addr)
		io.WriteString(plain, "GET / HTTP/1.0\r\n\r\n")
		f := waitFor(t, failures, 5*time.Second, "handshake failure")
		if f.Stage != "tls" || !strings.Contains(f.Error(), "TLS handshake") {
			t.Errorf("failure %v", f)
		}
		if _, err := io.ReadAll(plain); err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
			t.Errorf("plain client: %v", err)
		}
		// Another client is served all the while.
		tc := dialTLS(t, addr, testClientTLS())
		io.WriteString(tc, "x\n")
		buf := make([]byte, len("hello echo/1\nx\n"))
		if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "hello echo/1\nx\n" {
			t.Fatalf("TLS client: %q, %v", buf, err)
		}
		if n := s.HandshakeErrors(); n != 1 {
			t.Errorf("HandshakeErrors = %d, want 1", n)
		}
		if st := s.Stats(); st.Closed.Handshake != 1 {
			t.Errorf("Stats().Closed.Handshake = %d, want 1", st.Closed.Handshake)
		}
	})
}

func TestTLSSilentClientDoesNotDelayOthers(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		failures := make(chan *HandshakeError, 16)
		s := &Server{TLS: testServerTLS(), HandshakeTimeout: time.Second, Logger: failOnPanicLogger(t),
			Handler:          func(c *Conn) { Pipe(c, c) },
			OnHandshakeError: func(err *HandshakeError) { failures <- err }}
		addr := startServer(t, e, s, "127.0.0.1:0")
		silent := dialRaw(t, addr) // connects, sends nothing
		start := time.Now()
		for range 3 {
			tc := dialTLS(t, addr, testClientTLS())
			io.WriteString(tc, "a")
			b := make([]byte, 1)
			if _, err := io.ReadFull(tc, b); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d > 800*time.Millisecond {
			t.Errorf("three handshakes took %v behind a silent client", d)
		}
		f := waitFor(t, failures, 5*time.Second, "the silent client's timeout")
		if !strings.Contains(f.Err.Error(), "no TLS handshake within") {
			t.Errorf("failure %v", f)
		}
		silent.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := silent.Read(make([]byte, 1)); err == nil {
			t.Error("the silent client's connection is still open")
		}
	})
}

func TestTLSSocketOptionsStillApply(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		conns := make(chan *Conn, 1)
		s := &Server{TLS: testServerTLS(), Logger: failOnPanicLogger(t), Handler: func(c *Conn) { conns <- c }}
		addr := startServer(t, e, s, "127.0.0.1:0")
		tc := dialTLS(t, addr, testClientTLS())
		tc.Write([]byte("x")) // the server's TLS 1.3 handshake completes on the client's Finished
		c := waitFor(t, conns, 5*time.Second, "connection")
		if err := c.SetNoDelay(false); err != nil {
			t.Errorf("SetNoDelay: %v", err)
		}
		if err := c.SetKeepAlive(true, time.Minute); err != nil {
			t.Errorf("SetKeepAlive: %v", err)
		}
		c.Reset()
		_, err := io.ReadAll(tc)
		if !isReset(err) {
			t.Errorf("after Reset the client read %v, want ECONNRESET", err)
		}
	})
}

// isReset reports whether err is a connection reset.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

func TestTLSConfigNeedsCertificate(t *testing.T) {
	s := &Server{TLS: &tls.Config{}}
	err := s.Serve(mustListen(t, "127.0.0.1:0"))
	if err == nil || !strings.Contains(err.Error(), "no certificate") {
		t.Fatalf("Serve: %v", err)
	}
}

// FuzzTLSHandshakeGarbage sends garbage where a ClientHello belongs, in
// random chunks, to a TLS server on each engine: the connection must fail
// alone, its client must see it closed, and nothing may panic (the
// servers' loggers fail the test on a recovered panic).
func FuzzTLSHandshakeGarbage(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), uint8(3))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0}, uint8(1))
	f.Add([]byte{0x16, 0x03, 0x03, 0xff, 0xff}, uint8(2))
	f.Add([]byte{0x80, 0x2e, 0x01, 0x03, 0x01}, uint8(7))
	type target struct {
		addr     string
		failures chan *HandshakeError
	}
	var targets []target
	for _, e := range engines {
		failures := make(chan *HandshakeError, 1024)
		s := &Server{TLS: testServerTLS(), HandshakeTimeout: 2 * time.Second, Logger: discardLogger(),
			Handler:          func(c *Conn) { c.Close() },
			OnHandshakeError: func(err *HandshakeError) { failures <- err }}
		e.apply(s)
		ln, err := Listen(context.Background(), "127.0.0.1:0")
		if err != nil {
			f.Fatal(err)
		}
		go s.Serve(ln)
		f.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.Shutdown(ctx)
		})
		targets = append(targets, target{addrString(ln.Addr()), failures})
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		for _, tg := range targets {
			nc := dialRaw(t, tg.addr)
			nc.SetDeadline(time.Now().Add(5 * time.Second))
			for b := in; len(b) > 0; {
				n := min(len(b), int(chunk)+1)
				if _, err := nc.Write(b[:n]); err != nil {
					break // the server has given up already
				}
				b = b[n:]
			}
			nc.(*net.TCPConn).CloseWrite()
			if _, err := io.ReadAll(nc); err != nil && !isReset(err) {
				t.Fatalf("the client of a failed handshake read %v; want its end", err)
			}
			nc.Close()
			select {
			case <-tg.failures:
			case <-time.After(5 * time.Second):
				t.Fatalf("no handshake failure reported for %q", in)
			}
		}
	})
}

// With a read buffer smaller than a record, one read of the socket holds
// more plaintext than one data event takes: the rest must be delivered
// without waiting for more input from the peer.
func TestTLSSmallReadBuffer(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		s := &Server{TLS: testServerTLS(), Logger: failOnPanicLogger(t), Handler: func(c *Conn) { Pipe(c, c) },
			ConnConfig: ConnConfig{ReadBufferSize: 1 << 10}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		tc := dialTLS(t, addr, testClientTLS())
		want := make([]byte, 48<<10) // three full records, then nothing more until the echo is back
		rand.Read(want)
		if _, err := tc.Write(want); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(tc, got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("echo: %v (equal %v)", err, bytes.Equal(got, want))
		}
	})
}

// recordingConn keeps a copy of every byte read.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	got []byte
}

func (r *recordingConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.got = append(r.got, p[:n]...)
	r.mu.Unlock()
	return n, err
}

// End sends close_notify before FIN, so that the peer can tell the end of
// the data from a truncation. TLS 1.2 sends alerts in records of their own
// type (21), which the raw bytes show.
func TestTLSEndSendsCloseNotify(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		s := &Server{TLS: testServerTLS(), Logger: failOnPanicLogger(t),
			Handler: func(c *Conn) { c.WriteString("bye"); c.End() }}
		addr := startServer(t, e, s, "127.0.0.1:0")
		rec := &recordingConn{Conn: dialRaw(t, addr)}
		cfg := testClientTLS()
		cfg.MaxVersion = tls.VersionTLS12
		tc := tls.Client(rec, cfg)
		got, err := io.ReadAll(tc)
		if err != nil || string(got) != "bye" {
			t.Fatalf("read %q, %v", got, err)
		}
		// Walk the records: the last one must be an alert.
		raw := rec.got
		var last byte
		for len(raw) >= 5 {
			n := 5 + (int(raw[3])<<8 | int(raw[4]))
			last = raw[0]
			raw = raw[min(n, len(raw)):]
		}
		if last != 21 {
			t.Errorf("the last record before the FIN has type %d, want 21 (alert: close_notify)", last)
		}
	})
}

// The write queue of a TLS connection holds records, but Buffered and the
// drain marks count the plaintext written: 2,000 Writes of 8 bytes make
// some 60 KB of records, and never more than 16,000 bytes Buffered.
func TestTLSBufferedCountsPlaintext(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		const writes, size = 2000, 8
		type report struct {
			buffered int
			drained  chan struct{}
		}
		reports := make(chan report, 1)
		s := &Server{TLS: testServerTLS(), Logger: failOnPanicLogger(t),
			ConnConfig: ConnConfig{HighWater: 4096, SendBuffer: 4096},
			Handler: func(c *Conn) {
				drained := make(chan struct{}, 1)
				c.OnDrain(func() {
					select {
					case drained <- struct{}{}:
					default:
					}
				})
				c.OnData(func([]byte) {
					for range writes {
						c.Write(make([]byte, size))
					}
					reports <- report{c.Buffered(), drained}
				})
			}}
		addr := startServer(t, e, s, "127.0.0.1:0")
		nc := dialRaw(t, addr)
		nc.(*net.TCPConn).SetReadBuffer(4096)
		tc := tls.Client(nc, testClientTLS())
		tc.Write([]byte("go"))
		r := waitFor(t, reports, 5*time.Second, "the writes")
		if r.buffered <= 4096 || r.buffered > writes*size {
			t.Fatalf("Buffered = %d after %d bytes of plaintext with the peer not reading; want over HighWater and at most the plaintext", r.buffered, writes*size)
		}
		got := make([]byte, writes*size)
		if _, err := io.ReadFull(tc, got); err != nil {
			t.Fatal(err)
		}
		waitFor(t, r.drained, 5*time.Second, "the drain event")
	})
}
