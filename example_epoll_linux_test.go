//go:build linux

package tcpkit_test

import (
	"context"
	"fmt"
	"log"
	"net"

	"github.com/tcpkit/tcpkit"
)

// The echo server on the epoll engine: the same Handler, on event loops.
// Close the engine once the servers that use it have shut down.
func ExampleNewEpollEngine() {
	engine, err := tcpkit.NewEpollEngine(tcpkit.EpollConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer engine.Close()
	srv := tcpkit.NewServer(func(c *tcpkit.Conn) {
		c.WriteString("hello\r\n")
		tcpkit.Pipe(c, c)
	})
	srv.Engine = engine
	srv.Addr = "127.0.0.1:0"
	bound := make(chan net.Addr, 1)
	srv.OnListening = func(addr net.Addr) { bound <- addr }
	go srv.ListenAndServe()

	talk(<-bound)
	srv.Shutdown(context.Background())
	fmt.Println("engine:", engine)
	// Output:
	// hello
	// world!
	// disconnected from server
	// engine: epoll
}
