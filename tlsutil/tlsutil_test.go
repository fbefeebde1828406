package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSelfSignedCoversHosts(t *testing.T) {
	cert, err := SelfSigned(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := cert.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	expired, err := SelfSigned(-time.Minute, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !time.Now().After(expired.Leaf.NotAfter) || expired.Leaf.VerifyHostname("example.com") != nil {
		t.Errorf("expired certificate: NotAfter %v", expired.Leaf.NotAfter)
	}
}

func TestPins(t *testing.T) {
	cert, _ := SelfSigned(time.Hour)
	fp := Fingerprint(cert.Certificate[0])
	if len(fp) != 64 || strings.ToLower(fp) != fp {
		t.Fatalf("Fingerprint = %q", fp)
	}
	colons := strings.ToUpper(fp[:2] + ":" + fp[2:4] + ":" + fp[4:])
	for _, s := range []string{fp, strings.ToUpper(fp), "sha256:" + fp, colons} {
		pin, err := ParsePin(s)
		if err != nil {
			t.Fatalf("ParsePin(%q): %v", s, err)
		}
		verify := PinVerifier(pin)
		if err := verify(tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.Leaf}}); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	other, _ := SelfSigned(time.Hour)
	pin, _ := ParsePin(fp)
	err := PinVerifier(pin)(tls.ConnectionState{PeerCertificates: []*x509.Certificate{other.Leaf}})
	if !errors.Is(err, ErrPinMismatch) || !strings.Contains(err.Error(), fp) {
		t.Errorf("another certificate: %v", err)
	}
	for _, bad := range []string{"", "abc", fp[:62], fp + "00", strings.Repeat("zz", 32)} {
		if _, err := ParsePin(bad); err == nil {
			t.Errorf("ParsePin(%q) accepted", bad)
		}
	}
}

// writePair writes cert's PEM files under dir.
func writePair(t *testing.T, dir string, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	return certFile, keyFile
}

func TestCertReloader(t *testing.T) {
	dir := t.TempDir()
	first, _ := SelfSigned(time.Hour)
	cf, kf := writePair(t, dir, first)
	r, err := NewCertReloader(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := r.GetCertificate(nil)
	if Fingerprint(got.Certificate[0]) != Fingerprint(first.Certificate[0]) {
		t.Fatal("not the first certificate")
	}
	second, _ := SelfSigned(time.Hour)
	writePair(t, dir, second)
	if got, _ := r.GetCertificate(nil); Fingerprint(got.Certificate[0]) != Fingerprint(first.Certificate[0]) {
		t.Fatal("changed before Reload")
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.GetCertificate(nil); Fingerprint(got.Certificate[0]) != Fingerprint(second.Certificate[0]) {
		t.Fatal("Reload kept the old certificate")
	}
	os.WriteFile(cf, []byte("garbage"), 0o600)
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), cf) {
		t.Fatalf("Reload of a broken file: %v", err)
	}
	if got, _ := r.GetCertificate(nil); Fingerprint(got.Certificate[0]) != Fingerprint(second.Certificate[0]) {
		t.Fatal("a failed Reload changed the certificate")
	}
	if _, err := NewCertReloader(filepath.Join(dir, "missing.pem"), kf); err == nil {
		t.Fatal("NewCertReloader of a missing file succeeded")
	}
}
