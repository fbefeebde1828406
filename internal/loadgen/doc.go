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
