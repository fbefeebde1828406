package tcpkit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpkit/tcpkit/internal/fault"
)

// A Server accepts connections and runs a Handler for each, as Node's
// net.Server does. Its zero value is ready to use: every field is optional
// and documents its default. Fields must not be changed once the server
// has started serving.
type Server struct {
	// Addr is the address ListenAndServe listens on, in the grammar of
	// ParseAddr. Default ":0": every interface, a port the OS picks (as
	// Node's listen() with no port).
	Addr string

	// Handler is the connection listener, called once per accepted
	// connection. If nil, connections are accepted and their data
	// discarded.
	Handler Handler

	// ConnConfig holds the settings of each accepted connection.
	ConnConfig

	// Engine runs the connections. Default nil: GoroutineEngine, a
	// goroutine per connection. See Engine for when to pick another.
	Engine Engine

	// MaxConnections, if positive, caps the open connections. A connection
	// accepted over the cap is closed at once and reported to OnDrop.
	// Default 0: no cap. (Node 21 and later treat 0 as "drop all".)
	MaxConnections int

	// MaxConnsPerIP, if positive, caps the open connections from one
	// client IP address; Allow and Deny admit or refuse clients by
	// address prefix, Deny winning (Node's BlockList). IPv4-mapped IPv6
	// addresses are unmapped before they are counted or matched. They
	// apply to TCP clients only: a Unix socket's peer has no address.
	MaxConnsPerIP int
	Allow, Deny   []netip.Prefix

	// AcceptRate, if positive, caps new connections per second, with
	// bursts of up to AcceptBurst (default: AcceptRate, at least 1): a
	// token bucket. A connection over any limit is closed at once and
	// reported to OnDrop with the reason. Set the limits before serving.
	AcceptRate  float64
	AcceptBurst int

	// TLS, if set, makes the server speak TLS: each connection's handshake
	// runs before its Handler, which sees a connection ready for
	// application data; OnData delivers plaintext and Write encrypts. It
	// needs a certificate (Certificates, or GetCertificate: see
	// CertReloader for one that rereads its files); TLS 1.2 is the least
	// version accepted whatever MinVersion says. The handshake runs off
	// the accept path, on either engine, and a client that fails it, or
	// sends nothing, costs only its own connection (see OnHandshakeError).
	TLS *tls.Config

	// HandshakeTimeout bounds each TLS handshake. Default
	// DefaultHandshakeTimeout (10s).
	HandshakeTimeout time.Duration

	// ProxyProtocol says whether connections begin with a PROXY protocol
	// header (v1 or v2) from a load balancer; TrustedProxies lists the
	// peers allowed to send one (empty: any peer; a Unix socket's peer is
	// always allowed). With a header, RemoteAddr and LocalAddr report the
	// addresses it gives, ProxyHeader returns it, and MaxConnsPerIP, Allow
	// and Deny apply to the real client's address. A header from a peer
	// not in TrustedProxies, a malformed one, or none where required resets
	// the connection (its bytes were acknowledged and will not be read).
	// A v2 header may carry up to 4096 bytes of addresses and TLVs after
	// its 16-byte start: go-proxyproto's MaxV2HeaderSize, which a program
	// that expects larger headers may raise at init; tcpkit refuses a
	// longer one as soon as its length field arrives, buffering nothing
	// more. A v1 header is at most 107 bytes, as the protocol says. The
	// LOCAL command (a proxy's health check) keeps the socket's addresses.
	// The header comes before TLS.
	ProxyProtocol  ProxyPolicy
	TrustedProxies []netip.Prefix

	// ProxyHeaderTimeout bounds the wait for a PROXY header. Default
	// DefaultProxyHeaderTimeout (5s). Under ProxyOptional, a connection
	// that has sent nothing by then is served as one without a header; one
	// that has sent the start of a header and stopped is reset.
	ProxyHeaderTimeout time.Duration

	// OnHandshakeError is called for each connection closed because its
	// PROXY header or TLS handshake failed or timed out, on that
	// connection's event goroutine (so it may run for several connections
	// at once). If nil, the first failure of each run of failures is
	// logged to Logger.
	OnHandshakeError func(err *HandshakeError)

	// ShutdownIdle is how long Shutdown waits for a connection to be idle
	// before it ends it: no byte read or written for this long, nothing
	// queued to write, no input waiting unread, not paused. TCP keeps no
	// message boundaries, so tcpkit cannot see that a transfer is
	// complete, only that bytes have stopped moving; a client streaming in bursts pauses tens to hundreds
	// of milliseconds between writes, and must not be cut there. A
	// connection that has been idle this long when Shutdown begins is ended
	// at once. Default DefaultShutdownIdle (1s). Connections with
	// OnShutdown listeners are left to end themselves.
	ShutdownIdle time.Duration

	// SocketMode, if non-zero, is the file mode ListenAndServe gives a Unix
	// socket file. See ListenConfig.
	SocketMode fs.FileMode

	// OnListening is called once for each listener, when Serve starts
	// accepting on it: Node's listening event. addr is the bound address,
	// so port 0 can be read here. OnListening, OnError and OnDrop run on
	// the goroutine of the Serve loop concerned: with several listeners
	// (ListenAndServe on localhost, say) they may run at the same time.
	OnListening func(addr net.Addr)

	// OnError is called with errors that do not end Serve: the first of a
	// run of temporary accept errors (EMFILE, ENFILE, ECONNABORTED,
	// ENOBUFS, ENOMEM, EINTR, EPROTO, EPERM, a timeout, or a network error
	// such as ENETUNREACH passed on from a connection that failed in the
	// queue), during which the server backs off (5ms doubling to 1s) and
	// retries. If nil, they are logged to Logger.
	OnError func(err error)

	// OnDrop is called, on the accepting goroutine, for each connection
	// closed at once because of a limit (MaxConnections, MaxConnsPerIP,
	// AcceptRate, Allow or Deny). With the PROXY protocol on, the limits
	// by address wait for the header, and a connection they refuse is
	// reported from its own event goroutine instead. If nil, the first
	// drop of each run of drops is logged to Logger.
	OnDrop func(d Drop)

	// OnClose is called once, after Close or Shutdown, when the listeners
	// have stopped and the last connection has closed: Node's close event.
	OnClose func()

	// Logger receives the server's own log lines: accept errors, drops,
	// panics recovered in callbacks. Default slog.Default().
	Logger *slog.Logger

	once         sync.Once
	cfg          ConnConfig  // ConnConfig with defaults filled in
	tlsConfig    *tls.Config // TLS, checked, TLS 1.2 at least
	shutdownIdle time.Duration
	cfgErr       error
	mu           sync.Mutex // guards the fields below
	lns          map[*net.Listener]struct{}
	conns        map[*Conn]struct{}
	closings     int // connections out of conns whose close events are running
	closing      bool
	finished     bool // OnClose has been called
	dropping     bool // in a run of drops
	admission    admission
	counters     serverCounters
	failing      bool // in a run of handshake failures
	handshakeErr atomic.Int64
	handlers     sync.WaitGroup
	stop         chan struct{} // closed by Close
	done         chan struct{} // closed after OnClose
}

