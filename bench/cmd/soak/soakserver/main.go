// Command soakserver is the server of the soak test (bench/soak.sh): a
// tcpkit echo server, Pipe(c, c), with TLS (a self-signed certificate made
// at start by tlsutil.SelfSigned) and the PROXY protocol (optional by
// default, from any loopback peer), on the engine that -engine names. A
// small HTTP server on -debug reports what the soak watches in the
// process: descriptors, goroutines, heap, the Server's Stats and its
// handshake failures by stage.
//
// It prints "ready addr=HOST:PORT debug=HOST:PORT engine=E" once it
// accepts, and at SIGTERM or SIGINT shuts down (Shutdown, -grace) and
// exits 0, or 3 if the grace ran out.
//
//	soakserver -engine epoll [-addr 127.0.0.1:0] [-debug 127.0.0.1:0]
//	           [-proxy optional] [-proxy-timeout 3s] [-handshake-timeout 5s]
//
// GET /stats on the debug address returns the JSON of a Snapshot; with
// ?gc=1 it runs the garbage collector twice first, so that the heap
// figures are what is live.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tcpkit/tcpkit"
	"github.com/tcpkit/tcpkit/bench/internal/harness"
	"github.com/tcpkit/tcpkit/tlsutil"
)

// A Snapshot is what /stats reports.
type Snapshot struct {
	Time       time.Time `json:"time"`
	FDs        int       `json:"fds"` // open descriptors, the debug request's own included
	Goroutines int       `json:"goroutines"`
	HeapAlloc  uint64    `json:"heap_alloc"` // bytes of live and not yet swept objects
	HeapInuse  uint64    `json:"heap_inuse"`
	HeapObjs   uint64    `json:"heap_objects"`
	RSS        int64     `json:"rss"` // VmRSS, bytes
	GC         bool      `json:"gc"`  // the collector ran just before
	// Stats is the Server's own account.
	Stats tcpkit.Stats `json:"stats"`
	// HandshakeErrors counts connections closed by OnHandshakeError, by
	// stage and a short form of the error.
	HandshakeErrors map[string]int64 `json:"handshake_errors"`
}

func main() {
	engine := flag.String("engine", "epoll", "goroutine or epoll")
	loops := flag.Int("loops", 1, "event loops of the epoll engine")
	addr := flag.String("addr", "127.0.0.1:0", "address to serve on")
	debug := flag.String("debug", "127.0.0.1:0", "address of the HTTP stats endpoint")
	proxy := flag.String("proxy", "optional", "PROXY protocol policy: off, optional or required")
	proxyTimeout := flag.Duration("proxy-timeout", 3*time.Second, "Server.ProxyHeaderTimeout")
	handshakeTimeout := flag.Duration("handshake-timeout", 5*time.Second, "Server.HandshakeTimeout")
	grace := flag.Duration("grace", 5*time.Second, "how long Shutdown waits at SIGTERM")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("soakserver: ")
	code, err := run(*engine, *loops, *addr, *debug, *proxy, *proxyTimeout, *handshakeTimeout, *grace)
	if err != nil {
		log.Fatal(err)
	}
	os.Exit(code)
}

func run(engine string, loops int, addr, debug, proxy string, proxyTimeout, handshakeTimeout, grace time.Duration) (int, error) {
	policy, err := tcpkit.ParseProxyPolicy(proxy)
	if err != nil {
		return 1, err
	}
	cert, err := tlsutil.SelfSigned(24*time.Hour, "localhost", "127.0.0.1")
	if err != nil {
		return 1, err
	}
	var hs handshakeCounts
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv := &tcpkit.Server{
		Handler:            func(c *tcpkit.Conn) { tcpkit.Pipe(c, c) },
		TLS:                &tls.Config{Certificates: []tls.Certificate{cert}},
		HandshakeTimeout:   handshakeTimeout,
		ProxyProtocol:      policy,
		TrustedProxies:     []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		ProxyHeaderTimeout: proxyTimeout,
		OnHandshakeError:   hs.add,
		Logger:             logger,
	}
	var ep *tcpkit.EpollEngine
	switch engine {
	case "goroutine":
	case "epoll":
		ep, err = tcpkit.NewEpollEngine(tcpkit.EpollConfig{Loops: loops, Logger: logger})
		if err != nil {
			return 1, err
		}
		srv.Engine = ep
	default:
		return 1, fmt.Errorf("unknown engine %q (want goroutine or epoll)", engine)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := tcpkit.Listen(ctx, addr)
	if err != nil {
		return 1, err
	}
	dln, err := net.Listen("tcp", debug)
	if err != nil {
		return 1, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		s := snapshot(srv, &hs, r.URL.Query().Get("gc") == "1")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s)
	})
	hsrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go hsrv.Serve(dln)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("ready addr=%s debug=%s engine=%s\n", ln.Addr(), dln.Addr(), engine)
	select {
	case err := <-errc:
		return 1, err
	case <-ctx.Done():
	}
	code := 0
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		fmt.Println("shutdown:", err)
		code = 3
	}
	srv.Close()
	if err := <-errc; !errors.Is(err, tcpkit.ErrServerClosed) {
		fmt.Println("serve:", err)
	}
	hsrv.Close()
	if ep != nil {
		ep.Close()
	}
	fmt.Println("stopped")
	return code, nil
}

// handshakeCounts counts handshake failures by stage and kind.
type handshakeCounts struct {
	mu sync.Mutex
	n  map[string]int64
}

func (h *handshakeCounts) add(err *tcpkit.HandshakeError) {
	k := err.Stage + ": " + harness.ShortErr(err.Err)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[string]int64{}
	}
	if len(h.n) < 100 || h.n[k] > 0 { // a bounded number of kinds
		h.n[k]++
	} else {
		h.n["other kinds"]++
	}
}

func (h *handshakeCounts) snapshot() map[string]int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := make(map[string]int64, len(h.n))
	for k, v := range h.n {
		m[k] = v
	}
	return m
}

func snapshot(srv *tcpkit.Server, hs *handshakeCounts, gc bool) Snapshot {
	if gc {
		runtime.GC()
		runtime.GC() // a second time: sync.Pool's victim cache
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	fds, _ := os.ReadDir("/proc/self/fd")
	return Snapshot{
		Time:            time.Now(),
		FDs:             len(fds),
		Goroutines:      runtime.NumGoroutine(),
		HeapAlloc:       m.HeapAlloc,
		HeapInuse:       m.HeapInuse,
		HeapObjs:        m.HeapObjects,
		RSS:             rss(),
		GC:              gc,
		Stats:           srv.Stats(),
		HandshakeErrors: hs.snapshot(),
	}
}

// rss returns the process's resident set size from /proc/self/status.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return -1
}
