package mesh_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/peers"
	"github.com/srs-mesh/srs-mesh/mesh/streams"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

func getDoc(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func streamOf(doc streams.Cluster, key string) (streams.Stream, bool) {
	for _, s := range doc.Streams {
		if s.Key == key {
			return s, true
		}
	}
	return streams.Stream{}, false
}

func TestClusterStreamsSumsSessions(t *testing.T) {
	c := startCluster(t, 3, nil)
	o := startOrigin(t, "o1")
	registerOrigins(t, c, o)
	ctx := context.Background()
	if _, err := c.Node(0).Route(ctx, key(1)); err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(clusterTimeout)

	var ends []func()
	track := func(i int, k int, proto string, times int) {
		for range times {
			ends = append(ends, c.Node(i).Track(key(k), proto, stream.KindPlay))
		}
	}
	track(0, 1, "rtmp", 2)
	track(1, 1, "flv", 1)
	track(2, 1, "RTMP", 1) // labels are lower-cased
	track(1, 2, "srt", 1)  // live, but never routed: no assignment
	end := c.Node(1).Track(key(3), "flv", stream.KindPlay)
	end()
	end()

	var local streams.Local
	getDoc(t, c.Members[1].URL+"/mesh/v1/local/sessions", &local)
	if local.Node != "node1" || len(local.Streams) != 2 || local.Streams[0].Key != key(1).String() ||
		local.Streams[0].Clients["flv"] != 1 || local.Streams[1].Clients["srt"] != 1 {
		t.Fatalf("local sessions of node1: %+v", local)
	}

	var doc streams.Cluster
	getDoc(t, c.Members[2].URL+"/mesh/v1/streams", &doc)
	if len(doc.Nodes) != 3 {
		t.Fatalf("nodes = %+v", doc.Nodes)
	}
	for _, n := range doc.Nodes {
		if !n.OK || n.Error != "" {
			t.Fatalf("node answer %+v", n)
		}
	}
	s1, ok := streamOf(doc, key(1).String())
	if !ok || s1.Origin != "o1" || !s1.OriginHealthy || s1.TotalClients != 4 || s1.Clients["rtmp"] != 3 ||
		s1.Clients["flv"] != 1 || s1.Nodes["node0"] != 2 || s1.Nodes["node1"] != 1 || s1.Nodes["node2"] != 1 || s1.CreatedUnixMs == 0 {
		t.Fatalf("stream 1 = %+v", s1)
	}
	s2, ok := streamOf(doc, key(2).String())
	if !ok || s2.Origin != "" || s2.TotalClients != 1 || s2.Clients["srt"] != 1 || s2.Nodes["node1"] != 1 {
		t.Fatalf("stream 2 (live, unassigned) = %+v", s2)
	}
	if _, ok := streamOf(doc, key(3).String()); ok {
		t.Fatal("ended session still listed")
	}

	for _, e := range ends {
		e()
	}
	// A killed node is reported, and the answer still comes back.
	c.Kill(2)
	start := time.Now()
	getDoc(t, c.Members[0].URL+"/mesh/v1/streams", &doc)
	// A generous bound: each peer's own bound (peers.Timeout) is checked
	// in package peers.
	if d := time.Since(start); d > 10*peers.Timeout {
		t.Fatalf("streams with a dead node took %v", d)
	}
	var bad []peers.Answer
	for _, n := range doc.Nodes {
		if !n.OK {
			bad = append(bad, n)
		}
	}
	if len(bad) != 1 || bad[0].ID != "node2" || bad[0].Error == "" {
		t.Fatalf("node answers with node2 dead: %+v", doc.Nodes)
	}
	if s1, ok := streamOf(doc, key(1).String()); !ok || s1.TotalClients != 0 || s1.Clients == nil || s1.Nodes == nil {
		t.Fatalf("stream 1 after all sessions ended = %+v", s1)
	}
	if _, ok := streamOf(doc, key(2).String()); ok {
		t.Fatal("unassigned stream listed after its session ended")
	}
	testkit.WaitFor(t, clusterTimeout, "node2 seen dead by gossip", func() bool {
		var d streams.Cluster
		getDoc(t, c.Members[0].URL+"/mesh/v1/streams", &d)
		for _, n := range d.Nodes {
			if n.ID == "node2" {
				return n.Error == "gossip state dead"
			}
		}
		return false
	})
}
