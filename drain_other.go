//go:build !linux

package tcpkit

import "net"

// drainAccepts does nothing here: closing a listener resets the
// connections in its queue.
func drainAccepts(ln net.Listener, serve func(net.Conn)) {}
