package tcpkit

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind.
func TestMain(m *testing.M) {
	if os.Getenv(emfileChildEnv) == "1" {
		emfileChild()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// An engine names a way of running connections. Every server test runs on
// each of them through forEachEngine; the epoll engine joins the list when
// it lands.
type engine struct {
	name  string
	apply func(s *Server)
}

var engines = []engine{
	{name: "goroutine", apply: func(*Server) {}},
}

// forEachEngine runs f as a subtest on every engine.
func forEachEngine(t *testing.T, f func(t *testing.T, e engine)) {
	t.Helper()
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) { f(t, e) })
	}
}

// network is a transport that tests run over: loopback TCP or a Unix socket
// under t.TempDir().
type network struct {
	name string
	addr func(t *testing.T) string
}

var networks = []network{
	{name: "tcp", addr: func(*testing.T) string { return "127.0.0.1:0" }},
	{name: "unix", addr: func(t *testing.T) string { return filepath.Join(t.TempDir(), "s.sock") }},
}

// forEachNetwork runs f as a subtest over every transport on every engine.
func forEachNetwork(t *testing.T, f func(t *testing.T, e engine, addr string)) {
	t.Helper()
	forEachEngine(t, func(t *testing.T, e engine) {
		for _, n := range networks {
			t.Run(n.name, func(t *testing.T) { f(t, e, n.addr(t)) })
		}
	})
}

// startServer serves s on addr with engine e and shuts it down, checking for
// a clean shutdown, when the test ends. It returns the bound address in the
// grammar of ParseAddr.
func startServer(t *testing.T, e engine, s *Server, addr string) string {
	t.Helper()
	e.apply(s)
	ln, err := Listen(context.Background(), addr)
	if err != nil {
		t.Fatalf("Listen(%q): %v", addr, err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != ErrServerClosed {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return addrString(ln.Addr())
}

// addrString turns a bound address back into the grammar of ParseAddr.
func addrString(a net.Addr) string {
	if a.Network() == "unix" {
		return "unix:" + a.String()
	}
	return a.String()
}

// dialRaw connects a plain net.Conn to addr, closed when the test ends.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	network, address, err := ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.DialTimeout(network, address, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { nc.Close() })
	return nc
}

// closeWrite half-closes a plain connection.
func closeWrite(t *testing.T, nc net.Conn) {
	t.Helper()
	if err := nc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
}

// waitFor waits for ch to be closed or to yield a value, failing the test
// after d.
func waitFor[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
		panic("unreachable")
	}
}

// discardLogger is a Logger for tests that provoke log lines on purpose.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
