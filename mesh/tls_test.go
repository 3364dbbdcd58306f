package mesh_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/clusterport"
	"github.com/srs-mesh/srs-mesh/mesh/clustertls"
	"github.com/srs-mesh/srs-mesh/mesh/meshtest"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// testCA is a cluster CA that signs node certificates for tests.
type testCA struct{ cert, key []byte }

func newTestCA(t testing.TB) testCA {
	t.Helper()
	c, k, err := clustertls.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{c, k}
}

// node returns the TLS material of a certificate naming id.
func (ca testCA) node(t testing.TB, id string) *clustertls.Config {
	t.Helper()
	certPEM, keyPEM, err := clustertls.NewNodeCert(ca.cert, ca.key, id, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clustertls.New(ca.cert, pair)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A cluster whose nodes talk mutual TLS forms, forwards writes from
// followers, and answers cluster-wide stream queries.
func TestTLSClusterForms(t *testing.T) {
	ca := newTestCA(t)
	c := startCluster(t, 3, func(i int, cfg *mesh.Config) { cfg.TLS = ca.node(t, cfg.NodeID) })
	o := startOrigin(t, "o1")
	registerOrigins(t, c, o)
	leader := c.Leader()
	follower := (leader + 1) % 3
	if _, err := c.Node(follower).Route(context.Background(), key(1)); err != nil {
		t.Fatalf("route through a follower (a forwarded write): %v", err)
	}
	end := c.Node(follower).Track(key(1), "rtmp", stream.KindPlay)
	defer end()
	testkit.WaitFor(t, clusterTimeout, "the leader sees the follower's session", func() bool {
		doc := c.Node(leader).Telemetry().ClusterStreams(context.Background())
		for _, s := range doc.Streams {
			if s.Key == key(1).String() && s.Nodes[c.Members[follower].Config.NodeID] == 1 {
				return true
			}
		}
		return false
	})
}

// A node of another CA that joins gossip is never added as a voter, and a
// node whose certificate (of the right CA) names another node is not either;
// the leader keeps leading.
func TestTLSStrangersNeverVote(t *testing.T) {
	ca := newTestCA(t)
	stranger := newTestCA(t)
	c := meshtest.Start(t, meshtest.Options{N: 3, Logger: testLogger(), Tweak: func(i int, cfg *mesh.Config) {
		switch i {
		case 1:
			cfg.TLS = stranger.node(t, cfg.NodeID) // another cluster's CA
		case 2:
			cfg.TLS = ca.node(t, "node0") // the right CA, someone else's name
		default:
			cfg.TLS = ca.node(t, cfg.NodeID)
		}
		// node0 bootstraps alone; the others wait for three members
		// without state, which they never see, so they only ever join.
		cfg.BootstrapExpect = 3
		if i == 0 {
			cfg.BootstrapExpect = 1
		}
	}})
	testkit.WaitFor(t, clusterTimeout, "node0 leads", func() bool { return c.Node(0).IsLeader() })
	testkit.WaitFor(t, clusterTimeout, "node0 sees both others in gossip", func() bool {
		alive := 0
		for _, m := range c.Node(0).Status().Members {
			if m.ID != "node0" && m.GossipState == "alive" {
				alive++
			}
		}
		return alive == 2
	})
	// The leader reconciles voters at least every few seconds; give it time
	// to try, and check it never admits them.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range c.Node(0).Status().Members {
			if m.ID != "node0" && (m.Voter || m.RaftRole != "none") {
				t.Fatalf("%s joined node0's Raft configuration: %+v", m.ID, m)
			}
		}
		if !c.Node(0).IsLeader() {
			t.Fatal("node0 lost leadership")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The node-to-node API lives on the cluster port only: it needs the token,
// refuses commands that followers never forward, and applies the others.
func TestInternalAPIOnClusterPort(t *testing.T) {
	c := meshtest.Start(t, meshtest.Options{N: 1, Token: "s3cret", Logger: testLogger()})
	c.WaitLeader(clusterTimeout)
	addr := c.Members[0].Config.RaftAddr.String()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, a string) (net.Conn, error) {
		return (&clusterport.Dialer{}).Dial(ctx, a, clusterport.ServiceHTTP)
	}}}
	defer hc.CloseIdleConnections()
	post := func(body []byte, token string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/mesh/v1/internal/apply", bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct{ Code int }
		json.NewDecoder(resp.Body).Decode(&r)
		return resp.StatusCode
	}
	assign, _ := state.Encode(state.AssignCmd{Key: key(1).String(), NowMs: 1})
	health, _ := state.Encode(state.SetHealthCmd{})
	for _, tc := range []struct {
		name   string
		body   []byte
		token  string
		status int
	}{
		{"no token", assign, "", 401},
		{"garbage", []byte("xx"), "s3cret", 400},
		{"a leader's own command", health, "s3cret", 403},
		{"forwarded assignment", assign, "s3cret", 200},
	} {
		if got := post(tc.body, tc.token); got != tc.status {
			t.Errorf("%s: HTTP %d, want %d", tc.name, got, tc.status)
		}
	}
	if !strings.HasPrefix(c.Members[0].URL, "http://") {
		t.Fatal(c.Members[0].URL)
	}
	resp, err := http.Post(c.Members[0].URL+"/mesh/v1/internal/apply?token=s3cret", "application/octet-stream", bytes.NewReader(assign))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("internal apply on the system API: HTTP %d", resp.StatusCode)
	}
}

