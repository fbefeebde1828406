package tcpkit

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
)

// A path of n bytes, all of them part of a file name under /tmp.
func longPath(n int) string { return "/tmp/" + strings.Repeat("a", n-len("/tmp/")) }

var parseAddrGood = []struct {
	name    string
	addr    string
	network string
	address string
}{
	{name: "host:port", addr: "localhost:8124", network: "tcp", address: "localhost:8124"},
	{name: "IPv4:port", addr: "127.0.0.1:8124", network: "tcp", address: "127.0.0.1:8124"},
	{name: "host name characters", addr: "my-host_1.example.com:80", network: "tcp", address: "my-host_1.example.com:80"},
	{name: ":port", addr: ":8124", network: "tcp", address: ":8124"},
	{name: "bare port", addr: "8124", network: "tcp", address: ":8124"},
	{name: "port 0", addr: "127.0.0.1:0", network: "tcp", address: "127.0.0.1:0"},
	{name: ":0", addr: ":0", network: "tcp", address: ":0"},
	{name: "bare port 0", addr: "0", network: "tcp", address: ":0"},
	{name: "port 65535", addr: "65535", network: "tcp", address: ":65535"},
	{name: "leading zeros are dropped", addr: "localhost:08124", network: "tcp", address: "localhost:8124"},
	{name: "bare port with leading zeros", addr: "000080", network: "tcp", address: ":80"},
	{name: "[v6]:port", addr: "[::1]:8124", network: "tcp", address: "[::1]:8124"},
	{name: "[::]:port", addr: "[::]:0", network: "tcp", address: "[::]:0"},
	{name: "[v6%zone]:port", addr: "[fe80::1%eth0]:8124", network: "tcp", address: "[fe80::1%eth0]:8124"},
	{name: "[v6%number]:port", addr: "[fe80::1%2]:80", network: "tcp", address: "[fe80::1%2]:80"},
	{name: "[v6%vlan]:port", addr: "[fe80::1%eth0.100]:80", network: "tcp", address: "[fe80::1%eth0.100]:80"},
	{name: "IPv4-mapped IPv6", addr: "[::ffff:127.0.0.1]:80", network: "tcp", address: "[::ffff:127.0.0.1]:80"},
	{name: "absolute path", addr: "/tmp/echo.sock", network: "unix", address: "/tmp/echo.sock"},
	{name: "relative path", addr: "./echo.sock", network: "unix", address: "./echo.sock"},
	{name: "path in a subdirectory", addr: "run/echo.sock", network: "unix", address: "run/echo.sock"},
	{name: "path with a colon", addr: "/tmp/host:80", network: "unix", address: "/tmp/host:80"},
	{name: "path with brackets", addr: "/tmp/[::1]:80", network: "unix", address: "/tmp/[::1]:80"},
	{name: "path of 107 bytes", addr: longPath(107), network: "unix", address: longPath(107)},
	{name: "unix:PATH", addr: "unix:echo.sock", network: "unix", address: "echo.sock"},
	{name: "unix:absolute path", addr: "unix:/tmp/echo.sock", network: "unix", address: "/tmp/echo.sock"},
	{name: "unix:host:port is a path", addr: "unix:localhost:80", network: "unix", address: "localhost:80"},
	{name: "unix:@abstract", addr: "unix:@tcpkit", network: "unix", address: "@tcpkit"},
	{name: "unix:PATH of 107 bytes", addr: "unix:" + longPath(107), network: "unix", address: longPath(107)},
}

