// Package clustertls is the mutual TLS of srs-mesh's cluster traffic (Raft
// and node-to-node HTTP): one CA, and a certificate per node whose common
// name is the node's id. It loads the PEM files a node is started with and
// makes the CA and node certificates that `srs-mesh tls` writes.
//
// Peers are verified against the CA alone, not against a host name: nodes
// reach each other by addresses that change (a pod's IP), while what a
// certificate proves is membership and, by the names it carries (its common
// name and subject alternative names), which node a peer is. Callers that
// know which node they expect check Names.
package clustertls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"slices"
	"time"
)

// Errors.
var (
	ErrNoPeerCert  = errors.New("clustertls: the peer sent no certificate")
	ErrNoCA        = errors.New("clustertls: the CA file holds no certificate")
	ErrNotMember   = errors.New("clustertls: the peer's certificate is not signed by the cluster CA")
	ErrBadNodeCert = errors.New("clustertls: not a node certificate")
)

// Config is a node's cluster TLS material. It is safe for concurrent use.
type Config struct {
	pool *x509.CertPool
	cert tls.Certificate
	// NodeID is the common name of the node's own certificate.
	NodeID string
	// Names are the names of the node's own certificate (see Names).
	Names []string
}

// Load reads the CA certificate (PEM, one or more), the node certificate
// and its key.
func Load(caFile, certFile, keyFile string) (*Config, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("clustertls: CA: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("clustertls: node certificate: %w", err)
	}
	return New(caPEM, cert)
}

// New builds a Config from the CA's PEM and the node's key pair. The node
// certificate must chain to the CA.
func New(caPEM []byte, cert tls.Certificate) (*Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, ErrNoCA
	}
	if len(cert.Certificate) == 0 {
		return nil, ErrBadNodeCert
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("clustertls: node certificate: %w", err)
	}
	if err := verify(pool, leaf, cert.Certificate[1:]); err != nil {
		return nil, fmt.Errorf("clustertls: the node certificate (%s): %w", leaf.Subject.CommonName, err)
	}
	cert.Leaf = leaf
	return &Config{pool: pool, cert: cert, NodeID: leaf.Subject.CommonName, Names: Names(leaf)}, nil
}

// verify checks that leaf chains to pool, for use by a client or a server.
func verify(pool *x509.CertPool, leaf *x509.Certificate, intermediates [][]byte) error {
	inter := x509.NewCertPool()
	for _, der := range intermediates {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotMember, err)
	}
	return nil
}

// verifyPeer is the VerifyConnection of both sides: the peer presented a
// certificate signed by the cluster CA.
func (c *Config) verifyPeer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return ErrNoPeerCert
	}
	var inter [][]byte
	for _, p := range cs.PeerCertificates[1:] {
		inter = append(inter, p.Raw)
	}
	return verify(c.pool, cs.PeerCertificates[0], inter)
}

// Server returns the TLS configuration of a cluster listener: TLS 1.3, and
// a client certificate signed by the CA is required.
func (c *Config) Server() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.cert},
		ClientAuth:   tls.RequireAnyClientCert,
		// The chain is checked by verifyPeer rather than by ClientCAs so
		// that both sides apply the same rule.
		VerifyConnection: c.verifyPeer,
	}
}

// Client returns the TLS configuration for dialing a peer: the node's own
// certificate, and the peer's checked against the CA (not its host name).
func (c *Config) Client() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{c.cert},
		InsecureSkipVerify: true, // the chain is checked by verifyPeer; host names are not identities here
		VerifyConnection:   c.verifyPeer,
	}
}

// Names lists what a certificate names a node by: its common name, DNS
// names and URIs, in that order, without duplicates or empty ones. (IP
// addresses are addresses, not node ids.)
func Names(c *x509.Certificate) []string {
	var out []string
	add := func(s string) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	add(c.Subject.CommonName)
	for _, d := range c.DNSNames {
		add(d)
	}
	for _, u := range c.URIs {
		add(u.String())
	}
	return out
}

// PeerNames is Names of a verified peer's certificate.
func PeerNames(cs tls.ConnectionState) ([]string, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, ErrNoPeerCert
	}
	return Names(cs.PeerCertificates[0]), nil
}

// PeerNodeID is the node id a verified peer's certificate names.
func PeerNodeID(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", ErrNoPeerCert
	}
	return cs.PeerCertificates[0].Subject.CommonName, nil
}

// NewCA makes a self-signed CA for a cluster, valid for validity, and
// returns its certificate and key in PEM.
func NewCA(name string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl, err := template(name, validity)
	if err != nil {
		return nil, nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	return encode(der, key)
}

// NewNodeCert makes a certificate for node id signed by the CA (its PEM
// certificate and key), valid for validity, usable as both TLS server and
// client. hosts (names or IPs) become subject alternative names, for tools
// that check them; the cluster itself checks the CA and the common name.
func NewNodeCert(caCertPEM, caKeyPEM []byte, id string, hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if id == "" {
		return nil, nil, fmt.Errorf("%w: empty node id", ErrBadNodeCert)
	}
	ca, err := tls.X509KeyPair(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("clustertls: CA: %w", err)
	}
	caLeaf, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	if !caLeaf.IsCA {
		return nil, nil, errors.New("clustertls: the CA certificate is not a CA")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl, err := template(id, validity)
	if err != nil {
		return nil, nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tmpl.DNSNames = []string{id}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && h != id {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caLeaf, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return nil, nil, err
	}
	return encode(der, key)
}

// template is a certificate template with a random serial, valid from a
// minute ago (clock skew) for validity.
func template(cn string, validity time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"srs-mesh"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
	}, nil
}

// encode returns the PEM of a certificate and of its EC key.
func encode(der []byte, key *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

// PeerOfRequest is the node id of the member that sent r over mutual TLS.
func PeerOfRequest(r *http.Request) (string, error) {
	if r.TLS == nil {
		return "", ErrNoPeerCert
	}
	return PeerNodeID(*r.TLS)
}
