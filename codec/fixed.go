package codec

import (
	"bufio"
	"fmt"
)

// Fixed returns a split function for frames of exactly n bytes, with no
// header and no delimiter; each message is one frame. Input that ends
// inside a frame is an error that wraps io.ErrUnexpectedEOF. A Framer for
// it takes n as its max.
//
// Fixed panics if n is less than 1.
func Fixed(n int) bufio.SplitFunc {
	if n < 1 {
		panic("codec: Fixed: frame size must be at least 1")
	}
	return func(data []byte, atEOF bool) (advance int, token []byte, err error) {
		switch {
		case len(data) >= n:
			return n, data[:n:n], nil
		case atEOF && len(data) > 0:
			return 0, nil, truncated(fmt.Sprintf("a %d-byte frame", n), len(data))
		}
		return 0, nil, nil
	}
}

// FixedEncoder returns the Encoder for Fixed(n): it appends the message,
// which must be exactly n bytes long. A longer message is refused with an
// error that wraps ErrFrameTooLong, a shorter one with ErrMalformed; pad
// short messages yourself if the protocol says how.
//
// FixedEncoder panics if n is less than 1.
func FixedEncoder(n int) Encoder {
	if n < 1 {
		panic("codec: FixedEncoder: frame size must be at least 1")
	}
	return func(dst, msg []byte) ([]byte, error) {
		switch {
		case len(msg) > n:
			return dst, tooLong("a message of %d bytes in %d-byte frames", len(msg), n)
		case len(msg) < n:
			return dst, malformed("a message of %d bytes in %d-byte frames", len(msg), n)
		}
		return append(dst, msg...), nil
	}
}
