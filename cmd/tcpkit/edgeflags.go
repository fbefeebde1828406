package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"github.com/tcpkit/tcpkit"
	"github.com/tcpkit/tcpkit/tlsutil"
)

// serverEdgeFlags are a server command's TLS and PROXY protocol flags.
type serverEdgeFlags struct {
	certFile, keyFile string
	selfSigned        bool
	handshakeTimeout  time.Duration
	proxy             *choiceValue
	trusted           []string
}

func (o *serverEdgeFlags) register(f *pflag.FlagSet) {
	o.proxy = &choiceValue{value: "off", choices: []string{"off", "optional", "required"}}
	f.StringVar(&o.certFile, "tls-cert", "", "serve TLS with this certificate (PEM; with --tls-key); SIGHUP rereads it")
	f.StringVar(&o.keyFile, "tls-key", "", "the private key of --tls-cert (PEM)")
	f.BoolVar(&o.selfSigned, "tls-self-signed", false, "serve TLS with a fresh self-signed certificate for localhost, 127.0.0.1 and ::1 (its fingerprint is logged, for --pin)")
	f.DurationVar(&o.handshakeTimeout, "handshake-timeout", tcpkit.DefaultHandshakeTimeout, "close a connection whose TLS handshake takes longer")
	f.Var(o.proxy, "proxy-protocol", "read a PROXY protocol header (v1 or v2) from a load balancer first")
	f.StringSliceVar(&o.trusted, "trusted-proxies", nil, "the proxies allowed to send a PROXY header (CIDR, comma-separated; default: any)")
}

// apply sets srv's TLS and PROXY fields from the flags. It returns a
// function that rereads the certificate files on SIGHUP until stopped
// (a no-op without --tls-cert).
func (o *serverEdgeFlags) apply(srv *tcpkit.Server, log *slog.Logger) (stop func(), err error) {
	stop = func() {}
	policy, err := tcpkit.ParseProxyPolicy(o.proxy.value)
	if err != nil {
		return stop, &exitErr{code: exitUsage, msg: err.Error()}
	}
	srv.ProxyProtocol = policy
	if srv.TrustedProxies, err = parsePrefixes("--trusted-proxies", o.trusted); err != nil {
		return stop, err
	}
	if len(o.trusted) > 0 && policy == tcpkit.ProxyOff {
		return stop, &exitErr{code: exitUsage, msg: "--trusted-proxies needs --proxy-protocol optional or required"}
	}
	if o.handshakeTimeout <= 0 {
		return stop, &exitErr{code: exitUsage, msg: "--handshake-timeout must be positive"}
	}
	srv.HandshakeTimeout = o.handshakeTimeout
	switch {
	case o.selfSigned && (o.certFile != "" || o.keyFile != ""):
		return stop, &exitErr{code: exitUsage, msg: "--tls-self-signed excludes --tls-cert and --tls-key"}
	case (o.certFile == "") != (o.keyFile == ""):
		return stop, &exitErr{code: exitUsage, msg: "--tls-cert and --tls-key go together"}
	case o.selfSigned:
		cert, err := tlsutil.SelfSigned(365 * 24 * time.Hour)
		if err != nil {
			return stop, failf("--tls-self-signed: %v", err)
		}
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		log.Info("TLS with a self-signed certificate", "hosts", "localhost,127.0.0.1,::1",
			"fingerprint", tlsutil.Fingerprint(cert.Certificate[0]))
	case o.certFile != "":
		r, err := tlsutil.NewCertReloader(o.certFile, o.keyFile)
		if err != nil {
			return stop, failf("%v", err)
		}
		srv.TLS = &tls.Config{GetCertificate: r.GetCertificate}
		log.Info("TLS", "cert", o.certFile, "fingerprint", tlsutil.Fingerprint(r.Certificate().Certificate[0]))
		stop = reloadOnHangup(r, log)
	}
	return stop, nil
}

// reloadOnHangup rereads r's files on each SIGHUP until the returned
// function is called.
func reloadOnHangup(r *tlsutil.CertReloader, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-hup:
				if err := r.Reload(); err != nil {
					log.Error("SIGHUP: keeping the old certificate", "err", err.Error())
					continue
				}
				log.Info("SIGHUP: certificate reloaded", "fingerprint", tlsutil.Fingerprint(r.Certificate().Certificate[0]))
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-finished
	}
}

// clientTLSFlags are a client command's TLS flags.
type clientTLSFlags struct {
	on         bool
	caFile     string
	insecure   bool
	pin        string
	serverName string
	alpn       []string
}

func (o *clientTLSFlags) register(f *pflag.FlagSet) {
	f.BoolVar(&o.on, "tls", false, "speak TLS; the server's certificate is verified against the system's roots (or --ca)")
	f.StringVar(&o.caFile, "ca", "", "verify the server against the certificates in this PEM file instead of the system's roots")
	f.BoolVar(&o.insecure, "insecure", false, "do not verify the server's certificate (testing only)")
	f.StringVar(&o.pin, "pin", "", "accept exactly the server certificate with this SHA-256 fingerprint (hex, as tcpkit echo logs it)")
	f.StringVar(&o.serverName, "server-name", "", "the name to verify and send (SNI); default: the host of ADDR")
	f.StringSliceVar(&o.alpn, "alpn", nil, "offer these ALPN protocols (comma-separated)")
}

// config returns the TLS configuration the flags ask for, nil without
// --tls.
func (o *clientTLSFlags) config() (*tls.Config, error) {
	if !o.on {
		if o.caFile != "" || o.insecure || o.pin != "" || o.serverName != "" || len(o.alpn) > 0 {
			return nil, &exitErr{code: exitUsage, msg: "--ca, --insecure, --pin, --server-name and --alpn need --tls"}
		}
		return nil, nil
	}
	cfg := &tls.Config{ServerName: o.serverName, NextProtos: o.alpn, InsecureSkipVerify: o.insecure}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, failf("--ca: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, failf("--ca %s: no PEM certificate in it", o.caFile)
		}
	}
	if o.pin != "" {
		pin, err := tlsutil.ParsePin(o.pin)
		if err != nil {
			return nil, &exitErr{code: exitUsage, msg: "--pin: " + err.Error()}
		}
		// The pin names the certificate to trust: it replaces the chain
		// and name checks.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = tlsutil.PinVerifier(pin)
	}
	return cfg, nil
}

// explainTLS says in a few words why a TLS handshake failed.
func explainTLS(err error) string {
	var (
		ua  x509.UnknownAuthorityError
		hn  x509.HostnameError
		ci  x509.CertificateInvalidError
		rec tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &ua):
		return "certificate signed by an unknown authority (use --ca FILE, --pin or --insecure)"
	case errors.As(err, &hn):
		return "name mismatch: " + hn.Error()
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return "certificate expired or not yet valid: " + ci.Error()
	case errors.Is(err, tlsutil.ErrPinMismatch):
		return err.Error()[strings.Index(err.Error(), tlsutil.ErrPinMismatch.Error()):]
	case errors.As(err, &rec):
		return "the server does not speak TLS: " + rec.Msg
	}
	var he *tcpkit.HandshakeError
	if errors.As(err, &he) {
		return fmt.Sprint(he.Err)
	}
	return err.Error()
}
