//go:build linux

package tcpkit

import (
	"net"
	"testing"
	"time"
)

// drainAccepts takes exactly what is queued, and leaves the listening
// socket as it was: after an upgrade another process accepts from it.
func TestDrainAcceptsLeavesTheSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for range 3 {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	var got []net.Conn
	drainAccepts(ln, func(c net.Conn) { got = append(got, c) })
	for _, c := range got {
		c.Close()
	}
	if len(got) != 3 {
		t.Fatalf("drained %d connections, want the 3 queued", len(got))
	}
	late, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("the listener no longer accepts after a drain: %v", err)
	}
	c.Close()
}
