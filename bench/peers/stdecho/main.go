// Command stdecho is the yardstick echo server of the benchmarks: Go's net
// package, one goroutine per connection, each with a 16 KiB buffer and a
// plain Read/Write loop. It closes a connection when the client ends it.
// -tls-cert and -tls-key make it a TLS server: the listener is wrapped
// with crypto/tls (tls.NewListener, with that certificate and crypto/tls's
// defaults otherwise), and each connection's handshake runs on its
// goroutine, at its first Read.
//
//	stdecho -addr 127.0.0.1:8124 [-tls-cert cert.pem -tls-key key.pem]
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/tcpkit/tcpkit"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8124", "address to listen on, in tcpkit's grammar (host:port or a socket path)")
	bufSize := flag.Int("buf", 16<<10, "read buffer size per connection")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file, until SIGINT or SIGTERM")
	certFile := flag.String("tls-cert", "", "serve TLS with this certificate (PEM; with -tls-key)")
	keyFile := flag.String("tls-key", "", "the private key of -tls-cert (PEM)")
	flag.Parse()
	if (*certFile == "") != (*keyFile == "") {
		log.Fatal("-tls-cert and -tls-key go together")
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		go func() {
			<-sigs
			pprof.StopCPUProfile()
			f.Close()
			os.Exit(0)
		}()
	}
	network, address, err := tcpkit.ParseAddr(*addr)
	if err != nil {
		log.Fatal(err)
	}
	if network == "unix" {
		os.Remove(address)
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		log.Fatal(err)
	}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	}
	fmt.Println("listening", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				time.Sleep(10 * time.Millisecond) // out of descriptors: back off
				continue
			}
			log.Fatal(err)
		}
		go echo(c, *bufSize)
	}
}

// echo sends back everything c receives, and closes c when the client ends
// its side or the connection fails.
func echo(c net.Conn, size int) {
	defer c.Close()
	buf := make([]byte, size)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
