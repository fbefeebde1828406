package loadgen

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
)

// An ErrorKind says what went wrong on a connection. Each failure counts
// once, under one kind; the connection is then closed and, unless the run
// is over, made again.
type ErrorKind uint8

// The kinds of error a run tells apart.
const (
	// Corrupt: an echoed message differs from the one sent (a damaged
	// header or payload, a message of another connection, or bytes after
	// the last echo).
	Corrupt ErrorKind = iota
	// Reordered: an intact message came back before one sent earlier, or
	// came back twice.
	Reordered
	// Lost: the server closed the connection, or skipped a message, with
	// messages outstanding, at a message boundary.
	Lost
	// Short: the server closed the connection in the middle of a message:
	// the echo was truncated.
	Short
	// Greeting: the greeting did not match Config.Greeting, or was cut short.
	Greeting
	// Reset: the connection was reset by the server (ECONNRESET, EPIPE).
	Reset
	// Timeout: a dial, read or write made no progress within Timeout.
	Timeout
	// Refused: the server refused the connection (ECONNREFUSED).
	Refused
	// Dial: another dial failure, such as running out of ephemeral ports
	// (EADDRNOTAVAIL) or file descriptors (EMFILE), or no socket file.
	Dial
	// Other: any other error.
	Other

	numKinds = iota
)

// ErrorKinds lists every kind, in the order of their values.
var ErrorKinds = []ErrorKind{Corrupt, Reordered, Lost, Short, Greeting, Reset, Timeout, Refused, Dial, Other}

var kindNames = [numKinds]string{"corrupt", "reordered", "lost", "short", "greeting",
	"reset", "timeout", "refused", "dial", "other"}

// String returns the kind's name, as used in tables and JSON.
func (k ErrorKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MarshalText makes an ErrorKind a JSON object key: its name.
func (k ErrorKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a kind's name.
func (k *ErrorKind) UnmarshalText(b []byte) error {
	for i, n := range kindNames {
		if n == string(b) {
			*k = ErrorKind(i)
			return nil
		}
	}
	return fmt.Errorf("loadgen: unknown error kind %q", b)
}

// ErrorCounts counts errors by kind. Kinds with no errors are absent.
type ErrorCounts map[ErrorKind]int64

// Total returns the number of errors of every kind.
func (e ErrorCounts) Total() int64 {
	var n int64
	for _, c := range e {
		n += c
	}
	return n
}

// String lists the counts in kind order, as "corrupt 3, reset 1", or
// returns "none".
func (e ErrorCounts) String() string {
	var parts []string
	for _, k := range ErrorKinds {
		if n := e[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", k, count(n)))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// failure is an error found on a connection, with its kind.
type failure struct {
	kind ErrorKind
	err  error
}

func (f *failure) Error() string { return f.kind.String() + ": " + f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// failf returns a failure of kind k with a formatted message.
func failf(k ErrorKind, format string, args ...any) *failure {
	return &failure{kind: k, err: fmt.Errorf(format, args...)}
}

// classify returns the failure for err, an error from a socket operation.
// dialing says the error came from a dial.
func classify(err error, dialing bool) *failure {
	var f *failure
	if errors.As(err, &f) {
		return f
	}
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return &failure{Timeout, err}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &failure{Refused, err}
	case dialing:
		return &failure{Dial, err}
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		return &failure{Reset, err}
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return &failure{Lost, err}
	}
	return &failure{Other, err}
}
