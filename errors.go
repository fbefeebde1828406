package tcpkit

import (
	"errors"
	"fmt"
)

// Errors reported by tcpkit. Syscall failures are not listed here: they come
// back as *net.OpError values, so errors.Is(err, net.ErrClosed),
// errors.Is(err, syscall.ECONNRESET) and net.Error's Timeout work as they do
// with the standard library.
var (
	// ErrServerClosed is returned by Server.Serve and ListenAndServe after
	// Close or Shutdown, and is the close error of connections that
	// Shutdown had to close when its context ended.
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
	// as it is: the data already queued is still sent.
	ErrWriteAfterEnd = errors.New("tcpkit: write after end")
)

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