var parseAddrBad = []struct {
	name string
	addr string
	want string // the whole Reason
}{
	{name: "empty", addr: "", want: "empty address"},
	{name: "bare port out of range", addr: "65536", want: "port 65536 is out of range: ports are 0 to 65535"},
	{name: "port out of range", addr: "127.0.0.1:70000", want: "port 70000 is out of range: ports are 0 to 65535"},
	{name: "port past int64", addr: ":99999999999999999999", want: "port 99999999999999999999 is out of range: ports are 0 to 65535"},
	{name: "negative bare port", addr: "-1", want: `port "-1" is not a decimal number from 0 to 65535 (service names are not accepted)`},
	{name: "signed bare port", addr: "+80", want: `port "+80" is not a decimal number from 0 to 65535 (service names are not accepted)`},
	{name: "service name", addr: "localhost:http", want: `port "http" is not a decimal number from 0 to 65535 (service names are not accepted)`},
	{name: "port with a space", addr: "localhost: 80", want: `port " 80" is not a decimal number from 0 to 65535 (service names are not accepted)`},
	{name: "hex port", addr: ":0x50", want: `port "0x50" is not a decimal number from 0 to 65535 (service names are not accepted)`},
	{name: "unbracketed IPv6", addr: "::1", want: "an IPv6 address needs brackets, as in [::1]:8124"},
	{name: "unbracketed IPv6 with port", addr: "::1:8124", want: "an IPv6 address needs brackets, as in [::1]:8124"},
	{name: "unbracketed IPv6 with zone", addr: "fe80::1%eth0:80", want: "an IPv6 address needs brackets, as in [::1]:8124"},
	{name: "missing port", addr: "localhost", want: `missing port: use host:port, :port or a port number (a Unix socket path needs a '/' or the "unix:" prefix)`},
	{name: "file name without a slash", addr: "echo.sock", want: `missing port: use host:port, :port or a port number (a Unix socket path needs a '/' or the "unix:" prefix)`},
	{name: "abstract name without unix:", addr: "@tcpkit", want: `missing port: use host:port, :port or a port number (a Unix socket path needs a '/' or the "unix:" prefix)`},
	{name: "empty port", addr: "localhost:", want: "missing port after ':'"},
	{name: "colon only", addr: ":", want: "missing port after ':'"},
	{name: "empty port after brackets", addr: "[::1]:", want: "missing port after ':'"},
	{name: "brackets without port", addr: "[::1]", want: `missing ":port" after ']'`},
	{name: "no colon after brackets", addr: "[::1]8124", want: `missing ":port" after ']'`},
	{name: "unclosed bracket", addr: "[::1:8124", want: "missing ']' after the IPv6 address"},
	{name: "empty brackets", addr: "[]:80", want: "empty brackets: put an IPv6 address in them, as in [::1]:8124"},
	{name: "IPv4 in brackets", addr: "[1.2.3.4]:80", want: "brackets are only for IPv6 addresses: write 1.2.3.4:port"},
	{name: "host name in brackets", addr: "[localhost]:80", want: `"localhost" in brackets is not an IPv6 address`},
	{name: "IPv4 with zone in brackets", addr: "[1.2.3.4%eth0]:80", want: `"1.2.3.4%eth0" in brackets is not an IPv6 address`},
	{name: "empty zone", addr: "[fe80::1%]:80", want: `"fe80::1%" in brackets is not an IPv6 address`},
	{name: "bracket in zone", addr: "[fe80::1%a[b]:80", want: `IPv6 zone "a[b" is not an interface name or number`},
	{name: "space in zone", addr: "[fe80::1%a b]:80", want: `IPv6 zone "a b" is not an interface name or number`},
	{name: "bracket in host", addr: "a]b:80", want: `host "a]b" is not a valid host name or IP address`},
	{name: "space in host", addr: "exa mple:80", want: `host "exa mple" is not a valid host name or IP address`},
	{name: "leading space", addr: " :80", want: `host " " is not a valid host name or IP address`},
	{name: "non-ASCII host", addr: "bücher.example:80", want: `host "bücher.example" is not a valid host name or IP address`},
	{name: "path too long", addr: longPath(108), want: "Unix socket path is 108 bytes long; the limit is 107"},
	{name: "unix:PATH too long", addr: "unix:" + longPath(200), want: "Unix socket path is 200 bytes long; the limit is 107"},
	{name: "unix: with no path", addr: "unix:", want: `empty Unix socket path after "unix:"`},
	{name: "unix:@ with no name", addr: "unix:@", want: "empty abstract socket name after '@'"},
	{name: "newline", addr: "localhost:80\n", want: "contains a control character"},
	{name: "tab in host", addr: "local\thost:80", want: "contains a control character"},
	{name: "NUL in path", addr: "/tmp/a\x00b", want: "contains a control character"},
	{name: "NUL in unix:PATH", addr: "unix:\x00abstract", want: "contains a control character"},
	{name: "DEL", addr: "\x7f:80", want: "contains a control character"},
}

func TestParseAddr(t *testing.T) {
	for _, tt := range parseAddrGood {
		t.Run(tt.name, func(t *testing.T) {
			network, address, err := ParseAddr(tt.addr)
			if err != nil {
				t.Fatalf("ParseAddr(%q): %v", tt.addr, err)
			}
			if network != tt.network || address != tt.address {
				t.Fatalf("ParseAddr(%q) = %q, %q; want %q, %q", tt.addr, network, address, tt.network, tt.address)
			}
		})
	}
}

