package tcpkit

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit/internal/streamtest"
)

// echoServer starts the seed's echo server (greeting, then Pipe) and
// returns its address. maxBuffered, if non-nil, receives the largest
// Buffered seen after any data event, to check that Pipe bounds memory.
func echoServer(t *testing.T, e engine, addr string, cfg ConnConfig, maxBuffered *atomic.Int64) string {
	t.Helper()
	s := &Server{ConnConfig: cfg, Handler: func(c *Conn) {
		Pipe(c, c)
		if maxBuffered != nil {
			c.OnData(func([]byte) {
				for {
					old, b := maxBuffered.Load(), int64(c.Buffered())
					if b <= old || maxBuffered.CompareAndSwap(old, b) {
						break
					}
				}
			})
		}
	}}
	return startServer(t, e, s, addr)
}

func TestEcho200Clients(t *testing.T) {
	const clients, size = 200, 64 << 10
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		addr = echoServer(t, e, addr, ConnConfig{}, nil)
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i := range clients {
			wg.Go(func() {
				want := make([]byte, size)
				rand.Read(want)
				copy(want, fmt.Sprintf("client %d:", i)) // unmixed: each stream is its own
				errs <- echoOnce(addr, want)
			})
		}
		waitGroup(t, &wg, 30*time.Second, "the goroutines")
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	})
}

// echoOnce writes want to an echo server, half-closes, and checks that
// exactly want comes back before the server's FIN.
func echoOnce(addr string, want []byte) error {
	network, address, _ := ParseAddr(addr)
	nc, err := net.DialTimeout(network, address, 10*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	werr := sendAndEnd(nc, want)
	got, err := io.ReadAll(nc)
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("echo of %d bytes came back as %d bytes, different", len(want), len(got))
	}
	return nil
}

// sendAndEnd writes p to nc and half-closes it, on another goroutine, so
// that the caller can read meanwhile; the result comes on the channel.
func sendAndEnd(nc net.Conn, p []byte) <-chan error {
	werr := make(chan error, 1)
	go func() {
		_, err := nc.Write(p)
		if err == nil {
			err = nc.(interface{ CloseWrite() error }).CloseWrite()
		}
		werr <- err
	}()
	return werr
}

func TestEchoStreamSlowReader(t *testing.T) {
	const size = 16 << 20
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		var maxBuffered atomic.Int64
		cfg := ConnConfig{HighWater: 64 << 10, ReadBufferSize: 16 << 10}
		addr = echoServer(t, e, addr, cfg, &maxBuffered)
		network, address, _ := ParseAddr(addr)
		nc, err := net.Dial(network, address)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(60 * time.Second))
		want := make([]byte, size)
		rand.Read(want)
		werr := sendAndEnd(nc, want)
		// The reader pauses now and then, so the server's queue fills and
		// Pipe has to pause reading.
		got := make([]byte, 0, size)
		buf := make([]byte, 32<<10)
		for reads := 0; ; reads++ {
			if reads%64 == 0 {
				time.Sleep(2 * time.Millisecond)
			}
			n, err := nc.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("read after %d bytes: %v", len(got), err)
			}
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("16 MiB echo came back as %d bytes, different", len(got))
		}
		// Pipe pauses its source over HighWater: the queue never holds more
		// than HighWater plus one read.
		if m := maxBuffered.Load(); m > int64(cfg.HighWater+cfg.ReadBufferSize) {
			t.Errorf("echo queue reached %d bytes; Pipe should stop at HighWater (%d) + one read (%d)",
				m, cfg.HighWater, cfg.ReadBufferSize)
		}
		if maxBuffered.Load() == 0 {
			t.Error("the queue never filled: the test did not exercise backpressure")
		}
	})
}

