package mesh_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/meshtest"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// hasEvent reports whether evs has an event of kind about subject (origin
// or member), recorded by node when node is not "".
func hasEvent(evs []events.Event, kind, subject, node string) bool {
	return slices.ContainsFunc(evs, func(e events.Event) bool {
		return e.Kind == kind && (e.Origin == subject || e.Member == subject) && (node == "" || e.Node == node)
	})
}

// Every node's log is merged by /mesh/v1/events on any node: the leader's
// election, the joins (seen by every node, shown once), an origin going
// down and up (seen by the leader), and a drain (recorded where it was
// asked).
func TestClusterEvents(t *testing.T) {
	c := startCluster(t, 3, nil)
	leader := c.Leader()
	o := startOrigin(t, "o1")
	registerOrigins(t, c, o)
	follower := (leader + 1) % 3
	ctx := context.Background()
	if err := c.Node(follower).SetDraining(ctx, "o1", true); err != nil {
		t.Fatal(err)
	}
	if err := c.Node(follower).SetDraining(ctx, "o1", false); err != nil {
		t.Fatal(err)
	}
	o.close()

	var doc mesh.Events
	testkit.WaitFor(t, clusterTimeout, "o1 down in the merged events", func() bool {
		getDoc(t, c.Members[(leader+2)%3].URL+"/mesh/v1/events", &doc)
		return hasEvent(doc.Events, events.OriginDown, "o1", "")
	})
	leaderID := c.Members[leader].Node().Status().NodeID
	followerID := c.Members[follower].Node().Status().NodeID
	if !hasEvent(doc.Events, events.Leader, leaderID, leaderID) {
		t.Errorf("no leader event of %s: %+v", leaderID, doc.Events)
	}
	if !hasEvent(doc.Events, events.OriginAdded, "o1", "") {
		t.Errorf("o1's registration not recorded: %+v", doc.Events)
	}
	if !hasEvent(doc.Events, events.OriginDown, "o1", leaderID) {
		t.Errorf("origin down not recorded by the leader: %+v", doc.Events)
	}
	if !hasEvent(doc.Events, events.OriginDrained, "o1", followerID) || !hasEvent(doc.Events, events.OriginUndrained, "o1", followerID) {
		t.Errorf("drain and undrain not recorded by %s: %+v", followerID, doc.Events)
	}
	for _, m := range []string{"node0", "node1", "node2"} {
		n := 0
		for _, e := range doc.Events {
			if e.Kind == events.NodeJoined && e.Member == m {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s joined %d times in the merged events, want 1: %+v", m, n, doc.Events)
		}
	}
	if len(doc.Nodes) != 3 {
		t.Errorf("nodes %+v", doc.Nodes)
	}
	// Without a token, loopback callers are operators and see why.
	for _, e := range doc.Events {
		if e.Kind == events.OriginDown && e.Detail == "" {
			t.Errorf("origin down without its reason: %+v", e)
		}
	}
	if !slices.IsSortedFunc(doc.Events, func(a, b events.Event) int { return int(a.TimeUnixMs - b.TimeUnixMs) }) {
		t.Errorf("events not in time order")
	}

	// A limit keeps the latest; a bad one is refused.
	var two mesh.Events
	getDoc(t, c.Members[0].URL+"/mesh/v1/events?limit=2", &two)
	if len(two.Events) != 2 {
		t.Errorf("limit=2 gave %d events", len(two.Events))
	}
	resp, err := http.Get(c.Members[0].URL + "/mesh/v1/events?limit=-1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("limit=-1: %s", resp.Status)
	}

	// A node that leaves gracefully, and one that fails, are recorded by
	// the others, and the answer comes back without them.
	asked := (leader + 2) % 3
	left, dead := leader, (leader+1)%3
	leftID := c.Members[left].Node().Status().NodeID
	deadID := c.Members[dead].Node().Status().NodeID
	if err := c.Leave(left); err != nil {
		t.Logf("leave: %v", err) // the voters stay at --bootstrap-expect; gossip leave is what counts here
	}
	testkit.WaitFor(t, clusterTimeout, leftID+" left in the events", func() bool {
		getDoc(t, c.Members[asked].URL+"/mesh/v1/events", &doc)
		return hasEvent(doc.Events, events.NodeLeft, leftID, "")
	})
	c.Kill(dead)
	testkit.WaitFor(t, clusterTimeout, deadID+" failed in the events", func() bool {
		getDoc(t, c.Members[asked].URL+"/mesh/v1/events", &doc)
		return hasEvent(doc.Events, events.NodeFailed, deadID, "")
	})
	for _, a := range doc.Nodes {
		if a.ID == deadID && a.OK {
			t.Errorf("dead node answered: %+v", doc.Nodes)
		}
	}
	if hasEvent(doc.Events, events.NodeFailed, leftID, "") {
		t.Errorf("%s left gracefully but is recorded as failed: %+v", leftID, doc.Events)
	}
}

// With a token, why an origin went down is for callers that carry it.
func TestEventsRedactedWithoutToken(t *testing.T) {
	c := meshtest.Start(t, meshtest.Options{N: 1, Token: "tok", Logger: testLogger()})
	c.WaitLeader(clusterTimeout)
	o := startOrigin(t, "o1")
	registerOrigins(t, c, o)
	o.close()
	var doc mesh.Events
	testkit.WaitFor(t, clusterTimeout, "o1 down", func() bool {
		getDoc(t, c.Members[0].URL+"/mesh/v1/events", &doc)
		return hasEvent(doc.Events, events.OriginDown, "o1", "")
	})
	for _, e := range doc.Events {
		if e.Kind == events.OriginDown && e.Detail != "unhealthy" {
			t.Errorf("without the token: %q", e.Detail)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, c.Members[0].URL+"/mesh/v1/events", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	for _, e := range doc.Events {
		if e.Kind == events.OriginDown && !strings.Contains(e.Detail, "probe") {
			t.Errorf("with the token: %q", e.Detail)
		}
	}
}

// A stream moved off a failed origin is a stream_moved event, recorded once
// by the node that moved it (repeated observations move nothing), and one
// whose origin went down is recorded by the node whose route repaired it.
func TestStreamMovedEvents(t *testing.T) {
	c := startCluster(t, 3, nil)
	a, b := startOrigin(t, "oa"), startOrigin(t, "ob")
	registerOrigins(t, c, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var onA []stream.Key
	for i := 0; len(onA) < 2; i++ {
		o, err := c.Node(0).Route(ctx, key(i))
		if err != nil {
			t.Fatal(err)
		}
		if o.ID == "oa" {
			onA = append(onA, key(i))
		}
	}
	follower := (c.Leader() + 1) % 3
	fromA, _ := c.Node(0).Origin("oa")
	a.close() // oa dies; the follower sees it before the probes do
	if o, err := c.Node(follower).Reroute(ctx, onA[0], fromA); err != nil || o.ID != "ob" {
		t.Fatalf("reroute: %v %v", o.ID, err)
	}
	c.WaitApplied(clusterTimeout)
	for i := range c.Members {
		c.Node(i).Reroute(ctx, onA[0], fromA)
	}
	moved := func(doc mesh.Events, k stream.Key) []events.Event {
		var out []events.Event
		for _, e := range doc.Events {
			if e.Kind == events.StreamMoved && e.Stream == k.String() {
				out = append(out, e)
			}
		}
		return out
	}
	var doc mesh.Events
	getDoc(t, c.Members[0].URL+"/mesh/v1/events", &doc)
	followerID := c.Node(follower).Status().NodeID
	if m := moved(doc, onA[0]); len(m) != 1 || m[0].Origin != "ob" || m[0].Node != followerID || m[0].Detail != "from oa: its origin leg failed" {
		t.Fatalf("moves of %s: %+v", onA[0], m)
	}

	// The probes find oa down: the next route of the other stream repairs it.
	testkit.WaitFor(t, clusterTimeout, "oa unhealthy", func() bool { return !c.Node(2).OriginHealthy("oa") })
	if o, err := c.Node(2).Route(ctx, onA[1]); err != nil || o.ID != "ob" {
		t.Fatalf("route after oa went down: %v %v", o.ID, err)
	}
	getDoc(t, c.Members[1].URL+"/mesh/v1/events", &doc)
	if m := moved(doc, onA[1]); len(m) != 1 || m[0].Origin != "ob" || m[0].Detail != "from oa: origin oa unhealthy" {
		t.Fatalf("moves of %s: %+v", onA[1], m)
	}
}
