package codec

import (
	"errors"
	"fmt"
	"io"
)

// Errors reported by the decoders, the encoders and the Framer. The errors
// returned wrap these with the sizes involved; test for them with
// errors.Is. A frame cut short by the end of input wraps io.ErrUnexpectedEOF.
var (
	// ErrFrameTooLong reports a frame over the maximum size: a line or a
	// delimited frame whose end has not come within max bytes, a length
	// header that announces more than max bytes, or a message that an
	// encoder cannot fit in max bytes or in its length header.
	ErrFrameTooLong = errors.New("codec: frame too long")

	// ErrMalformed reports a frame that breaks its codec's format, such as
	// a length header whose value, adjusted, is negative; or a message that
	// an encoder cannot frame, such as a line that contains LF.
	ErrMalformed = errors.New("codec: malformed frame")
)

// errEndCalled is returned by Feed after End.
var errEndCalled = errors.New("codec: Framer.Feed called after End")

// errNoProgress stops a split that returns tokens without consuming input.
var errNoProgress = errors.New("codec: split returned 100 empty tokens without progressing")

// maxEmptyTokens is how many tokens in a row a split may return without
// advancing before the Framer gives up, as bufio.Scanner does.
const maxEmptyTokens = 100

// tooLong returns an ErrFrameTooLong with a description of the frame.
func tooLong(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrFrameTooLong}, args...)...)
}

// malformed returns an ErrMalformed with a description of the frame.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// truncated returns the error for input that ends inside what, after
// have bytes of it.
func truncated(what string, have int) error {
	return fmt.Errorf("codec: input ends inside %s, after %d of its bytes: %w", what, have, io.ErrUnexpectedEOF)
}