func TestParseAddrErrors(t *testing.T) {
	for _, tt := range parseAddrBad {
		t.Run(tt.name, func(t *testing.T) {
			network, address, err := ParseAddr(tt.addr)
			if err == nil {
				t.Fatalf("ParseAddr(%q) = %q, %q; want an error", tt.addr, network, address)
			}
			if network != "" || address != "" {
				t.Errorf("ParseAddr(%q) returned %q, %q with its error; want empty strings", tt.addr, network, address)
			}
			var ae *AddrError
			if !errors.As(err, &ae) {
				t.Fatalf("ParseAddr(%q) error %v is a %T, want *AddrError", tt.addr, err, err)
			}
			if ae.Addr != tt.addr {
				t.Errorf("AddrError.Addr = %q, want %q", ae.Addr, tt.addr)
			}
			if ae.Reason != tt.want {
				t.Errorf("ParseAddr(%q) reason:\n got  %s\n want %s", tt.addr, ae.Reason, tt.want)
			}
			wantMsg := "tcpkit: bad address " + strconv.Quote(tt.addr) + ": " + tt.want
			if err.Error() != wantMsg {
				t.Errorf("error message:\n got  %s\n want %s", err, wantMsg)
			}
		})
	}
}

// TestParseAddrNetAccepts checks that package net takes every TCP address
// ParseAddr gives back, with the same host and port.
func TestParseAddrNetAccepts(t *testing.T) {
	for _, tt := range parseAddrGood {
		if tt.network != "tcp" {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			_, address, err := ParseAddr(tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			host, port, err := net.SplitHostPort(address)
			if err != nil {
				t.Fatalf("net.SplitHostPort(%q): %v", address, err)
			}
			if _, err := strconv.ParseUint(port, 10, 16); err != nil {
				t.Errorf("port %q of %q: %v", port, address, err)
			}
			if strings.HasPrefix(tt.addr, "[") {
				if _, err := net.ResolveTCPAddr("tcp", address); err != nil {
					t.Errorf("net.ResolveTCPAddr(%q): %v", address, err)
				}
			}
			if got := net.JoinHostPort(host, port); got != address {
				t.Errorf("round trip of %q gave %q", address, got)
			}
		})
	}
}

// FuzzParseAddr checks ParseAddr's promises on arbitrary input: it never
// panics; what it accepts, package net takes and ParseAddr accepts again
// unchanged; what it rejects gets an *AddrError that names the input.
func FuzzParseAddr(f *testing.F) {
	for _, tt := range parseAddrGood {
		f.Add(tt.addr)
	}
	for _, tt := range parseAddrBad {
		f.Add(tt.addr)
	}
	for _, s := range []string{"[", "]", "[]", "[:]:1", "[::1]]:80", "[::1]:8]0", "[fe80::1%[x]:80",
		"[fe80::1%25eth0]:80", "unix:unix:x", "unix", "unix:80", "@", "/", "%", "a:b:c", "1.2.3.4:80%x",
		"\xff:80", "[\xff]:80", "localhost:-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		network, address, err := ParseAddr(addr)
		if err != nil {
			var ae *AddrError
			if !errors.As(err, &ae) {
				t.Fatalf("ParseAddr(%q) error %v is a %T, want *AddrError", addr, err, err)
			}
			if ae.Addr != addr || ae.Reason == "" {
				t.Fatalf("ParseAddr(%q) gave %#v", addr, ae)
			}
			if network != "" || address != "" {
				t.Fatalf("ParseAddr(%q) returned %q, %q with its error", addr, network, address)
			}
			return
		}
		if strings.ContainsFunc(address, isControl) {
			t.Fatalf("ParseAddr(%q) accepted control characters: %q", addr, address)
		}
		switch network {
		case "tcp":
			host, port, err := net.SplitHostPort(address)
			if err != nil {
				t.Fatalf("ParseAddr(%q) = %q, which net.SplitHostPort rejects: %v", addr, address, err)
			}
			if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || strconv.Itoa(n) != port {
				t.Fatalf("ParseAddr(%q) = %q, whose port %q is not canonical or not in 0-65535", addr, address, port)
			}
			if net.JoinHostPort(host, port) != address {
				t.Fatalf("ParseAddr(%q) = %q, which does not survive SplitHostPort+JoinHostPort", addr, address)
			}
			n2, a2, err := ParseAddr(address)
			if err != nil || n2 != network || a2 != address {
				t.Fatalf("ParseAddr(%q) = %q, but ParseAddr(%q) = %q, %q, %v", addr, address, address, n2, a2, err)
			}
		case "unix":
			if address == "" || len(address) > maxUnixPath {
				t.Fatalf("ParseAddr(%q) accepted a Unix path of %d bytes", addr, len(address))
			}
			n2, a2, err := ParseAddr("unix:" + address)
			if err != nil || n2 != network || a2 != address {
				t.Fatalf("ParseAddr(%q) = %q, but ParseAddr(\"unix:\"+it) = %q, %q, %v", addr, address, n2, a2, err)
			}
		default:
			t.Fatalf("ParseAddr(%q) returned network %q", addr, network)
		}
	})
}