func TestSlowConsumerBounded(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		const maxBuf = 256 << 10
		type writes struct {
			peak int
			err  error
		}
		wrote := make(chan writes, 1)
		closed := make(chan error, 1)
		s := &Server{ConnConfig: ConnConfig{MaxBuffered: maxBuf}, Handler: func(c *Conn) {
			c.OnClose(func(err error) { closed <- err })
			// The client never reads: keep writing until tcpkit gives up.
			chunk := bytes.Repeat([]byte("z"), 4<<10)
			go func() {
				var w writes
				for range 100_000 { // bounded: 400 MiB at most
					_, w.err = c.Write(chunk)
					w.peak = max(w.peak, c.Buffered())
					if w.err != nil {
						break
					}
				}
				wrote <- w
			}()
		}}
		addr = startServer(t, e, s, addr)
		// The server may reset the connection (ErrSlowConsumer) before the
		// client's connect has read its SO_ERROR: Go's Dial then fails
		// with ECONNRESET, the server's side being done all the same.
		network, address, _ := ParseAddr(addr)
		if nc, err := net.DialTimeout(network, address, 5*time.Second); err == nil {
			t.Cleanup(func() { nc.Close() })
		} else if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatal(err)
		}
		w := waitFor(t, wrote, 30*time.Second, "writes to end")
		closeErr := waitFor(t, closed, 10*time.Second, "close event")
		if !errors.Is(w.err, ErrSlowConsumer) || !errors.Is(closeErr, ErrSlowConsumer) {
			t.Errorf("write error %v, close error %v; want ErrSlowConsumer for both", w.err, closeErr)
		}
		if w.peak > maxBuf {
			t.Errorf("the server held %d bytes for a peer that stopped reading; MaxBuffered is %d", w.peak, maxBuf)
		}
	})
}

func TestDrainEvent(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		cfg := ConnConfig{HighWater: 32 << 10, LowWater: 8 << 10, MaxBuffered: 64 << 20}
		drained := make(chan int, 4)
		written := make(chan int, 1)
		s := &Server{ConnConfig: cfg, Handler: func(c *Conn) {
			// Write until the queue is over HighWater, past what the
			// kernel's socket buffers take, so that drain is armed.
			chunk := make([]byte, 256<<10)
			total := 0
			for i := 0; i < 200 && c.Buffered() <= cfg.HighWater; i++ {
				c.Write(chunk)
				total += len(chunk)
			}
			written <- total
			c.OnDrain(func() { drained <- c.Buffered() })
		}}
		addr = startServer(t, e, s, addr)
		nc := dialRaw(t, addr)
		total := waitFor(t, written, 5*time.Second, "server writes")
		select {
		case <-drained:
			t.Fatal("drain fired while the peer had read nothing")
		case <-time.After(50 * time.Millisecond):
		}
		if n, err := io.ReadFull(nc, make([]byte, total)); err != nil {
			t.Fatalf("read %d of %d: %v", n, total, err)
		}
		if b := waitFor(t, drained, 5*time.Second, "drain event"); b > cfg.LowWater {
			t.Errorf("drain fired with %d bytes queued; LowWater is %d", b, cfg.LowWater)
		}
		select {
		case <-drained:
			t.Error("drain fired twice for one crossing")
		case <-time.After(50 * time.Millisecond):
		}
	})
}

func TestPipeBetweenConnections(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		// A proxy: each accepted connection is piped to and from an echo
		// server, with backpressure in both directions.
		backend := echoServer(t, e, "127.0.0.1:0", ConnConfig{}, nil)
		var dialled sync.WaitGroup
		// Each direction ends on its own, so both sides are half-open; an
		// error on either side closes the other.
		halfOpen := ConnConfig{AllowHalfOpen: true}
		proxy := &Server{ConnConfig: halfOpen, Handler: func(c *Conn) {
			c.Pause() // until the backend is connected
			dialled.Go(func() {
				d := Dialer{ConnConfig: halfOpen}
				_, err := d.Dial(context.Background(), backend, func(up *Conn) {
					Pipe(c, up)
					Pipe(up, c)
					up.OnError(func(error) { c.Close() })
					c.OnError(func(error) { up.Close() })
					c.Resume()
				})
				if err != nil {
					t.Errorf("dial backend: %v", err)
					c.Close()
				}
			})
		}}
		addr = startServer(t, e, proxy, addr)
		defer dialled.Wait()
		want := make([]byte, 4<<20)
		rand.Read(want)
		if err := echoOnce(addr, want); err != nil {
			t.Fatal(err)
		}
	})
}

