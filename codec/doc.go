// Package codec frames the byte stream of a connection into messages.
//
// TCP keeps no message boundaries: one Write by the peer may arrive as
// several data events, and several Writes as one. A protocol therefore
// frames its messages, and this package provides the usual framings in both
// directions:
//
//	framing            decode (split)              encode
//	lines              Lines(max)                  LinesEncoder(max)
//	a delimiter        Delimited(delim, max)       DelimitedEncoder(delim, max)
//	a length prefix    LengthPrefixed(lp, max)     LengthPrefixedEncoder(lp, max)
//	fixed-size frames  Fixed(n)                    FixedEncoder(n)
//
// # Splits
//
// A decoder is a [bufio.SplitFunc], so the same value works in a blocking
// [bufio.Scanner] and, through a [Framer], in tcpkit's event flow, where
// bytes arrive in data events and nothing may block:
//
//	sc := bufio.NewScanner(r)
//	sc.Buffer(nil, 4096)
//	sc.Split(codec.Lines(4096))
//
//	f := codec.NewFramer(codec.Lines(4096), 4096, func(msg []byte) { ... })
//	f.Attach(c) // c is a *tcpkit.Conn
//
// # Sizes
//
// Every size limit in this package bounds a whole frame: the message plus
// its framing (line end, delimiter or length header). Lines(4096) accepts a
// line of 4095 bytes and its LF, or 4094 bytes and CRLF. Give a Framer the
// same max as its split, and a bufio.Scanner the same max in Buffer. A
// decoder rejects a frame as soon as it can tell the frame is over the
// limit, before buffering it: a length prefix that announces 4 GiB is an
// error the moment its header is in, and a line is one when max bytes have
// arrived without its LF. No decoder allocates a size it was told.
//
// # Errors
//
// A frame over the limit is an error that wraps [ErrFrameTooLong] and
// gives the sizes; a frame that breaks the format, such as a length header
// smaller than the header itself, wraps [ErrMalformed]; input that ends in
// the middle of a frame wraps [io.ErrUnexpectedEOF]. Lines and Delimited
// follow [bufio.ScanLines] at the end of input: a last line without its
// line end is still a message. Encoders refuse, with the same errors, a
// message that would not decode back to itself: one over the limit, one
// that contains the delimiter, one that its length header cannot express.
//
// # Framer and connections
//
// A [Framer] turns data events into one call per message, however the bytes
// were chunked. Frames that arrive whole within one data event are passed
// on as slices of the event's bytes, without copying; only a partial frame
// is copied, into a buffer the Framer keeps and reuses, which never holds
// more than max bytes. Decoding allocates nothing per frame. A Framer keeps
// its state in itself, starts no goroutine and never blocks, so it works
// under any tcpkit engine.
//
// [Framer.Attach] wires a Framer to a connection: a framing error closes
// that connection only, with the error as its close error, after an
// optional reply to the peer (see [Framer.Reply]).
package codec
