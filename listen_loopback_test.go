package tcpkit

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// TestLoopbackIPs checks which names get one listener per loopback address.
func TestLoopbackIPs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tests := []struct {
		host string
		want []string // nil: a single listener, as asked
	}{
		{host: "localhost", want: []string{"127.0.0.1", "::1"}},
		{host: "LocalHost.", want: []string{"127.0.0.1", "::1"}},
		{host: "app.localhost", want: []string{"127.0.0.1", "::1"}},
		{host: "127.0.0.1"},
		{host: "::1"},
		{host: ""},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			ips := loopbackIPs(ctx, tt.host)
			var got []string
			for _, ip := range ips {
				got = append(got, ip.String())
			}
			if len(got) < len(tt.want) || (tt.want == nil) != (got == nil) {
				t.Fatalf("loopbackIPs(%q) = %q, want %q", tt.host, got, tt.want)
			}
			for i, w := range tt.want {
				if got[i] != w {
					t.Errorf("loopbackIPs(%q) = %q, want %q first", tt.host, got, tt.want)
				}
			}
		})
	}
}

// TestListenAllLocalhost checks that a server on localhost answers on both
// loopback addresses, on one port.
func TestListenAllLocalhost(t *testing.T) {
	lns, err := ListenAll(context.Background(), "localhost:0")
	if err != nil {
		t.Fatal(err)
	}
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		if len(lns) != 1 {
			t.Errorf("%d listeners on a machine without ::1, want 1", len(lns))
		}
	} else {
		ln.Close()
		if len(lns) != 2 {
			t.Fatalf("ListenAll(localhost:0) gave %d listeners, want 2", len(lns))
		}
	}
	s := &Server{Handler: func(c *Conn) { Pipe(c, c) }}
	served := make(chan error, len(lns))
	var port string
	for _, ln := range lns {
		_, p, _ := net.SplitHostPort(ln.Addr().String())
		if port != "" && p != port {
			t.Errorf("listeners on ports %s and %s, want one port", port, p)
		}
		port = p
		go func() { served <- s.Serve(ln) }()
	}
	for _, ln := range lns {
		if err := echoOnce(ln.Addr().String(), []byte("via "+ln.Addr().String())); err != nil {
			t.Error(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Shutdown(ctx)
	for range lns {
		if err := <-served; err != ErrServerClosed {
			t.Errorf("Serve returned %v", err)
		}
	}
}

// TestListenAndServeLocalhost checks that ListenAndServe uses ListenAll.
func TestListenAndServeLocalhost(t *testing.T) {
	bound := make(chan net.Addr, 2)
	s := &Server{Addr: "localhost:0", Handler: func(c *Conn) { c.WriteString("hi"); c.End() },
		OnListening: func(a net.Addr) { bound <- a }}
	served := make(chan error, 1)
	go func() { served <- s.ListenAndServe() }()
	first := waitFor(t, bound, 5*time.Second, "listening")
	addrs := []net.Addr{first}
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		ln.Close()
		addrs = append(addrs, waitFor(t, bound, 5*time.Second, "second listener"))
	}
	for _, a := range addrs {
		nc := dialRaw(t, a.String())
		if b, err := io.ReadAll(nc); err != nil || string(b) != "hi" {
			t.Errorf("via %v: %q, %v", a, b, err)
		}
		nc.Close()
	}
	s.Close()
	if err := waitFor(t, served, 5*time.Second, "ListenAndServe"); err != ErrServerClosed {
		t.Errorf("ListenAndServe returned %v", err)
	}
	waitFor(t, s.Done(), 5*time.Second, "close event")
}