// maxBufferedServer serves connections with a small MaxBuffered and a small
// kernel send buffer, and hands each to the test; the client never reads.
func maxBufferedServer(t *testing.T, e engine, cfg ConnConfig) (*Conn, <-chan error) {
	t.Helper()
	conns := make(chan *Conn, 1)
	closed := make(chan error, 1)
	s := &Server{ConnConfig: cfg, Handler: func(c *Conn) {
		c.OnClose(func(err error) { closed <- err })
		conns <- c
	}}
	addr := startServer(t, e, s, "127.0.0.1:0")
	nc := dialRaw(t, addr)
	nc.(*net.TCPConn).SetReadBuffer(4 << 10)
	return waitFor(t, conns, 5*time.Second, "connection"), closed
}

// fillKernel writes to c until bytes stay queued and the queue stops
// moving: the kernel's buffers are full, so what is written next stays in
// tcpkit's queue.
func fillKernel(t *testing.T, c *Conn) {
	t.Helper()
	chunk := make([]byte, 4<<10)
	for i := 0; c.Buffered() == 0; i++ {
		if i == 10_000 {
			t.Fatal("40 MiB written and none of it queued")
		}
		if _, err := c.Write(chunk); err != nil {
			t.Fatalf("filling the kernel's buffers: %v", err)
		}
	}
	for last, same := -1, 0; same < 3; {
		time.Sleep(20 * time.Millisecond)
		if b := c.Buffered(); b == last {
			same++
		} else {
			last, same = b, 0
		}
	}
}

// The queue may hold exactly MaxBuffered bytes; one more closes the
// connection with ErrSlowConsumer, and nothing queued is kept.
func TestMaxBufferedBoundary(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		cfg := ConnConfig{HighWater: 8 << 10, ReadBufferSize: 8 << 10, MaxBuffered: 64 << 10, SendBuffer: 4 << 10}
		c, closed := maxBufferedServer(t, e, cfg)
		fillKernel(t, c)
		q := c.Buffered()
		if _, err := c.Write(make([]byte, cfg.MaxBuffered-q)); err != nil {
			t.Fatalf("Write up to exactly MaxBuffered (%d queued + %d): %v", q, cfg.MaxBuffered-q, err)
		}
		if b := c.Buffered(); b != cfg.MaxBuffered {
			t.Fatalf("Buffered %d, want MaxBuffered (%d)", b, cfg.MaxBuffered)
		}
		if _, err := c.Write([]byte{1}); !errors.Is(err, ErrSlowConsumer) {
			t.Fatalf("Write one byte past MaxBuffered: %v, want ErrSlowConsumer", err)
		}
		if err := waitFor(t, closed, 5*time.Second, "close event"); !errors.Is(err, ErrSlowConsumer) {
			t.Errorf("close error %v, want ErrSlowConsumer", err)
		}
		if b := c.Buffered(); b != 0 {
			t.Errorf("%d bytes still queued after the close", b)
		}
	})
}

// A single Write larger than MaxBuffered, on an empty queue, is cut off
// too: the kernel takes what it can and the rest would pass the cap.
func TestMaxBufferedSingleLargeWrite(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		cfg := ConnConfig{HighWater: 8 << 10, ReadBufferSize: 8 << 10, MaxBuffered: 64 << 10, SendBuffer: 4 << 10}
		c, closed := maxBufferedServer(t, e, cfg)
		if _, err := c.Write(make([]byte, 4<<20)); !errors.Is(err, ErrSlowConsumer) {
			t.Fatalf("one 4 MiB Write with MaxBuffered 64 KiB: %v, want ErrSlowConsumer", err)
		}
		if err := waitFor(t, closed, 5*time.Second, "close event"); !errors.Is(err, ErrSlowConsumer) {
			t.Errorf("close error %v, want ErrSlowConsumer", err)
		}
	})
}

// pipePair serves two connections and returns the server side of each, in
// the order they were made, with their clients.
func pipePair(t *testing.T, e engine, cfg ConnConfig) (a, b *Conn, ca, cb net.Conn) {
	t.Helper()
	conns := make(chan *Conn, 2)
	s := &Server{ConnConfig: cfg, Handler: func(c *Conn) { conns <- c }}
	addr := startServer(t, e, s, "127.0.0.1:0")
	ca = dialRaw(t, addr)
	a = waitFor(t, conns, 5*time.Second, "first connection")
	cb = dialRaw(t, addr)
	b = waitFor(t, conns, 5*time.Second, "second connection")
	return a, b, ca, cb
}

