// Package loadgen puts a measured load on an echo server: the engine of
// "tcpkit bench". It drives connections in one of five modes (ping-pong,
// pipeline, stream, connect, idle), checks every echoed byte, and reports
// rates, latency percentiles from an HDR histogram, errors by kind and,
// given the server's process id, the server's CPU time per message and its
// memory per connection.
//
// # Checking
//
// Every message carries its connection's id, its sequence number on that
// connection, a checksum of the two, and a payload pattern; the echo must
// match byte for byte. A server that damages, drops, truncates or reorders
// data is therefore reported as such, under an ErrorKind (Corrupt, Lost,
// Short, Reordered, ...), rather than merely timed.
//
// # Open loop
//
// With Config.Rate set, a ping-pong or pipeline run is open-loop, as
// wrk2's are: each connection sends its share of Rate on a fixed
// schedule, whether or not the echoes of earlier messages have come back
// (up to Depth in flight), and each latency is measured from the message's
// scheduled send time. A server that stalls is then charged for every
// message that queued behind the stall, not just for the one it was
// working on: the correction for coordinated omission. Result.Open gives
// the requested, sent and achieved rates.
//
// # Series
//
// Every run but an idle one also records its measured window second by
// second (Result.Series: messages, rate, p50, p99, max) and the latency
// spectrum (Result.Spectrum, percentiles on HdrHistogram's 1/(1-p) axis),
// at the cost of a lock per worker per second.
//
// # Cost
//
// The load must cost little next to what it measures: each connection has
// one goroutine with blocking I/O (two in stream mode), buffers allocated
// once, a histogram of its own merged at the end, and no lock on the
// per-message path. Result.LoadCPUPerMsg reports what a message cost this
// process, to compare with a minimal client loop.
//
// # Use
//
//	res, err := loadgen.Run(ctx, loadgen.Config{
//		Addr:     "127.0.0.1:8124",
//		Mode:     loadgen.PingPong,
//		Conns:    50,
//		Size:     64,
//		Warmup:   time.Second,
//		Duration: 10 * time.Second,
//		Greeting: []byte("hello\r\n"),
//	}, os.Stderr)
//	if err != nil {
//		return err
//	}
//	res.WriteTable(os.Stdout)
//	json.NewEncoder(f).Encode(res)
package loadgen
