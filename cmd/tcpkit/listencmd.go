package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/tcpkit/tcpkit"
)

// listenOptions are the flags of tcpkit listen.
type listenOptions struct {
	keepOpen    bool
	maxConns    int
	exec        string
	broker      bool
	maxBuffered int
	grace       time.Duration
	engine      *choiceValue
	quiet       bool
	edge        serverEdgeFlags
}

// defaultListenMaxConns is --max-conns with --exec -k or --broker.
const defaultListenMaxConns = 100

func (a *app) listenCommand() *cobra.Command {
	o := &listenOptions{
		engine: &choiceValue{value: defaultEngine, choices: []string{"epoll", "goroutine"}},
	}
	cmd := &cobra.Command{
		Use:   "listen ADDR",
		Short: "Accept a connection and relay it to standard input and output, like nc -l",
		Long: `Listen on ADDR, accept one connection, send standard input to it and write
what it sends to standard output, byte for byte (binary-safe), like nc -l.
Once the connection is accepted, tcpkit listen stops listening: other
clients are refused.

Each direction ends on its own (half-close). At the end of standard input
(Ctrl-D on a terminal) tcpkit listen ends its side: the client sees the end
of the data, and its output goes on. When the client ends its side, the
rest of standard input is still sent. Once both sides have ended, and the
output is written, tcpkit listen exits with status 0; 1 if the connection
was reset or standard input or output failed. Once standard output fails
(tcpkit listen ... | head -c 5), a client whose data can no longer be
written is reset, and tcpkit listen exits 1.

-k (--keep-open) accepts the next connection after one ends, one at a
time unless --max-conns allows more (a connection over the limit is closed
at once, with a warning). Standard input is read once, as it comes: each
chunk goes to the connections open when it is read (it waits, unread,
while none is), and at its end every open connection, and every later
one, is ended at once. So with input from a file the first client gets the
file and later ones get nothing; on a terminal each line goes to whoever
is connected. Output from several connections is interleaved by chunk.

--exec CMD runs CMD with /bin/sh -c for each connection (so quotes, pipes
and redirections work as in a shell), its standard input reading from the
client and its standard output writing to the client; its standard error
is tcpkit's. TCPKIT_REMOTE_ADDR and TCPKIT_LOCAL_ADDR name the addresses.
The client's end closes CMD's input; CMD's exit ends the connection once
its output is sent. If CMD exits leaving input from the client unread
(say head -c 5), or the client sends more after, that input can reach no
one: the client is reset (ECONNRESET) rather than ended, and the log says
how many bytes were lost. A CMD that does not read stops the connection
being read (backpressure), so memory stays bounded. --max-conns bounds
the processes (default 100 with -k). Without -k, a CMD that fails, or
input lost as above, makes tcpkit listen fail.

--broker relays what each client sends to every other client, as ncat
--broker does; standard input and output are not used, and it keeps
listening (-k). A client that stops reading is cut off once more than
--max-buffered bytes wait for it, with a warning; the others go on. A
client that ends its side is disconnected.

ADDR is host:port, :port (every interface), or a Unix socket path
(anything with a '/', or unix:NAME); port 0 picks a free port, shown in
the "listening" line on stderr. A bad address, a port in use, or a path
that is not a socket is one line on stderr and exit status 1.

TLS and the PROXY protocol work as for tcpkit echo (--tls-cert,
--tls-self-signed, --proxy-protocol). SIGINT (Ctrl-C) or SIGTERM stops
listening and gives open connections --grace to finish; --exec processes
get SIGTERM. Exit status as for tcpkit echo: 0 clean, 1 failure, 3 if the
shutdown cut connections short (a client reset because the stopped --exec
process left its input unread counts), 130 or 143 if a second signal
forced it.`,
		Example: `  tcpkit listen 127.0.0.1:9000 > received.bin      # receive one file
  tcpkit listen :9000 < send.bin                    # serve one file
  tcpkit listen /tmp/chat.sock                      # a Unix socket: nc -U /tmp/chat.sock
  tcpkit listen -k 127.0.0.1:9000                   # one client after another
  tcpkit listen -k --exec 'tr a-z A-Z' 127.0.0.1:9000
  tcpkit listen -k --exec 'echo "hello $TCPKIT_REMOTE_ADDR"' :9000
  tcpkit listen --broker :9000                      # a chat room
  tcpkit listen --tls-self-signed 127.0.0.1:9443    # then: tcpkit connect --tls --pin HEX ...`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.listenCmd(cmd.Context(), args[0], o, cmd.Flags().Changed("max-conns"))
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.keepOpen, "keep-open", "k", false, "after a connection ends, accept the next (standard input is read once: see above)")
	f.IntVar(&o.maxConns, "max-conns", 0, "most connections served at once; more are closed at once (default 1, or 100 with --exec -k and --broker)")
	f.StringVar(&o.exec, "exec", "", "run this command with /bin/sh -c for each connection, wired to it")
	f.BoolVar(&o.broker, "broker", false, "relay each client's data to every other client (implies -k)")
	f.IntVar(&o.maxBuffered, "max-buffered", tcpkit.DefaultMaxBuffered, "bytes queued for a client before it is cut off as too slow")
	f.DurationVar(&o.grace, "grace", 5*time.Second, "on SIGINT/SIGTERM, how long open connections may take to finish")
	f.Var(o.engine, "engine", "how connections run: epoll (event loops; Linux) or goroutine (one per connection)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "log nothing on stderr")
	o.edge.register(f)
	return cmd
}

// listenCmd runs tcpkit listen on addr until its connection is done
// (without -k), ctx ends, or a signal arrives.
func (a *app) listenCmd(ctx context.Context, addr string, o *listenOptions, maxGiven bool) error {
	switch {
	case o.maxConns < 0 || (maxGiven && o.maxConns == 0):
		return &exitErr{code: exitUsage, msg: "--max-conns must be positive"}
	case o.grace < 0:
		return &exitErr{code: exitUsage, msg: "--grace must not be negative"}
	case o.broker && o.exec != "":
		return &exitErr{code: exitUsage, msg: "--broker and --exec exclude each other"}
	case o.maxBuffered < 2*tcpkit.DefaultHighWater:
		return &exitErr{code: exitUsage, msg: "--max-buffered must be at least 131072"}
	}
	if o.broker {
		o.keepOpen = true
	}
	if !maxGiven {
		o.maxConns = 1
		if o.keepOpen && (o.exec != "" || o.broker) {
			o.maxConns = defaultListenMaxConns
		}
	}
	if !o.keepOpen && o.maxConns != 1 {
		return &exitErr{code: exitUsage, msg: "--max-conns needs -k: without it, one connection is served"}
	}
	log := newLogger(a.stderr, "text", "info", o.quiet)
	sigs, unsubscribe := a.subscribe()
	defer unsubscribe()
	defer catchSIGPIPE()()

	s := &listenSession{a: a, o: o, log: log, fatal: make(chan error, 1), stop: make(chan struct{}), done: make(chan struct{})}
	var h tcpkit.Handler
	switch {
	case o.broker:
		h = s.brokerHandler()
	case o.exec != "":
		h = s.execHandler()
	default:
		h = s.stdioHandler()
	}
	srv := &tcpkit.Server{
		Handler: s.logged(h),
		ConnConfig: tcpkit.ConnConfig{
			// Each direction ends on its own, except in a broker, where
			// a client that ends its side leaves (as in ncat).
			AllowHalfOpen: !o.broker,
			MaxBuffered:   o.maxBuffered,
		},
		MaxConnections: o.maxConns,
		Logger:         log,
		OnDrop: func(d tcpkit.Drop) {
			if !o.keepOpen {
				log.Warn("connection refused: serving one already (-k serves more)", "remote", peer(d.RemoteAddr))
				return
			}
			log.Warn("connection refused: --max-conns reached", "remote", peer(d.RemoteAddr), "max_conns", o.maxConns)
		},
	}
	s.srv = srv
	stopReload, err := o.edge.apply(srv, log)
	if err != nil {
		return err
	}
	defer stopReload()
	engine, closeEngine, err := newEngine(o.engine.value, log)
	if err != nil {
		return err
	}
	defer closeEngine() // after the shutdown: the connections have closed
	srv.Engine = engine
	lns, err := listen(ctx, tcpkit.ListenConfig{}, addr, log)
	if err != nil {
		return err
	}
	s.startOutput()
	defer s.stopOutput()
	sv := startServing(srv, lns)
	for _, addr := range sv.bound {
		log.Info("listening", "addr", addr, "engine", o.engine.value)
	}
	if a.ready != nil {
		a.ready(srv, sv.bound)
	}

	var serveErr, sessErr error
wait:
	for {
		select {
		case <-ctx.Done():
			sv.stop()
			log.Info("shutting down", "reason", context.Cause(ctx).Error(), "grace", o.grace.String())
			break wait
		case sig := <-sigs:
			sv.stop()
			log.Info("shutting down", "signal", sig.String(), "grace", o.grace.String())
			break wait
		case sessErr = <-s.fatal:
			sv.stop()
			break wait
		case <-s.done:
			// Without -k: the one connection has closed. Its output is
			// written by the time stopOutput returns.
			break wait
		case err := <-sv.served:
			sv.failed()
			if errors.Is(err, tcpkit.ErrServerClosed) {
				continue // the first connection stopped the accepting
			}
			serveErr = err
			sv.stop()
			log.Error("accepting failed; shutting down", "err", err.Error())
			break wait
		}
	}
	forced := shutdown(srv, log, sigs, o.grace, &s.cut)
	sv.wait()
	close(s.stop)
	s.wg.Wait() // the --exec processes have been reaped
	s.stopOutput()
	if sessErr == nil {
		sessErr = s.result()
	}
	switch {
	case serveErr != nil:
		return failf("accepting on %s: %s", addr, cause(serveErr))
	case forced != nil:
		return &exitErr{code: signalExitCode(forced)}
	case sessErr != nil:
		return sessErr
	case s.cut.Load() > 0:
		return &exitErr{code: exitCut}
	}
	return nil
}

// listenSession is the state of one run of tcpkit listen that its
// connections share.
type listenSession struct {
	a     *app
	o     *listenOptions
	log   *slog.Logger
	srv   *tcpkit.Server
	cut   atomic.Int64   // connections the shutdown cut short
	fatal chan error     // an error that ends the run (stdout or stdin failed)
	stop  chan struct{}  // closed once the server has shut down
	wg    sync.WaitGroup // the goroutines of --exec connections
	// resets maps a connection that reset, because input it had received
	// could not be delivered, to its *inputLost: its close error, which
	// Reset cannot carry.
	resets sync.Map

	first     atomic.Bool   // the first connection has been accepted
	done      chan struct{} // without -k: closed once the connection has closed
	mu        sync.Mutex
	firstErr  error // without -k: what ended the connection, as an exit error
	outputMu  sync.Mutex
	outQueue  []outChunk
	outWake   chan struct{}
	outDone   chan struct{}
	outErr    error
	outClosed bool

	stdin stdinRelay
}

// fail records err, if it is the first failure of the connection, as the
// run's outcome without -k. With -k, failures are only logged.
func (s *listenSession) fail(err error) {
	if s.o.keepOpen {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.firstErr == nil {
		s.firstErr = err
	}
}

// result is the outcome of the run's connections.
func (s *listenSession) result() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstErr
}

// logged wraps h with what every mode does: log the connection, stop
// accepting after the first one without -k, and count those the shutdown
// cuts short.
func (s *listenSession) logged(h tcpkit.Handler) tcpkit.Handler {
	var ids atomic.Int64
	return func(c *tcpkit.Conn) {
		id := ids.Add(1)
		start := time.Now()
		remote := peer(c.RemoteAddr())
		if !s.o.keepOpen && !s.first.Swap(true) {
			s.srv.Close() // nc -l: one connection, then no more listening
		}
		s.log.Info("client connected", "conn", id, "remote", remote)
		c.OnClose(func(err error) {
			if why, ok := s.resets.LoadAndDelete(c); ok && err == nil {
				err = why.(error)
			}
			attrs := []any{"conn", id, "remote", remote,
				"bytes_in", c.BytesRead(), "bytes_out", c.BytesWritten(),
				"duration", roundDuration(time.Since(start)).String()}
			var lost *inputLost
			switch {
			case errors.Is(err, tcpkit.ErrServerClosed):
				s.cut.Add(1)
				s.log.Warn("client cut off by shutdown", append(attrs, "err", err.Error())...)
			case errors.Is(err, tcpkit.ErrSlowConsumer):
				s.log.Warn("client cut off: it stopped reading (--max-buffered)", append(attrs, "err", err.Error())...)
			case errors.As(err, &lost):
				s.log.Warn("client reset: what it sent could not be delivered", append(attrs, "err", err.Error())...)
			case err != nil:
				s.log.Info("client disconnected", append(attrs, "err", err.Error())...)
			default:
				s.log.Info("client disconnected", attrs...)
			}
			if err != nil && !errors.Is(err, tcpkit.ErrServerClosed) {
				s.fail(connError(remote, err))
			}
		})
		h(c)
		if !s.o.keepOpen {
			// After h's listeners, so that they have run.
			c.OnClose(func(error) { close(s.done) })
		}
	}
}

// inputLost is the close error of a connection that tcpkit listen reset
// because input it had received, and TCP had acknowledged, could not be
// delivered: the client is told by the reset, the log by this error.
type inputLost struct {
	what     string // what failed, as the start of a sentence
	n        int64  // the bytes known to be lost
	shutdown bool   // the shutdown caused it: it wraps tcpkit.ErrServerClosed
}

func (e *inputLost) Error() string {
	msg := fmt.Sprintf("%s with %d bytes from the client not delivered: connection reset", e.what, e.n)
	if e.shutdown {
		return tcpkit.ErrServerClosed.Error() + ": " + msg
	}
	return msg
}

func (e *inputLost) Unwrap() error {
	if e.shutdown {
		return tcpkit.ErrServerClosed
	}
	return nil
}

// reset resets c (an RST on TCP) with why as its close error, for input
// that c received and that cannot be delivered. It does nothing to a
// connection already closed.
func (s *listenSession) reset(c *tcpkit.Conn, why *inputLost) {
	select {
	case <-c.Done():
		return
	default:
	}
	s.resets.Store(c, why)
	c.Reset()
	select {
	case <-c.Done(): // closed meanwhile, its OnClose maybe before the Store
		s.resets.Delete(c)
	default:
	}
}

// connError is the one-line error for a connection that closed with err.
func connError(remote string, err error) error {
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return failf("%s: connection reset by peer", remote)
	case errors.Is(err, tcpkit.ErrSlowConsumer):
		return failf("%s: cut off: it stopped reading", remote)
	}
	return failf("%s: %s", remote, cause(err))
}

