package tcpkit

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// gateListener accepts nothing until it is closed: connections wait in the
// kernel's accept queue, as they do when they arrive faster than a server
// accepts, or just as it stops.
type gateListener struct {
	net.Listener
	sc     syscall.Conn
	once   sync.Once
	closed chan struct{}
}

func (g *gateListener) Accept() (net.Conn, error) {
	<-g.closed
	return nil, net.ErrClosed
}

func (g *gateListener) Close() error {
	g.once.Do(func() { close(g.closed) })
	return g.Listener.Close()
}

func (g *gateListener) SyscallConn() (syscall.RawConn, error) { return g.sc.SyscallConn() }

// Connections waiting in the accept queue when the server closes its
// listener are accepted and served, not reset: each client gets its echo,
// then an orderly end.
func TestCloseServesAcceptQueue(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		ln, err := Listen(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		gate := &gateListener{Listener: ln, sc: ln.(syscall.Conn), closed: make(chan struct{})}
		s := &Server{Logger: failOnPanicLogger(t), ShutdownIdle: 100 * time.Millisecond,
			Handler: func(c *Conn) { c.WriteString("hello\r\n"); Pipe(c, c) }}
		e.apply(s)
		listening := make(chan struct{})
		s.OnListening = func(net.Addr) { close(listening) }
		served := make(chan error, 1)
		go func() { served <- s.Serve(gate) }()
		waitFor(t, listening, 5*time.Second, "listening")

		const clients = 8
		var ncs []net.Conn
		for i := range clients {
			nc := dialRaw(t, addrString(ln.Addr()))
			fmt.Fprintf(nc, "ping %d\n", i)
			ncs = append(ncs, nc)
		}
		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			shut <- s.Shutdown(ctx)
		}()
		for i, nc := range ncs {
			got, err := io.ReadAll(nc)
			want := fmt.Sprintf("hello\r\nping %d\n", i)
			if err != nil || string(got) != want {
				t.Errorf("client %d: got %q, %v; want %q, then the end", i, got, err, want)
			}
			nc.Close() // the server, which ended first, closes now
		}
		if err := waitFor(t, shut, 10*time.Second, "Shutdown"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := waitFor(t, served, 5*time.Second, "Serve"); err != ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
		if st := s.Stats(); st.Accepted != clients || st.Closed.Clean != clients {
			t.Errorf("stats %+v", st)
		}
	})
}
