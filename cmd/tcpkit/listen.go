package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/tcpkit/tcpkit"
	"github.com/tcpkit/tcpkit/activation"
)

// listen opens the listeners of an echo server on addr, an address in
// tcpkit's grammar, with tcpkit.ListenAll: "localhost" gets one listener on
// each loopback address, 127.0.0.1 and ::1, so that a client which tries
// ::1 first (Node 17 and later, nodejs/node#40702) connects at once. A
// loopback address the machine lacks is skipped, with a log line.
//
// A failure is returned as an *exitErr whose one line names the address and
// the cause.
func listen(ctx context.Context, lc tcpkit.ListenConfig, addr string, log *slog.Logger) ([]net.Listener, error) {
	lns, err := lc.ListenAll(ctx, addr)
	if err != nil {
		sub := ""
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Addr != nil {
			sub = oe.Addr.String()
		}
		return nil, listenError(addr, sub, err)
	}
	if _, address, _ := tcpkit.ParseAddr(addr); len(lns) == 1 && isLocalhost(address) {
		log.Info("listening on one loopback address only: the other is not available here", "addr", lns[0].Addr().String())
	}
	return lns, nil
}

// echoListeners returns the sockets a service manager passed (systemd's
// socket activation), if it passed any, and otherwise listens on addr.
func echoListeners(ctx context.Context, lc tcpkit.ListenConfig, addr string, addrGiven bool, log *slog.Logger) ([]net.Listener, error) {
	socks, err := activation.Sockets()
	switch {
	case err != nil:
		return nil, failf("%s", err)
	case len(socks) == 0:
		return listen(ctx, lc, addr, log)
	case addrGiven:
		for _, s := range socks {
			s.Listener.Close()
		}
		return nil, &exitErr{code: exitUsage, msg: "the service manager passed listening sockets (LISTEN_FDS): drop ADDR " + addr + ", or the sockets"}
	}
	lns := make([]net.Listener, len(socks))
	for i, s := range socks {
		lns[i] = s.Listener
		log.Info("socket passed by the service manager", "name", s.Name, "addr", addrString(s.Listener.Addr()))
	}
	return lns, nil
}

// isLocalhost reports whether a TCP address's host is localhost or a name
// under .localhost.
func isLocalhost(address string) bool {
	host, _, err := net.SplitHostPort(address)
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	return err == nil && (name == "localhost" || strings.HasSuffix(name, ".localhost"))
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
