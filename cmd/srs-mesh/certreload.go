package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves the certificate of the client TLS listeners (--https,
// --api-https) from a PEM certificate file and key file, and reads them
// again when either changes (size or modification time), so that rotations
// (cert-manager rewrites a Secret's files) need no restart. It looks at the
// files at most once per checkEvery, from the TLS handshakes themselves:
// no goroutine. A pair that does not load (half-written, or a key that does
// not match) is logged and the previous certificate stays in use.
type certReloader struct {
	certFile, keyFile string
	checkEvery        time.Duration
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp // of certFile and keyFile when cert was loaded
	checked time.Time
}

// fileStamp is what says that a file changed.
type fileStamp struct {
	size int64
	mod  time.Time
}

// newCertReloader loads the pair once and fails when it does not load, so
// that a node with a bad certificate does not start.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--https and --api-https need --https-cert-file and --https-key-file")
	}
	r := &certReloader{certFile: certFile, keyFile: keyFile, checkEvery: time.Second, log: log, now: time.Now}
	stamp, err := r.stamps()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--https-cert-file and --https-key-file: %w", err)
	}
	r.cert, r.stamp, r.checked = &cert, stamp, r.now()
	return r, nil
}

func (r *certReloader) stamps() ([2]fileStamp, error) {
	var out [2]fileStamp
	for i, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return out, err
		}
		out[i] = fileStamp{size: fi.Size(), mod: fi.ModTime()}
	}
	return out, nil
}

// GetCertificate is tls.Config.GetCertificate: the current certificate,
// read again first when the files changed and the last look is older than
// checkEvery.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= r.checkEvery {
		r.checked = now
		r.reload()
	}
	return r.cert, nil
}

// reload reads the pair again when the files changed; r.mu is held.
func (r *certReloader) reload() {
	stamp, err := r.stamps()
	if err != nil {
		r.log.Warn("client TLS certificate files unreadable; keeping the loaded certificate", "err", err)
		return
	}
	if stamp == r.stamp {
		return
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		// Often a rotation caught between its two writes: the next look
		// tries again.
		r.log.Warn("client TLS certificate files changed but do not load; keeping the loaded certificate", "err", err)
		return
	}
	r.cert, r.stamp = &cert, stamp
	r.log.Info("client TLS certificate reloaded", "cert_file", r.certFile, "not_after", cert.Leaf.NotAfter)
}

// tlsConfig is the server configuration of the client HTTPS listeners:
// HTTP/1.1 only (HTTP-FLV players' connections are taken over from
// net/http, which HTTP/2 does not allow), TLS 1.2 or later.
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
}

// rtmpsConfig is the server configuration of --rtmps: TLS 1.2 or later,
// no application protocol negotiated.
func (r *certReloader) rtmpsConfig() *tls.Config {
	return &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12}
}
