package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/spf13/cobra"
	"github.com/tcpkit/tcpkit"
)

// forwardOptions are the flags of tcpkit forward.
type forwardOptions struct {
	sendProxy      *choiceValue
	connectTimeout time.Duration
	idleTimeout    time.Duration
	maxConns       int
	grace          time.Duration
	shutdownIdle   time.Duration
	metricsAddr    string
	engine         *choiceValue
	logFormat      *choiceValue
	logLevel       *choiceValue
	quiet          bool
	edge           serverEdgeFlags
	targetTLS      bool
	targetCA       string
	targetInsecure bool
	targetName     string
}

func (a *app) forwardCommand() *cobra.Command {
	o := &forwardOptions{
		sendProxy: &choiceValue{value: "off", choices: []string{"off", "v1", "v2"}},
		engine:    &choiceValue{value: defaultEngine, choices: []string{"epoll", "goroutine"}},
		logFormat: &choiceValue{value: "text", choices: []string{"text", "json"}},
		logLevel:  &choiceValue{value: "info", choices: []string{"debug", "info", "warn", "error"}},
	}
	cmd := &cobra.Command{
		Use:   "forward LISTEN TARGET",
		Short: "Forward connections to another address: a TCP proxy",
		Long: `Accept connections on LISTEN and connect each to TARGET, then pipe the two
both ways with backpressure: a slow reader on one side slows the writer on
the other, and memory stays bounded. Either address may be TCP or a Unix
socket path.

A half-close travels across: when one side ends its output, the other side's
output is ended after what was in flight, and the other direction goes on.
A reset travels as a reset. While TARGET is being connected to, the client's
input waits in the kernel; if TARGET cannot be reached within
--connect-timeout, one line says why and the client's connection is closed.

--send-proxy v1|v2 writes a PROXY protocol header first on each connection to
TARGET, naming the real client. --tls-cert/--tls-key (or --tls-self-signed)
terminate TLS on LISTEN; --target-tls speaks TLS to TARGET, verified against
the system's roots (or --target-ca) and the name of TARGET's host (or
--target-server-name). --proxy-protocol reads a PROXY header on LISTEN.

SIGINT or SIGTERM stops accepting and lets open connections finish for up to
--grace (a connection with no traffic for --shutdown-idle is ended cleanly);
those left are reset. Exit status as for tcpkit echo.`,
		Example: `  tcpkit forward :8080 10.0.0.5:80                    # a plain TCP proxy
  tcpkit forward 127.0.0.1:8124 /run/app.sock          # TCP in front of a Unix socket
  tcpkit forward --send-proxy v2 :8124 127.0.0.1:9000  # tell the backend who the client is
  tcpkit forward --tls-cert c.pem --tls-key k.pem :443 127.0.0.1:8080   # TLS termination
  tcpkit forward --target-tls 127.0.0.1:8125 example.com:443            # TLS origination`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.forward(cmd.Context(), args[0], args[1], o)
		},
	}
	f := cmd.Flags()
	f.Var(o.sendProxy, "send-proxy", "write a PROXY protocol header (v1 or v2) to TARGET first")
	f.DurationVar(&o.connectTimeout, "connect-timeout", 5*time.Second, "give up connecting to TARGET after this long")
	f.DurationVar(&o.idleTimeout, "idle-timeout", 0, "close both sides after this long without traffic (0: never)")
	f.IntVar(&o.maxConns, "max-conns", 0, "most client connections at once; more are closed at once (0: no limit)")
	f.DurationVar(&o.grace, "grace", 5*time.Second, "on SIGINT/SIGTERM, how long open connections may take to finish")
	f.DurationVar(&o.shutdownIdle, "shutdown-idle", tcpkit.DefaultShutdownIdle, "on SIGINT/SIGTERM, end a connection once no byte has moved for this long")
	f.StringVar(&o.metricsAddr, "metrics", "", "serve Prometheus metrics of the client side at http://ADDR/metrics")
	f.Var(o.engine, "engine", "how connections run: epoll (event loops, Linux only) or goroutine (one per connection)")
	f.Var(o.logFormat, "log-format", "log line format")
	f.Var(o.logLevel, "log-level", "the least level logged (debug logs every connection)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "log nothing")
	f.BoolVar(&o.targetTLS, "target-tls", false, "speak TLS to TARGET, verifying its certificate")
	f.StringVar(&o.targetCA, "target-ca", "", "verify TARGET against the certificates in this PEM file")
	f.BoolVar(&o.targetInsecure, "target-insecure", false, "do not verify TARGET's certificate (testing only)")
	f.StringVar(&o.targetName, "target-server-name", "", "the name TARGET's certificate must have (default: its host)")
	o.edge.register(f)
	return cmd
}

