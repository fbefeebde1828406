package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/spf13/cobra"
	"github.com/tcpkit/tcpkit"
)

// defaultEchoAddr is where tcpkit echo listens without an ADDR: the seed's
// port, on loopback only.
const defaultEchoAddr = "localhost:8124"

// echoOptions are the flags of tcpkit echo.
type echoOptions struct {
	greeting     *textValue
	logFormat    *choiceValue
	logLevel     *choiceValue
	maxConns     int
	maxPerIP     int
	acceptRate   float64
	allow, deny  []string // prefixes or addresses, as given
	allowP       []netip.Prefix
	denyP        []netip.Prefix
	idleTimeout  time.Duration
	noDelay      bool
	grace        time.Duration
	shutdownIdle time.Duration
	engine       *choiceValue
	quiet        bool
	edge         serverEdgeFlags
	metricsAddr  string
	addrGiven    bool // ADDR was on the command line
	reusePort    bool
	upgrade      bool
	pidFile      string
	agentAddr    string
	drainDelay   time.Duration
}

func (a *app) echoCommand() *cobra.Command {
	o := &echoOptions{
		greeting:  newTextValue(`hello\r\n`),
		logFormat: &choiceValue{value: "text", choices: []string{"text", "json"}},
		logLevel:  &choiceValue{value: "info", choices: []string{"debug", "info", "warn", "error"}},
		engine:    &choiceValue{value: defaultEngine, choices: []string{"epoll", "goroutine"}},
	}
	cmd := &cobra.Command{
		Use:   "echo [ADDR]",
		Short: "Run the tutorial's echo server",
		Long: `Run the echo server of the Node.js net tutorial: greet each client, then send
back everything it sends. When the client half-closes, the server finishes
sending and closes too.

ADDR defaults to localhost:8124, which is reachable from this machine only:
it listens on 127.0.0.1 and on ::1, so clients that try either first connect
at once. Use :8124 (or 8124) to listen on EVERY interface, reachable from
other machines. A path with a '/' (or unix:NAME) is a Unix socket, removed
again at shutdown; port 0 picks a free port, shown in the "listening" log.

Each event is one log line on stderr: listening (the bound address), client
connected (its address), client disconnected (bytes in and out, duration).

SIGINT (Ctrl-C) or SIGTERM stops accepting and lets open connections finish
for up to --grace. A connection is ended (the server sends its FIN after
everything echoed) once no byte has moved for --shutdown-idle, so a client
that pauses between writes is not cut mid-stream. When --grace runs out, the
remaining connections are reset, so their clients know they were cut off,
and their log lines say so (err=). A client that keeps sending after the
server ended its side is reset too: its data is never dropped silently. The
Unix socket file is removed. A second signal resets everything at once.

Exit status:
  0    a clean shutdown: every connection finished
  1    the address cannot be bound, or accepting failed (one line says why)
  3    the shutdown cut connections short: --grace ran out, or a client sent
       more after the server had ended its side
  130, 143   a second SIGINT or SIGTERM forced the exit

--engine picks how connections run: epoll, the default on Linux, runs them
on a few event loops (little memory per connection; the echo handler never
blocks), goroutine gives each connection a goroutine of its own. The
"listening" line names the engine.

Limits: --max-conns caps the open connections, --max-conns-per-ip those
from one client address, --accept-rate new connections per second; --allow
and --deny admit or refuse clients by address prefix (--deny wins). A
connection over a limit is closed at once, and a warning names its client
and the limit.

TLS: --tls-cert and --tls-key serve TLS with a certificate from files,
reread on SIGHUP (a failed reread keeps the old one and says why);
--tls-self-signed makes a fresh certificate for localhost, 127.0.0.1 and
::1 and logs its fingerprint=..., which tcpkit connect --pin takes. A
client that fails its handshake, or stays silent past --handshake-timeout,
costs only its own connection; the first failure of a run is logged.

Behind a load balancer (HAProxy's send-proxy or send-proxy-v2):
--proxy-protocol required (or optional) reads the PROXY header first, and
the log lines, --max-conns-per-ip, --allow and --deny see the real client's
address. --trusted-proxies limits who may send one.

--no-delay is on by default, as in Go: each write goes out at once.
--no-delay=false turns Nagle's algorithm on, which is Node's default.`,
		Example: `  tcpkit echo                          # localhost:8124, loopback only
  tcpkit echo :8124                    # every interface (reachable from other machines)
  tcpkit echo 127.0.0.1:0              # a free port; see the "listening" line
  tcpkit echo /tmp/echo.sock           # a Unix socket; try: nc -U /tmp/echo.sock
  tcpkit echo --greeting 'Echo server\r\n' 1337
  tcpkit echo --greeting '' --quiet    # no greeting, no logs
  tcpkit echo --log-format json --max-conns 100 --idle-timeout 5m
  tcpkit echo --max-conns-per-ip 10 --accept-rate 200 --deny 10.0.0.0/8 :8124
  tcpkit echo --tls-self-signed 127.0.0.1:8443   # then: tcpkit connect --tls --pin HEX 127.0.0.1:8443
  tcpkit echo --tls-cert cert.pem --tls-key key.pem :8443
  tcpkit echo --proxy-protocol required --trusted-proxies 127.0.0.1/32 127.0.0.1:9000`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr := defaultEchoAddr
			if len(args) == 1 {
				addr, o.addrGiven = args[0], true
			}
			return a.echo(cmd.Context(), addr, o)
		},
	}
	f := cmd.Flags()
	f.Var(o.greeting, "greeting", `text sent to each client on connect; '' for none. Escapes: \r \n \t \\ \xHH`)
	f.IntVar(&o.maxConns, "max-conns", 0, "most open connections; more are accepted and closed at once (0: no limit)")
	f.IntVar(&o.maxPerIP, "max-conns-per-ip", 0, "most open connections from one client address; more are closed at once (0: no limit)")
	f.Float64Var(&o.acceptRate, "accept-rate", 0, "most new connections per second, in bursts of up to as many; more are closed at once (0: no limit)")
	f.StringSliceVar(&o.allow, "allow", nil, "serve only clients in these prefixes or addresses (CIDR, comma-separated or repeated)")
	f.StringSliceVar(&o.deny, "deny", nil, "refuse clients in these prefixes or addresses (CIDR); wins over --allow")
	f.DurationVar(&o.idleTimeout, "idle-timeout", 0, "close a connection after this long without traffic (0: never)")
	f.BoolVar(&o.noDelay, "no-delay", true, "send small writes at once (TCP_NODELAY); =false enables Nagle, like Node")
	f.DurationVar(&o.grace, "grace", 5*time.Second, "on SIGINT/SIGTERM, how long open connections may take to finish")
	f.DurationVar(&o.shutdownIdle, "shutdown-idle", tcpkit.DefaultShutdownIdle, "on SIGINT/SIGTERM, end a connection once no byte has moved for this long")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "log nothing")
	f.Var(o.logFormat, "log-format", "log line format")
	f.Var(o.logLevel, "log-level", "the least level logged (debug adds proxies' health checks)")
	f.Var(o.engine, "engine", "how connections run: epoll (event loops, Linux only) or goroutine (one per connection)")
	o.edge.register(f)
	f.StringVar(&o.agentAddr, "haproxy-agent", "", "answer HAProxy's agent checks on this address: up while serving, drain once stopping")
	f.DurationVar(&o.drainDelay, "drain-delay", 5*time.Second, "with --haproxy-agent: on SIGTERM, say drain and go on accepting this long before closing the listeners (over two agent-inter)")
	f.BoolVar(&o.upgrade, "upgrade", false, "on SIGUSR2, start the binary again with the listening sockets, and once it serves, drain and exit: a zero-downtime upgrade")
	f.StringVar(&o.pidFile, "pid-file", "", "write the serving process's id to this file (after an upgrade, the new one's)")
	f.BoolVar(&o.reusePort, "reuse-port", false, "set SO_REUSEPORT: several tcpkit echo processes may listen on one port, the kernel sharing out connections")
	f.StringVar(&o.metricsAddr, "metrics", "", "serve Prometheus metrics at http://ADDR/metrics (host:port; 127.0.0.1:9100 keeps them on this machine)")
	return cmd
}

