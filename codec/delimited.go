package codec

import (
	"bufio"
	"bytes"
)

// Delimited returns a split function for messages ended by delim, which
// may be several bytes long (for example "\r\n" or "\x00"). Each message is
// the bytes before the delimiter; nothing is dropped. A frame, delimiter
// included, is at most max bytes: if max bytes arrive without a delimiter,
// the split returns an error that wraps ErrFrameTooLong. At the end of
// input, final bytes without a delimiter are a message as well (shorter
// than max), as with bufio.ScanLines.
//
// Delimited panics if delim is empty or longer than max. It keeps its own
// copy of delim.
func Delimited(delim []byte, max int) bufio.SplitFunc {
	delim = checkDelim("Delimited", delim, max)
	return func(data []byte, atEOF bool) (advance int, token []byte, err error) {
		if i := bytes.Index(data[:min(len(data), max)], delim); i >= 0 {
			return i + len(delim), data[:i], nil
		}
		if len(data) >= max {
			return 0, nil, tooLong("no delimiter %q in the first %d bytes (max %d)", delim, max, max)
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	}
}

// DelimitedEncoder returns the Encoder for Delimited(delim, max): it
// appends the message and delim. It refuses a message that would not come
// back whole, because the delimiter would first be found inside it or
// across its end (ErrMalformed), and one whose frame would be over max
// bytes (ErrFrameTooLong).
//
// DelimitedEncoder panics if delim is empty or longer than max. It keeps
// its own copy of delim.
func DelimitedEncoder(delim []byte, max int) Encoder {
	delim = checkDelim("DelimitedEncoder", delim, max)
	return func(dst, msg []byte) ([]byte, error) {
		if len(msg)+len(delim) > max {
			return dst, tooLong("a message of %d bytes and its %d-byte delimiter is over max %d", len(msg), len(delim), max)
		}
		start := len(dst)
		dst = append(append(dst, msg...), delim...)
		if i := bytes.Index(dst[start:], delim); i != len(msg) {
			return dst[:start], malformed("the delimiter %q would be found at offset %d of a %d-byte message", delim, i, len(msg))
		}
		return dst, nil
	}
}

// checkDelim validates the arguments of Delimited and DelimitedEncoder and
// returns a copy of delim.
func checkDelim(fn string, delim []byte, max int) []byte {
	switch {
	case len(delim) == 0:
		panic("codec: " + fn + ": empty delimiter")
	case len(delim) > max:
		panic("codec: " + fn + ": delimiter longer than max")
	}
	return bytes.Clone(delim)
}
