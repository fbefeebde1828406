package tcpkit

import (
	"log/slog"
	"net"
	"time"
)

// An Engine runs connections: it reads their sockets, writes their queues
// and delivers their events, by the same rules whichever engine it is.
// Server.Engine and Dialer.Engine choose one; nil is GoroutineEngine.
//
// GoroutineEngine, the default, gives each connection a goroutine of its
// own that blocks in Go's netpoller: a callback that blocks (a database
// call, a lock, a sleep) holds up only its own connection. The epoll
// engine (NewEpollEngine, Linux only) runs many connections on a few event
// loops, one per CPU by default: it costs far less memory per connection
// and fewer system calls per message, but a callback that blocks holds up
// every connection of its loop, so its callbacks must return at once (hand
// slow work to another goroutine and Write the answer from there).
type Engine interface {
	// String names the engine: "goroutine" or "epoll".
	String() string

	// newConn takes over the socket of nc, accepted by srv (nil for a
	// dialled connection), and returns its Conn, not yet started.
	newConn(nc net.Conn, cfg *ConnConfig, srv *Server, log *slog.Logger) (*Conn, error)

	// start delivers c's events, h first.
	start(c *Conn, h Handler)

	// listener returns the listener Serve accepts from: ln, or one that
	// accepts from ln's socket in the engine's own way. It reports why the
	// engine cannot serve ln, if it cannot.
	listener(ln net.Listener) (net.Listener, error)
}

// GoroutineEngine is the default Engine: a goroutine per connection.
var GoroutineEngine Engine = goroutineEngine{}

type goroutineEngine struct{}

func (goroutineEngine) String() string { return "goroutine" }

func (goroutineEngine) newConn(nc net.Conn, cfg *ConnConfig, srv *Server, log *slog.Logger) (*Conn, error) {
	return newGoroutineConn(nc, cfg, srv, log), nil
}

func (goroutineEngine) start(c *Conn, h Handler) { go c.drv.(*goroutineDriver).serve(h) }

func (goroutineEngine) listener(ln net.Listener) (net.Listener, error) { return ln, nil }

// engineOr returns e, or the default engine if e is nil.
func engineOr(e Engine) Engine {
	if e == nil {
		return GoroutineEngine
	}
	return e
}

// A driver is what an engine supplies to a connection: bytes, readiness,
// wake-ups, timers and the socket's lifetime. The event rules (the event
// order, the write queue and its marks, half-close, timers, EndWithError,
// shutdown) are written once, as methods of Conn, against this contract:
// the engine calls c.open, then c.step, feeding it what c.step asks for
// (a read, or a wait), and c.finish once c.step reports the connection
// closed; all of these on the connection's event goroutine.
//
// The goroutine engine (engine_goroutine.go) runs each connection on a
// goroutine of its own, with blocking reads in Go's netpoller.
type driver interface {
	// wake makes the event goroutine run c.step soon. It may be called
	// from any goroutine, with c.mu held.
	wake()

	// setTimer arranges for the event goroutine to run c.step, with
	// c.onTimer, at deadline; the zero time means no timer. Event
	// goroutine only.
	setTimer(deadline time.Time)

	// write makes one non-blocking write of p and reports how much the
	// kernel took: (0, nil) when the socket buffer is full. Called with
	// c.mu held, the queue empty and no flush running.
	write(p []byte) (int, error)

	// startFlush starts flushing the write queue, which has bytes in it:
	// the engine writes it out as the socket takes it, through c.flushQueue
	// or the like. Called with c.mu held and c.writing just set.
	startFlush()

	// closeWrite sends FIN (shutdown(SHUT_WR)).
	closeWrite() error

	// close closes the socket, from any goroutine; with reset, the peer
	// gets an RST (SO_LINGER 0) rather than a FIN where the socket has one.
	close(reset bool) error

	// quiesce waits, on the event goroutine once the connection is
	// closing, for the engine's other work on it (a writer) to stop.
	quiesce()

	// unread returns how many bytes the kernel holds that have not been
	// read yet (0 if it cannot tell). Any goroutine.
	unread() int

	// soError returns and clears the socket's pending error (SO_ERROR),
	// nil if there is none or no socket to ask. Any goroutine.
	soError() error

	// addrs returns the socket's local and remote addresses, from any
	// goroutine, before and after close.
	addrs() (local, remote net.Addr)

	// control calls f with the socket's file descriptor; it reports an
	// error if there is none.
	control(f func(fd uintptr)) error

	// setNoDelay, setKeepAlive and setBuffers set socket options; on a
	// socket without the option (keep-alive on a Unix socket) they do
	// nothing. A period of zero or less with enable leaves the period as
	// it is.
	setNoDelay(noDelay bool) error
	setKeepAlive(enable bool, period time.Duration) error
	setBuffers(send, receive int) error
}

// An action is what c.step asks of its engine.
type action uint8

const (
	actRead   action = iota // read from the socket, then call c.onRead
	actWait                 // nothing to read (paused): wait for a wake-up or the timer
	actClosed               // the connection is closing: call c.finish
	// actWatch is actWait once the peer has ended, but for one thing: a
	// reset the socket gets from then on must still be reported, with
	// c.onRead(nil, err). After the peer's FIN a read returns 0 whatever
	// follows, so the engine looks at the socket's state (resetAfterEnd)
	// when it becomes ready again, unless our own FIN has gone out.
	actWatch
)
