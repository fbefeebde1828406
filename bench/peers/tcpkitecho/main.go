// Command tcpkitecho is tcpkit's echo server as the benchmarks run it: the
// package's own echo, Pipe(c, c), with no greeting and no logging per
// connection. (tcpkit echo --greeting ” --quiet is the same server behind
// the command line.) -engine chooses the engine: goroutine (the default, a
// goroutine per connection) or epoll (tcpkit.NewEpollEngine, by default
// one event loop per GOMAXPROCS).
//
//	tcpkitecho -addr 127.0.0.1:8124 [-engine epoll [-loops N]]
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/tcpkit/tcpkit"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8124", "address to listen on, in tcpkit's grammar (host:port or a socket path)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file, until SIGINT or SIGTERM")
	readBuf := flag.Int("readbuf", 0, "ConnConfig.ReadBufferSize (default: tcpkit's, 64 KiB)")
	engine := flag.String("engine", "goroutine", "goroutine (tcpkit's default engine) or epoll")
	loops := flag.Int("loops", 0, "event loops of the epoll engine (default GOMAXPROCS)")
	flag.Parse()
	if *cpuProfile != "" {
		stop, err := profile(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		go func() {
			<-sigs
			stop()
			os.Exit(0)
		}()
	}
	srv := &tcpkit.Server{
		Addr:        *addr,
		Handler:     func(c *tcpkit.Conn) { tcpkit.Pipe(c, c) },
		ConnConfig:  tcpkit.ConnConfig{ReadBufferSize: *readBuf},
		OnListening: func(a net.Addr) { fmt.Println("listening", a) },
	}
	switch *engine {
	case "goroutine":
	case "epoll":
		e, err := tcpkit.NewEpollEngine(tcpkit.EpollConfig{Loops: *loops})
		if err != nil {
			log.Fatal(err)
		}
		srv.Engine = e
	default:
		log.Fatalf("unknown engine %q (want goroutine or epoll)", *engine)
	}
	log.Fatal(srv.ListenAndServe())
}

// profile starts a CPU profile into path, and returns the function that
// stops it.
func profile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