// outChunk is data received from c, to be written to standard output; c
// stays paused until it is.
type outChunk struct {
	c *tcpkit.Conn
	p []byte
}

// startOutput starts the goroutine that writes received data to standard
// output. Each connection is paused while a chunk of its data waits, so
// the queue holds at most one chunk per connection, and a slow standard
// output slows the clients down rather than filling memory.
func (s *listenSession) startOutput() {
	s.outWake = make(chan struct{}, 1)
	s.outDone = make(chan struct{})
	go func() {
		defer close(s.outDone)
		for {
			s.outputMu.Lock()
			for len(s.outQueue) == 0 && !s.outClosed {
				s.outputMu.Unlock()
				<-s.outWake
				s.outputMu.Lock()
			}
			if len(s.outQueue) == 0 {
				s.outputMu.Unlock()
				return
			}
			ch := s.outQueue[0]
			s.outQueue = s.outQueue[1:]
			failed := s.outErr != nil
			s.outputMu.Unlock()
			n := 0
			if !failed {
				var err error
				if n, err = s.a.stdout.Write(ch.p); err != nil {
					s.outputMu.Lock()
					s.outErr = err
					s.outputMu.Unlock()
					select {
					case s.fatal <- failf("writing standard output: %v", err):
					default:
					}
					failed = true
				}
			}
			if failed {
				s.reset(ch.c, &inputLost{what: "standard output failed", n: int64(len(ch.p) - n)})
			} else {
				ch.c.Resume()
			}
			s.poke()
		}
	}()
}