// A Drop describes a connection closed at once because of a limit.
type Drop struct {
	LocalAddr  net.Addr
	RemoteAddr net.Addr
	Reason     DropReason
}

// DefaultShutdownIdle is Server.ShutdownIdle's default: longer than the
// pauses of a busy stream, short enough that a shutdown is not held up by
// connections merely waiting for their next request.
const DefaultShutdownIdle = time.Second

// NewServer returns a Server that calls h for each connection, Node's
// net.createServer(listener). Set other fields before serving.
func NewServer(h Handler) *Server { return &Server{Handler: h} }

func (s *Server) init() {
	s.once.Do(func() {
		s.cfg, s.cfgErr = s.ConnConfig.resolve()
		if s.cfgErr == nil {
			s.cfgErr = checkServerTLS(s.TLS)
		}
		if s.TLS != nil {
			s.tlsConfig = serverTLSConfig(s.TLS)
		}
		s.shutdownIdle = s.ShutdownIdle
		switch {
		case s.shutdownIdle == 0:
			s.shutdownIdle = DefaultShutdownIdle
		case s.shutdownIdle < 0 && s.cfgErr == nil:
			s.cfgErr = fmt.Errorf("tcpkit: negative Server.ShutdownIdle (%v)", s.ShutdownIdle)
		}
		s.lns = make(map[*net.Listener]struct{})
		s.conns = make(map[*Conn]struct{})
		s.stop = make(chan struct{})
		s.done = make(chan struct{})
	})
}

