package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/tcpkit/tcpkit/bench/internal/harness"
)

// patLen is the period of the byte pattern that verified connections send;
// not a power of two, so that a shifted stream does not line up again
// soon.
const patLen = 1<<20 + 7

// pattern holds the pattern twice over, so that any patLen bytes from any
// offset are one slice.
var pattern = func() []byte {
	p := make([]byte, 2*patLen)
	r := rand.New(rand.NewPCG(17, 17))
	for i := range patLen {
		p[i] = byte(r.Uint32())
	}
	copy(p[patLen:], p[:patLen])
	return p
}()

// patternAt returns n bytes (n ≤ patLen) of the stream that starts at
// pattern offset off, from stream position pos.
func patternAt(off, pos int64, n int) []byte {
	i := (off + pos) % patLen
	return pattern[i : i+int64(n)]
}

// matchPattern reports how many bytes of p differ from the stream that
// starts at off, p being at stream position pos.
func matchPattern(off, pos int64, p []byte) (bad int64) {
	for len(p) > 0 {
		n := min(len(p), patLen)
		want := patternAt(off, pos, n)
		if !bytes.Equal(p[:n], want) {
			for i := range n {
				if p[i] != want[i] {
					bad++
				}
			}
		}
		p, pos = p[n:], pos+int64(n)
	}
	return bad
}

// A target is one server under test.
type target struct {
	engine string
	addr   netip.AddrPort
	stats  *soakStats
}

// headerKind is what a connection sends before TLS.
type headerKind int

const (
	noHeader headerKind = iota
	proxyV1
	proxyV2
	numHeaderKinds
)

func (h headerKind) String() string {
	return [...]string{"none", "v1", "v2"}[h]
}

// proxyHeader returns a PROXY header of kind h claiming that the client is
// 192.0.2.x (TEST-NET-1) and the server dst.
func proxyHeader(h headerKind, src netip.AddrPort, dst netip.AddrPort, x byte) []byte {
	claimed := netip.AddrFrom4([4]byte{192, 0, 2, x})
	switch h {
	case proxyV1:
		return fmt.Appendf(nil, "PROXY TCP4 %s %s %d %d\r\n", claimed, dst.Addr(), src.Port(), dst.Port())
	case proxyV2:
		b := []byte("\r\n\r\n\x00\r\nQUIT\n")
		b = append(b, 0x21, 0x11, 0, 12) // v2 PROXY, TCP over IPv4, 12 address bytes
		c4, d4 := claimed.As4(), dst.Addr().As4()
		b = append(b, c4[:]...)
		b = append(b, d4[:]...)
		b = binary.BigEndian.AppendUint16(b, src.Port())
		return binary.BigEndian.AppendUint16(b, dst.Port())
	}
	return nil
}

// dialTCP connects to t within timeout.
func dialTCP(ctx context.Context, t *target, timeout time.Duration) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", t.addr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// clientTLS is the client side's TLS configuration: the server's
// certificate is self-signed and made at its start.
var clientTLS = &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}

// dialTLS connects to t, sends a PROXY header of kind h, and completes a
// TLS handshake, all within timeout.
func dialTLS(ctx context.Context, t *target, h headerKind, r *rand.Rand, timeout time.Duration) (*tls.Conn, *net.TCPConn, error) {
	raw, err := dialTCP(ctx, t, timeout)
	if err != nil {
		return nil, nil, err
	}
	raw.SetDeadline(time.Now().Add(timeout))
	if hdr := proxyHeader(h, netipAddrPort(raw.LocalAddr()), t.addr, byte(1+r.IntN(250))); hdr != nil {
		if _, err := raw.Write(hdr); err != nil {
			raw.Close()
			return nil, nil, err
		}
	}
	tc := tls.Client(raw, clientTLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, nil, fmt.Errorf("TLS handshake: %w", err)
	}
	raw.SetDeadline(time.Time{})
	return tc, raw, nil
}

// closeWrite sends close_notify and then FIN: Go's tls.Conn.CloseWrite
// sends only the former.
func closeWrite(tc *tls.Conn, raw *net.TCPConn) error {
	if err := tc.CloseWrite(); err != nil {
		return err
	}
	return raw.CloseWrite()
}

// resetClose closes raw with an RST: SO_LINGER 0, then close.
func resetClose(raw *net.TCPConn) {
	raw.SetLinger(0)
	raw.Close()
}

// sendUrgent sends b with MSG_OOB: its last byte is TCP urgent data.
func sendUrgent(raw *net.TCPConn, b []byte) error {
	rc, err := raw.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	werr := rc.Write(func(fd uintptr) bool {
		serr = syscall.Sendto(int(fd), b, syscall.MSG_OOB, nil)
		return serr != syscall.EAGAIN
	})
	if werr != nil {
		return werr
	}
	if serr != nil {
		return os.NewSyscallError("sendto", serr)
	}
	return nil
}

// fionread is FIONREAD (SIOCINQ) on Linux: the bytes waiting unread in a
// socket's receive queue.
const fionread = 0x541B

// unread returns the bytes waiting in raw's receive queue, or -1.
func unread(raw *net.TCPConn) int {
	rc, err := raw.SyscallConn()
	if err != nil {
		return -1
	}
	n := int32(-1)
	rc.Control(func(fd uintptr) {
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, fionread, uintptr(unsafe.Pointer(&n))); e != 0 {
			n = -1
		}
	})
	return int(n)
}

// readStalling reads from tc into p, waiting up to stall for the server.
// A read that times out with bytes waiting in the socket was this
// process's delay (it was not scheduled in time), not the server's: it is
// tried again, up to 100 times.
func readStalling(tc *tls.Conn, raw *net.TCPConn, p []byte, stall time.Duration) (int, error) {
	for range 100 {
		raw.SetReadDeadline(time.Now().Add(stall))
		n, err := tc.Read(p)
		if n > 0 || err == nil || !isTimeout(err) || unread(raw) <= 0 {
			return n, err
		}
	}
	return 0, errors.New("the client was not scheduled in time to read, 100 times over")
}

// errKind names the kind of a connection's error, for the tables.
func errKind(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "none"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return harness.ShortErr(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
