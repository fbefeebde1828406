// Package bench holds black-box micro-benchmarks of tcpkit's hot paths,
// over real loopback sockets: the round trip through Pipe, Conn.Write under
// backpressure (the write queue), the dispatch of data events, and the
// codec Framer fed by data events. Run them with
//
//	cd bench && go test -bench . -benchmem
//
// Benchmarks of unexported internals would have to live in the root
// package; these measure the same paths from the outside.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit"
	"github.com/tcpkit/tcpkit/codec"
)

// serve starts a tcpkit server on loopback with handler h and returns its
// address; it is shut down when the benchmark ends.
func serve(b *testing.B, cfg tcpkit.ConnConfig, h tcpkit.Handler) string {
	b.Helper()
	ln, err := tcpkit.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &tcpkit.Server{Handler: h, ConnConfig: cfg}
	go srv.Serve(ln)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// serveStd starts a stdlib echo server, a goroutine per connection with a
// 16 KiB buffer, as the yardstick for BenchmarkPipe.
func serveStd(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 16<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			})
		}
	})
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dial connects a plain net.Conn, closed when the benchmark ends.
func dial(b *testing.B, addr string) net.Conn {
	b.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

var sizes = []int{64, 4096}

// BenchmarkPipe measures one round trip through tcpkit's echo server,
// Pipe(c, c), with one message in flight, next to the stdlib echo: the read
// loop, the data event, Pipe's write and the kernel, per message.
func BenchmarkPipe(b *testing.B) {
	for _, size := range sizes {
		for _, srv := range []string{"tcpkit", "std"} {
			b.Run(srv+"/"+strconv.Itoa(size)+"B", func(b *testing.B) {
				var addr string
				if srv == "tcpkit" {
					addr = serve(b, tcpkit.ConnConfig{}, func(c *tcpkit.Conn) { tcpkit.Pipe(c, c) })
				} else {
					addr = serveStd(b)
				}
				c := dial(b, addr)
				msg, back := make([]byte, size), make([]byte, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.Write(msg); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, back); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkWriteQueue measures Conn.Write when the socket cannot take
// everything at once: a dialled Conn writes messages as fast as it can to
// a peer that reads and discards, and waits for OnDrain whenever its queue
// is over HighWater. With the kernel's default (autotuned) send buffer
// most writes go straight to the kernel, one system call each; with a
// small ConnConfig.SendBuffer most land in the queue, which the writer
// goroutine flushes in large writes. The 8 KiB case shows a collapse of
// throughput that comes from the kernel: on loopback, write(2) calls much
// larger than a small SO_SNDBUF are served slowly, and the writer hands
// the kernel its whole queue in one call.
func BenchmarkWriteQueue(b *testing.B) {
	for _, sb := range []struct {
		name string
		size int
	}{{"sndbuf-default", 0}, {"sndbuf-64KiB", 64 << 10}, {"sndbuf-8KiB", 8 << 10}} {
		for _, size := range sizes {
			b.Run(sb.name+"/"+strconv.Itoa(size)+"B", func(b *testing.B) {
				writeQueue(b, sb.size, size)
			})
		}
	}
}

func writeQueue(b *testing.B, sendBuf, size int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var received atomic.Int64
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			received.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	drained := make(chan struct{}, 1)
	d := tcpkit.Dialer{ConnConfig: tcpkit.ConnConfig{SendBuffer: sendBuf}}
	c, err := d.Dial(context.Background(), ln.Addr().String(), func(c *tcpkit.Conn) {
		c.OnDrain(func() {
			select {
			case drained <- struct{}{}:
			default:
			}
		})
	})
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		n++
		for c.Buffered() > tcpkit.DefaultHighWater {
			select {
			case <-drained:
			case <-time.After(time.Millisecond):
			}
		}
	}
	want := int64(n * size)
	for deadline := time.Now().Add(10 * time.Second); received.Load() < want && time.Now().Before(deadline); {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	if got := received.Load(); got != want {
		b.Fatalf("peer received %d bytes, want %d", got, want)
	}
	c.Close()
	<-c.Done()
	<-readerDone
}

// BenchmarkDataDispatch measures the read loop and the data event: a plain
// client streams chunks of the given size, and the server's OnData listener
// only counts bytes.
func BenchmarkDataDispatch(b *testing.B) {
	for _, size := range []int{64, 4096, 64 << 10} {
		b.Run(strconv.Itoa(size)+"B-writes", func(b *testing.B) {
			var got atomic.Int64
			addr := serve(b, tcpkit.ConnConfig{}, func(c *tcpkit.Conn) {
				c.OnData(func(p []byte) { got.Add(int64(len(p))) })
			})
			c := dial(b, addr)
			chunk := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
				n++
			}
			waitFor(b, &got, int64(n*size))
		})
	}
}

// BenchmarkFramer measures codec framing on data events: a plain client
// sends 64-byte messages, 256 to a write, and the server's Framer delivers
// each to a listener that counts them.
func BenchmarkFramer(b *testing.B) {
	const payload, batch = 64, 256
	lp := codec.LengthPrefix{Size: 4}
	framings := []struct {
		name   string
		split  func() bufio.SplitFunc
		encode codec.Encoder
	}{
		{"lines", func() bufio.SplitFunc { return codec.Lines(4096) }, codec.LinesEncoder(4096)},
		{"length-prefixed", func() bufio.SplitFunc { return codec.LengthPrefixed(lp, 4096) }, codec.LengthPrefixedEncoder(lp, 4096)},
	}
	for _, f := range framings {
		b.Run(f.name, func(b *testing.B) {
			var msgs atomic.Int64
			onMessage := func([]byte) { msgs.Add(1) }
			addr := serve(b, tcpkit.ConnConfig{}, func(c *tcpkit.Conn) {
				codec.NewFramer(f.split(), 4096, onMessage).Attach(c)
			})
			msg := bytes.Repeat([]byte("x"), payload)
			var frames []byte
			for range batch {
				var err error
				if frames, err = f.encode(frames, msg); err != nil {
					b.Fatal(err)
				}
			}
			c := dial(b, addr)
			b.SetBytes(int64(len(frames) / batch))
			b.ReportAllocs()
			sent := 0
			for b.Loop() {
				// One message per iteration, written a batch at a time.
				if sent%batch == 0 {
					if _, err := c.Write(frames); err != nil {
						b.Fatal(err)
					}
				}
				sent++
			}
			// Round up to the batches actually written.
			waitFor(b, &msgs, int64((sent+batch-1)/batch*batch))
		})
	}
}

// waitFor waits until n reaches want, for ten seconds at most.
func waitFor(b *testing.B, n *atomic.Int64, want int64) {
	b.Helper()
	for deadline := time.Now().Add(10 * time.Second); n.Load() < want; {
		if time.Now().After(deadline) {
			b.Fatalf("got %d, want %d", n.Load(), want)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestFramerEncoding checks the frames BenchmarkFramer sends decode to
// the message: the benchmark would otherwise measure errors.
func TestFramerEncoding(t *testing.T) {
	enc := codec.LengthPrefixedEncoder(codec.LengthPrefix{Size: 4}, 4096)
	frame, err := enc(nil, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if binary.BigEndian.Uint32(frame) != 5 || string(frame[4:]) != "hello" {
		t.Fatalf("frame % x", frame)
	}
	var got []string
	f := codec.NewFramer(codec.LengthPrefixed(codec.LengthPrefix{Size: 4}, 4096), 4096, func(m []byte) { got = append(got, string(m)) })
	if err := f.Feed(append(frame, frame...)); err != nil || len(got) != 2 || got[0] != "hello" {
		t.Fatalf("Feed: %v, %q", err, got)
	}
}
