package loadgen

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"time"

	"github.com/tcpkit/tcpkit"
)

// A Mode is the shape of the load a run puts on the server.
type Mode string

// The modes of a run.
const (
	// PingPong keeps one message in flight on each connection: write it,
	// read its echo, write the next. Latency is the round trip.
	PingPong Mode = "ping-pong"

	// Pipeline keeps Depth messages in flight on each connection: each echo
	// that comes back is replaced by a new message. Latency is from a
	// message's write to the end of its echo.
	Pipeline Mode = "pipeline"

	// Stream writes messages as fast as the connection takes them, and
	// reads and verifies the echoes on a second goroutine: one-way
	// throughput. No latency is recorded.
	Stream Mode = "stream"

	// Connect measures connections per second: each connection is dialled,
	// reads the greeting, exchanges one message and is closed. Latency is
	// from the start of the dial to the end of the echo.
	Connect Mode = "connect"

	// Idle opens Conns connections, checks each with one message, holds
	// them idle for Duration, then checks each again. With a server PID it
	// reports the server's memory growth per connection.
	Idle Mode = "idle"
)

// Modes lists every mode, in the order the documentation gives them.
var Modes = []Mode{PingPong, Pipeline, Stream, Connect, Idle}

// ParseMode returns the Mode named s.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("loadgen: unknown mode %q (want ping-pong, pipeline, stream, connect or idle)", s)
}

// Limits on the sizes a Config may ask for.
const (
	// MinSize is the smallest message: the 16-byte header that carries
	// the connection id, the sequence number and their checksum.
	MinSize = headerLen
	// MaxSize is the largest message.
	MaxSize = 16 << 20
	// MaxInFlight caps Depth×Size, the bytes in flight on one connection.
	// A blocking echo server that cannot write its echoes stops reading,
	// so more in flight than the sockets' buffers hold would deadlock;
	// the per-operation Timeout would then report it.
	MaxInFlight = 4 << 20
)

// Defaults for the zero fields of Config.
const (
	DefaultConns    = 1
	DefaultSize     = 64
	DefaultDepth    = 16 // pipeline mode only
	DefaultDuration = 10 * time.Second
	DefaultTimeout  = 5 * time.Second

	// DefaultRateDepth is the default bound on the messages in flight per
	// connection in an open-loop run (Config.Rate), lowered for large
	// messages to keep within MaxInFlight.
	DefaultRateDepth = 1024
)

// A Config describes one run. Its zero value, with Addr set, is a 10-second
// ping-pong run of 64-byte messages on one connection.
type Config struct {
	// Addr is the echo server's address in tcpkit's grammar (see
	// tcpkit.ParseAddr): host:port for TCP, or a Unix socket path.
	Addr string

	// Mode is the shape of the load. Default PingPong.
	Mode Mode

	// Conns is the number of connections, each driven by its own
	// goroutine; in Connect mode, the number of connections being made at
	// once. Default 1.
	Conns int

	// Size is the size of each message in bytes, MinSize to MaxSize.
	// Default 64.
	Size int

	// Depth is the number of messages in flight per connection in Pipeline
	// mode. Default 16; ignored by the other modes.
	Depth int

	// Rate, if positive, makes a PingPong or Pipeline run open-loop: Rate
	// messages per second in all, spread evenly over the connections, each
	// sent on its schedule whether or not earlier echoes have come back,
	// with up to Depth in flight per connection (default DefaultRateDepth
	// in either mode). Latency is measured from each message's scheduled
	// send time, so it includes any wait caused by a server that fell
	// behind (the coordinated-omission correction of wrk2). A message due
	// when Depth are in flight waits for a slot; it is sent late and its
	// latency grows. Default 0: closed loop.
	Rate float64

	// Duration bounds the measured window (the hold time in Idle mode).
	// Count bounds it too; whichever comes first ends the run. With neither
	// set, Duration is DefaultDuration.
	Duration time.Duration

	// Count, if positive, bounds the measured window to this many messages
	// (connections, in Connect mode), shared out evenly among the
	// connections. The messages already in flight when a connection's
	// share is done still count, so a pipelined run may count up to
	// Depth-1 more per connection. Ignored in Idle mode.
	Count int64

	// Warmup is run before the measured window and is not measured:
	// neither latency, nor counts, nor CPU. Default 0: none. Ignored in
	// Idle mode.
	Warmup time.Duration

	// Timeout bounds every blocking operation: a dial, a read that gets
	// nothing, a write that cannot proceed. Reads and writes are checked
	// with a deadline refreshed at most twice per Timeout, so a stalled
	// connection is reported after between Timeout/2 and Timeout.
	// Default DefaultTimeout (5s).
	Timeout time.Duration

	// Greeting, if not empty, is what the server sends first on each
	// connection (tcpkit echo sends "hello\r\n"). It is read and checked
	// before any message is sent. Default: none.
	Greeting []byte

	// SourceIPs, if set, are the local addresses connections are made from,
	// in turn (TCP only): 127.0.0.1, 127.0.0.2, ... lift the limit of about
	// 28,000 ephemeral ports per source address. See LoopbackSources.
	SourceIPs []netip.Addr

	// ServerPID, if positive, is the server's process id: its CPU time
	// (and, in Idle mode, its resident memory) is read from /proc before
	// and after the measured window.
	ServerPID int

	// TLS, if set, makes each connection a TLS client with this
	// configuration; the handshake is part of the dial (and of Connect
	// mode's latency). Default nil: plain TCP.
	TLS *tls.Config
}

