package tcpkit

import (
	"fmt"
	"time"
)

// Defaults for the zero values of ConnConfig.
const (
	DefaultHighWater      = 64 << 10 // 64 KiB
	DefaultMaxBuffered    = 4 << 20  // 4 MiB
	DefaultReadBufferSize = 64 << 10 // 64 KiB
	DefaultKeepAlive      = 15 * time.Second
)

// initialReadBuffer is the read buffer a connection starts with; it
// doubles, up to ReadBufferSize, each time a read fills it, so that only
// connections that move bulk data pay for a large buffer.
const initialReadBuffer = 16 << 10

// A ConnConfig holds the settings of each connection, for a Server (the
// connections it accepts) and a Dialer (the connections it makes) alike.
// Its zero value is ready to use; each field documents its default.
type ConnConfig struct {
	// Timeout, if positive, fires OnTimeout after the connection has had
	// no traffic in either direction for this long. It is a notification
	// only, as in Node: the connection stays open, and OnTimeout fires again
	// only after new traffic and another idle period. Conn.SetTimeout
	// changes it per connection. Default 0: no notification.
	Timeout time.Duration

	// IdleTimeout, if positive, closes a connection that has had no
	// traffic in either direction for this long, with ErrIdleTimeout.
	// This is what most servers want instead of Node's notification.
	// Default 0: idle connections stay open.
	IdleTimeout time.Duration

	// AllowHalfOpen keeps a connection open for writing after the peer's
	// FIN, until the handler calls End. By default (false), after the
	// peer's FIN and the OnEnd listeners, the connection flushes its write
	// queue, ends its own side and closes: Node's allowHalfOpen: false,
	// which is what makes Pipe(c, c) a correct echo.
	AllowHalfOpen bool

	// PauseOnConnect starts every connection paused: no data is read until
	// the handler calls Resume (Node's pauseOnConnect).
	PauseOnConnect bool

	// Nagle leaves Nagle's algorithm on for TCP connections. The default,
	// false, sets TCP_NODELAY as Go does: small writes go out at once.
	// Node does the opposite. Conn.SetNoDelay changes it per connection.
	Nagle bool

	// KeepAlive is the TCP keep-alive period. Zero means
	// DefaultKeepAlive (15s, Go's default; Node's is off), negative turns
	// keep-alive off.
	KeepAlive time.Duration

	// HighWater is the write-queue size in bytes above which OnDrain is
	// armed: once Buffered has gone over HighWater, OnDrain fires when it
	// falls to LowWater or below. Pipe pauses its source over HighWater.
	// Default DefaultHighWater (64 KiB).
	HighWater int

	// LowWater is the queue size at which an armed OnDrain fires.
	// Default HighWater/4.
	LowWater int

	// MaxBuffered caps the write queue. A Write that would take it over
	// closes the connection with ErrSlowConsumer, so that a peer that has
	// stopped reading never costs more than MaxBuffered bytes of memory.
	// It must be at least HighWater + ReadBufferSize, the most that Pipe
	// queues. Default DefaultMaxBuffered (4 MiB), or 2×HighWater +
	// ReadBufferSize if that is more.
	MaxBuffered int

	// SendBuffer and ReceiveBuffer, if positive, set the kernel's socket
	// buffer sizes (SO_SNDBUF, SO_RCVBUF; Linux doubles the value given).
	// MaxBuffered bounds only tcpkit's own queue: a peer that stops reading
	// can also hold the kernel's send buffer, several MiB with autotuning,
	// so a server that must bound memory per connection sets SendBuffer
	// too. Default 0: the kernel's defaults and autotuning.
	SendBuffer    int
	ReceiveBuffer int

	// ReadBufferSize is the largest read buffer a connection uses, and so
	// the largest slice one OnData call receives. A connection starts with
	// 16 KiB (or ReadBufferSize, if smaller) and doubles its buffer, up to
	// ReadBufferSize, each time a read fills it: idle and small-message
	// connections stay small, bulk transfers make fewer system calls.
	// Default DefaultReadBufferSize (64 KiB).
	ReadBufferSize int
}

// resolve fills in the defaults and checks the result. It is the one place
// where ConnConfig defaults live.
func (cfg ConnConfig) resolve() (ConnConfig, error) {
	if cfg.HighWater == 0 {
		cfg.HighWater = DefaultHighWater
	}
	if cfg.LowWater == 0 {
		cfg.LowWater = cfg.HighWater / 4
	}
	if cfg.ReadBufferSize == 0 {
		cfg.ReadBufferSize = DefaultReadBufferSize
	}
	if cfg.MaxBuffered == 0 {
		cfg.MaxBuffered = max(DefaultMaxBuffered, 2*cfg.HighWater+cfg.ReadBufferSize)
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	switch {
	case cfg.HighWater < 0 || cfg.LowWater < 0 || cfg.MaxBuffered < 0 || cfg.ReadBufferSize < 0 ||
		cfg.SendBuffer < 0 || cfg.ReceiveBuffer < 0:
		return cfg, fmt.Errorf("tcpkit: negative buffer size in ConnConfig (HighWater %d, LowWater %d, MaxBuffered %d, ReadBufferSize %d)",
			cfg.HighWater, cfg.LowWater, cfg.MaxBuffered, cfg.ReadBufferSize)
	case cfg.LowWater > cfg.HighWater:
		return cfg, fmt.Errorf("tcpkit: ConnConfig.LowWater (%d) is above HighWater (%d)", cfg.LowWater, cfg.HighWater)
	case cfg.MaxBuffered < cfg.HighWater+cfg.ReadBufferSize:
		// Pipe pauses its source once the queue is over HighWater, so the
		// queue must hold HighWater plus one read.
		return cfg, fmt.Errorf("tcpkit: ConnConfig.MaxBuffered (%d) is below HighWater (%d) plus ReadBufferSize (%d)",
			cfg.MaxBuffered, cfg.HighWater, cfg.ReadBufferSize)
	case cfg.Timeout < 0 || cfg.IdleTimeout < 0:
		return cfg, fmt.Errorf("tcpkit: negative ConnConfig timeout (Timeout %v, IdleTimeout %v)", cfg.Timeout, cfg.IdleTimeout)
	}
	return cfg, nil
}
