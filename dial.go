package tcpkit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
)

// A Dialer makes client connections, Node's net.connect. Its zero value is
// ready to use.
type Dialer struct {
	// ConnConfig holds the settings of each connection made.
	ConnConfig

	// ConnectTimeout bounds each Dial, on top of ctx. Default 0: no bound
	// beyond ctx and the operating system's.
	ConnectTimeout time.Duration

	// FallbackDelay is how long a dual-stack Dial waits for the first
	// address family before it races the other (happy eyeballs, RFC 6555).
	// Default 300ms; negative turns the race off.
	FallbackDelay time.Duration

	// LocalAddr, if set, is the local address to dial from, for example
	// &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}.
	LocalAddr net.Addr

	// Engine runs the connections made. Default nil: GoroutineEngine.
	Engine Engine

	// Resolver, if set, looks up host names (net.Dialer's Resolver), for
	// example to use a particular DNS server. Default net.DefaultResolver.
	Resolver *net.Resolver

	// Logger receives log lines about the connections, such as panics
	// recovered in callbacks. Default slog.Default().
	Logger *slog.Logger

	// TLS, if set, makes the connection a TLS client: Dial returns once
	// the handshake is done, or its *HandshakeError. The server is
	// verified unless TLS.InsecureSkipVerify says otherwise, against
	// TLS.ServerName, by default the host of the address dialled (a Unix
	// socket has none: set ServerName). TLS 1.2 is the least version
	// offered; NextProtos offers ALPN protocols.
	TLS *tls.Config

	// HandshakeTimeout bounds the TLS handshake, on top of ctx. Default
	// DefaultHandshakeTimeout (10s).
	HandshakeTimeout time.Duration

	// ProxyHeader, if set, is written first thing on each connection, as a
	// load balancer would (before TLS): tell a server that reads the PROXY
	// protocol who the real client is. Build it with
	// proxyproto.HeaderProxyFromAddrs(version, source, destination); its
	// Version (1 or 2) chooses the format.
	ProxyHeader *proxyproto.Header
}

// Dial connects to addr, in the grammar of ParseAddr, with the zero Dialer.
func Dial(ctx context.Context, addr string, h Handler) (*Conn, error) {
	var d Dialer
	return d.Dial(ctx, addr, h)
}

// Dial connects to addr, an address in the grammar of ParseAddr: host:port
// or a Unix socket path. Once connected, it calls h on the connection's
// event goroutine, before any other event (Node's connect event), and
// returns the connection. The connection's events then follow as for a
// server's connections.
//
// A failed Dial returns a *net.OpError whose message names the address and
// the cause: connection refused, i/o timeout (a net.Error whose Timeout is
// true, after ConnectTimeout or ctx's deadline), operation was canceled
// (errors.Is(err, context.Canceled)), no such file or directory, "not a
// socket" for a path that exists but is not a Unix socket (it wraps
// syscall.ENOTSOCK), or "a stale socket?" for a socket file nothing listens
// on. An address outside the grammar gets an *AddrError.
func (d *Dialer) Dial(ctx context.Context, addr string, h Handler) (*Conn, error) {
	network, address, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	cfg, err := d.ConnConfig.resolve()
	if err != nil {
		return nil, err
	}
	nd := net.Dialer{
		Timeout:       d.ConnectTimeout,
		FallbackDelay: d.FallbackDelay,
		LocalAddr:     d.LocalAddr,
		Resolver:      d.Resolver,
		KeepAlive:     -1, // newConn applies cfg.KeepAlive
	}
	var tlsCfg *tls.Config
	if d.TLS != nil {
		host, _, _ := net.SplitHostPort(address)
		if network != "tcp" {
			host = ""
		}
		if tlsCfg, err = clientTLSConfig(d.TLS, host); err != nil {
			return nil, err
		}
	}
	if lc, ok := d.Engine.(interface{ onLoop() bool }); ok && tlsCfg != nil && lc.onLoop() {
		// Its handshake would need the loop this Dial holds up.
		return nil, errors.New("tcpkit: a TLS Dial on the epoll engine, from one of its own callbacks, would wait for the loop it holds up: dial from another goroutine")
	}
	var header []byte
	if d.ProxyHeader != nil {
		if header, err = d.ProxyHeader.Format(); err != nil {
			return nil, fmt.Errorf("tcpkit: Dialer.ProxyHeader: %w", err)
		}
	}
	nc, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, explainDialError(network, address, err)
	}
	if header != nil {
		if err := writeFirst(ctx, nc, header); err != nil {
			nc.Close()
			return nil, err
		}
	}
	e := engineOr(d.Engine)
	c, err := e.newConn(nc, &cfg, nil, d.Logger)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if tlsCfg == nil {
		e.start(c, h)
		return c, nil
	}
	timeout := d.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	c.edge = &connEdge{stage: stageTLS, pause: cfg.PauseOnConnect, handshakeTimeout: timeout,
		ready: make(chan error, 1)}
	c.paused = false
	c.edge.tls = newTLSLayer(c, tlsCfg, false)
	ready := c.edge.ready
	e.start(c, h)
	select {
	case err = <-ready:
	case <-ctx.Done():
		c.Close()
		<-ready
		err = ctx.Err()
	}
	if err != nil {
		<-c.Done()
		return nil, err
	}
	return c, nil
}

// writeFirst writes p to a new connection before its engine takes it
// over, within ctx.
func writeFirst(ctx context.Context, nc net.Conn, p []byte) error {
	if dl, ok := ctx.Deadline(); ok {
		nc.SetWriteDeadline(dl)
		defer nc.SetWriteDeadline(time.Time{})
	}
	if _, err := nc.Write(p); err != nil {
		return fmt.Errorf("tcpkit: writing the PROXY header: %w", err)
	}
	return nil
}

// explainDialError adds what the bare errno leaves unsaid about a failed
// connect to a Unix socket file. Linux refuses a connect to a path that is
// not a socket, and to a socket that nothing listens on, with the same
// ECONNREFUSED; and it fails a connect to a server whose backlog is full
// with EAGAIN, "resource temporarily unavailable".
func explainDialError(network, address string, err error) error {
	var oe *net.OpError
	if network != "unix" || address[0] == '@' || !errors.As(err, &oe) {
		return err
	}
	var ex *explained
	switch {
	case errors.Is(err, syscall.EAGAIN):
		ex = &explained{err: syscall.EAGAIN,
			msg: "resource temporarily unavailable: the server's listen backlog is full"}
	case errors.Is(err, syscall.ECONNREFUSED):
		fi, serr := os.Stat(address)
		switch {
		case serr != nil:
		case fi.Mode()&fs.ModeSocket == 0:
			ex = &explained{err: syscall.ENOTSOCK,
				msg: fmt.Sprintf("not a socket: the file there is a %s", describeMode(fi.Mode()))}
		default:
			ex = &explained{err: syscall.ECONNREFUSED,
				msg: "connection refused: the socket file exists but no server is accepting on it (a stale socket?)"}
		}
	}
	if ex != nil {
		oe.Err = os.NewSyscallError("connect", ex) // as package net has it
	}
	return err
}
