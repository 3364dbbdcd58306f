package clustertls

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pki is a CA and the Config of one node it signed.
func pki(t testing.TB, id string) (caCert, caKey []byte, cfg *Config) {
	t.Helper()
	caCert, caKey, err := NewCA("test cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return caCert, caKey, node(t, caCert, caKey, id)
}

func node(t testing.TB, caCert, caKey []byte, id string) *Config {
	t.Helper()
	certPEM, keyPEM, err := NewNodeCert(caCert, caKey, id, []string{"127.0.0.1", "node.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{"ca.pem": caCert, "node.pem": certPEM, "node-key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := Load(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// handshake runs a TLS handshake between a server and a client config and
// returns the node id each side saw, or the errors.
func handshake(t *testing.T, server, client *tls.Config) (clientSaw, serverSaw string, cerr, serr error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := tls.Server(a, server)
		a.SetDeadline(time.Now().Add(5 * time.Second))
		if serr = s.Handshake(); serr == nil {
			serverSaw, serr = PeerNodeID(s.ConnectionState())
		}
		a.Close()
	}()
	c := tls.Client(b, client)
	b.SetDeadline(time.Now().Add(5 * time.Second))
	if cerr = c.Handshake(); cerr == nil {
		clientSaw, cerr = PeerNodeID(c.ConnectionState())
	}
	b.Close()
	<-done
	return
}

func TestMutualTLS(t *testing.T) {
	caCert, caKey, n1 := pki(t, "n1")
	n2 := node(t, caCert, caKey, "n2")
	if n1.NodeID != "n1" || n2.NodeID != "n2" {
		t.Fatalf("ids %q %q", n1.NodeID, n2.NodeID)
	}
	c, s, cerr, serr := handshake(t, n1.Server(), n2.Client())
	if cerr != nil || serr != nil || c != "n1" || s != "n2" {
		t.Fatalf("member handshake: client saw %q (%v), server saw %q (%v)", c, cerr, s, serr)
	}

	// A node of another cluster is refused both ways.
	_, _, stranger := pki(t, "n1")
	if _, _, cerr, serr := handshake(t, n1.Server(), stranger.Client()); cerr == nil && serr == nil {
		t.Fatal("a stranger's client certificate was accepted")
	}
	if _, _, cerr, serr := handshake(t, stranger.Server(), n1.Client()); cerr == nil && serr == nil {
		t.Fatal("a stranger's server certificate was accepted")
	}
	// A client with no certificate is refused.
	if _, _, cerr, serr := handshake(t, n1.Server(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}); cerr == nil && serr == nil {
		t.Fatal("a client without a certificate was accepted")
	}
}

func TestNewRejects(t *testing.T) {
	caCert, caKey, _ := pki(t, "n1")
	otherCA, _, _ := pki(t, "x")
	certPEM, keyPEM, err := NewNodeCert(caCert, caKey, "n1", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(otherCA, pair); !errors.Is(err, ErrNotMember) {
		t.Errorf("certificate of another CA: %v", err)
	}
	if _, err := New([]byte("not pem"), pair); !errors.Is(err, ErrNoCA) {
		t.Errorf("no CA: %v", err)
	}
	if _, _, err := NewNodeCert(caCert, caKey, "", nil, time.Hour); !errors.Is(err, ErrBadNodeCert) {
		t.Errorf("empty id: %v", err)
	}
	if _, _, err := NewNodeCert(certPEM, keyPEM, "n2", nil, time.Hour); err == nil {
		t.Error("a node certificate signed another")
	}
	if _, err := Load("/nonexistent/ca.pem", "x", "y"); err == nil {
		t.Error("Load of missing files")
	}
}