// echo runs the echo server on addr until ctx ends or a signal arrives,
// then shuts it down gracefully.
func (a *app) echo(ctx context.Context, addr string, o *echoOptions) error {
	switch {
	case o.maxConns < 0:
		return &exitErr{code: exitUsage, msg: "--max-conns must not be negative"}
	case o.maxPerIP < 0:
		return &exitErr{code: exitUsage, msg: "--max-conns-per-ip must not be negative"}
	case o.acceptRate < 0:
		return &exitErr{code: exitUsage, msg: "--accept-rate must not be negative"}
	case o.idleTimeout < 0:
		return &exitErr{code: exitUsage, msg: "--idle-timeout must not be negative"}
	case o.grace < 0:
		return &exitErr{code: exitUsage, msg: "--grace must not be negative"}
	case o.shutdownIdle <= 0:
		return &exitErr{code: exitUsage, msg: "--shutdown-idle must be positive"}
	case o.drainDelay < 0:
		return &exitErr{code: exitUsage, msg: "--drain-delay must not be negative"}
	}
	var err error
	if o.allowP, err = parsePrefixes("--allow", o.allow); err != nil {
		return err
	}
	if o.denyP, err = parsePrefixes("--deny", o.deny); err != nil {
		return err
	}
	log := newLogger(a.stderr, o.logFormat.value, o.logLevel.value, o.quiet)
	if o.grace < o.shutdownIdle {
		log.Warn("--grace is shorter than --shutdown-idle: connections active at shutdown will be reset rather than drained",
			"grace", o.grace.String(), "shutdown_idle", o.shutdownIdle.String())
	}
	sigs, unsubscribe := a.subscribe()
	defer unsubscribe()
	up, err := startUpgrades(o.upgrade, o.pidFile, o.grace+10*time.Second, log)
	if err != nil {
		return err
	}
	if up != nil {
		log = log.With("pid", os.Getpid()) // old and new processes share the log
		up.log = log
	}
	defer up.stop()

	var cut atomic.Int64 // connections the shutdown cut short
	srv := newEchoServer(o, log, &cut)
	stopReload, err := o.edge.apply(srv, log)
	if err != nil {
		return err
	}
	defer stopReload()
	engine, closeEngine, err := newEngine(o.engine.value, log)
	if err != nil {
		return err
	}
	defer closeEngine()
	srv.Engine = engine
	open := func() ([]net.Listener, error) {
		return echoListeners(ctx, tcpkit.ListenConfig{ReusePort: o.reusePort}, addr, o.addrGiven, log)
	}
	var lns []net.Listener
	if up != nil {
		lns, err = up.listeners(open)
	} else {
		lns, err = open()
	}
	if err != nil {
		return err
	}
	sv := startServing(srv, lns)
	for _, addr := range sv.bound {
		log.Info("listening", "addr", addr, "engine", o.engine.value)
	}
	if o.metricsAddr != "" {
		_, stopMetrics, err := serveMetrics(o.metricsAddr, srv, log)
		if err != nil {
			sv.abort()
			return err
		}
		defer stopMetrics()
	}
	var agent *haproxyAgent
	if o.agentAddr != "" {
		var aln net.Listener
		if up != nil {
			aln, err = up.u.Listen("tcp", o.agentAddr) // inherited after an upgrade
		} else {
			aln, err = net.Listen("tcp", o.agentAddr)
		}
		if err != nil {
			sv.abort()
			return failf("--haproxy-agent %s: %s", o.agentAddr, cause(err))
		}
		agent = startAgent(aln, log)
		defer agent.close()
	}
	if up != nil {
		if err := up.ready(); err != nil {
			sv.abort()
			return err
		}
	}
	if a.ready != nil {
		a.ready(srv, sv.bound)
	}

	var serveErr error
	// Each case stops accepting before it logs, so that once "shutting
	// down" is logged, new connections are refused (or, after an upgrade,
	// go to the new process).
	select {
	case <-ctx.Done():
		sv.stop()
		log.Info("shutting down", "reason", context.Cause(ctx).Error(), "grace", o.grace.String())
	case s := <-sigs:
		if agent != nil && o.drainDelay > 0 {
			// Tell HAProxy first, and keep accepting what it still sends
			// until it has heard: then nothing is on its way at the close.
			agent.drain()
			log.Info("draining: the HAProxy agent says drain; still accepting", "signal", s.String(), "delay", o.drainDelay.String())
			t := time.NewTimer(o.drainDelay)
			select {
			case <-t.C:
			case s2 := <-sigs:
				log.Info("second signal: the drain delay is cut short", "signal", s2.String())
			case <-ctx.Done():
			}
			t.Stop()
		}
		sv.stop()
		log.Info("shutting down", "signal", s.String(), "grace", o.grace.String())
	case <-up.exited():
		sv.stop()
		log.Info("shutting down: handed over to the new process", "grace", o.grace.String())
	case serveErr = <-sv.served:
		sv.failed()
		sv.stop()
		log.Error("accepting failed; shutting down", "err", serveErr.Error())
	}

	second := shutdown(srv, log, sigs, o.grace, &cut)
	sv.wait()
	log.Info("stopped")

	switch {
	case serveErr != nil:
		return failf("accepting on %s: %s", addr, cause(serveErr))
	case second != nil:
		return &exitErr{code: signalExitCode(second)}
	case cut.Load() > 0:
		return &exitErr{code: exitCut}
	}
	return nil
}

