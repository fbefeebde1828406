package tcpkit

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
)

// ListenAll announces on addr, an address in the grammar of ParseAddr, with
// the zero ListenConfig. See ListenConfig.ListenAll.
func ListenAll(ctx context.Context, addr string) ([]net.Listener, error) {
	var lc ListenConfig
	return lc.ListenAll(ctx, addr)
}

// ListenAll announces on addr as Listen does, except for a host name that
// stands for several loopback addresses. "localhost" (and any name under
// .localhost, RFC 6761) gets one listener on each of 127.0.0.1 and ::1, plus
// any other loopback address it resolves to; so does any other name that
// resolves to several loopback addresses only. A client that resolves
// localhost to ::1 first, as Node 17 and later do (nodejs/node#40702),
// then connects at once instead of being refused, which is what a single
// net.Listen("tcp", "localhost:8124") gives.
//
// A loopback address the machine lacks (no IPv6, say) is skipped. With port
// 0, every listener gets the port the first one was given. On error, no
// listener is left open.
func (lc *ListenConfig) ListenAll(ctx context.Context, addr string) ([]net.Listener, error) {
	network, address, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	var ips []net.IP
	host, port, _ := net.SplitHostPort(address)
	if network == "tcp" {
		ips = loopbackIPs(ctx, host)
	}
	if len(ips) < 2 {
		ln, err := lc.Listen(ctx, addr)
		if err != nil {
			return nil, err
		}
		return []net.Listener{ln}, nil
	}
	// With port 0, the port the first listener got may be taken on another
	// address; try again, a few times, with a fresh port.
	for attempt := 1; ; attempt++ {
		lns, err := lc.listenEach(ctx, ips, port)
		if err == nil || port != "0" || attempt == 5 || !errors.Is(err, syscall.EADDRINUSE) {
			return lns, err
		}
	}
}

// listenEach opens one listener per IP, all on the same port.
func (lc *ListenConfig) listenEach(ctx context.Context, ips []net.IP, port string) ([]net.Listener, error) {
	var lns []net.Listener
	var skipped error
	for _, ip := range ips {
		ln, err := lc.Listen(ctx, net.JoinHostPort(ip.String(), port))
		if err != nil && addrUnavailable(err) {
			skipped = err
			continue
		}
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
		if port == "0" {
			_, port, _ = net.SplitHostPort(ln.Addr().String())
		}
	}
	if len(lns) == 0 {
		return nil, skipped
	}
	return lns, nil
}

// loopbackIPs returns the addresses to listen on when host stands for
// several loopback addresses, and nil otherwise.
func loopbackIPs(ctx context.Context, host string) []net.IP {
	if host == "" || net.ParseIP(host) != nil || strings.Contains(host, "%") {
		return nil
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	isLocalhost := name == "localhost" || strings.HasSuffix(name, ".localhost")
	var ips []net.IP
	add := func(ip net.IP) {
		for _, have := range ips {
			if have.Equal(ip) {
				return
			}
		}
		ips = append(ips, ip)
	}
	if isLocalhost {
		// RFC 6761: localhost is the loopback addresses, whatever
		// /etc/hosts says. IPv4 first, so a one-family machine's log
		// reads well.
		add(net.IPv4(127, 0, 0, 1).To4())
		add(net.IPv6loopback)
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil && !isLocalhost {
		return nil // Listen reports it
	}
	for _, a := range addrs {
		switch {
		case !a.IP.IsLoopback() && isLocalhost:
			continue
		case !a.IP.IsLoopback():
			return nil // not a loopback name: listen as asked
		case a.IP.To4() != nil:
			add(a.IP.To4())
		default:
			add(a.IP)
		}
	}
	return ips
}

// addrUnavailable reports whether a listen failed because the address or
// its family does not exist on this machine, rather than because it is
// taken or forbidden.
func addrUnavailable(err error) bool {
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT) ||
		errors.Is(err, syscall.EPROTONOSUPPORT)
}
