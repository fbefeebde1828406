// Command tcpkitecho is tcpkit's echo server as the benchmarks run it: the
// package's own echo, Pipe(c, c), with no greeting and no logging per
// connection. (tcpkit echo --greeting ” --quiet is the same server behind
// the command line.) -engine chooses the engine: goroutine (the default, a
// goroutine per connection) or epoll (tcpkit.NewEpollEngine, by default
// one event loop per GOMAXPROCS). -tls-cert and -tls-key make it a TLS
// server (Server.TLS, with that certificate and crypto/tls's defaults
// otherwise): the handshake runs before the Handler, which echoes the
// plaintext.
//
//	tcpkitecho -addr 127.0.0.1:8124 [-engine epoll [-loops N]] [-tls-cert cert.pem -tls-key key.pem]
package main

import (
	"crypto/tls"
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
	certFile := flag.String("tls-cert", "", "serve TLS with this certificate (PEM; with -tls-key)")
	keyFile := flag.String("tls-key", "", "the private key of -tls-cert (PEM)")
	flag.Parse()
	tlsConfig, err := loadTLS(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}
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
		TLS:         tlsConfig,
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

// loadTLS returns the server's TLS configuration with the certificate in
// certFile and its key in keyFile, or nil if both are empty.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("-tls-cert and -tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
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
