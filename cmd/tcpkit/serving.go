package main

import (
	"net"

	"github.com/tcpkit/tcpkit"
)

// serving is a serving command's Serve loops, one per listener.
type serving struct {
	srv     *tcpkit.Server
	lns     []net.Listener
	bound   []string   // the listeners' addresses, in tcpkit's grammar
	served  chan error // each Serve loop's result
	pending int        // Serve loops not yet returned
}

// startServing starts a Serve loop on each of lns.
func startServing(srv *tcpkit.Server, lns []net.Listener) *serving {
	sv := &serving{srv: srv, lns: lns, bound: make([]string, len(lns)), served: make(chan error, len(lns)), pending: len(lns)}
	for i, ln := range lns {
		sv.bound[i] = addrString(ln.Addr())
		go func() { sv.served <- srv.Serve(ln) }()
	}
	return sv
}

// failed takes a Serve loop's error, received from served.
func (sv *serving) failed() { sv.pending-- }

// stop closes the listeners, which also serves the connections already in
// their accept queues. They are closed here too, in case a Serve loop has
// not started yet.
func (sv *serving) stop() {
	sv.srv.Close()
	for _, ln := range sv.lns {
		ln.Close()
	}
}

// wait waits for the Serve loops that have not returned.
func (sv *serving) wait() {
	for ; sv.pending > 0; sv.pending-- {
		<-sv.served
	}
}

// abort stops and waits: for a failure after the loops started.
func (sv *serving) abort() {
	sv.stop()
	sv.wait()
}