// Pipe pauses its source once the destination's queue is over HighWater,
// so a destination whose peer does not read costs no more than HighWater
// plus one read.
func TestPipePausesSource(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		cfg := ConnConfig{HighWater: 16 << 10, ReadBufferSize: 16 << 10, SendBuffer: 4 << 10, PauseOnConnect: true}
		src, dst, ca, _ := pipePair(t, e, cfg)
		Pipe(dst, src)
		src.Resume()
		go func() { // until the kernel's buffers fill and the write times out
			ca.SetWriteDeadline(time.Now().Add(5 * time.Second))
			ca.Write(make([]byte, 64<<20))
		}()
		// Until the kernel's buffers are full, the queue drains and the
		// source resumes: wait for it to stay paused over HighWater.
		for i := 0; !src.Paused() || dst.Buffered() <= cfg.HighWater; i++ {
			if i == 500 {
				t.Fatalf("source never paused over HighWater; paused %v, destination queue %d bytes", src.Paused(), dst.Buffered())
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // a source that kept reading would pass the bound now
		if b, bound := dst.Buffered(), cfg.HighWater+cfg.ReadBufferSize; b > bound || b <= cfg.HighWater {
			t.Errorf("destination queue %d bytes; want over HighWater (%d) and at most HighWater plus one read (%d)", b, cfg.HighWater, bound)
		}
		src.Close()
		dst.Close()
	})
}

// Pipe must not lose the wake-up when the destination drains between the
// write that found it over HighWater and the Pause of the source: the
// source would then stay paused for ever. The test hook holds Pipe in that
// window until the drain has come and gone.
func TestPipeDrainBeforePause(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		cfg := ConnConfig{HighWater: 4 << 10, LowWater: 1 << 10, ReadBufferSize: 16 << 10, SendBuffer: 4 << 10, PauseOnConnect: true}
		src, dst, ca, cb := pipePair(t, e, cfg)
		drained := make(chan struct{}, 1)
		startReading := make(chan struct{})
		var hooked atomic.Bool
		hook := func() {
			if hooked.Swap(true) {
				return
			}
			close(startReading) // the destination's peer reads from now on, so it drains
			select {
			case <-drained:
			case <-time.After(5 * time.Second):
			}
		}
		pipeHookBeforePause.Store(&hook)
		t.Cleanup(func() { pipeHookBeforePause.Store(nil) })
		Pipe(dst, src)
		dst.OnDrain(func() {
			select {
			case drained <- struct{}{}:
			default:
			}
		})
		dst.Resume() // so that it sees its peer's end
		src.Resume()
		const size = 1 << 20
		sent := sendAndEnd(ca, bytes.Repeat([]byte("p"), size))
		select { // the peer does not read until dst is over HighWater
		case <-startReading:
		case <-time.After(5 * time.Second):
			t.Fatal("the destination never went over HighWater: the test did not exercise the window")
		}
		cb.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, cb)
		if err != nil || n != size {
			dst.mu.Lock()
			over, gen := dst.overHigh, dst.drainGen
			dst.mu.Unlock()
			t.Errorf("destination's peer got %d of %d bytes, then %v; the source stayed paused (Paused %v; dst queue %d, overHigh %v, drains %d)", n, size, err, src.Paused(), dst.Buffered(), over, gen)
		}
		if err := waitFor(t, sent, 10*time.Second, "the source's peer to finish"); err != nil {
			t.Error(err)
		}
	})
}

// With a small SendBuffer, writes are cut to a send buffer's worth; the
// stream must still arrive byte for byte, neither short nor padded.
func TestEchoSmallSendBuffer(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, e engine, addr string) {
		addr = echoServer(t, e, addr, ConnConfig{SendBuffer: 4 << 10}, nil)
		network, address, _ := ParseAddr(addr)
		nc, err := net.DialTimeout(network, address, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := streamtest.Echo(nc, 7, 256<<10, 3000, nil); err != nil {
			t.Error(err)
		}
	})
}
