package tcpkit

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pires/go-proxyproto"
)

// A ProxyPolicy says whether a Server's clients begin with a PROXY
// protocol header (v1 or v2), which a load balancer such as HAProxy sends
// to tell the server who its real client is.
type ProxyPolicy uint8

const (
	// ProxyOff, the default, reads no header: the first bytes are the
	// client's own.
	ProxyOff ProxyPolicy = iota

	// ProxyOptional reads a header if one comes, and serves the connection
	// as it is otherwise. To tell, it waits for the client's first bytes
	// (or Server.ProxyHeaderTimeout): a protocol where the server speaks
	// first is held up until then for clients that send no header.
	ProxyOptional

	// ProxyRequired closes a connection that does not begin with a header.
	ProxyRequired
)

func (p ProxyPolicy) String() string {
	switch p {
	case ProxyOff:
		return "off"
	case ProxyOptional:
		return "optional"
	case ProxyRequired:
		return "required"
	}
	return fmt.Sprintf("ProxyPolicy(%d)", uint8(p))
}

// ParseProxyPolicy parses "off", "optional" or "required".
func ParseProxyPolicy(s string) (ProxyPolicy, error) {
	for _, p := range []ProxyPolicy{ProxyOff, ProxyOptional, ProxyRequired} {
		if s == p.String() {
			return p, nil
		}
	}
	return ProxyOff, fmt.Errorf("tcpkit: unknown PROXY protocol policy %q (want off, optional or required)", s)
}

// DefaultProxyHeaderTimeout is Server.ProxyHeaderTimeout's default.
const DefaultProxyHeaderTimeout = 5 * time.Second

// The PROXY protocol's signatures: v2's binary one, v1's text one.
var (
	proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")
	proxyV1Sig = []byte("PROXY ")
)

const (
	proxyV1MaxLen = 107 // the longest v1 line, CRLF included
	proxyV2Fixed  = 16  // signature, version and command, family, length
)

// errNoProxyHeader says the client's first bytes are not a PROXY header.
var errNoProxyHeader = errors.New("the connection does not begin with a PROXY protocol header")

// proxyHeaderLen reports how long the header at the start of b is: 0 and
// nil if more bytes are needed to tell, errNoProxyHeader if b does not
// begin with one, another error if it begins with one that is malformed.
func proxyHeaderLen(b []byte) (int, error) {
	switch {
	case hasPrefixOf(b, proxyV2Sig):
		if len(b) < proxyV2Fixed {
			return 0, nil
		}
		length := int(binary.BigEndian.Uint16(b[14:16]))
		if max := int(proxyproto.MaxV2HeaderSize); length > max {
			return 0, fmt.Errorf("a PROXY protocol v2 header of %d bytes after its 16-byte start, over the limit of %d (go-proxyproto's MaxV2HeaderSize)", length, max)
		}
		n := proxyV2Fixed + length
		if len(b) < n {
			return 0, nil
		}
		return n, nil
	case hasPrefixOf(b, proxyV1Sig):
		i := bytes.IndexByte(b[:min(len(b), proxyV1MaxLen)], '\n')
		switch {
		case i >= 0:
			return i + 1, nil
		case len(b) >= proxyV1MaxLen:
			return 0, proxyproto.ErrVersion1HeaderTooLong
		}
		return 0, nil
	}
	return 0, errNoProxyHeader
}

// hasPrefixOf reports whether b and sig agree as far as the shorter goes:
// b may yet turn out to begin with sig.
func hasPrefixOf(b, sig []byte) bool {
	n := min(len(b), len(sig))
	return bytes.Equal(b[:n], sig[:n])
}

// parseProxyHeader parses a whole header, as framed by proxyHeaderLen.
func parseProxyHeader(b []byte) (*proxyproto.Header, error) {
	h, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(b), max(len(b), 16)))
	if err != nil {
		return nil, err
	}
	return h, nil
}

// A proxyStage reads a connection's PROXY header from the bytes the engine
// reads, without blocking: it keeps what has come until the header is
// whole.
type proxyStage struct {
	policy  ProxyPolicy
	trusted bool   // the peer may send a header
	buf     []byte // bytes read so far, while the header is not whole
}

// feed takes the next bytes read. It returns the header once it is whole
// (nil if the connection has none and the policy allows that) and the
// bytes that follow it, or done false if it needs more.
func (st *proxyStage) feed(p []byte) (h *proxyproto.Header, rest []byte, done bool, err error) {
	b := p
	if st.buf != nil {
		st.buf = append(st.buf, p...)
		b = st.buf
	}
	n, err := proxyHeaderLen(b)
	switch {
	case err == errNoProxyHeader && st.policy == ProxyOptional:
		return nil, bytes.Clone(b), true, nil
	case err != nil:
		return nil, nil, true, err
	case n == 0:
		if st.buf == nil {
			st.buf = bytes.Clone(p)
		}
		return nil, nil, false, nil
	case !st.trusted:
		return nil, nil, true, errUntrustedProxy
	}
	h, err = parseProxyHeader(b[:n])
	if err != nil {
		return nil, nil, true, err
	}
	rest = bytes.Clone(b[n:]) // p may be an engine's shared buffer
	st.buf = nil
	if len(rest) == 0 {
		rest = nil
	}
	return h, rest, true, nil
}

// errUntrustedProxy refuses a header from a peer outside TrustedProxies.
var errUntrustedProxy = errors.New("a PROXY protocol header from a peer that is not a trusted proxy")

// trustedProxy reports whether the socket peer remote may send a header.
// A Unix socket's peer is local, and trusted: the socket file's mode says
// who may connect. An empty list trusts every peer.
func trustedProxy(list []netip.Prefix, remote net.Addr) bool {
	if len(list) == 0 {
		return true
	}
	a, ok := remote.(*net.TCPAddr)
	if !ok {
		return true
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	return ok && matches(list, ip.Unmap())
}

// proxyAddrs returns the addresses a header gives: none for the LOCAL
// command (a health check by the proxy itself) or an unknown family, which
// keep the socket's own.
func proxyAddrs(h *proxyproto.Header) (local, remote net.Addr, ok bool) {
	if h == nil || h.Command != proxyproto.PROXY || h.SourceAddr == nil || h.DestinationAddr == nil {
		return nil, nil, false
	}
	if h.TransportProtocol == proxyproto.UNSPEC {
		return nil, nil, false
	}
	return h.DestinationAddr, h.SourceAddr, true
}
