package tcpkit

import (
	"errors"
	"fmt"
	"net"
)

// Errors reported by tcpkit. Syscall failures are not listed here: they come
// back as *net.OpError values, so errors.Is(err, net.ErrClosed),
// errors.Is(err, syscall.ECONNRESET) and net.Error's Timeout work as they do
// with the standard library.
var (
	// ErrServerClosed is returned by Server.Serve and ListenAndServe after
	// Close or Shutdown. The close error of every connection that Shutdown
	// cut short wraps it: one still open when Shutdown's context ended
	// (reset, so that its peer knows), and one whose peer kept sending
	// after Shutdown had ended it, so that Pipe could not pass its input
	// on (see Pipe). errors.Is(err, ErrServerClosed) tells those apart
	// from connections that finished.
	ErrServerClosed = errors.New("tcpkit: server closed")

	// ErrSlowConsumer closes a connection whose write queue would go over
	// MaxBuffered: its peer has stopped reading. The error that reaches
	// OnError and OnClose wraps it with the sizes involved.
	ErrSlowConsumer = errors.New("tcpkit: slow consumer")

	// ErrIdleTimeout closes a connection that had no traffic in either
	// direction for ConnConfig.IdleTimeout. It is a net.Error whose Timeout
	// method reports true.
	ErrIdleTimeout error = &timeoutError{"tcpkit: idle timeout"}

	// ErrWriteAfterEnd is returned by Write after End. The connection stays
	// as it is: the data already queued is still sent. After Shutdown has
	// ended a quiet connection, Write returns an error that wraps both
	// ErrWriteAfterEnd and ErrServerClosed.
	ErrWriteAfterEnd = errors.New("tcpkit: write after end")

	// errShutdownEnded is what Write returns once Server.Shutdown has ended
	// a quiet connection.
	errShutdownEnded error = &causeError{"tcpkit: write after end: the server is shutting down",
		[]error{ErrWriteAfterEnd, ErrServerClosed}}

	// errShutdownClosed is what Write returns once a connection that
	// Shutdown ended has closed: a late reply from another goroutine.
	errShutdownClosed error = &causeError{"use of closed network connection: the server shut it down",
		[]error{net.ErrClosed, ErrServerClosed}}

	// errShutdownHandshake is the close error of a connection that
	// Shutdown found idle before its PROXY header or TLS handshake was
	// done: it is reset.
	errShutdownHandshake error = &causeError{"tcpkit: server closed during the connection's PROXY header or TLS handshake; reset",
		[]error{ErrServerClosed}}

	// errShutdownCut is the close error of a connection still open when
	// Shutdown's context ended.
	errShutdownCut error = &causeError{"tcpkit: server closed: the shutdown grace period ran out before the connection finished; reset",
		[]error{ErrServerClosed}}
)

// A causeError is an error with its own message that errors.Is matches
// against each of its causes.
type causeError struct {
	msg    string
	causes []error
}

func (e *causeError) Error() string   { return e.msg }
func (e *causeError) Unwrap() []error { return e.causes }

// A PipeError is the close error of a Pipe source whose input could not be
// written to the destination: the destination had ended (Write returned
// ErrWriteAfterEnd) or was closing. Pipe resets the source rather than
// drop input its peer was told had arrived. Err is the destination's
// Write error, which errors.Is and errors.As see through.
type PipeError struct {
	Err error
}

func (e *PipeError) Error() string {
	return "tcpkit: pipe: input could not be passed on, connection reset: " + e.Err.Error()
}

func (e *PipeError) Unwrap() error { return e.Err }

// An AddrError reports an address that tcpkit's address grammar does not
// accept. See ParseAddr for the grammar.
type AddrError struct {
	Addr   string // the address as given
	Reason string // what is wrong with it
}

func (e *AddrError) Error() string {
	return fmt.Sprintf("tcpkit: bad address %q: %s", e.Addr, e.Reason)
}

// explained is a syscall error with a longer, human explanation. It unwraps to
// the errno so errors.Is(err, syscall.EADDRINUSE) keeps working.
type explained struct {
	err error
	msg string
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// Timeout and Temporary answer as the errno would, so that net.Error
// checks see the same as with the bare error.
func (e *explained) Timeout() bool {
	t, ok := e.err.(interface{ Timeout() bool })
	return ok && t.Timeout()
}

func (e *explained) Temporary() bool {
	t, ok := e.err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// timeoutError is a sentinel that is also a net.Error timeout.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string   { return e.msg }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

// PanicError is the close error of a connection whose callback panicked.
// The server recovers the panic so that other connections carry on.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the stack of the goroutine that panicked
}

func (e *PanicError) Error() string { return fmt.Sprintf("tcpkit: panic in callback: %v", e.Value) }

// Unwrap returns the panic value if it is an error, so that errors.Is and
// errors.As see through a panic(err).
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}