// LoopbackSources returns n loopback addresses, 127.0.0.1 to 127.0.0.n,
// for Config.SourceIPs. Linux routes all of 127.0.0.0/8 to the loopback
// interface, so no setup is needed. n is capped at 254.
func LoopbackSources(n int) []netip.Addr {
	n = min(max(n, 0), 254)
	ips := make([]netip.Addr, n)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)})
	}
	return ips
}

// resolved is a Config with its defaults filled in and its address parsed.
type resolved struct {
	Config
	network, address string
}

// resolve fills in the defaults of cfg and checks it: the one place where
// they live.
func resolve(cfg Config) (resolved, error) {
	r := resolved{Config: cfg}
	if cfg.Addr == "" {
		return r, fmt.Errorf("loadgen: no address")
	}
	var err error
	if r.network, r.address, err = tcpkit.ParseAddr(cfg.Addr); err != nil {
		return r, err
	}
	if r.Mode == "" {
		r.Mode = PingPong
	}
	if _, err := ParseMode(string(r.Mode)); err != nil {
		return r, err
	}
	if r.Conns == 0 {
		r.Conns = DefaultConns
	}
	if r.Size == 0 {
		r.Size = DefaultSize
	}
	switch {
	case r.Rate > 0 && r.Mode != PingPong && r.Mode != Pipeline:
		return r, fmt.Errorf("loadgen: Rate applies to ping-pong and pipeline modes, not %s", r.Mode)
	case r.Rate > 0:
		if r.Depth == 0 {
			r.Depth = max(1, min(DefaultRateDepth, MaxInFlight/r.Size))
		}
	case r.Mode == Pipeline:
		if r.Depth == 0 {
			r.Depth = DefaultDepth
		}
	default:
		r.Depth = 1
	}
	if r.Duration == 0 && r.Count == 0 {
		r.Duration = DefaultDuration
	}
	if r.Timeout == 0 {
		r.Timeout = DefaultTimeout
	}
	if r.Mode == Idle {
		r.Count, r.Warmup = 0, 0
		if r.Duration == 0 {
			r.Duration = DefaultDuration
		}
	}
	switch {
	case r.Conns < 0:
		return r, fmt.Errorf("loadgen: negative Conns (%d)", r.Conns)
	case r.Size < MinSize || r.Size > MaxSize:
		return r, fmt.Errorf("loadgen: Size %d is outside %d to %d bytes (a message carries a %d-byte header)",
			r.Size, MinSize, MaxSize, headerLen)
	case r.Depth < 1:
		return r, fmt.Errorf("loadgen: Depth must be positive (%d)", r.Depth)
	case r.Depth*r.Size > MaxInFlight:
		return r, fmt.Errorf("loadgen: Depth×Size (%d×%d) is over %d bytes in flight per connection; use stream mode for bulk data",
			r.Depth, r.Size, MaxInFlight)
	case r.Duration < 0 || r.Count < 0 || r.Warmup < 0 || r.Timeout < 0 || r.Rate < 0:
		return r, fmt.Errorf("loadgen: negative Duration, Count, Warmup, Timeout or Rate")
	case len(r.SourceIPs) > 0 && r.network != "tcp":
		return r, fmt.Errorf("loadgen: SourceIPs apply to TCP only, and %s is a Unix socket", cfg.Addr)
	}
	for _, ip := range r.SourceIPs {
		if !ip.IsValid() {
			return r, fmt.Errorf("loadgen: invalid source address in SourceIPs")
		}
	}
	return r, nil
}