// newEchoServer returns the server of tcpkit echo, configured from its
// flags. It logs to log; cut counts the connections that a shutdown cuts
// short.
func newEchoServer(o *echoOptions, log *slog.Logger, cut *atomic.Int64) *tcpkit.Server {
	return &tcpkit.Server{
		Handler:      echoHandler(log, o.greeting.bytes, cut),
		ShutdownIdle: o.shutdownIdle,
		ConnConfig: tcpkit.ConnConfig{
			IdleTimeout: o.idleTimeout,
			Nagle:       !o.noDelay,
		},
		MaxConnections: o.maxConns,
		MaxConnsPerIP:  o.maxPerIP,
		AcceptRate:     o.acceptRate,
		Allow:          o.allowP,
		Deny:           o.denyP,
		Logger:         log,
		OnDrop: func(d tcpkit.Drop) {
			switch d.Reason {
			case tcpkit.DropMaxConnections:
				log.Warn("connection dropped: --max-conns reached", "remote", peer(d.RemoteAddr), "max_conns", o.maxConns)
			case tcpkit.DropPerIP:
				log.Warn("connection dropped: --max-conns-per-ip reached", "remote", peer(d.RemoteAddr), "max_conns_per_ip", o.maxPerIP)
			case tcpkit.DropRate:
				log.Warn("connection dropped: --accept-rate exceeded", "remote", peer(d.RemoteAddr), "accept_rate", o.acceptRate)
			default:
				log.Warn("connection dropped: client not allowed (--allow, --deny)", "remote", peer(d.RemoteAddr), "reason", string(d.Reason))
			}
		},
	}
}

