package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA is a CA made in the test, for client TLS certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return testCA{cert: cert, key: key, pool: pool}
}

// writeLeaf writes a certificate for 127.0.0.1 with serial to certFile and
// its key to keyFile.
func (ca testCA) writeLeaf(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCertReloaderRereadsChangedFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca := newTestCA(t)
	if _, err := newCertReloader(certFile, keyFile, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a reloader started without its files")
	}
	ca.writeLeaf(t, 100, certFile, keyFile)
	r, err := newCertReloader(certFile, keyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.now = func() time.Time { return now }
	serial := func() int64 {
		c, err := r.GetCertificate(nil)
		if err != nil || c == nil {
			t.Fatalf("GetCertificate: %v", err)
		}
		return c.Leaf.SerialNumber.Int64()
	}
	if s := serial(); s != 100 {
		t.Fatalf("serial %d, want 100", s)
	}

	// A rotation: seen at the first handshake a second after the last look.
	ca.writeLeaf(t, 101, certFile, keyFile)
	future := time.Now().Add(time.Minute) // a new modification time, whatever the file system's resolution
	os.Chtimes(certFile, future, future)
	now = now.Add(500 * time.Millisecond)
	if s := serial(); s != 100 {
		t.Errorf("the files were read again within a second: serial %d", s)
	}
	now = now.Add(time.Second)
	if s := serial(); s != 101 {
		t.Errorf("after a rotation, serial %d, want 101", s)
	}

	// A rotation caught half-way (a key that does not match) keeps the
	// loaded pair, and the next look takes the finished one.
	ca.writeLeaf(t, 102, certFile, filepath.Join(dir, "other.key"))
	future = future.Add(time.Minute)
	os.Chtimes(certFile, future, future)
	now = now.Add(time.Second)
	if s := serial(); s != 101 {
		t.Errorf("a mismatched pair replaced the certificate: serial %d", s)
	}
	os.Rename(filepath.Join(dir, "other.key"), keyFile)
	os.Chtimes(keyFile, future, future.Add(time.Second))
	now = now.Add(time.Second)
	if s := serial(); s != 102 {
		t.Errorf("after the rotation finished, serial %d, want 102", s)
	}
}

// TestHTTPSPartServesWithTheReloadedCertificate serves a handler through
// httpsPart and checks that a client trusting the CA gets the certificate
// of the files, the rotated one after a rotation, over HTTP/1.1.
func TestHTTPSPartServesWithTheReloadedCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca := newTestCA(t)
	ca.writeLeaf(t, 7, certFile, keyFile)
	r, err := newCertReloader(certFile, keyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.checkEvery = 0
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := httpLimits{readTimeout: 5 * time.Second, idleTimeout: time.Second, maxConns: 4}
	p := httpsPart("https", "https", ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.Proto))
	}), lim, r.tlsConfig())
	done := make(chan error, 1)
	go func() { done <- p.serve() }()
	defer func() {
		p.close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	get := func() (int64, string) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.pool}, ForceAttemptHTTP2: true}}
		defer client.CloseIdleConnections()
		resp, err := client.Get("https://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 64)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), b.String()
	}
	if serial, proto := get(); serial != 7 || proto != "HTTP/1.1" {
		t.Errorf("serial %d over %s, want 7 over HTTP/1.1", serial, proto)
	}
	ca.writeLeaf(t, 8, certFile, keyFile)
	future := time.Now().Add(time.Minute)
	os.Chtimes(certFile, future, future)
	if serial, _ := get(); serial != 8 {
		t.Errorf("after a rotation, serial %d, want 8", serial)
	}
}
