package codec

import (
	"bufio"
	"errors"
	"time"
)

// minStep is the first number of bytes the Framer copies to complete a
// frame carried over; it doubles until the frame is complete.
const minStep = 512

// A Framer turns a stream of bytes, fed to it in chunks of any size, into
// messages: it calls onMessage once per frame that its split function
// finds, in order, however the frames were cut across the chunks. It is the
// event-driven counterpart of bufio.Scanner, for tcpkit's data events.
//
// Frames that lie whole within one chunk are passed on as slices of that
// chunk, without copying. A frame cut across chunks is copied into a buffer
// that the Framer keeps and reuses; that buffer never holds more than max
// bytes. So a Framer allocates nothing per frame once warm.
//
// A Framer keeps all its state in itself: it starts no goroutine and never
// blocks. It is not safe for concurrent use: feed it from one connection's
// callbacks, which tcpkit runs one at a time. onMessage must not call the
// Framer's methods.
type Framer struct {
	// Reply, if set, is called by Attach with a framing error, and what it
	// returns is sent to the peer before the connection closes, for
	// example an error line. The connection then ends its side, discards
	// what the peer still sends, and closes with the framing error once
	// the peer ends too or Linger has passed. If Reply is nil, a framing
	// error closes the connection at once.
	Reply func(err error) []byte

	// Linger bounds how long, after a Reply, the connection waits for the
	// peer to end before it closes with the framing error. Zero means
	// tcpkit.DefaultEndTimeout.
	Linger time.Duration

	split     bufio.SplitFunc
	max       int
	onMessage func(msg []byte)

	buf   []byte // a partial frame carried over to the next Feed; len ≤ max
	empty int    // tokens in a row that did not advance
	err   error  // the framing error, once there is one
	done  bool   // the split returned bufio.ErrFinalToken
	ended bool   // End was called
}

// NewFramer returns a Framer that splits its input with split and calls
// onMessage with each message. msg is valid only until onMessage returns:
// it points into the data being fed or into the Framer's buffer. Copy what
// you keep, and never hand msg itself to another goroutine.
//
// max bounds a frame, framing included, as the max of the split functions
// of this package does; pass the same value as to the split. Any frame over
// max fails with an error that wraps ErrFrameTooLong, however the input is
// chunked, so that a split with no limit of its own, such as
// bufio.ScanLines, is bounded too.
//
// NewFramer panics if split or onMessage is nil or max is less than 1.
func NewFramer(split bufio.SplitFunc, max int, onMessage func(msg []byte)) *Framer {
	switch {
	case split == nil:
		panic("codec: NewFramer: nil split")
	case onMessage == nil:
		panic("codec: NewFramer: nil onMessage")
	case max < 1:
		panic("codec: NewFramer: max must be at least 1")
	}
	return &Framer{split: split, max: max, onMessage: onMessage}
}

