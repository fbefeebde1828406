package main

import (
	"sync"

	"github.com/tcpkit/tcpkit"
)

// brokerHandler returns the connection listener of tcpkit listen --broker:
// what each client sends goes to every other client. A client's queue is
// bounded by --max-buffered (ConnConfig.MaxBuffered): a client that stops
// reading is closed with ErrSlowConsumer, logged, and the others go on.
// Senders are not slowed down for a slow receiver.
func (s *listenSession) brokerHandler() tcpkit.Handler {
	var (
		mu    sync.Mutex
		conns = map[*tcpkit.Conn]struct{}{}
	)
	return func(c *tcpkit.Conn) {
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		var others []*tcpkit.Conn // reused by this connection's OnData
		c.OnData(func(p []byte) {
			others = others[:0]
			mu.Lock()
			for o := range conns {
				if o != c {
					others = append(others, o)
				}
			}
			mu.Unlock()
			for _, o := range others {
				o.Write(p) // Write copies p; an error closes o, and its OnClose says why
			}
		})
		c.OnClose(func(error) {
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
}
