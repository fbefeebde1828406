package tcpkit

import "sync/atomic"

// Pipe sends everything src receives to dst, with backpressure, as Node's
// src.pipe(dst): src is paused while dst's write queue is over HighWater and
// resumed on dst's drain event, so memory stays bounded however slowly dst's
// peer reads. When src ends, dst is ended once its queue is flushed.
//
// Pipe never drops input silently. If dst's Write fails, because dst has
// ended (ErrWriteAfterEnd; with Pipe(c, c), the peer kept sending after c
// ended, say by Server.Shutdown) or is closing, src is reset with a
// *PipeError wrapping that error as its close error: the peer sees a reset
// (ECONNRESET, or EPIPE if it had read our FIN) instead of a clean end,
// and so learns that its data was not processed.
//
// Pipe(c, c) is the seed's echo server. Pipe adds listeners (OnData, OnEnd
// on src; OnDrain on dst), leaving any others in place. Call it from src's
// Handler so that no data is missed, or with src paused. When src and dst
// are different connections, closing one does not close the other; add
// OnError or OnClose listeners for that. A proxy that pipes both ways
// should set ConnConfig.AllowHalfOpen on both connections, as in Node:
// otherwise the first side to end ends its connection while the other
// direction still has data in flight.
func Pipe(dst, src *Conn) {
	src.OnData(func(p []byte) {
		_, over, drains, err := dst.write(p)
		if err != nil {
			src.resetWith(&PipeError{Err: err})
			return
		}
		if !over {
			return
		}
		if hook := pipeHookBeforePause.Load(); hook != nil {
			(*hook)()
		}
		src.Pause()
		// dst may have drained between its write and the Pause above; its
		// drain listener then resumed src before src was paused.
		if dst.drainCount() != drains {
			src.Resume()
		}
	})
	dst.OnDrain(src.Resume)
	src.OnEnd(func() { dst.End() })
}

// pipeHookBeforePause, if set by a test, runs between a write that found
// dst over HighWater and the Pause of src: the window in which dst's drain
// event can come and go before src is paused.
var pipeHookBeforePause atomic.Pointer[func()]

func (c *Conn) drainCount() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.drainGen
}