// Feed splits p, with what is left of earlier chunks, into frames, and
// calls onMessage for each complete one. The bytes of an incomplete frame
// at the end of p are kept for the next Feed (or End). p is not retained:
// Feed may be passed the slice of a data event, which tcpkit reuses.
//
// Feed returns the first framing error: a frame over max, a malformed
// frame, or an error from the split. The messages before the bad frame
// have been delivered; the Framer is then spent, and every later Feed or
// End returns the same error. Once the split has returned
// bufio.ErrFinalToken, Feed discards its input and returns nil.
func (f *Framer) Feed(p []byte) error {
	switch {
	case f.err != nil:
		return f.err
	case f.ended:
		return errEndCalled
	case f.done:
		return nil
	}
	// First complete the frame carried over from earlier chunks. Bytes of
	// p are copied in steps that double from minStep, so that completing a
	// frame copies at most about twice what it needs (and never more than
	// max in all), while a split that rescans its input, as Lines does,
	// scans each byte a bounded number of times.
	step := minStep
	for len(f.buf) > 0 && len(p) > 0 {
		old := len(f.buf)
		n := min(len(p), f.max-old, step)
		step *= 2
		f.buf = f.grow(f.buf, n)
		f.buf = append(f.buf, p[:n]...)
		adv, tok, err := f.split(f.buf, false)
		if err != nil || adv < 0 || adv > len(f.buf) {
			return f.splitError(err, tok, adv)
		}
		if adv == 0 && tok == nil {
			if len(f.buf) >= f.max {
				return f.fail(tooLong("no complete frame in %d bytes (max %d)", len(f.buf), f.max))
			}
			p = p[n:] // now part of the carry-over
			continue
		}
		if err := f.deliver(tok, adv); err != nil {
			return err
		}
		if adv >= old {
			// The frame ended in p: carry on from there, without copying.
			p = p[adv-old:]
			f.buf = f.buf[:0]
			break
		}
		// The split found a frame within the old carry-over: take it out,
		// give back the bytes of p, and try again.
		f.buf = f.buf[:copy(f.buf, f.buf[adv:old])]
	}
	for len(p) > 0 {
		adv, tok, err := f.split(p, false)
		if err != nil || adv < 0 || adv > len(p) {
			return f.splitError(err, tok, adv)
		}
		if adv == 0 && tok == nil {
			break
		}
		if adv > f.max {
			return f.fail(tooLong("a frame of %d bytes (max %d)", adv, f.max))
		}
		if err := f.deliver(tok, adv); err != nil {
			return err
		}
		p = p[adv:]
	}
	if len(p) >= f.max {
		return f.fail(tooLong("no complete frame in %d bytes (max %d)", len(p), f.max))
	}
	if len(p) > 0 {
		f.buf = append(f.grow(f.buf, len(p)), p...)
	}
	return nil
}

// End tells the Framer that the input has ended, as at the peer's FIN: the
// split sees what is left with atEOF set, so a last line without a line end
// is delivered, while a frame cut short is an error that wraps
// io.ErrUnexpectedEOF. End returns the Framer's framing error, if any. The
// Framer takes no more input afterwards.
func (f *Framer) End() error {
	if f.err != nil || f.ended || f.done {
		f.ended = true
		return f.err
	}
	f.ended = true
	data := f.buf
	for {
		adv, tok, err := f.split(data, true)
		if err != nil || adv < 0 || adv > len(data) {
			return f.splitError(err, tok, adv)
		}
		if adv == 0 && tok == nil {
			break
		}
		if err := f.deliver(tok, adv); err != nil {
			return err
		}
		data = data[adv:]
	}
	f.buf = nil
	if len(data) > 0 {
		return f.fail(truncated("a frame", len(data)))
	}
	return nil
}

// Buffered returns the number of bytes of a partial frame that the Framer
// holds, waiting for the rest: never more than max.
func (f *Framer) Buffered() int { return len(f.buf) }

// Err returns the framing error, if there has been one.
func (f *Framer) Err() error { return f.err }

// deliver passes a token to onMessage, and stops a split that returns
// tokens without advancing.
func (f *Framer) deliver(tok []byte, adv int) error {
	if adv > 0 {
		f.empty = 0
	} else if f.empty++; f.empty > maxEmptyTokens {
		return f.fail(errNoProgress)
	}
	if tok != nil {
		f.onMessage(tok)
	}
	return nil
}

// splitError handles a split's error, or an advance outside its data: a
// final token ends the input, anything else fails the Framer.
func (f *Framer) splitError(err error, tok []byte, adv int) error {
	switch {
	case errors.Is(err, bufio.ErrFinalToken):
		f.done = true
		f.buf = nil
		if tok != nil {
			f.onMessage(tok)
		}
		return nil
	case err != nil:
		return f.fail(err)
	case adv < 0:
		return f.fail(bufio.ErrNegativeAdvance)
	}
	return f.fail(bufio.ErrAdvanceTooFar)
}

// fail records err as the framing error and drops the buffer.
func (f *Framer) fail(err error) error {
	f.err = err
	f.buf = nil
	return err
}

// grow returns buf with room for n more bytes, never more room in all
// than max, so that a buffer that has grown stays within bounds.
func (f *Framer) grow(buf []byte, n int) []byte {
	if cap(buf)-len(buf) >= n {
		return buf
	}
	c := min(f.max, max(2*cap(buf), len(buf)+n, 256))
	nb := make([]byte, len(buf), c)
	copy(nb, buf)
	return nb
}