// output queues p, received from c, for standard output and pauses c
// until it is written. Once standard output has failed, it resets c
// instead: p can be written nowhere. It is called from c's OnData
// listener.
func (s *listenSession) output(c *tcpkit.Conn, p []byte) {
	c.Pause()
	s.outputMu.Lock()
	if s.outErr != nil {
		s.outputMu.Unlock()
		s.reset(c, &inputLost{what: "standard output failed", n: int64(len(p))})
		return
	}
	s.outQueue = append(s.outQueue, outChunk{c: c, p: append([]byte(nil), p...)})
	s.outputMu.Unlock()
	s.poke()
}

// poke wakes the output goroutine.
func (s *listenSession) poke() {
	select {
	case s.outWake <- struct{}{}:
	default:
	}
}

// stopOutput stops the output goroutine once the queue is written. It may
// be called more than once.
func (s *listenSession) stopOutput() {
	s.outputMu.Lock()
	s.outClosed = true
	s.outputMu.Unlock()
	s.poke()
	<-s.outDone
}

// stdinRelay sends standard input to the open connections of tcpkit
// listen's stdio mode.
type stdinRelay struct {
	mu      sync.Mutex
	conns   map[*tcpkit.Conn]struct{} // open, and not yet ended by us
	eof     bool                      // standard input has ended
	started bool                      // the pump runs
	wake    chan struct{}             // a connection came, drained or closed
}

