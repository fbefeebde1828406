package tcpkit

import (
	"net"
	"strconv"
	"strings"
)

// ParseAddr splits an address in tcpkit's address grammar into a network
// ("tcp" or "unix") and an address that package net accepts. Every tcpkit
// API and the tcpkit command use this one grammar:
//
//	host:port      "localhost:8124", "127.0.0.1:8124"   TCP
//	[v6]:port      "[::1]:8124"                         TCP over IPv6
//	:port          ":8124"                              TCP on every interface, dual-stack
//	port           "8124"                               same as ":8124"
//	unix:PATH      "unix:echo.sock", "unix:@name"       Unix socket (@ is Linux's abstract namespace)
//	PATH           "/tmp/echo.sock", "./echo.sock"      Unix socket: any address containing a '/'
//
// Port 0 asks the operating system for a free port; read the bound address
// from the listener or from the Server's OnListening event. Ports are
// numbers from 0 to 65535; service names such as "http" are not accepted.
// A bad address gets an *AddrError that quotes it and says what is wrong.
func ParseAddr(addr string) (network, address string, err error) {
	bad := func(reason string) (string, string, error) {
		return "", "", &AddrError{Addr: addr, Reason: reason}
	}
	if addr == "" {
		return bad("empty address")
	}
	if strings.ContainsFunc(addr, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return bad("contains a control character")
	}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return parseUnix(addr, path)
	}
	if strings.Contains(addr, "/") {
		return parseUnix(addr, addr)
	}
	if isDigits(addr) {
		if err := checkPort(addr); err != "" {
			return bad(err)
		}
		return "tcp", ":" + addr, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var reason string
		switch {
		case strings.Count(addr, ":") > 1 && !strings.HasPrefix(addr, "["):
			reason = "an IPv6 address needs brackets, as in [::1]:8124"
		case !strings.Contains(addr, ":"):
			reason = "missing port: use host:port, :port or a port number"
		default:
			reason = strings.TrimPrefix(err.(*net.AddrError).Err, "address ")
		}
		return bad(reason)
	}
	if port == "" {
		return bad("missing port after ':'")
	}
	if !isDigits(port) {
		return bad("port " + strconv.Quote(port) + " is not a number")
	}
	if reason := checkPort(port); reason != "" {
		return bad(reason)
	}
	if strings.HasPrefix(addr, "[") {
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil && !strings.Contains(host, ":") {
			if zone := strings.IndexByte(host, '%'); zone < 0 || net.ParseIP(host[:zone]) == nil {
				return bad("\"" + host + "\" in brackets is not an IPv6 address")
			}
		}
	} else if strings.ContainsAny(host, " \t[]") {
		return bad("host " + strconv.Quote(host) + " is not a valid host name or IP address")
	}
	return "tcp", net.JoinHostPort(host, port), nil
}

// maxUnixPath is the longest path that fits in sockaddr_un.sun_path on
// Linux, less the terminating NUL.
const maxUnixPath = 107

func parseUnix(addr, path string) (string, string, error) {
	switch {
	case path == "":
		return "", "", &AddrError{Addr: addr, Reason: "empty Unix socket path"}
	case len(path) > maxUnixPath:
		return "", "", &AddrError{Addr: addr, Reason: "Unix socket path is " + strconv.Itoa(len(path)) +
			" bytes; the limit is " + strconv.Itoa(maxUnixPath)}
	}
	return "unix", path, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func checkPort(port string) string {
	n, err := strconv.Atoi(port)
	if err != nil || n > 65535 {
		return "port " + port + " is out of range (0-65535)"
	}
	return ""
}