// ListenAndServe listens on s.Addr and serves connections until Close or
// Shutdown. A host name that stands for several loopback addresses, such as
// localhost, is served on each of them (see ListenConfig.ListenAll), so
// that clients which try ::1 first connect at once. ListenAndServe always
// returns a non-nil error: ErrServerClosed after Close or Shutdown,
// otherwise the error that stopped it. If accepting on one of several
// listeners fails, the server is closed (open connections are left alone,
// as by Close) and the error is returned, joined with any other.
func (s *Server) ListenAndServe() error {
	s.init()
	if s.cfgErr != nil {
		return s.cfgErr
	}
	if s.isClosing() {
		return ErrServerClosed
	}
	addr := s.Addr
	if addr == "" {
		addr = ":0"
	}
	lc := ListenConfig{SocketMode: s.SocketMode}
	lns, err := lc.ListenAll(context.Background(), addr)
	if err != nil {
		return err
	}
	return s.serveAll(lns)
}

// serveAll serves each of lns on a Serve loop of its own and returns once
// all have returned. If one fails (an error other than ErrServerClosed),
// the server is closed, so that the others stop too and the caller hears
// of it at once, and the result joins every such error; otherwise it is
// ErrServerClosed.
func (s *Server) serveAll(lns []net.Listener) error {
	errs := make(chan error, len(lns))
	for _, ln := range lns {
		go func() {
			err := s.Serve(ln)
			if err != ErrServerClosed {
				s.Close()
			}
			errs <- err
		}()
	}
	var failed []error
	for range lns {
		if err := <-errs; err != ErrServerClosed {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return errors.Join(failed...)
	}
	return ErrServerClosed
}

// Serve accepts connections on ln and runs the Handler for each, until
// Close or Shutdown. Serve may be called several times, with different
// listeners, to serve on several addresses. It always returns a non-nil
// error and closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	if s.cfgErr != nil {
		ln.Close()
		return s.cfgErr
	}
	eln, err := engineOr(s.Engine).listener(ln)
	if err != nil {
		ln.Close()
		return err
	}
	ln = eln
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.lns[&ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, &ln)
		s.mu.Unlock()
		s.maybeFinish()
	}()
	if s.OnListening != nil && !s.isClosing() {
		s.OnListening(ln.Addr())
	}

	var backoff time.Duration
	for {
		var nc net.Conn
		var err error
		if f, ok := fault.At(fault.Accept, -1); ok && f.Errno != 0 {
			err = &net.OpError{Op: "accept", Net: ln.Addr().Network(), Addr: ln.Addr(), Err: os.NewSyscallError("accept", f.Errno)}
		} else {
			nc, err = ln.Accept()
		}
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			s.mu.Lock()
			s.counters.acceptErrors++
			s.mu.Unlock()
			if !isTemporaryAccept(err) {
				ln.Close()
				return err
			}
			if backoff == 0 {
				s.reportError(err)
				backoff = 5 * time.Millisecond
			} else {
				backoff = min(2*backoff, time.Second)
			}
			if !s.sleep(backoff) {
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		s.startConn(nc)
	}
}