// forward runs the proxy until ctx ends or a signal arrives.
func (a *app) forward(ctx context.Context, listenAddr, target string, o *forwardOptions) error {
	switch {
	case o.connectTimeout <= 0:
		return &exitErr{code: exitUsage, msg: "--connect-timeout must be positive"}
	case o.idleTimeout < 0 || o.grace < 0 || o.maxConns < 0:
		return &exitErr{code: exitUsage, msg: "--idle-timeout, --grace and --max-conns must not be negative"}
	case o.shutdownIdle <= 0:
		return &exitErr{code: exitUsage, msg: "--shutdown-idle must be positive"}
	}
	if _, _, err := tcpkit.ParseAddr(target); err != nil {
		return &exitErr{code: exitUsage, msg: "TARGET: " + err.Error()}
	}
	targetTLS, err := (&clientTLSFlags{on: o.targetTLS, caFile: o.targetCA, insecure: o.targetInsecure,
		serverName: o.targetName}).config()
	if err != nil {
		return err
	}
	log := newLogger(a.stderr, o.logFormat.value, o.logLevel.value, o.quiet)
	sigs, unsubscribe := a.subscribe()
	defer unsubscribe()

	engine, closeEngine, err := newEngine(o.engine.value, log)
	if err != nil {
		return err
	}
	defer closeEngine()
	cfg := tcpkit.ConnConfig{AllowHalfOpen: true, IdleTimeout: o.idleTimeout}
	fw := &forwarder{target: target, log: log, sendProxy: o.sendProxy.value,
		dialer: tcpkit.Dialer{ConnConfig: cfg, ConnectTimeout: o.connectTimeout, Engine: engine, TLS: targetTLS, Logger: log}}
	serverCfg := cfg
	serverCfg.PauseOnConnect = true // until TARGET answers
	srv := &tcpkit.Server{
		Handler:        fw.handle,
		ConnConfig:     serverCfg,
		Engine:         engine,
		MaxConnections: o.maxConns,
		ShutdownIdle:   o.shutdownIdle,
		Logger:         log,
		OnDrop: func(d tcpkit.Drop) {
			log.Warn("connection dropped: "+d.Reason.String(), "remote", peer(d.RemoteAddr))
		},
	}
	stopReload, err := o.edge.apply(srv, log)
	if err != nil {
		return err
	}
	defer stopReload()
	lns, err := listen(ctx, tcpkit.ListenConfig{}, listenAddr, log)
	if err != nil {
		return err
	}
	sv := startServing(srv, lns)
	for _, addr := range sv.bound {
		log.Info("forwarding", "listen", addr, "target", target, "engine", o.engine.value)
	}
	if o.metricsAddr != "" {
		_, stopMetrics, err := serveMetrics(o.metricsAddr, srv, log)
		if err != nil {
			sv.abort()
			return err
		}
		defer stopMetrics()
	}
	if a.ready != nil {
		a.ready(srv, sv.bound)
	}

	var serveErr error
	select {
	case <-ctx.Done():
		sv.stop()
		log.Info("shutting down", "reason", context.Cause(ctx).Error(), "grace", o.grace.String())
	case s := <-sigs:
		sv.stop()
		log.Info("shutting down", "signal", s.String(), "grace", o.grace.String())
	case serveErr = <-sv.served:
		sv.failed()
		sv.stop()
		log.Error("accepting failed; shutting down", "err", serveErr.Error())
	}
	second := shutdown(srv, log, sigs, o.grace, &fw.cut)
	fw.wait(2 * time.Second) // the TARGET sides close with their clients
	sv.wait()
	log.Info("stopped")
	switch {
	case serveErr != nil:
		return failf("accepting on %s: %s", listenAddr, cause(serveErr))
	case second != nil:
		return &exitErr{code: signalExitCode(second)}
	case fw.cut.Load() > 0:
		return &exitErr{code: exitCut}
	}
	return nil
}

