// Package activation takes the listening sockets that a service manager
// passes to a service it starts: systemd's socket activation (LISTEN_FDS,
// LISTEN_PID and LISTEN_FDNAMES, sd_listen_fds(3)), which
// systemd-socket-activate, s6 and others speak too.
//
// A .socket unit binds the address, so the service needs no privilege to
// bind a low port, and a connection made while the service (re)starts waits
// in the socket's backlog instead of being refused.
package activation

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// firstFD is the first descriptor a service manager passes (SD_LISTEN_FDS_START).
const firstFD = 3

// A Socket is a listening socket the service manager passed, with the name
// it gave it (FileDescriptorName= in the .socket unit; "unknown" if none).
type Socket struct {
	Name     string
	Listener net.Listener
}

// Sockets returns the listening sockets passed to this process, in the
// order the service manager passed them, or none if it passed none (or
// passed them to another process: LISTEN_PID names it). It takes them
// over: the environment variables are unset, so that a child process does
// not take them too, and the descriptors are marked close-on-exec. A
// descriptor that is not a listening stream socket is an error naming it.
func Sockets() ([]Socket, error) {
	pid, fds, names := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES")
	if fds == "" {
		return nil, nil
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	if pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return nil, nil // meant for another process
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("activation: LISTEN_FDS=%q is not a count of descriptors", fds)
	}
	nameList := strings.Split(names, ":")
	var out []Socket
	for i := range n {
		fd := firstFD + i
		name := "unknown"
		if i < len(nameList) && nameList[i] != "" {
			name = nameList[i]
		}
		ln, err := listener(fd, name)
		if err != nil {
			for _, s := range out {
				s.Listener.Close()
			}
			return nil, err
		}
		out = append(out, Socket{Name: name, Listener: ln})
	}
	return out, nil
}

// Listeners returns the listeners of Sockets, without their names.
func Listeners() ([]net.Listener, error) {
	socks, err := Sockets()
	lns := make([]net.Listener, len(socks))
	for i, s := range socks {
		lns[i] = s.Listener
	}
	return lns, err
}

// listener makes a net.Listener of the passed descriptor fd.
func listener(fd int, name string) (net.Listener, error) {
	if err := prepare(fd); err != nil {
		return nil, fmt.Errorf("activation: descriptor %d (%s): %w", fd, name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close() // net.FileListener keeps a duplicate
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("activation: descriptor %d (%s) is not a listening stream socket: %w", fd, name, err)
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false) // the socket file belongs to the service manager
	}
	return ln, nil
}

// ErrNoSockets is what a caller may return when it needs passed sockets
// and Sockets found none.
var ErrNoSockets = errors.New("activation: no sockets were passed (LISTEN_FDS is not set)")
