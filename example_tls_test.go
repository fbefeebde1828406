package tcpkit_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/tcpkit/tcpkit"
	"github.com/tcpkit/tcpkit/tlsutil"
)

// The echo server over TLS, and a client that trusts its certificate. The
// Handler runs after the handshake: it reads and writes plaintext.
func ExampleServer_tls() {
	cert, err := tlsutil.SelfSigned(24 * time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	srv := tcpkit.NewServer(func(c *tcpkit.Conn) {
		fmt.Println("server:", tls.VersionName(c.TLS().Version), c.TLS().NegotiatedProtocol)
		c.WriteString("hello\r\n")
		tcpkit.Pipe(c, c)
	})
	srv.Addr = "127.0.0.1:0"
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"echo"}}
	bound := make(chan net.Addr, 1)
	srv.OnListening = func(a net.Addr) { bound <- a }
	go srv.ListenAndServe()
	defer srv.Close()

	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	d := tcpkit.Dialer{TLS: &tls.Config{RootCAs: roots, NextProtos: []string{"echo"}}}
	done := make(chan struct{})
	c, err := d.Dial(context.Background(), (<-bound).String(), func(c *tcpkit.Conn) {
		c.OnData(func(p []byte) {
			fmt.Printf("client got %q\n", p)
			c.End() // close_notify, then FIN; the server ends too
		})
		c.OnClose(func(error) { close(done) })
	})
	if err != nil {
		log.Fatal(err) // a certificate the client does not trust fails here
	}
	_ = c
	<-done
	// Output:
	// server: TLS 1.3 echo
	// client got "hello\r\n"
}
