package tcpkit

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ParseAddr splits an address in tcpkit's address grammar into a network
// ("tcp" or "unix") and an address that package net accepts. Every tcpkit
// API and the tcpkit command use this one grammar:
//
//	host:port        "localhost:8124", "127.0.0.1:8124"   TCP
//	[v6]:port        "[::1]:8124"                         TCP over IPv6
//	[v6%zone]:port   "[fe80::1%eth0]:8124"                TCP over IPv6, link-local
//	:port            ":8124"                              TCP on every interface, dual-stack
//	port             "8124"                               same as ":8124"
//	unix:PATH        "unix:echo.sock", "unix:@name"       Unix socket
//	PATH             "/tmp/echo.sock", "./echo.sock"      Unix socket: any address containing a '/'
//
// Port 0 asks the operating system for a free port; read the bound address
// from the listener or from the Server's OnListening event. Ports are
// decimal numbers from 0 to 65535; service names such as "http" are not
// accepted. The returned TCP address has the port in canonical form
// ("08124" becomes "8124").
//
// A host is a host name (letters, digits, '-', '.' and '_'), an IPv4
// address, or, in brackets, an IPv6 address; an empty host means every
// interface. A Unix socket path is at most 107 bytes, the size of
// sockaddr_un.sun_path on Linux less its terminating NUL. A path that starts
// with '@' names a socket in Linux's abstract namespace, which has no file.
//
// A bad address gets an *AddrError that quotes it and says what is wrong.
func ParseAddr(addr string) (network, address string, err error) {
	var reason string
	switch path, isUnix := strings.CutPrefix(addr, "unix:"); {
	case addr == "":
		reason = "empty address"
	case strings.ContainsFunc(addr, isControl):
		reason = "contains a control character"
	case isUnix:
		network, address, reason = "unix", path, checkUnixPath(path)
	case strings.Contains(addr, "/"):
		network, address, reason = "unix", addr, checkUnixPath(addr)
	default:
		network = "tcp"
		address, reason = parseTCP(addr)
	}
	if reason != "" {
		return "", "", &AddrError{Addr: addr, Reason: reason}
	}
	return network, address, nil
}

// maxUnixPath is the longest path that fits in sockaddr_un.sun_path on
// Linux, less the terminating NUL.
const maxUnixPath = 107

// checkUnixPath says what is wrong with a Unix socket path, or returns "".
func checkUnixPath(path string) string {
	switch {
	case path == "":
		return "empty Unix socket path after \"unix:\""
	case path == "@":
		return "empty abstract socket name after '@'"
	case len(path) > maxUnixPath:
		return "Unix socket path is " + strconv.Itoa(len(path)) + " bytes long; the limit is " +
			strconv.Itoa(maxUnixPath)
	}
	return ""
}

// parseTCP turns a TCP address of the grammar into the form package net
// takes, or says what is wrong with it.
func parseTCP(addr string) (address, reason string) {
	var host, port string
	switch {
	case isNumber(addr): // a bare port
		port = addr
	case addr[0] == '[':
		inside, rest, ok := strings.Cut(addr[1:], "]")
		if !ok {
			return "", "missing ']' after the IPv6 address"
		}
		if port, ok = strings.CutPrefix(rest, ":"); !ok {
			return "", "missing \":port\" after ']'"
		}
		if reason := checkBracketed(inside); reason != "" {
			return "", reason
		}
		host = inside
	default:
		i := strings.LastIndexByte(addr, ':')
		if i < 0 {
			return "", "missing port: use host:port, :port or a port number " +
				"(a Unix socket path needs a '/' or the \"unix:\" prefix)"
		}
		host, port = addr[:i], addr[i+1:]
		if strings.Contains(host, ":") {
			return "", "an IPv6 address needs brackets, as in [::1]:8124"
		}
		if !isHostName(host) {
			return "", "host " + strconv.Quote(host) + " is not a valid host name or IP address"
		}
	}
	n, reason := parsePort(port)
	if reason != "" {
		return "", reason
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), ""
}

// checkBracketed says what is wrong with the text between the brackets of
// "[v6]:port", or returns "".
func checkBracketed(s string) string {
	ip, err := netip.ParseAddr(s)
	switch {
	case s == "":
		return "empty brackets: put an IPv6 address in them, as in [::1]:8124"
	case err == nil && ip.Is4():
		return "brackets are only for IPv6 addresses: write " + s + ":port"
	case err != nil || !ip.Is6():
		return strconv.Quote(s) + " in brackets is not an IPv6 address"
	case ip.Zone() != "" && !isName(ip.Zone()):
		// Other characters, '[' or ']' above all, would not survive a
		// round trip through net.SplitHostPort.
		return "IPv6 zone " + strconv.Quote(ip.Zone()) + " is not an interface name or number"
	}
	return ""
}

// parsePort parses a port number, or says what is wrong with it.
func parsePort(port string) (int, string) {
	if port == "" {
		return 0, "missing port after ':'"
	}
	if !isDigits(port) {
		return 0, "port " + strconv.Quote(port) + " is not a decimal number from 0 to 65535 " +
			"(service names are not accepted)"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n > 65535 {
		return 0, "port " + port + " is out of range: ports are 0 to 65535"
	}
	return n, ""
}

// isControl reports whether r is an ASCII control character.
func isControl(r rune) bool { return r < ' ' || r == 0x7f }

// isDigits reports whether s is a non-empty run of ASCII digits.
func isDigits(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < '0' || r > '9' })
}

// isNumber reports whether s is an optionally signed run of ASCII digits:
// something meant as a bare port, right or wrong.
func isNumber(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	return isDigits(s)
}

// isHostName reports whether s is empty or made only of the characters of
// host names and IPv4 addresses.
func isHostName(s string) bool { return s == "" || isName(s) }

// isName reports whether s is a non-empty run of letters, digits, '-', '.'
// and '_'.
func isName(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
			r == '-' || r == '.' || r == '_')
	})
}
