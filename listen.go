package tcpkit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// A ListenConfig holds the options for Listen. Its zero value is ready to
// use.
type ListenConfig struct {
	// SocketMode, if non-zero, is applied with chmod to a Unix socket file
	// once it is bound, for example 0o660 to let a group connect. The
	// default leaves the mode that the process umask gives (Node's
	// readableAll and writableAll options do the same job).
	SocketMode fs.FileMode

	// ReusePort sets SO_REUSEPORT on a TCP socket before it binds, so that
	// several processes (or listeners) may bind the same address and port,
	// the kernel spreading new connections among them. Each must set it.
	// Unix sockets ignore it. Not available on Windows.
	ReusePort bool

	// Backlog is not settable: Go takes the kernel's somaxconn, which is
	// what Node's 511 is meant to approximate.
}

// Listen announces on addr, an address in the grammar of ParseAddr, with the
// zero ListenConfig.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc ListenConfig
	return lc.Listen(ctx, addr)
}

// Listen announces on addr, an address in the grammar of ParseAddr.
//
// For a TCP address it behaves as net.ListenConfig.Listen with keep-alive
// left to the Server (each accepted connection gets the Server's settings).
//
// For a Unix socket path, Listen differs from Node and from a bare net.Listen:
//   - If a live socket is at the path (a connect to it succeeds, or fails
//     because the server's backlog is full), Listen fails with an error
//     that wraps syscall.EADDRINUSE and says a server is there; the file
//     and the server behind it are left untouched.
//   - If a stale socket file is at the path (a connect to it is refused, as
//     after a crash), the file is removed and the path reused.
//   - If something other than a socket is at the path, Listen fails with an
//     error that wraps syscall.EADDRINUSE and leaves the file untouched.
//
// Probing the socket makes, and at once closes, one connection to the
// server behind it, if there is one. Closing the returned listener removes
// the socket file. A path that starts with '@' names an abstract socket,
// which has no file: no stale one can be left behind, and SocketMode does
// not apply.
func (lc *ListenConfig) Listen(ctx context.Context, addr string) (net.Listener, error) {
	network, address, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	nlc := net.ListenConfig{KeepAlive: -1}
	if network == "tcp" {
		if lc.ReusePort {
			nlc.Control = reusePort
		}
		return nlc.Listen(ctx, network, address)
	}
	abstract := address[0] == '@'
	ln, err := nlc.Listen(ctx, network, address)
	switch {
	case err == nil || !errors.Is(err, syscall.EADDRINUSE):
	case abstract:
		err = unixListenError(address, syscall.EADDRINUSE,
			"address already in use: another socket is bound to this abstract name")
	default:
		if err = clearStaleSocket(ctx, address); err == nil {
			ln, err = nlc.Listen(ctx, network, address)
		}
	}
	if err != nil {
		return nil, err
	}
	if lc.SocketMode != 0 && !abstract {
		if err := os.Chmod(address, lc.SocketMode); err != nil {
			ln.Close()
			return nil, &net.OpError{Op: "listen", Net: "unix", Addr: ln.Addr(), Err: err}
		}
	}
	return ln, nil
}

// clearStaleSocket removes path if it is a Unix socket that nothing accepts
// on. In every other case it leaves the file alone and returns an error
// that wraps syscall.EADDRINUSE and says what is at the path.
func clearStaleSocket(ctx context.Context, path string) error {
	inUse := func(msg string) error {
		return unixListenError(path, syscall.EADDRINUSE, "address already in use: "+msg)
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // gone in the meantime: try again
	case err != nil:
		return inUse(fmt.Sprintf("cannot examine the file there: %v", err))
	case fi.Mode()&fs.ModeSocket == 0:
		return inUse(fmt.Sprintf("the file there is a %s, not a socket; it was left untouched", describeMode(fi.Mode())))
	}
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "unix", path)
	switch {
	case err == nil:
		c.Close()
		return inUse("a server is accepting connections on this socket; it was left untouched")
	case errors.Is(err, syscall.EAGAIN):
		// Linux refuses a Unix connect with EAGAIN when the listen
		// backlog is full: a live server that is slow to accept.
		return inUse("a server is listening on this socket (its backlog is full); it was left untouched")
	case !errors.Is(err, syscall.ECONNREFUSED):
		return inUse(fmt.Sprintf("cannot tell whether the socket is stale, probing it failed: %v", err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return unixListenError(path, syscall.EADDRINUSE,
			fmt.Sprintf("address already in use by a stale socket that cannot be removed: %v", err))
	}
	return nil
}

// unixListenError is the error of a failed Listen on a Unix socket: errno,
// with msg as its text.
func unixListenError(path string, errno syscall.Errno, msg string) error {
	return &net.OpError{Op: "listen", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"},
		Err: &explained{err: errno, msg: msg}}
}

// describeMode names the kind of file m is the mode of.
func describeMode(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "file of mode " + m.String()
}