// Nodes that share one certificate of the CA (it names no node) prove
// membership, not identity: the cluster forms with every node a voter.
func TestTLSSharedCertificate(t *testing.T) {
	ca := newTestCA(t)
	shared := ca.node(t, "srs-mesh-shared")
	c := startCluster(t, 3, func(_ int, cfg *mesh.Config) { cfg.TLS = shared })
	registerOrigins(t, c, startOrigin(t, "o1"))
	follower := (c.Leader() + 1) % 3
	if _, err := c.Node(follower).Route(context.Background(), key(1)); err != nil {
		t.Fatalf("a forwarded write: %v", err)
	}
}

// A member's forwarded move is applied only when the origin it leaves has
// failed: the leader answers 409 while that origin is healthy and accepts
// connections, and applies the same move once the origin is gone.
func TestLeaderChecksForwardedMoves(t *testing.T) {
	c := meshtest.Start(t, meshtest.Options{N: 1, Token: "s3cret", Logger: testLogger()})
	c.WaitLeader(clusterTimeout)
	a, b := startOrigin(t, "oa"), startOrigin(t, "ob")
	registerOrigins(t, c, a, b)
	n := c.Node(0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var k string
	for i := 0; k == ""; i++ {
		if o, err := n.Route(ctx, key(i)); err != nil {
			t.Fatal(err)
		} else if o.ID == "oa" {
			k = key(i).String()
		}
	}
	addr := c.Members[0].Config.RaftAddr.String()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, a string) (net.Conn, error) {
		return (&clusterport.Dialer{}).Dial(ctx, a, clusterport.ServiceHTTP)
	}}}
	defer hc.CloseIdleConnections()
	move, _ := state.Encode(state.MoveCmd{Key: k, From: "oa", NowMs: time.Now().UnixMilli()})
	post := func() int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/mesh/v1/internal/apply", bytes.NewReader(move))
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(); got != http.StatusConflict {
		t.Fatalf("move off a live origin: HTTP %d, want 409", got)
	}
	if o, _ := n.Route(ctx, mustKey(t, k)); o.ID != "oa" || n.Epoch(mustKey(t, k)) != 0 {
		t.Fatalf("after a refused move: %s, epoch %d", o.ID, n.Epoch(mustKey(t, k)))
	}
	a.close()
	if got := post(); got != http.StatusOK {
		t.Fatalf("move off a dead origin: HTTP %d, want 200", got)
	}
	if e := n.Epoch(mustKey(t, k)); e != 1 {
		t.Fatalf("epoch %d after the move, want 1", e)
	}
}
