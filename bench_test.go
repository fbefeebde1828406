package tcpkit

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// stdEcho is the yardstick: Go's net with a goroutine per connection and a
// buffered Read/Write loop.
func stdEcho(b *testing.B) (addr string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	conns := make(map[net.Conn]struct{})
	var mu sync.Mutex
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				buf := make([]byte, DefaultReadBufferSize)
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
	return ln.Addr().String(), func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

func tcpkitEcho(b *testing.B) (addr string, stop func()) {
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{Handler: func(c *Conn) { Pipe(c, c) }}
	go s.Serve(ln)
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		s.Close()
	}
}

// pingPong runs b.N round trips of size-byte messages over conns
// connections, one message in flight on each.
func pingPong(b *testing.B, addr string, conns, size int) {
	b.SetBytes(int64(size))
	var wg sync.WaitGroup
	per := b.N/conns + 1
	b.ResetTimer()
	for range conns {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			r := bufio.NewReaderSize(c, size)
			msg, back := make([]byte, size), make([]byte, size)
			for range per {
				if _, err := c.Write(msg); err != nil {
					b.Error(err)
					return
				}
				if _, err := io.ReadFull(r, back); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkEcho compares the echo server built on tcpkit with the stdlib
// yardstick, side by side in one run: go test -bench Echo -run ^$
func BenchmarkEcho(b *testing.B) {
	servers := []struct {
		name  string
		start func(*testing.B) (string, func())
	}{{"std", stdEcho}, {"tcpkit", tcpkitEcho}}
	for _, size := range []int{64, 4096} {
		for _, conns := range []int{1, 50} {
			for _, srv := range servers {
				b.Run(srv.name+"/"+itoa(conns)+"conns/"+itoa(size)+"B", func(b *testing.B) {
					addr, stop := srv.start(b)
					defer stop()
					pingPong(b, addr, conns, size)
				})
			}
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	for ; n > 0; n /= 10 {
		i--
		buf[i] = byte('0' + n%10)
	}
	return string(buf[i:])
}
