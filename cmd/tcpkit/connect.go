package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/tcpkit/tcpkit"
)

// connectOptions are the flags of tcpkit connect.
type connectOptions struct {
	timeout     time.Duration
	idleTimeout time.Duration
	crlf        bool
	sendOnly    bool
	recvOnly    bool
	verbose     bool
	tls         clientTLSFlags
}

// stdinChunk is the most stdin read at once, and so the most that one
// Write queues.
const stdinChunk = 32 << 10

func (a *app) connectCommand() *cobra.Command {
	o := &connectOptions{}
	cmd := &cobra.Command{
		Use:   "connect ADDR",
		Short: "Connect to a TCP or Unix-socket server, like nc or telnet",
		Long: `Connect to ADDR, send standard input to it and write what it sends to
standard output, byte for byte (binary-safe, like nc).

At the end of standard input (Ctrl-D on a terminal), tcpkit connect
half-closes the connection: the server sees the end of the data, and the
output goes on until the server closes its side. The exit status is then 0.
When the server closes first, tcpkit connect exits without waiting for
standard input.

--tls speaks TLS, verifying the server's certificate and name against the
system's roots, or --ca FILE; --pin HEX trusts exactly the certificate with
that SHA-256 fingerprint (as tcpkit echo --tls-self-signed logs it);
--insecure verifies nothing. A failed handshake is one line that says why:
unknown authority, name mismatch, expired, pin mismatch.

ADDR is host:port, [v6]:port, or a Unix socket path (anything with a '/',
or unix:NAME). It exits with status 1 and one line on stderr when the
connection is refused, times out, is reset, or the path is missing or not a
socket.`,
		Example: `  tcpkit connect localhost:8124                 # type lines, Ctrl-D to finish
  tcpkit connect /tmp/echo.sock                 # a Unix socket
  printf 'GET / HTTP/1.0\n\n' | tcpkit connect -C example.com:80
  tcpkit connect -w 2s 10.0.0.1:22              # give up connecting after 2s
  tcpkit connect --recv-only localhost:8124 > out.bin
  tcpkit connect --send-only localhost:8124 < in.bin
  tcpkit connect --tls example.com:443
  tcpkit connect --tls --pin 3f2a...e9 127.0.0.1:8443
  tcpkit connect --tls --ca ca.pem --server-name echo.internal 10.0.0.5:8443`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.sendOnly && o.recvOnly {
				return &exitErr{code: exitUsage, msg: "--send-only and --recv-only exclude each other"}
			}
			if o.timeout < 0 || o.idleTimeout < 0 {
				return &exitErr{code: exitUsage, msg: "timeouts must not be negative"}
			}
			return a.connect(cmd.Context(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.DurationVarP(&o.timeout, "timeout", "w", 0, "give up connecting after this long (0: the system's limit)")
	f.DurationVar(&o.idleTimeout, "idle-timeout", 0, "close the connection after this long without traffic (0: never)")
	f.BoolVarP(&o.crlf, "crlf", "C", false, "send each LF of the input as CRLF, as line protocols want")
	f.BoolVar(&o.sendOnly, "send-only", false, "send standard input; discard what the server sends")
	f.BoolVar(&o.recvOnly, "recv-only", false, "print what the server sends; do not read standard input")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "say on stderr when connected and when closed")
	o.tls.register(f)
	return cmd
}

// connect runs one client session. Received data is written to stdout from
// the connection's event goroutine: a slow stdout slows the connection
// down, which is the backpressure a pipe wants. Stdin is read on a goroutine
// of its own, which waits for the drain event whenever the write queue is
// over tcpkit.DefaultHighWater, so memory stays bounded whatever the size
// of the input.
func (a *app) connect(ctx context.Context, addr string, o *connectOptions) error {
	var (
		closed   = make(chan struct{})    // closed after the close event
		drained  = make(chan struct{}, 1) // a drain event happened
		stdinErr = make(chan error, 1)    // reading stdin failed
		closeErr error                    // the close event's error; read after closed
		outErr   error                    // writing stdout failed; read after closed
		started  = time.Now()
	)
	tlsCfg, err := o.tls.config()
	if err != nil {
		return err
	}
	d := tcpkit.Dialer{
		TLS:            tlsCfg,
		ConnectTimeout: o.timeout,
		ConnConfig:     tcpkit.ConnConfig{IdleTimeout: o.idleTimeout},
		// The library logs little (a panic in a callback would be a
		// bug here); keep it on stderr, away from the data on stdout.
		Logger: slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	c, err := d.Dial(ctx, addr, func(c *tcpkit.Conn) {
		c.OnData(func(p []byte) {
			if o.sendOnly || outErr != nil {
				return
			}
			if _, err := a.stdout.Write(p); err != nil {
				outErr = err
				c.Close()
			}
		})
		c.OnDrain(func() {
			select {
			case drained <- struct{}{}:
			default:
			}
		})
		c.OnClose(func(err error) {
			closeErr = err
			close(closed)
		})
	})
	var he *tcpkit.HandshakeError
	switch {
	case errors.As(err, &he):
		return failf("%s: TLS handshake failed: %s", addr, explainTLS(err))
	case err != nil:
		return dialError(addr, err, o.timeout)
	}
	if st := c.TLS(); st != nil && o.verbose {
		fmt.Fprintf(a.stderr, "tcpkit connect: %s, ALPN %q\n", tls.VersionName(st.Version), st.NegotiatedProtocol)
	}
	if o.verbose {
		fmt.Fprintf(a.stderr, "tcpkit connect: connected to %s\n", addrString(c.RemoteAddr()))
	}
	if !o.recvOnly {
		go a.pump(c, o.crlf, drained, closed, stdinErr)
	}

	select {
	case <-closed:
	case <-ctx.Done():
		c.Close()
		<-closed
		return failf("%s: interrupted", addr)
	}
	if o.verbose {
		fmt.Fprintf(a.stderr, "tcpkit connect: closed after %v, %d bytes sent, %d received\n",
			roundDuration(time.Since(started)), c.BytesWritten(), c.BytesRead())
	}
	select {
	case err := <-stdinErr:
		return failf("reading standard input: %v", err)
	default:
	}
	switch {
	case outErr != nil:
		return failf("writing standard output: %v", outErr)
	case errors.Is(closeErr, tcpkit.ErrIdleTimeout):
		return failf("%s: no traffic for %v (--idle-timeout); closed", addr, o.idleTimeout)
	case errors.Is(closeErr, syscall.ECONNRESET):
		return failf("%s: connection reset by peer", addr)
	case closeErr != nil:
		return failf("%s: %s", addr, cause(closeErr))
	}
	return nil
}

// pump sends stdin to c until stdin ends, then half-closes c. It stops early
// when c closes. A stdin read error closes c and is reported on errc.
func (a *app) pump(c *tcpkit.Conn, crlf bool, drained, closed <-chan struct{}, errc chan<- error) {
	buf := make([]byte, stdinChunk)
	var conv []byte // buf with LF turned into CRLF
	prevCR := false
	for {
		n, err := a.stdin.Read(buf)
		if n > 0 {
			p := buf[:n]
			if crlf {
				conv, prevCR = toCRLF(conv[:0], p, prevCR)
				p = conv
			}
			if _, err := c.Write(p); err != nil {
				return // closing, or closed
			}
			// Over HighWater the drain event is armed: it fires once the
			// queue falls to LowWater. An old, already consumed drain
			// only costs one more look at Buffered.
			for c.Buffered() > tcpkit.DefaultHighWater {
				select {
				case <-drained:
				case <-closed:
					return
				}
			}
		}
		switch {
		case err == io.EOF:
			c.End()
			return
		case err != nil:
			errc <- err
			c.Close()
			return
		}
	}
}

// toCRLF appends p to dst with each LF that does not follow a CR turned into
// CRLF. prevCR says whether the byte before p was a CR; it returns the same
// for the byte after p.
func toCRLF(dst, p []byte, prevCR bool) ([]byte, bool) {
	for _, b := range p {
		if b == '\n' && !prevCR {
			dst = append(dst, '\r')
		}
		dst = append(dst, b)
		prevCR = b == '\r'
	}
	return dst, prevCR
}

// dialError is the one-line error for a failed connect to addr.
func dialError(addr string, err error, timeout time.Duration) error {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return failf("cannot connect to %s: interrupted", addr)
	case errors.As(err, &ne) && ne.Timeout() && timeout > 0:
		return failf("cannot connect to %s: timed out after %v", addr, timeout)
	case errors.As(err, &ne) && ne.Timeout():
		return failf("cannot connect to %s: timed out", addr)
	}
	return failf("cannot connect to %s: %s", addr, cause(err))
}
