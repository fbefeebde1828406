package tcpkit_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tcpkit/tcpkit"
)

// The seed's echo server: greet, then pipe the connection into itself. Here
// it listens on a port the OS picks; the seed's is 8124.
func Example() {
	srv := tcpkit.NewServer(func(c *tcpkit.Conn) {
		fmt.Println("client connected")
		c.OnEnd(func() { fmt.Println("client disconnected") })
		c.WriteString("hello\r\n")
		tcpkit.Pipe(c, c)
	})
	bound := make(chan net.Addr, 1)
	srv.Addr = "127.0.0.1:0"
	srv.OnListening = func(addr net.Addr) { fmt.Println("server bound"); bound <- addr }
	go srv.ListenAndServe()

	talk(<-bound) // the seed's client, below
	srv.Shutdown(context.Background())
	// Output:
	// server bound
	// client connected
	// hello
	// world!
	// client disconnected
	// disconnected from server
}

// talk is the seed's client: it writes "world!\r\n", prints what comes back
// and ends once it has the echo.
func talk(addr net.Addr) {
	var got strings.Builder
	c, err := tcpkit.Dial(context.Background(), addr.String(), func(c *tcpkit.Conn) {
		c.OnData(func(p []byte) {
			got.Write(p) // TCP has no message boundaries: collect until the echo is in
			if strings.HasSuffix(got.String(), "world!\r\n") {
				fmt.Print(strings.ReplaceAll(got.String(), "\r\n", "\n"))
				c.End()
			}
		})
		c.OnEnd(func() { fmt.Println("disconnected from server") })
		c.WriteString("world!\r\n")
	})
	if err != nil {
		log.Fatal(err)
	}
	<-c.Done()
}

// The same echo server on a Unix socket path, as the seed's
// server.listen('/tmp/echo.sock'); try it with nc -U. A stale socket file
// left by a crash is removed and reused; the file is removed on close.
func ExampleServer_unixSocket() {
	dir, _ := os.MkdirTemp("", "tcpkit")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "echo.sock")

	srv := tcpkit.NewServer(func(c *tcpkit.Conn) {
		c.WriteString("hello\r\n")
		tcpkit.Pipe(c, c)
	})
	srv.Addr = path
	bound := make(chan net.Addr, 1)
	srv.OnListening = func(addr net.Addr) { bound <- addr }
	go srv.ListenAndServe()
	fmt.Println("listening on", filepath.Base((<-bound).String()))

	talk(&net.UnixAddr{Name: path, Net: "unix"})
	srv.Close()
	<-srv.Done()
	_, err := os.Stat(path)
	fmt.Println("socket file removed:", os.IsNotExist(err))
	// Output:
	// listening on echo.sock
	// hello
	// world!
	// disconnected from server
	// socket file removed: true
}

// The seed's client, net.connect({port: 8124}, ...): the handler passed to
// Dial is the connect listener.
func ExampleDial() {
	ln, _ := tcpkit.Listen(context.Background(), "127.0.0.1:0")
	srv := tcpkit.NewServer(func(c *tcpkit.Conn) { tcpkit.Pipe(c, c) })
	go srv.Serve(ln)
	defer srv.Close()

	c, err := tcpkit.Dial(context.Background(), ln.Addr().String(), func(c *tcpkit.Conn) {
		fmt.Println("connected")
		c.OnData(func(p []byte) { fmt.Printf("%s", p); c.End() })
		c.OnClose(func(err error) { fmt.Println("closed, error:", err) })
		c.WriteString("world!\n")
	})
	if err != nil {
		log.Fatal(err)
	}
	<-c.Done()
	// Output:
	// connected
	// world!
	// closed, error: <nil>
}

// Shutdown stops accepting, ends idle connections and waits, at most until
// its context ends, for the rest.
func ExampleServer_Shutdown() {
	srv := &tcpkit.Server{
		Addr:       "127.0.0.1:0",
		Handler:    func(c *tcpkit.Conn) { tcpkit.Pipe(c, c) },
		ConnConfig: tcpkit.ConnConfig{IdleTimeout: time.Minute},
		OnClose:    func() { fmt.Println("server closed") },
	}
	listening := make(chan struct{})
	srv.OnListening = func(net.Addr) { close(listening) }
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	<-listening

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println("shutdown:", srv.Shutdown(ctx))
	fmt.Println("serve:", <-served)
	// Output:
	// server closed
	// shutdown: <nil>
	// serve: tcpkit: server closed
}
