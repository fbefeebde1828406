//go:build linux

package tcpkit

import (
	"net"
	"testing"
	"time"
)

// drainAccepts takes what is queued, and from then on the listener
// completes no handshake: a late client's connect does not succeed (to be
// reset at close), it waits, and is refused once the listener closes.
func TestDrainAcceptsStopsHandshakes(t *testing.T) {
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
	filtered := drainAccepts(ln, func(c net.Conn) { got = append(got, c) })
	for _, c := range got {
		c.Close()
	}
	if len(got) != 3 {
		t.Fatalf("drained %d connections, want the 3 queued", len(got))
	}
	if !filtered {
		// This kernel refused the filter (some sandboxes do): the drain
		// alone is what Close can do, and the late client is accepted by
		// the kernel, to be reset at close, as without tcpkit.
		t.Log("the kernel refused the socket filter: the late-SYN half of this test cannot apply here")
		return
	}
	late, err := net.DialTimeout("tcp", ln.Addr().String(), 300*time.Millisecond)
	if err == nil {
		late.Close()
		t.Fatal("a connect after the drain completed its handshake")
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("late connect: %v, want a timeout (the SYN dropped)", err)
	}
}
