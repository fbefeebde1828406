package tcpkit

import (
	"errors"
	"syscall"
	"time"
)

// Stats is a snapshot of a Server's counters, from Server.Stats. The
// counters only grow, from the server's start; Open, Queued and Loops are
// as of the snapshot. Every accepted connection is, at any moment, open,
// dropped or closed: Accepted = Open + Dropped.Total() + Closed.Total(),
// in every snapshot.
type Stats struct {
	Open     int   // connections open now, as NumConns
	Accepted int64 // connections accepted, those dropped at once included

	Dropped DropCounts  // connections refused by a limit, by the limit
	Closed  CloseCounts // connections closed, by cause

	// BytesIn and BytesOut count the bytes read from and written to the
	// sockets of every connection, open and closed: for TLS, the records.
	BytesIn, BytesOut int64

	// Queued is the bytes queued to write now, across the open
	// connections (their Buffered).
	Queued int64

	// AcceptErrors counts failed accepts, each of them (OnError hears
	// only of the first of a run).
	AcceptErrors int64

	// Loops describes the event loops of an epoll engine, one entry each;
	// nil on the goroutine engine.
	Loops []LoopStats
}

// DropCounts counts connections dropped at once by a limit.
type DropCounts struct {
	MaxConnections int64 // over Server.MaxConnections
	PerIP          int64 // over Server.MaxConnsPerIP
	Rate           int64 // over Server.AcceptRate
	Denied         int64 // refused by Server.Allow or Server.Deny
}

// Total returns the sum of the counts.
func (d DropCounts) Total() int64 { return d.MaxConnections + d.PerIP + d.Rate + d.Denied }

// CloseCounts counts closed connections by the cause of their close.
type CloseCounts struct {
	Clean        int64 // no error: both sides ended, or Close
	PeerReset    int64 // the peer reset the connection (ECONNRESET, EPIPE)
	IdleTimeout  int64 // ConnConfig.IdleTimeout
	SlowConsumer int64 // the write queue would have passed MaxBuffered
	Handshake    int64 // the PROXY header or the TLS handshake failed or timed out
	Panic        int64 // a callback panicked
	Shutdown     int64 // Shutdown's grace period ran out (reset)
	Other        int64 // any other error
}

// Total returns the sum of the counts.
func (c CloseCounts) Total() int64 {
	return c.Clean + c.PeerReset + c.IdleTimeout + c.SlowConsumer + c.Handshake + c.Panic + c.Shutdown + c.Other
}

// LoopStats describes one event loop of an epoll engine.
type LoopStats struct {
	Conns int // connections on the loop now

	// Lag is the longest turn of the loop (the time from its wake-up to
	// its next wait) within the last second or so: how long a ready
	// connection may have waited for its turn.
	Lag time.Duration

	// SlowCallbacks counts the connections whose callbacks held the loop
	// for longer than EpollConfig.BlockingThreshold (each at most once).
	SlowCallbacks int64
}

// serverCounters are the counters behind Stats, guarded by Server.mu:
// they change on accept and close, never on the data path.
type serverCounters struct {
	accepted          int64
	dropped           DropCounts
	closed            CloseCounts
	bytesIn, bytesOut int64 // of closed connections
	acceptErrors      int64
}

// countDropLocked counts a drop. Called with s.mu held.
func (k *serverCounters) countDropLocked(r DropReason) {
	switch r {
	case DropMaxConnections:
		k.dropped.MaxConnections++
	case DropPerIP:
		k.dropped.PerIP++
	case DropRate:
		k.dropped.Rate++
	case DropDenied:
		k.dropped.Denied++
	}
}

// countCloseLocked counts a closed connection by its close error, and its
// bytes. Called with s.mu held.
func (k *serverCounters) countCloseLocked(c *Conn, err error) {
	k.bytesIn += c.bytesRead.Load()
	k.bytesOut += c.bytesWritten.Load()
	var (
		he *HandshakeError
		pe *PanicError
		de *dropError
	)
	switch {
	case errors.As(err, &de):
		k.countDropLocked(de.reason) // refused after its PROXY header: a drop, counted once closed
	case err == nil:
		k.closed.Clean++
	case errors.As(err, &he):
		k.closed.Handshake++
	case errors.As(err, &pe):
		k.closed.Panic++
	case errors.Is(err, ErrIdleTimeout):
		k.closed.IdleTimeout++
	case errors.Is(err, ErrSlowConsumer):
		k.closed.SlowConsumer++
	case errors.Is(err, ErrServerClosed):
		k.closed.Shutdown++
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		k.closed.PeerReset++
	default:
		k.closed.Other++
	}
}

// A dropError is the close error of a connection refused by a limit after
// its PROXY header: it counts as dropped, not closed, once it has closed
// (until then it is open).
type dropError struct{ reason DropReason }

func (e *dropError) Error() string { return "tcpkit: connection refused: " + e.reason.String() }

// loopStatser is an Engine with event loops to describe.
type loopStatser interface{ loopStats() []LoopStats }

// Stats returns a snapshot of the server's counters. It takes the
// server's lock briefly and each open connection's in turn (for Queued),
// so it is cheap enough to call every few seconds, as a metrics scraper
// does; the data path keeps no counters of its own beyond each
// connection's.
func (s *Server) Stats() Stats {
	s.init()
	s.mu.Lock()
	k := s.counters
	st := Stats{
		Open:         len(s.conns),
		Accepted:     k.accepted,
		Dropped:      k.dropped,
		Closed:       k.closed,
		BytesIn:      k.bytesIn,
		BytesOut:     k.bytesOut,
		AcceptErrors: k.acceptErrors,
	}
	open := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		st.BytesIn += c.bytesRead.Load()
		st.BytesOut += c.bytesWritten.Load()
		open = append(open, c)
	}
	s.mu.Unlock()
	for _, c := range open {
		st.Queued += int64(c.Buffered())
	}
	if ls, ok := engineOr(s.Engine).(loopStatser); ok {
		st.Loops = ls.loopStats()
	}
	return st
}