// startConn tracks a new connection and starts its event goroutine, or
// drops it if a limit says so. A connection accepted while Close runs (by
// a Serve loop, or from an accept queue by Close itself) is served all the
// same: its client may have sent already, and closing it unread would
// reset it.
func (s *Server) startConn(nc net.Conn) {
	engine := engineOr(s.Engine)
	c, err := engine.newConn(nc, &s.cfg, s, s.Logger) // socket options set outside the lock
	if err != nil {
		nc.Close()
		s.reportError(err)
		return
	}
	if s.tlsConfig != nil || s.ProxyProtocol != ProxyOff {
		c.edge = s.newServerEdge(c)
	}
	ip, hasIP := s.clientIP(c)
	if s.ProxyProtocol != ProxyOff {
		hasIP = false // the limits by address wait for the real one, in the header
	}
	s.mu.Lock()
	s.counters.accepted++
	if s.finished { // too late: OnClose has been called
		s.counters.closed.Shutdown++
		s.mu.Unlock()
		c.drv.close(false)
		return
	}
	if reason := s.admitLocked(ip, hasIP); reason != "" {
		s.counters.countDropLocked(reason)
		first := !s.dropping
		s.dropping = true
		s.mu.Unlock()
		d := Drop{LocalAddr: c.LocalAddr(), RemoteAddr: c.RemoteAddr(), Reason: reason}
		c.drv.close(false)
		s.reportDrop(d, first)
		return
	}
	if c.edge != nil && hasIP {
		c.edge.counted, c.edge.countedIP = true, ip
	}
	s.dropping = false
	s.conns[c] = struct{}{}
	s.handlers.Add(1)
	s.mu.Unlock()
	engine.start(c, s.Handler)
}

// connClosing is called by each connection before its close event.
func (s *Server) connClosing(c *Conn) {
	ip, hasIP := s.clientIP(c)
	if c.edge != nil { // counted when accepted, after its header, or not at all
		ip, hasIP = c.edge.countedIP, c.edge.counted
	}
	s.mu.Lock()
	delete(s.conns, c)
	s.counters.countCloseLocked(c, c.err)
	s.releaseLocked(ip, hasIP)
	s.closings++
	s.mu.Unlock()
}

// connDone is called by each connection after its close event.
func (s *Server) connDone() {
	s.mu.Lock()
	s.closings--
	s.mu.Unlock()
	s.handlers.Done()
	s.maybeFinish()
}

// maybeFinish fires OnClose once the server is closing, no Serve loop is
// left and no connection is open.
func (s *Server) maybeFinish() {
	s.mu.Lock()
	if !s.closing || s.finished || len(s.conns) > 0 || s.closings > 0 || len(s.lns) > 0 {
		s.mu.Unlock()
		return
	}
	s.finished = true
	s.mu.Unlock()
	if s.OnClose != nil {
		s.OnClose()
	}
	close(s.done)
}

// Close stops the server accepting at once: it closes every listener (a
// Unix socket file is removed), so Serve returns ErrServerClosed. Open
// connections are left alone; OnClose fires when the last one has closed
// and the Serve loops have returned. These are Node's server.close()
// semantics. Close may be called from any goroutine, callbacks included,
// and returns the error, if any, from closing the listeners.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.stop)
	}
	lns := make([]net.Listener, 0, len(s.lns))
	for ln := range s.lns {
		lns = append(lns, *ln)
	}
	s.mu.Unlock()
	var err error
	for _, ln := range lns {
		// Connections already in the accept queue were accepted by the
		// kernel, and their clients may be sending: serve them rather
		// than let the close reset them.
		drainAccepts(ln, s.startConn)
		if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
			err = cerr
		}
	}
	s.maybeFinish()
	return err
}

