package codec

import (
	"bufio"
	"bytes"
)

// Lines returns a split function for text lines: each message is a line
// without its line end. A line ends in LF; a CR just before the LF is
// dropped too, so that CRLF lines, as telnet sends them, read as LF lines.
// A line, line end included, is at most max bytes: if max bytes arrive
// without an LF, the split returns an error that wraps ErrFrameTooLong,
// without waiting for more. At the end of input, a final line without an
// LF is a message as well (shorter than max), as with bufio.ScanLines.
//
// Lines panics if max is less than 1.
func Lines(max int) bufio.SplitFunc {
	if max < 1 {
		panic("codec: Lines: max must be at least 1")
	}
	return func(data []byte, atEOF bool) (advance int, token []byte, err error) {
		if i := bytes.IndexByte(data[:min(len(data), max)], '\n'); i >= 0 {
			return i + 1, dropCR(data[:i]), nil
		}
		if len(data) >= max {
			return 0, nil, tooLong("no line end in the first %d bytes (max %d)", max, max)
		}
		if atEOF && len(data) > 0 {
			return len(data), dropCR(data), nil
		}
		return 0, nil, nil
	}
}

// dropCR drops a final CR from line.
func dropCR(line []byte) []byte {
	if len(line) > 0 && line[len(line)-1] == '\r' {
		return line[:len(line)-1]
	}
	return line
}

// LinesEncoder returns the Encoder for Lines(max): it appends the message
// and an LF. A message that ends in CR gets CRLF instead, because Lines
// drops one CR before the LF. It refuses a message that contains LF
// (ErrMalformed) and one whose frame would be over max bytes
// (ErrFrameTooLong).
//
// LinesEncoder panics if max is less than 1.
func LinesEncoder(max int) Encoder {
	if max < 1 {
		panic("codec: LinesEncoder: max must be at least 1")
	}
	return func(dst, msg []byte) ([]byte, error) {
		end := "\n"
		if len(msg) > 0 && msg[len(msg)-1] == '\r' {
			end = "\r\n"
		}
		if len(msg)+len(end) > max {
			return dst, tooLong("a line of %d bytes and its line end is over max %d", len(msg), max)
		}
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			return dst, malformed("the line contains an LF at offset %d", i)
		}
		return append(append(dst, msg...), end...), nil
	}
}
