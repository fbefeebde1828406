package loadgen

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit"
	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startEcho starts tcpkit's echo server, Pipe(c, c) after an optional
// greeting, on addr ("127.0.0.1:0" or a socket path), and returns the
// address to dial.
func startEcho(t *testing.T, addr, greeting string) string {
	t.Helper()
	ln, err := tcpkit.Listen(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &tcpkit.Server{Handler: func(c *tcpkit.Conn) {
		if greeting != "" {
			c.WriteString(greeting)
		}
		tcpkit.Pipe(c, c)
	}}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// unixAddr returns a socket path in a fresh temporary directory.
func unixAddr(t *testing.T) string { return filepath.Join(t.TempDir(), "e.sock") }

// startRaw starts a TCP server on loopback that runs handle on each
// connection, and returns its address. The connections are closed, and the
// handlers waited for, when the test ends.
func startRaw(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
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
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
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

// echoWith copies c's input back to it through edit, which may change,
// hold back or drop bytes; off is the stream offset of the chunk's first
// byte. It returns when edit says stop or c fails.
func echoWith(c net.Conn, edit func(p []byte, off int) (out []byte, stop bool)) {
	buf := make([]byte, 4096)
	off := 0
	for {
		n, err := c.Read(buf)
		if n > 0 {
			out, stop := edit(buf[:n], off)
			off += n
			if len(out) > 0 {
				if _, err := c.Write(out); err != nil {
					return
				}
			}
			if stop {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// drain reads c until it fails, so that a handler can wait for the
// client's end.
func drain(c net.Conn) { io.Copy(io.Discard, c) }
