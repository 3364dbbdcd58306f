package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// startProtocolCluster is startCluster with every client listener enabled
// (RTMP, HTTP streams, SRS API with WebRTC signalling, WebRTC media, SRT).
// perNode, when not nil, returns extra flags for node i once all addresses
// are known (e.g. to announce another node's WebRTC address).
func startProtocolCluster(t *testing.T, n int, perNode func(i int, nodes []*harness.Node) []string, extra ...string) *cluster {
	t.Helper()
	c := &cluster{}
	for i := 0; i < n; i++ {
		c.nodes = append(c.nodes, harness.NewNode(t, binary, harness.NodeSpec{ID: fmt.Sprintf("n%d", i+1), Protocols: true}))
	}
	for i, nd := range c.nodes {
		args := []string{"--bootstrap-expect", fmt.Sprint(n)}
		for j, other := range c.nodes {
			if j != i {
				args = append(args, "--join", other.GossipAddr)
			}
		}
		args = append(args, extra...)
		if perNode != nil {
			args = append(args, perNode(i, c.nodes)...)
		}
		nd.Args = append(nd.Args, args...)
	}
	harness.DumpOnFailure(t, c.nodes...)
	for _, nd := range c.nodes {
		nd.Start()
	}
	c.waitFormed(t, n, 30*time.Second)
	return c
}

// waitOriginsHealthy waits until every running node (stopped ones are
// skipped) knows want origins, all healthy.
func (c *cluster) waitOriginsHealthy(t *testing.T, want int) {
	t.Helper()
	testkit.WaitFor(t, 20*time.Second, fmt.Sprintf("%d origins healthy on every node", want), func() bool {
		for _, nd := range c.nodes {
			if nd.Proc() == nil || nd.Proc().Exited() {
				continue
			}
			var st mesh.Status
			if nd.Status(&st) != nil || len(st.Origins) != want {
				return false
			}
			for _, o := range st.Origins {
				if !o.Healthy {
					return false
				}
			}
		}
		return true
	})
}

// waitAssigned waits until every running node (stopped ones are skipped)
// has an assignment for key and they all name the same origin, which it
// returns.
func (c *cluster) waitAssigned(t *testing.T, key string) string {
	t.Helper()
	var owner string
	testkit.WaitFor(t, 20*time.Second, "assignment of "+key+" replicated to all nodes", func() bool {
		owner = ""
		for _, nd := range c.nodes {
			if nd.Proc() == nil || nd.Proc().Exited() {
				continue
			}
			var st mesh.Status
			if nd.Status(&st) != nil {
				return false
			}
			a, ok := assignmentOf(st, key)
			if !ok || (owner != "" && a.Origin != owner) {
				return false
			}
			owner = a.Origin
		}
		return owner != ""
	})
	return owner
}

// e2eHTTP is the client of the tests' own HTTP requests; httpGet also
// bounds each request with a deadline.
var e2eHTTP = &http.Client{Timeout: 20 * time.Second}

// httpGet GETs url and returns the response (body closed) and the body.
func httpGet(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e2eHTTP.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, body
}