// stdioHandler returns the connection listener of the stdio mode: data to
// standard output, standard input to the connections.
func (s *listenSession) stdioHandler() tcpkit.Handler {
	r := &s.stdin
	r.conns = map[*tcpkit.Conn]struct{}{}
	r.wake = make(chan struct{}, 1)
	return func(c *tcpkit.Conn) {
		r.mu.Lock()
		if r.eof {
			r.mu.Unlock()
			c.End() // standard input has been used up
		} else {
			r.conns[c] = struct{}{}
			if !r.started {
				r.started = true
				go s.pump()
			}
			r.mu.Unlock()
			r.poke()
		}
		c.OnData(func(p []byte) { s.output(c, p) })
		c.OnDrain(r.poke)
		c.OnEnd(func() {
			s.log.Info("client ended its side; standard input still goes to it until its end", "remote", peer(c.RemoteAddr()))
		})
		c.OnClose(func(error) {
			r.mu.Lock()
			delete(r.conns, c)
			r.mu.Unlock()
			r.poke()
		})
	}
}

func (r *stdinRelay) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// waitUntil waits until cond, called with r.mu held, is true, and returns
// with r.mu held; false if the run is stopping.
func (r *stdinRelay) waitUntil(stop <-chan struct{}, cond func() bool) bool {
	for {
		r.mu.Lock()
		if cond() {
			return true
		}
		r.mu.Unlock()
		select {
		case <-r.wake:
		case <-stop:
			r.mu.Lock()
			return false
		}
	}
}