// parsePrefixes parses the values of flag: CIDR prefixes, or bare
// addresses, which stand for themselves alone.
func parsePrefixes(flag string, values []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range values {
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, &exitErr{code: exitUsage, msg: fmt.Sprintf("%s %q: not an address prefix (10.0.0.0/8) or an address", flag, v)}
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// shutdown shuts srv down gracefully: it stops accepting and gives the
// open connections up to grace to finish. A signal on sigs cuts the grace
// period short; shutdown then returns that signal. cut counts the
// connections that the shutdown cut short.
func shutdown(srv *tcpkit.Server, log *slog.Logger, sigs <-chan os.Signal, grace time.Duration, cut *atomic.Int64) os.Signal {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	forcedBy := make(chan os.Signal, 1)
	watching := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case s := <-sigs:
			log.Warn("second signal: resetting all connections now", "signal", s.String())
			forcedBy <- s
			cancel()
		case <-watching:
		}
	}()
	err := srv.Shutdown(ctx)
	close(watching)
	<-watched
	var second os.Signal
	select {
	case second = <-forcedBy:
	default:
	}
	switch n := cut.Load(); {
	case second == nil && err != nil && n > 0:
		log.Warn("grace period over: reset the remaining connections", "cut", n)
	case n > 0:
		log.Warn("shutdown cut connections short", "cut", n)
	}
	return second
}

// echoHandler returns the seed's connection listener: log, greet, echo.
// cut counts the connections that a shutdown cut short: their close error
// wraps tcpkit.ErrServerClosed.
func echoHandler(log *slog.Logger, greeting []byte, cut *atomic.Int64) tcpkit.Handler {
	var ids atomic.Int64
	return func(c *tcpkit.Conn) {
		id := ids.Add(1)
		start := time.Now()
		remote := peer(c.RemoteAddr())
		// A proxy's health check (the PROXY protocol's LOCAL command)
		// comes every few seconds: log it at DEBUG, out of the way.
		level := slog.LevelInfo
		if h := c.ProxyHeader(); h != nil && h.Command == proxyproto.LOCAL {
			level = slog.LevelDebug
		}
		ctx := context.Background()
		log.Log(ctx, level, "client connected", "conn", id, "remote", remote)
		c.OnClose(func(err error) {
			attrs := []any{"conn", id, "remote", remote,
				"bytes_in", c.BytesRead(), "bytes_out", c.BytesWritten(),
				"duration", roundDuration(time.Since(start)).String()}
			switch {
			case errors.Is(err, tcpkit.ErrServerClosed):
				cut.Add(1)
				log.Warn("client cut off by shutdown", append(attrs, "err", err.Error())...)
			case err != nil:
				log.Log(ctx, level, "client disconnected", append(attrs, "err", err.Error())...)
			default:
				log.Log(ctx, level, "client disconnected", attrs...)
			}
		})
		if len(greeting) > 0 {
			c.Write(greeting)
		}
		tcpkit.Pipe(c, c)
	}
}

// newLogger returns the echo server's logger: slog text or JSON lines on w,
// or nothing at all.
func newLogger(w io.Writer, format, level string, quiet bool) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level)) // one of the flag's choices
	opts := &slog.HandlerOptions{Level: lv}
	switch {
	case quiet:
		return slog.New(slog.DiscardHandler)
	case format == "json":
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// peer describes a remote address for the log. Clients of a Unix socket
// have no address of their own.
func peer(a net.Addr) string {
	if a == nil || a.String() == "" || a.String() == "@" {
		return "unix (unnamed)"
	}
	return addrString(a)
}

// roundDuration keeps a duration readable in a log line.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
