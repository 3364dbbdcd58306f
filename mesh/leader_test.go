package mesh_test

import (
	"context"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

func hasAssignment(n *mesh.Node, k stream.Key) bool {
	_, ok := assignmentsOf(n)[k.String()]
	return ok
}

func TestActivityKeepsAssignmentsAndGCRemovesIdle(t *testing.T) {
	c := startCluster(t, 3, func(i int, cfg *mesh.Config) {
		cfg.AssignmentTTL = time.Second
		cfg.TouchInterval = 200 * time.Millisecond
	})
	registerOrigins(t, c, startOrigin(t, "o1"))
	ctx := context.Background()
	idle, live, later := key(1), key(2), key(3)
	for _, k := range []stream.Key{idle, live} {
		if _, err := c.Node(1).Route(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	end := c.Node(2).Track(live, "rtmp", stream.KindPlay)
	defer end()
	testkit.WaitFor(t, clusterTimeout, "idle assignment collected everywhere", func() bool {
		for i := range c.Members {
			if hasAssignment(c.Node(i), idle) {
				return false
			}
		}
		return true
	})
	// Another full TTL and GC cycle later, the tracked key is still there.
	if _, err := c.Node(0).Route(ctx, later); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, clusterTimeout, "second idle assignment collected", func() bool {
		for i := range c.Members {
			if hasAssignment(c.Node(i), later) {
				return false
			}
		}
		return true
	})
	for i := range c.Members {
		if !hasAssignment(c.Node(i), live) {
			t.Fatalf("node%d lost the assignment of a live session", i)
		}
	}
}

func TestStaticAndHeartbeatOrigins(t *testing.T) {
	static := startOrigin(t, "static1")
	c := startCluster(t, 3, func(i int, cfg *mesh.Config) {
		cfg.StaticOrigins = []stream.Origin{static.o}
		cfg.HeartbeatTimeout = 500 * time.Millisecond
	})
	origin := func(id string) (mesh.OriginStatus, bool) {
		for _, o := range c.Node(0).Status().Origins {
			if o.ID == id {
				return o, true
			}
		}
		return mesh.OriginStatus{}, false
	}
	testkit.WaitFor(t, clusterTimeout, "static origin registered by the leader", func() bool {
		o, ok := origin("static1")
		return ok && o.Static && o.Healthy
	})
	// A UDP-only origin is judged by its heartbeats.
	udp := stream.Origin{ID: "srt1", IP: "127.0.0.1", SRT: "127.0.0.1:10080"}
	if err := c.Node(1).RegisterOrigin(context.Background(), udp); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, clusterTimeout, "udp origin unhealthy without heartbeats", func() bool {
		o, ok := origin("srt1")
		return ok && !o.Healthy && o.HealthReason != ""
	})
	if err := c.Node(2).RegisterOrigin(context.Background(), udp); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, clusterTimeout, "udp origin healthy after a heartbeat", func() bool {
		o, ok := origin("srt1")
		return ok && o.Healthy
	})
	// The static origin survives a leader change.
	c.Kill(c.WaitLeader(clusterTimeout))
	c.WaitLeader(clusterTimeout)
	for _, i := range c.Running() {
		n := c.Node(i)
		o, err := n.Route(context.Background(), key(1))
		if err != nil || (o.ID != "static1" && o.ID != "srt1") {
			t.Fatalf("route after failover: %v %v", o.ID, err)
		}
	}
}
