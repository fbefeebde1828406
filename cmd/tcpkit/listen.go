package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/tcpkit/tcpkit"
)

// listen opens the listeners of an echo server on addr, an address in
// tcpkit's grammar. Most addresses get one listener from tcpkit.Listen.
//
// "localhost" (and any name under .localhost) gets one listener on each
// loopback address it stands for, 127.0.0.1 and ::1, plus any other loopback
// address it resolves to; so does any name that resolves to several loopback
// addresses. A client that resolves localhost to ::1 first, as Node 17 and
// later do (nodejs/node#40702), then connects at once instead of being
// refused. A loopback address the machine lacks (no IPv6) is skipped with a
// log line. With port 0, all the listeners share the port the first one
// got.
//
// A failure is returned as an *exitErr whose one line names the address and
// the cause.
func listen(ctx context.Context, addr string, log *slog.Logger) ([]net.Listener, error) {
	network, address, err := tcpkit.ParseAddr(addr)
	if err != nil {
		return nil, listenError(addr, "", err)
	}
	var ips []net.IP
	host, port, _ := net.SplitHostPort(address)
	if network == "tcp" {
		ips = loopbackIPs(ctx, host)
	}
	if len(ips) < 2 {
		ln, err := tcpkit.Listen(ctx, addr)
		if err != nil {
			return nil, listenError(addr, "", err)
		}
		return []net.Listener{ln}, nil
	}
	// With port 0 the port the first listener got may be taken on another
	// address; try again a few times with a fresh port.
	for attempt := 1; ; attempt++ {
		lns, err := listenEach(ctx, addr, ips, port, log)
		if err == nil || port != "0" || attempt == 5 || !errors.Is(err, syscall.EADDRINUSE) {
			return lns, err
		}
	}
}

// listenEach opens one listener per IP, all on the same port.
func listenEach(ctx context.Context, addr string, ips []net.IP, port string, log *slog.Logger) ([]net.Listener, error) {
	var lns []net.Listener
	var skipped []error
	for _, ip := range ips {
		a := net.JoinHostPort(ip.String(), port)
		ln, err := tcpkit.Listen(ctx, a)
		if err != nil && unavailable(err) {
			skipped = append(skipped, err)
			log.Info("not listening on an unavailable loopback address", "addr", a, "err", cause(err))
			continue
		}
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return nil, listenError(addr, a, err)
		}
		lns = append(lns, ln)
		if port == "0" {
			_, port, _ = net.SplitHostPort(ln.Addr().String())
		}
	}
	if len(lns) == 0 {
		return nil, listenError(addr, "", skipped[0])
	}
	return lns, nil
}

// loopbackIPs returns the addresses to listen on for host when host stands
// for several loopback addresses, and nil otherwise.
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
		// /etc/hosts says. IPv4 first: the log and a one-family
		// machine read better that way.
		add(net.IPv4(127, 0, 0, 1).To4())
		add(net.IPv6loopback)
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil && !isLocalhost {
		return nil // tcpkit.Listen will report it
	}
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			if isLocalhost {
				continue
			}
			return nil // not a loopback name: listen as asked
		}
		if ip4 := a.IP.To4(); ip4 != nil {
			add(ip4)
		} else {
			add(a.IP)
		}
	}
	return ips
}

// unavailable reports whether a listen failed because the address or its
// family does not exist on this machine, rather than because it is taken or
// forbidden.
func unavailable(err error) bool {
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT) ||
		errors.Is(err, syscall.EPROTONOSUPPORT)
}

// listenError is the one-line error for a failed listen on addr; sub, if
// not empty, is the address among several that failed.
func listenError(addr, sub string, err error) error {
	where := addr
	if sub != "" && sub != addr {
		where += " (" + sub + ")"
	}
	return failf("cannot listen on %s: %s", where, cause(err))
}

// cause extracts the reason from a listen or dial error, without the
// operation and address that package net puts in front of it (the caller
// names the address in its own words): "address already in use",
// "permission denied", "connection refused".
func cause(err error) string {
	var ae *tcpkit.AddrError
	if errors.As(err, &ae) {
		return "bad address: " + ae.Reason
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		if de.IsNotFound {
			return "no such host " + de.Name
		}
		return "cannot resolve " + de.Name + ": " + de.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		err = se.Err
	}
	return err.Error()
}