// A forwarder connects each client to the target and pipes the two.
type forwarder struct {
	target    string
	dialer    tcpkit.Dialer
	sendProxy string
	log       *slog.Logger
	pairs     sync.WaitGroup // target connections not yet closed
	ids       atomic.Int64
	cut       atomic.Int64 // pairs the shutdown cut short
	failing   atomic.Bool  // in a run of failed connects to the target
}

// handle is the Server's Handler: the client connection, paused, waits
// while the target is dialled off the event goroutine.
func (fw *forwarder) handle(c *tcpkit.Conn) {
	id := fw.ids.Add(1)
	d := fw.dialer // a copy: the PROXY header is the client's own
	if fw.sendProxy != "off" {
		version := byte(1)
		if fw.sendProxy == "v2" {
			version = 2
		}
		d.ProxyHeader = proxyproto.HeaderProxyFromAddrs(version, c.RemoteAddr(), c.LocalAddr())
	}
	fw.pairs.Add(1)
	go func() {
		limit := d.ConnectTimeout
		if d.TLS != nil {
			limit += tcpkit.DefaultHandshakeTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		t, err := d.Dial(ctx, fw.target, func(t *tcpkit.Conn) {
			tcpkit.Pipe(t, c)
			tcpkit.Pipe(c, t)
			// A failure on one side resets the other: a reset travels as a
			// reset. A clean close ends the other side (a no-op once Pipe
			// has), so that nothing is left half-open for ever. A client
			// gone while TARGET was dialled is seen here too: OnClose on a
			// closed connection runs at once.
			c.OnClose(func(err error) { closeOther(t, err) })
			t.OnClose(func(err error) {
				closeOther(c, err)
				fw.pairs.Done()
			})
			// Only now, with the pipes in place, may the client's data
			// flow: Dial returns before this handler has run.
			c.Resume()
		})
		if err != nil {
			fw.pairs.Done()
			if !fw.failing.Swap(true) {
				fw.log.Warn("cannot reach the target; closing the client's connection (later failures are logged at DEBUG until one succeeds)",
					"target", fw.target, "remote", peer(c.RemoteAddr()), "err", fmt.Sprint(targetCause(err)))
			} else {
				fw.log.Debug("cannot reach the target", "target", fw.target, "remote", peer(c.RemoteAddr()), "err", fmt.Sprint(targetCause(err)))
			}
			c.Close()
			return
		}
		if fw.failing.Swap(false) {
			fw.log.Info("the target answers again", "target", fw.target)
		}
		fw.log.Debug("forwarding", "conn", id, "remote", peer(c.RemoteAddr()), "target", addrString(t.RemoteAddr()))
		c.OnClose(func(err error) {
			if errors.Is(err, tcpkit.ErrServerClosed) {
				fw.cut.Add(1)
			}
		})
	}()
}

// closeOther passes the close of one side of a pair to the other: a
// failure as a reset, a clean close as an end after what is queued.
func closeOther(other *tcpkit.Conn, err error) {
	if err != nil {
		other.Reset()
		return
	}
	other.End()
}

// wait waits, for at most d, for the target connections to close.
func (fw *forwarder) wait(d time.Duration) {
	done := make(chan struct{})
	go func() { fw.pairs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		fw.log.Warn("target connections still open after their clients closed")
	}
}

// targetCause says briefly why a connect to the target failed.
func targetCause(err error) string {
	var he *tcpkit.HandshakeError
	var oe *net.OpError
	switch {
	case errors.As(err, &he):
		return "TLS handshake failed: " + explainTLS(err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &oe):
		return cause(err)
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	}
	return err.Error()
}
