package tcpkit

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind, or if
// tcpkit recovered a panic in its own code (or a callback) and logged it
// to the default logger: tests that panic on purpose give their Server or
// Dialer a logger of their own.
func TestMain(m *testing.M) {
	if os.Getenv(emfileChildEnv) != "" {
		emfileChild()
		os.Exit(0)
	}
	var panics panicCount
	slog.SetDefault(slog.New(&panicWatch{Handler: slog.Default().Handler(), count: &panics}))
	code := m.Run()
	for _, f := range afterTests {
		f()
	}
	if n := panics.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d recovered panics were logged to the default logger (see above)\n", n)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: goroutines left behind: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// afterTests run after the tests, before the leak check.
var afterTests []func()

type panicCount = atomic.Int64

// panicWatch is a slog.Handler that counts the log lines reporting a
// recovered panic and passes every line on.
type panicWatch struct {
	slog.Handler
	count *panicCount
	t     testing.TB // if set, a panic line fails this test at once
}

func (h *panicWatch) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		h.count.Add(1)
		if h.t != nil {
			h.t.Errorf("tcpkit logged a recovered panic: %s", r.Message)
			r.Attrs(func(a slog.Attr) bool {
				h.t.Logf("  %s=%v", a.Key, a.Value)
				return true
			})
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h *panicWatch) WithAttrs(as []slog.Attr) slog.Handler {
	return &panicWatch{Handler: h.Handler.WithAttrs(as), count: h.count, t: h.t}
}

func (h *panicWatch) WithGroup(name string) slog.Handler {
	return &panicWatch{Handler: h.Handler.WithGroup(name), count: h.count, t: h.t}
}

// failOnPanicLogger is a Logger for tests that provoke other log lines on
// purpose (accept errors, drops) and discards them, but fails t on a line
// that reports a recovered panic: a panic inside tcpkit's own code is
// turned into a close error, and would otherwise go unseen.
func failOnPanicLogger(t testing.TB) *slog.Logger {
	return slog.New(&panicWatch{Handler: slog.DiscardHandler, count: new(panicCount), t: t})
}

// An engine names a way of running connections. Every server test runs on
// each of them through forEachEngine; the epoll engine joins the list when
// it lands.
type engine struct {
	name  string
	get   func() Engine // the Engine for a Server's or Dialer's field
	apply func(s *Server)
}

var engines = []engine{
	{name: "goroutine", get: func() Engine { return nil }, apply: func(*Server) {}},
}

// dialer returns a Dialer on engine e.
func (e engine) dialer() *Dialer { return &Dialer{Engine: e.get()} }

// dial is Dial on engine e.
func (e engine) dial(addr string, h Handler) (*Conn, error) {
	return e.dialer().Dial(context.Background(), addr, h)
}

// forEachEngine runs f as a subtest on every engine, or on those named in
// TCPKIT_TEST_ENGINES (comma-separated), which scripts/mutate.sh sets to
// halve its runs.
func forEachEngine(t *testing.T, f func(t *testing.T, e engine)) {
	t.Helper()
	only := os.Getenv("TCPKIT_TEST_ENGINES")
	for _, e := range engines {
		if only != "" && !slices.Contains(strings.Split(only, ","), e.name) {
			continue
		}
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

// logBuffer collects log lines, for tests that check what was logged.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logger returns a Logger that writes text lines to l.
func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// waitGroup waits for wg, failing the test after d.
func waitGroup(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitFor(t, done, d, what)
}

// soloEngines make, for one test, an engine whose connections all share
// one event goroutine where the engine has such a thing: the epoll engine
// with one loop (engine_epoll_linux_test.go adds it), closed when the test
// ends. Tests that one connection cannot hold up another use them.
var soloEngines = []func(t *testing.T) engine{
	func(*testing.T) engine { return engines[0] },
}

// forEachSoloEngine runs f as a subtest on a solo engine of every kind.
func forEachSoloEngine(t *testing.T, f func(t *testing.T, e engine)) {
	t.Helper()
	for i, mk := range soloEngines {
		name := []string{"goroutine", "epoll"}[i]
		t.Run(name, func(t *testing.T) { f(t, mk(t)) })
	}
}
