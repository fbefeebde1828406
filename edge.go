package tcpkit

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
)

// A HandshakeError is the close error of a connection that failed on its
// way to its Handler: a bad, untrusted, missing or late PROXY header, or a
// failed or late TLS handshake. Only that connection is closed; Server
// reports it to OnHandshakeError. A Dialer's Dial returns it for a failed
// TLS handshake.
type HandshakeError struct {
	Stage      string   // "proxy" or "tls"
	LocalAddr  net.Addr // the socket's own addresses
	RemoteAddr net.Addr
	Err        error // what went wrong; errors.As finds x509 errors here
}

func (e *HandshakeError) Error() string {
	what := "TLS handshake"
	if e.Stage == "proxy" {
		what = "PROXY protocol header"
	}
	return fmt.Sprintf("tcpkit: %s with %v failed: %v", what, e.RemoteAddr, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// edgeStage is where a connection is on its way to its Handler.
type edgeStage uint8

const (
	stageProxy edgeStage = iota // reading the PROXY header
	stageTLS                    // the TLS handshake is running
	stageReady                  // the Handler has been called
)

// A connEdge is what a connection goes through before its Handler (socket,
// PROXY header, TLS handshake) and what stays of it after: the header's
// addresses and the TLS layer. Its stages run on the connection's event
// goroutine, fed by the engine's reads like any input, so a client that
// sends nothing holds up only itself. A connection without PROXY or TLS
// has none.
type connEdge struct {
	h        Handler
	stage    edgeStage
	deadline time.Duration // the stage's deadline, as monotime counts; 0 before it starts
	expired  bool          // the deadline has passed
	inEnded  bool          // the socket's input has ended during a stage
	pause    bool          // PauseOnConnect, applied when the Handler is called

	proxy        *proxyStage // nil without the PROXY protocol
	proxyTimeout time.Duration
	header       atomic.Pointer[proxyproto.Header]
	addrs        atomic.Pointer[addrPair] // the header's addresses, if it gave some

	tls              *tlsLayer // nil without TLS
	handshakeTimeout time.Duration

	counted   bool // the server counted countedIP against MaxConnsPerIP
	countedIP netip.Addr
	ready     chan error // a Dialer waits here for the handshake; nil for a server's
	told      bool       // ready has been sent to
}

// addrPair is a connection's local and remote addresses.
type addrPair struct{ local, remote net.Addr }

// newServerEdge gives c, just accepted by s, the stages s asks for.
func (s *Server) newServerEdge(c *Conn) *connEdge {
	e := &connEdge{stage: stageTLS, pause: c.cfg.PauseOnConnect}
	if s.ProxyProtocol != ProxyOff {
		e.stage = stageProxy
		e.proxy = &proxyStage{policy: s.ProxyProtocol, trusted: trustedProxy(s.TrustedProxies, c.RemoteAddr())}
		e.proxyTimeout = s.ProxyHeaderTimeout
		if e.proxyTimeout <= 0 {
			e.proxyTimeout = DefaultProxyHeaderTimeout
		}
	}
	if s.tlsConfig != nil {
		e.tls = newTLSLayer(c, s.tlsConfig, true)
		e.handshakeTimeout = s.HandshakeTimeout
		if e.handshakeTimeout <= 0 {
			e.handshakeTimeout = DefaultHandshakeTimeout
		}
	}
	c.paused = false // the stages read whatever PauseOnConnect says
	return e
}

// beginEdge starts the first stage, in place of the Handler. Event
// goroutine.
func (c *Conn) beginEdge(h Handler) {
	e := c.edge
	e.h = h
	if e.stage == stageProxy {
		if !e.proxy.trusted && e.proxy.policy == ProxyRequired {
			c.failEdge(errUntrustedProxy)
			return
		}
		e.deadline = time.Duration(addSat(int64(monotime()), int64(e.proxyTimeout)))
		return
	}
	c.beginTLS(nil)
}

// beginTLS starts the handshake, with in as the first ciphertext.
func (c *Conn) beginTLS(in []byte) {
	e := c.edge
	e.stage, e.expired = stageTLS, false
	e.deadline = time.Duration(addSat(int64(monotime()), int64(e.handshakeTimeout)))
	e.tls.input(in, nil)
	e.tls.startHandshake()
	c.rs.rearm = true // a new deadline
}

// edgeStep is step's rule for a connection on its way to its Handler: it
// reports the action to return, or ok false once the Handler has been
// called (or the connection is closing), for step to go on with the other
// rules.
func (c *Conn) edgeStep() (act action, wait bool) {
	e := c.edge
	switch e.stage {
	case stageProxy:
		if e.expired {
			switch {
			case e.proxy.policy == ProxyRequired:
				c.failEdge(fmt.Errorf("no PROXY protocol header within %v", e.proxyTimeout))
			case len(e.proxy.buf) > 0:
				// Under ProxyOptional too: the bytes so far are the start
				// of a header, not the client's own data.
				c.failEdge(fmt.Errorf("a partial PROXY protocol header (%d bytes), not completed within %v", len(e.proxy.buf), e.proxyTimeout))
			default:
				c.proxyDone(nil, nil) // optional, and the client has sent nothing: serve it as it is
			}
			return 0, false
		}
	case stageTLS:
		done, err := e.tls.outcome()
		switch {
		case done && err != nil:
			c.failEdge(err)
			return 0, false
		case done:
			c.edgeReady(nil)
			return 0, false
		case e.expired:
			c.failEdge(fmt.Errorf("no TLS handshake within %v", e.handshakeTimeout))
			return 0, false
		case e.tls.full():
			return actWait, true
		}
	}
	if e.inEnded {
		return actWait, true // the stage ends on its own, or at its deadline
	}
	return actRead, true
}

// edgeRead is onRead for a connection with an edge: input goes to the
// stage that is running, or through TLS once the Handler has been called.
func (c *Conn) edgeRead(p []byte, err error) {
	e := c.edge
	if len(p) > 0 {
		c.bytesRead.Add(int64(len(p)))
		c.touch()
	}
	if err != nil && err != io.EOF {
		if e.stage != stageReady {
			c.failEdge(err)
			return
		}
		c.fail(err)
		return
	}
	switch e.stage {
	case stageProxy:
		if len(p) > 0 {
			h, rest, done, perr := e.proxy.feed(p)
			switch {
			case perr != nil:
				c.failEdge(perr)
				return
			case done:
				c.proxyDone(h, rest)
			}
		}
		if err == io.EOF && e.stage == stageProxy {
			if e.proxy.policy == ProxyRequired || len(e.proxy.buf) > 0 {
				c.failEdge(fmt.Errorf("the peer ended the connection before a whole PROXY protocol header: %w", io.ErrUnexpectedEOF))
				return
			}
			c.proxyDone(nil, nil) // optional, and the client sent nothing before its end
		}
		if err == io.EOF {
			c.edgeEOF()
		}
	case stageTLS:
		e.tls.input(p, err)
		// The handshake may have finished on its goroutine since this
		// stage last looked: input then took p in place, as after the
		// handshake. p is the engine's to read into again (on epoll, the
		// loop's buffer, shared): copy what is left of it.
		e.tls.keep()
		if err == io.EOF {
			e.inEnded = true
		}
	case stageReady:
		if e.tls == nil {
			if len(p) > 0 {
				c.rs.held = p
			}
			if err == io.EOF {
				c.rs.eof = true
			}
			return
		}
		e.tls.input(p, err)
		c.decryptInput()
		e.tls.keep() // p is the engine's to read into again
	}
}

// edgeEOF passes the socket's end on to the stage now running.
func (c *Conn) edgeEOF() {
	switch e := c.edge; e.stage {
	case stageTLS:
		e.tls.input(nil, io.EOF)
		e.inEnded = true
	case stageReady:
		if e.tls != nil {
			e.tls.input(nil, io.EOF)
			c.decryptInput()
		} else {
			c.rs.eof = true
		}
	}
}

// decryptInput decrypts the ciphertext in hand into the data to deliver.
func (c *Conn) decryptInput() {
	p, err := c.edge.tls.decrypt(c.cfg.ReadBufferSize)
	if len(p) > 0 {
		c.rs.held = p
	}
	switch {
	case err == io.EOF:
		c.rs.eof = true
		c.edge.tls.more = false
		c.edge.tls.peerClosed.Store(true)
	case err != nil:
		c.fail(err)
	}
}

// resetIsNews reports whether a reset that comes after the peer's end
// means something was lost. Not after a TLS peer's close_notify: a TLS
// client closes its socket right after it, and its kernel answers our own
// close_notify with a reset.
func (c *Conn) resetIsNews() bool {
	e := c.edge
	return e == nil || e.tls == nil || !e.tls.peerClosed.Load()
}

// proxyDone takes the PROXY header (nil for none) and the bytes after it,
// applies the server's address limits to the real client, and moves on.
func (c *Conn) proxyDone(h *proxyproto.Header, rest []byte) {
	e := c.edge
	e.proxy.buf = nil
	if h != nil {
		e.header.Store(h)
		if local, remote, ok := proxyAddrs(h); ok {
			e.addrs.Store(&addrPair{local, remote})
		}
	}
	if c.srv != nil && !c.srv.admitEdge(c) {
		return
	}
	if e.tls != nil {
		c.beginTLS(rest)
		return
	}
	c.edgeReady(rest)
}

// edgeReady calls the Handler, now that the stages are done, with rest as
// the first data to deliver.
func (c *Conn) edgeReady(rest []byte) {
	e := c.edge
	e.stage, e.deadline, e.expired = stageReady, 0, false
	if len(rest) > 0 {
		c.rs.held = rest
	}
	if e.tls != nil {
		e.tls.more = true // the handshake may have read application data too
	}
	if e.inEnded && e.tls == nil {
		c.rs.eof = true
	}
	if e.pause {
		c.mu.Lock()
		c.paused = true
		c.mu.Unlock()
	}
	c.rs.rearm = true
	if c.srv != nil {
		c.srv.handshakeOK()
	}
	c.tellDialer(nil)
	if e.h != nil {
		e.h(c)
	}
}

// failEdge closes the connection with a *HandshakeError for err and
// reports it. A failed PROXY stage resets a connection that has sent
// something: its bytes were acknowledged and will never be read, and an
// orderly end would tell it otherwise. A failed TLS handshake closes after the alert that
// crypto/tls queued, which says why.
func (c *Conn) failEdge(err error) {
	e := c.edge
	stage := "tls"
	if e.stage == stageProxy {
		stage = "proxy"
	}
	local, remote := c.drv.addrs()
	he := &HandshakeError{Stage: stage, LocalAddr: local, RemoteAddr: remote, Err: err}
	if stage == "proxy" && c.bytesRead.Load() > 0 {
		c.resetWith(he)
	} else {
		c.closeWith(he)
	}
	if c.srv != nil {
		c.srv.handshakeFailed(he, c.bytesRead.Load() == 0 && isProbeEnd(err))
	}
	c.tellDialer(he)
}

// isProbeEnd reports whether err is how a connection that sent nothing
// ended: an end or a reset. A health checker's bare TCP probe (connect,
// then close) looks so.
func isProbeEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// tellDialer hands a Dialer waiting for the handshake its outcome, once.
func (c *Conn) tellDialer(err error) {
	if e := c.edge; e.ready != nil && !e.told {
		e.told = true
		e.ready <- err
	}
}

// edgeDeadline returns the stage's deadline, marking it expired if it has
// passed; zero for none. It reads the clock only while a stage runs:
// checkTimers runs for every connection.
func (c *Conn) edgeDeadline() int64 {
	e := c.edge
	if e == nil || e.stage == stageReady || e.deadline == 0 {
		return 0
	}
	if monotime() >= e.deadline {
		e.expired = true
		return 0
	}
	return int64(e.deadline)
}

// finishEdge stops what the edge runs (the handshake goroutine) once the
// connection is closing, and tells a waiting Dialer why it closed.
func (c *Conn) finishEdge(err error) {
	e := c.edge
	if e.tls != nil {
		e.tls.abort()
		e.tls.release()
	}
	if err == nil {
		err = errors.New("tcpkit: the connection closed during its handshake")
	}
	c.tellDialer(err)
}

// ProxyHeader returns the PROXY protocol header the connection began with,
// TLVs included (see its TLVs method), or nil if it had none.
func (c *Conn) ProxyHeader() *proxyproto.Header {
	if c.edge == nil {
		return nil
	}
	return c.edge.header.Load()
}

// edgeAddrs returns the addresses a PROXY header gave, if any.
func (c *Conn) edgeAddrs() *addrPair {
	if c.edge == nil {
		return nil
	}
	return c.edge.addrs.Load()
}

// checkServerTLS checks a Server's TLS configuration.
func checkServerTLS(cfg *tls.Config) error {
	if cfg == nil {
		return nil
	}
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		return errors.New("tcpkit: Server.TLS has no certificate (Certificates, GetCertificate or GetConfigForClient)")
	}
	return nil
}
