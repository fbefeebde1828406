// Command gnetecho is the gnet v2 echo server of the benchmarks: an event
// loop per core (with -multicore) that writes back whatever a connection
// has read. gnet closes a connection when the client ends it.
//
//	gnetecho -addr 127.0.0.1:8124 -multicore [-loops N]
package main

import (
	"flag"
	"fmt"
	"log"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"
	"github.com/tcpkit/tcpkit"
)

type echo struct {
	gnet.BuiltinEventEngine
	addr string
}

// OnBoot reports that the server is up.
func (e *echo) OnBoot(gnet.Engine) gnet.Action {
	fmt.Println("listening", e.addr)
	return gnet.None
}

// OnTraffic writes back everything read so far.
func (e *echo) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Next(-1)
	c.Write(buf)
	return gnet.None
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8124", "address to listen on, in tcpkit's grammar (host:port or a socket path)")
	multicore := flag.Bool("multicore", true, "one event loop per CPU the process may use (else one loop)")
	loops := flag.Int("loops", 0, "event loops; overrides -multicore (default: one, or one per CPU with -multicore)")
	flag.Parse()
	network, address, err := tcpkit.ParseAddr(*addr)
	if err != nil {
		log.Fatal(err)
	}
	err = gnet.Run(&echo{addr: address}, network+"://"+address,
		gnet.WithMulticore(*multicore),
		gnet.WithNumEventLoop(*loops),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogLevel(logging.ErrorLevel))
	log.Fatal(err)
}
