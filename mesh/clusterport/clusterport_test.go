package clusterport

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/clustertls"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func tlsPair(t *testing.T, caCert, caKey []byte, id string) (server, client *tls.Config) {
	t.Helper()
	certPEM, keyPEM, err := clustertls.NewNodeCert(caCert, caKey, id, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clustertls.New(caCert, pair)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Server(), cfg.Client()
}

func listen(t *testing.T, opts Options) *Port {
	t.Helper()
	opts.Logger = quiet
	p, err := Listen("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Both services work over one port, in plain TCP and in mutual TLS; the
// HTTP handler sees the peer's verified node id.
func TestServices(t *testing.T) {
	testkit.CheckGoroutines(t)
	caCert, caKey, err := clustertls.NewCA("c", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s1, c1 := tlsPair(t, caCert, caKey, "n1")
	_, c2 := tlsPair(t, caCert, caKey, "n2")
	for _, tc := range []struct {
		name         string
		server       Options
		client       *Dialer
		wantPeerNode string
	}{
		{"plain", Options{}, &Dialer{}, ""},
		{"mutual TLS", Options{ServerTLS: s1, ClientTLS: c1}, &Dialer{TLS: c2}, "n2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := listen(t, tc.server)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				peer := ""
				if r.TLS != nil {
					peer, _ = clustertls.PeerNodeID(*r.TLS)
				}
				io.WriteString(w, "peer="+peer)
			})}
			go srv.Serve(p.HTTP())
			defer srv.Close()

			hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return tc.client.Dial(ctx, addr, ServiceHTTP)
			}}}
			defer hc.CloseIdleConnections()
			resp, err := hc.Get("http://" + p.Addr().String() + "/x")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "peer="+tc.wantPeerNode {
				t.Fatalf("HTTP answer %q", b)
			}

			// Raft's stream layer: a dialed connection arrives on Accept.
			got := make(chan net.Conn, 1)
			go func() {
				c, err := p.Raft().Accept()
				if err == nil {
					got <- c
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := tc.client.Dial(ctx, p.Addr().String(), ServiceRaft)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("raft"))
			select {
			case sc := <-got:
				buf := make([]byte, 4)
				io.ReadFull(sc, buf)
				sc.Close()
				if string(buf) != "raft" {
					t.Fatalf("raft service read %q", buf)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("raft connection not accepted")
			}
		})
	}
}

// A peer without a certificate of the cluster CA never reaches a service;
// nor does one that names no service, or an unknown one, or says nothing.
func TestRefusals(t *testing.T) {
	testkit.CheckGoroutines(t)
	caCert, caKey, _ := clustertls.NewCA("c", time.Hour)
	s1, c1 := tlsPair(t, caCert, caKey, "n1")
	otherCA, otherKey, _ := clustertls.NewCA("other", time.Hour)
	_, stranger := tlsPair(t, otherCA, otherKey, "n1")
	p := listen(t, Options{ServerTLS: s1, ClientTLS: c1, HandshakeTimeout: 300 * time.Millisecond})
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := p.Raft().Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := (&Dialer{TLS: stranger}).Dial(ctx, p.Addr().String(), ServiceRaft); err == nil {
		// TLS 1.3 reports the server's refusal of the client certificate on
		// the first read.
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a stranger's connection stayed open")
		}
		c.Close()
	}
	if c, err := (&Dialer{}).Dial(ctx, p.Addr().String(), ServiceRaft); err == nil {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a plain connection to a TLS port stayed open")
		}
		c.Close()
	}
	if c, err := (&Dialer{TLS: c1}).Dial(ctx, p.Addr().String(), Service(9)); err == nil {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("an unknown service stayed open")
		}
		c.Close()
	}
	silent, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("a silent connection was not closed by the handshake timeout: %v", err)
	}
	silent.Close()
	select {
	case <-accepted:
		t.Fatal("a refused connection reached Raft")
	default:
	}
	p.Close()
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
