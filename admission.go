package tcpkit

import (
	"net"
	"net/netip"
	"time"
)

// A DropReason says which limit closed a connection on arrival.
type DropReason string

// The reasons of a Drop.
const (
	DropMaxConnections DropReason = "max-connections"  // Server.MaxConnections
	DropPerIP          DropReason = "max-conns-per-ip" // Server.MaxConnsPerIP
	DropRate           DropReason = "accept-rate"      // Server.AcceptRate
	DropDenied         DropReason = "denied"           // Server.Allow or Server.Deny
)

// String says what the reason means, for a log line.
func (r DropReason) String() string {
	switch r {
	case DropMaxConnections:
		return "MaxConnections reached"
	case DropPerIP:
		return "MaxConnsPerIP reached for this client"
	case DropRate:
		return "AcceptRate exceeded"
	case DropDenied:
		return "client address not allowed"
	}
	return string(r)
}

// admission is a Server's state for its limits, guarded by the Server's
// mutex.
type admission struct {
	perIP  map[netip.Addr]int // open connections by client address, with MaxConnsPerIP
	tokens float64            // AcceptRate's bucket
	last   time.Time          // when tokens was last filled; zero before the first
}

// clientIP returns c's peer address, unmapped, if the limits need it and
// it has one.
func (s *Server) clientIP(c *Conn) (netip.Addr, bool) {
	if s.MaxConnsPerIP <= 0 && len(s.Allow) == 0 && len(s.Deny) == 0 {
		return netip.Addr{}, false
	}
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	return ip.Unmap(), ok
}

// admitLocked applies the limits to a new connection from ip (hasIP false
// for none), counting it if it is admitted, and returns why not if it is
// not. Called with s.mu held.
func (s *Server) admitLocked(ip netip.Addr, hasIP bool) DropReason {
	adm := &s.admission
	if hasIP && (matches(s.Deny, ip) || len(s.Allow) > 0 && !matches(s.Allow, ip)) {
		return DropDenied
	}
	if s.MaxConnections > 0 && len(s.conns) >= s.MaxConnections {
		return DropMaxConnections
	}
	if hasIP && s.MaxConnsPerIP > 0 && adm.perIP[ip] >= s.MaxConnsPerIP {
		return DropPerIP
	}
	if reason := s.takeTokenLocked(); reason != "" {
		return reason
	}
	if hasIP {
		s.countLocked(ip)
	}
	return ""
}

// takeTokenLocked takes a token from the accept-rate bucket, or returns
// DropRate. Called with s.mu held.
func (s *Server) takeTokenLocked() DropReason {
	adm := &s.admission
	if s.AcceptRate > 0 {
		burst := float64(s.AcceptBurst)
		if burst <= 0 {
			burst = max(s.AcceptRate, 1)
		}
		now := time.Now()
		if adm.last.IsZero() {
			adm.tokens = burst
		} else {
			adm.tokens = min(burst, adm.tokens+now.Sub(adm.last).Seconds()*s.AcceptRate)
		}
		adm.last = now
		if adm.tokens < 1 {
			return DropRate
		}
		adm.tokens--
	}
	return ""
}

// countLocked counts a connection from ip against MaxConnsPerIP. Called
// with s.mu held.
func (s *Server) countLocked(ip netip.Addr) {
	adm := &s.admission
	if s.MaxConnsPerIP > 0 {
		if adm.perIP == nil {
			adm.perIP = make(map[netip.Addr]int)
		}
		adm.perIP[ip]++
	}
}

// admitEdge applies the limits by address to a connection whose PROXY
// header has named its real client, on its event goroutine; a connection
// refused here is reported to OnDrop and closed. It reports whether the
// connection may go on.
func (s *Server) admitEdge(c *Conn) bool {
	if s.ProxyProtocol == ProxyOff {
		return true // counted when accepted
	}
	ip, hasIP := s.clientIP(c)
	if !hasIP {
		return true
	}
	reason := DropReason("")
	s.mu.Lock()
	switch {
	case matches(s.Deny, ip) || len(s.Allow) > 0 && !matches(s.Allow, ip):
		reason = DropDenied
	case s.MaxConnsPerIP > 0 && s.admission.perIP[ip] >= s.MaxConnsPerIP:
		reason = DropPerIP
	default:
		s.countLocked(ip)
		c.edge.counted, c.edge.countedIP = true, ip
		s.mu.Unlock()
		return true
	}
	// Counted as dropped once it has closed (countCloseLocked): until
	// then it is open, and Stats must not count it twice.
	first := !s.dropping
	s.dropping = true
	s.mu.Unlock()
	s.reportDrop(Drop{LocalAddr: c.LocalAddr(), RemoteAddr: c.RemoteAddr(), Reason: reason}, first)
	c.resetWith(&dropError{reason}) // its bytes were acknowledged, and will not be read
	return false
}

// reportDrop tells OnDrop of a dropped connection, or logs the first of a
// run of drops.
func (s *Server) reportDrop(d Drop, first bool) {
	switch {
	case s.OnDrop != nil:
		s.OnDrop(d)
	case first:
		s.logger().Warn("tcpkit: dropping connections: "+d.Reason.String(),
			"reason", string(d.Reason), "remote", d.RemoteAddr.String())
	}
}

// handshakeFailed counts and reports a connection whose PROXY header or
// TLS handshake failed. A probe (a client that ended without sending a
// byte, as a health checker does) is logged at DEBUG, and does not start a
// run of failures: WARN is kept for headers and handshakes that went
// wrong.
func (s *Server) handshakeFailed(he *HandshakeError, probe bool) {
	s.handshakeErr.Add(1)
	if probe && s.OnHandshakeError == nil {
		s.logger().Debug("tcpkit: connection ended before its handshake, without a byte (a probe?)",
			"stage", he.Stage, "remote", he.RemoteAddr.String())
		return
	}
	s.mu.Lock()
	first := !s.failing
	s.failing = true
	s.mu.Unlock()
	switch {
	case s.OnHandshakeError != nil:
		s.OnHandshakeError(he)
	case first:
		s.logger().Warn("tcpkit: connection failed its handshake; later failures are not logged until one succeeds",
			"stage", he.Stage, "remote", he.RemoteAddr.String(), "err", he.Err)
	}
}

// handshakeOK ends a run of handshake failures.
func (s *Server) handshakeOK() {
	s.mu.Lock()
	s.failing = false
	s.mu.Unlock()
}

// HandshakeErrors returns how many connections have failed their PROXY
// header or TLS handshake.
func (s *Server) HandshakeErrors() int64 { return s.handshakeErr.Load() }

// releaseLocked uncounts a connection from ip that admitLocked counted.
// Called with s.mu held.
func (s *Server) releaseLocked(ip netip.Addr, hasIP bool) {
	if !hasIP || s.MaxConnsPerIP <= 0 {
		return
	}
	if n := s.admission.perIP[ip]; n > 1 {
		s.admission.perIP[ip] = n - 1
	} else {
		delete(s.admission.perIP, ip) // a map of past clients would only grow
	}
}

// matches reports whether one of prefixes contains ip. A prefix written
// for IPv4 matches an IPv4 address; Unmap the prefixes' addresses too, so
// that ::ffff:10.0.0.0/104 matches 10.1.2.3.
func matches(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
