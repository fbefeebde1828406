package codec

import (
	"time"

	"github.com/tcpkit/tcpkit"
)

// Attach makes f the decoder of c's input. It adds an OnData listener that
// feeds f, and an OnEnd listener that ends f when the peer has sent FIN, so
// that a last line without a line end is still delivered. Call it from c's
// Handler, before any data arrives.
//
// A framing error closes c, and only c, with the error as its close error
// (for OnError, OnClose and c.Err), which wraps ErrFrameTooLong,
// ErrMalformed or io.ErrUnexpectedEOF:
//
//   - If f.Reply is nil, c is closed at once, dropping anything queued, as
//     CloseWithError does.
//   - Otherwise the reply is written, then c ends its side (End: the queue
//     is flushed, then FIN), and input is discarded until the peer ends
//     too, at which point c closes with the error; a peer that does not
//     end within f.Linger is cut off with it. Closing later rather than at
//     once lets the reply arrive: closing a socket that still has unread
//     input makes the kernel send a reset, and the peer may then lose the
//     reply. If the peer ends before the reply has left the queue, c closes
//     cleanly, with a nil error, once it is flushed; f.Err still reports
//     the framing error.
//
// f.Err reports the framing error either way.
func (f *Framer) Attach(c *tcpkit.Conn) {
	c.OnData(func(p []byte) {
		if f.err != nil {
			return // rejected: discard whatever the peer still sends
		}
		if err := f.Feed(p); err != nil {
			f.reject(c, err, false)
		}
	})
	c.OnEnd(func() {
		if f.err != nil {
			// The peer has read the reply, or given up: close with the
			// error if the reply has reached the kernel; closing now loses
			// nothing, as there is no unread input left.
			if c.Buffered() == 0 {
				c.CloseWithError(f.err)
			}
			return
		}
		if err := f.End(); err != nil {
			f.reject(c, err, true)
		}
	})
}

// reject closes c for the framing error err, after f.Reply if set. eof
// tells whether the peer has already ended.
func (f *Framer) reject(c *tcpkit.Conn, err error, eof bool) {
	if f.Reply == nil {
		c.CloseWithError(err)
		return
	}
	if msg := f.Reply(err); len(msg) > 0 {
		c.Write(msg)
	}
	c.End()
	if eof && c.Buffered() == 0 {
		c.CloseWithError(err)
		return
	}
	linger := f.Linger
	if linger <= 0 {
		linger = DefaultLinger
	}
	t := time.AfterFunc(linger, func() { c.CloseWithError(err) })
	c.OnClose(func(error) { t.Stop() })
}