// pump reads standard input once, as it comes, and sends each chunk to
// every open connection, waiting while none is and while any has more
// than HighWater queued. At its end, it ends every open connection; later
// ones are ended as they come.
func (s *listenSession) pump() {
	r := &s.stdin
	buf := make([]byte, stdinChunk)
	some := func() bool { return len(r.conns) > 0 }
	for {
		n, err := s.a.stdin.Read(buf)
		if n > 0 {
			if !r.waitUntil(s.stop, some) {
				r.mu.Unlock()
				return
			}
			sent := make([]*tcpkit.Conn, 0, len(r.conns))
			for c := range r.conns {
				c.Write(buf[:n]) // an error means it is closing: OnClose removes it
				sent = append(sent, c)
			}
			r.mu.Unlock()
			ok := r.waitUntil(s.stop, func() bool {
				for _, c := range sent {
					if _, open := r.conns[c]; open && c.Buffered() > tcpkit.DefaultHighWater {
						return false
					}
				}
				return true
			})
			r.mu.Unlock()
			if !ok {
				return
			}
		}
		if err != nil {
			r.mu.Lock()
			r.eof = true
			for c := range r.conns {
				if err == io.EOF {
					c.End()
				} else {
					c.Close()
				}
			}
			clear(r.conns)
			r.mu.Unlock()
			if err != io.EOF {
				select {
				case s.fatal <- failf("reading standard input: %v", err):
				default:
				}
			}
			return
		}
	}
}
