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
	"testing"
	"time"
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
		dialRaw(t, addr)
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
