package codec

import "github.com/tcpkit/tcpkit"

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
//   - Otherwise the reply is written and c is ended with
//     tcpkit.Conn.EndWithError: the queue is flushed, then FIN; what the
//     peer still sends is dropped unseen; and c closes with the error once
//     the peer ends too, or after f.Linger. Closing later rather than at
//     once lets the reply arrive: closing a socket that still has unread
//     input makes the kernel send a reset, and the peer may then lose the
//     reply.
//
// f.Err reports the framing error either way.
func (f *Framer) Attach(c *tcpkit.Conn) {
	c.OnData(func(p []byte) {
		if f.err != nil {
			return // rejected: the connection is on its way out
		}
		if err := f.Feed(p); err != nil {
			f.reject(c, err)
		}
	})
	c.OnEnd(func() {
		if f.err != nil {
			return
		}
		if err := f.End(); err != nil {
			f.reject(c, err)
		}
	})
}

// reject closes c for the framing error err, after f.Reply if set.
func (f *Framer) reject(c *tcpkit.Conn, err error) {
	if f.Reply == nil {
		c.CloseWithError(err)
		return
	}
	if msg := f.Reply(err); len(msg) > 0 {
		c.Write(msg)
	}
	c.EndWithError(err, f.Linger)
}