// Shutdown closes the server gracefully. It stops accepting as Close does,
// then, for each connection:
//   - if the connection has OnShutdown listeners, it delivers the shutdown
//     event once and leaves the ending to them (a protocol knows when it is
//     between messages; tcpkit does not);
//   - otherwise it ends the connection once it has been idle for
//     ShutdownIdle: no byte read or written, nothing queued, no input
//     waiting unread (a callback slower than ShutdownIdle leaves its
//     peer's bytes there), not paused.
//     The decision is made on the connection's event goroutine, between
//     callbacks. Ending sends FIN after the queue is flushed; the
//     connection closes when the peer ends too. A peer that sends more
//     after that FIN is not silently ignored: a Write then fails with an
//     error wrapping ErrWriteAfterEnd and ErrServerClosed, and Pipe resets
//     the connection (see Pipe).
//
// Shutdown waits for the Serve loops and for every connection to close, so
// it must not be called from a callback: not from a Server's (OnListening,
// OnError, OnDrop), which runs on a Serve loop, nor from a connection's
// (a "quit" command's handler, say), which would wait for its own
// connection, or on the epoll engine its whole loop. Call Close there, or
// go srv.Shutdown(ctx).
//
// Shutdown returns nil once every connection has closed and every Serve
// loop has returned. If ctx ends first, Shutdown resets the remaining
// connections (a TCP RST, so that each peer knows it was cut off rather
// than finished; anything queued is dropped) with an error wrapping
// ErrServerClosed as their close error, waits for their close events, and
// returns ctx.Err(). Either way no goroutine the server started is left
// running, unless a callback has not returned within a second of being
// cut off; Shutdown then logs it and returns anyway, so that one stuck
// callback cannot hold a process that has been told to stop.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.Close()
	idle := s.shutdownIdle
	notified := make(map[*Conn]bool) // sent the shutdown event
	interval := min(max(idle/4, time.Millisecond), 250*time.Millisecond)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			// Every connection has closed; a TLS handshake goroutine may
			// still be in a slow tls.Config callback. Wait for it as long
			// as ctx allows.
			if !waitGroupOr(&s.handlers, ctx.Done()) {
				waitGroupOr(&s.handlers, time.After(time.Second))
				s.logger().Error("tcpkit: Shutdown: a TLS handshake's tls.Config callback still running after the connections closed")
				return ctx.Err()
			}
			return err
		case <-ctx.Done():
			for _, c := range s.openConns() {
				c.resetWith(errShutdownCut)
			}
			// A second for their callbacks, and for TLS handshakes in
			// tls.Config callbacks, to return.
			grace := time.After(time.Second)
			select {
			case <-s.done:
				if waitGroupOr(&s.handlers, grace) {
					return ctx.Err()
				}
			case <-grace:
			}
			s.logger().Error("tcpkit: Shutdown: callbacks still running a second after their connections were closed",
				"conns", s.NumConns())
			return ctx.Err()
		case <-t.C:
			for _, c := range s.openConns() {
				switch {
				case notified[c]:
				case c.listeners().shutdown != nil:
					c.post(evShutdown)
					notified[c] = true
				case c.looksIdle(idle):
					c.post(evIdleCheck) // the event goroutine checks again and ends it
				}
			}
			t.Reset(interval)
		}
	}
}

// waitGroupOr waits for wg, or until stop; it reports whether wg is done.
func waitGroupOr[T any](wg *sync.WaitGroup, stop <-chan T) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-stop:
		return false
	}
}

// Done returns a channel that is closed after OnClose has been called.
func (s *Server) Done() <-chan struct{} {
	s.init()
	return s.done
}

// NumConns returns the number of open connections (Node's getConnections).
func (s *Server) NumConns() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) openConns() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	return cs
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// sleep waits for d, or until the server starts closing; it reports
// whether it slept the whole time.
func (s *Server) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stop:
		return false
	}
}

func (s *Server) reportError(err error) {
	if s.OnError != nil {
		s.OnError(err)
		return
	}
	s.logger().Error("tcpkit: accept failed; backing off and retrying", "err", err)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// temporaryAcceptErrors are the accept errors Serve backs off from and
// retries: the descriptor and memory limits, a connection that went away
// while it waited in the queue, an interrupted call, a firewall's refusal
// (EPERM), and the network errors that Linux's accept(2) passes on from a
// connection that failed before it was accepted, which its manual says to
// treat as EAGAIN (as EAGAIN itself: Go's Accept waits it out, but a
// listener of another kind may return it).
var temporaryAcceptErrors = []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED,
	syscall.ENOBUFS, syscall.ENOMEM, syscall.EINTR, syscall.EPROTO, syscall.EPERM, syscall.EAGAIN,
	syscall.ECONNRESET, syscall.ENETDOWN, syscall.ENOPROTOOPT, syscall.EHOSTDOWN, syscall.EHOSTUNREACH,
	syscall.EOPNOTSUPP, syscall.ENETUNREACH}

// isTemporaryAccept reports whether an Accept error is one to back off from
// and retry, rather than one that ends Serve.
func isTemporaryAccept(err error) bool {
	for _, errno := range temporaryAcceptErrors {
		if errors.Is(err, errno) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
