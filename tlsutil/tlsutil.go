// Package tlsutil holds the certificate chores of a TLS service: a
// self-signed certificate for trying things out, certificate fingerprints
// for pinning, and a CertReloader that rereads a certificate and key from
// their files when told to (on SIGHUP, say), without a restart.
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"time"
)

// SelfSigned returns a fresh self-signed certificate (ECDSA P-256) for
// hosts, each a DNS name or an IP address, valid from an hour ago for
// validFor. With no hosts it covers localhost, 127.0.0.1 and ::1.
func SelfSigned(validFor time.Duration, hosts ...string) (tls.Certificate, error) {
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"tcpkit self-signed"}, CommonName: hosts[0]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Fingerprint returns the SHA-256 fingerprint of a DER-encoded
// certificate as 64 lower-case hex digits: the form PinVerifier takes.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ParsePin reads a SHA-256 fingerprint written as hex, upper or lower
// case, with or without colons, and with or without a "sha256:" prefix.
func ParsePin(s string) ([]byte, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimPrefix(t, "sha256:")
	t = strings.TrimPrefix(t, "sha256/")
	t = strings.ReplaceAll(t, ":", "")
	b, err := hex.DecodeString(t)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("tlsutil: %q is not a SHA-256 fingerprint (64 hex digits)", s)
	}
	return b, nil
}

// ErrPinMismatch is the error of a server whose certificate does not have
// the pinned fingerprint.
var ErrPinMismatch = errors.New("certificate pin mismatch")

// PinVerifier returns a tls.Config.VerifyConnection function that accepts
// a server whose leaf certificate has the SHA-256 fingerprint pin, and no
// other. Used with InsecureSkipVerify, it replaces the usual chain and
// name checks: the pin says exactly which certificate to trust.
func PinVerifier(pin []byte) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: the server sent no certificate", ErrPinMismatch)
		}
		got := sha256.Sum256(cs.PeerCertificates[0].Raw)
		if string(got[:]) != string(pin) {
			return fmt.Errorf("%w: the server's certificate is sha256:%s, not the pinned sha256:%s",
				ErrPinMismatch, hex.EncodeToString(got[:]), hex.EncodeToString(pin))
		}
		return nil
	}
}

// A CertReloader serves a certificate and key read from files, and rereads
// them when Reload is called: a tls.Config.GetCertificate for a server
// that renews its certificate without a restart. A Reload that fails keeps
// the certificate it had.
type CertReloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// NewCertReloader reads certFile and keyFile (PEM) for the first time.
func NewCertReloader(certFile, keyFile string) (*CertReloader, error) {
	r := &CertReloader{certFile: certFile, keyFile: keyFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload rereads the files. On failure the certificate in use stays.
func (r *CertReloader) Reload() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tlsutil: loading %s and %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert.Store(&cert)
	return nil
}

// Certificate returns the certificate in use.
func (r *CertReloader) Certificate() *tls.Certificate { return r.cert.Load() }

// GetCertificate is tls.Config.GetCertificate: the certificate in use.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}
