// Command fairserver is the server of the fairness benchmark: one process,
// one event loop (or, for tcpkit's goroutine engine, GOMAXPROCS=1, which
// the driver sets), serving two kinds of connection on one port. The
// first byte a client sends says which it is:
//
//	'E'  echo: everything after it is written back (the ping-pong client,
//	     and the flooders of -flood-echo), with backpressure: tcpkit's
//	     connection pauses over its HighWater and resumes on drain
//	'D'  discard: everything after it is read and counted, nothing is
//	     written (a flooder)
//
// -engine picks the server: tcpkit-epoll (tcpkit.NewEpollEngine with one
// loop), tcpkit (tcpkit's goroutine engine) or gnet (gnet v2, one event
// loop). It listens on 127.0.0.1, a free port unless -addr says, prints
// "ready addr=HOST:PORT" once it accepts, and at SIGTERM or SIGINT prints
// "discarded N" (the bytes its flooders sent it) and exits.
//
//	fairserver -engine tcpkit-epoll [-addr 127.0.0.1:0]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"
	"github.com/tcpkit/tcpkit"
)

// The first byte of a connection: its kind.
const (
	kindEcho    = 'E'
	kindDiscard = 'D'
)

// discarded counts the bytes read from discard connections.
var discarded atomic.Int64

func main() {
	engine := flag.String("engine", "tcpkit-epoll", "tcpkit-epoll, tcpkit (the goroutine engine) or gnet")
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("fairserver: ")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *engine {
	case "tcpkit", "tcpkit-epoll":
		err = serveTcpkit(ctx, *engine, *addr)
	case "gnet":
		err = serveGnet(ctx, *addr)
	default:
		err = fmt.Errorf("unknown engine %q (want tcpkit-epoll, tcpkit or gnet)", *engine)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("discarded", discarded.Load())
}

// serveTcpkit serves on a tcpkit.Server until ctx is done.
func serveTcpkit(ctx context.Context, engine, addr string) error {
	srv := &tcpkit.Server{
		Handler: handle,
		OnListening: func(a net.Addr) {
			fmt.Printf("ready addr=%s engine=%s\n", a, engine)
		},
	}
	if engine == "tcpkit-epoll" {
		e, err := tcpkit.NewEpollEngine(tcpkit.EpollConfig{Loops: 1})
		if err != nil {
			return err
		}
		defer e.Close()
		srv.Engine = e
	}
	ln, err := tcpkit.Listen(ctx, addr)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	srv.Close()
	<-errc
	return nil
}

// handle is the tcpkit connection listener: the first byte says echo or
// discard. The echo is Pipe(c, c)'s: it pauses the connection while the
// write queue is over HighWater (64 KiB), until the drain event.
func handle(c *tcpkit.Conn) {
	var kind byte
	c.OnDrain(c.Resume)
	c.OnData(func(p []byte) {
		if kind == 0 {
			kind, p = p[0], p[1:]
		}
		switch kind {
		case kindEcho:
			c.Write(p)
			if c.Buffered() > tcpkit.DefaultHighWater {
				c.Pause()
			}
		case kindDiscard:
			discarded.Add(int64(len(p)))
		default:
			c.Close()
		}
	})
}

// gnetServer is the gnet event handler: the connection's kind lives in its
// context.
type gnetServer struct {
	gnet.BuiltinEventEngine
	addr string
	eng  chan gnet.Engine
}

func (s *gnetServer) OnBoot(eng gnet.Engine) gnet.Action {
	fmt.Printf("ready addr=%s engine=gnet\n", s.addr)
	s.eng <- eng
	return gnet.None
}

func (s *gnetServer) OnTraffic(c gnet.Conn) gnet.Action {
	kind, _ := c.Context().(byte)
	if kind == 0 {
		b, err := c.Next(1)
		if err != nil || len(b) == 0 {
			return gnet.None
		}
		kind = b[0]
		c.SetContext(kind)
	}
	switch kind {
	case kindEcho:
		buf, _ := c.Next(-1)
		c.Write(buf)
	case kindDiscard:
		n, _ := c.Discard(-1)
		discarded.Add(int64(n))
	default:
		return gnet.Close
	}
	return gnet.None
}

// serveGnet serves with gnet, one event loop, until ctx is done. gnet
// binds the address itself: with port 0, a free port is found first.
func serveGnet(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if port == "0" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		addr = ln.Addr().String()
		ln.Close()
	} else {
		addr = net.JoinHostPort(host, port)
	}
	s := &gnetServer{addr: addr, eng: make(chan gnet.Engine, 1)}
	errc := make(chan error, 1)
	go func() {
		errc <- gnet.Run(s, "tcp://"+addr,
			gnet.WithMulticore(false),
			gnet.WithNumEventLoop(1),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogLevel(logging.ErrorLevel))
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	select {
	case eng := <-s.eng:
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		eng.Stop(sctx)
	default:
	}
	return nil
}
