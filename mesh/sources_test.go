package mesh_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestEvacuateMovesThroughLanded: draining an origin with move makes the
// leader plan a move of its stream; every node sees the target among the
// stream's sources; the node that feeds it says it landed (from a
// follower: the completion is forwarded) and the stream moves, planned,
// with every node told.
func TestEvacuateMovesThroughLanded(t *testing.T) {
	c := startCluster(t, 3, nil)
	o1, o2 := startOrigin(t, "o1"), startOrigin(t, "o2")
	registerOrigins(t, c, o1, o2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k := key(1)
	from, err := c.Node(0).Route(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	moved := map[int]int{}
	for i := range c.Members {
		c.Node(i).OnMoved(func(got stream.Key) {
			if got == k {
				mu.Lock()
				moved[i]++
				mu.Unlock()
			}
		})
	}
	follower := (c.Leader() + 1) % 3
	if err := c.Node(follower).Evacuate(ctx, from.ID); err != nil {
		t.Fatal(err)
	}
	var target stream.Origin
	testkit.WaitFor(t, 10*time.Second, "a planned move on every node", func() bool {
		for i := range c.Members {
			p, others, ok := c.Node(i).Sources(k)
			if !ok || p.ID != from.ID || len(others) != 1 || others[0].ID == from.ID {
				return false
			}
			target = others[0]
		}
		return true
	})
	// Landed from a node for another origin writes nothing.
	if err := c.Node(follower).Landed(ctx, k, from); err != nil {
		t.Fatal(err)
	}
	if err := c.Node(follower).Landed(ctx, k, target); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the stream on its new origin everywhere, every node told", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range c.Members {
			p, others, ok := c.Node(i).Sources(k)
			if !ok || p.ID != target.ID || len(others) != 0 || moved[i] != 1 {
				return false
			}
		}
		return true
	})
	for _, a := range c.Node(0).Status().Assignments {
		if a.Key == k.String() && (a.MoveKind != "planned" || a.MovedFrom != from.ID || a.Epoch != 1) {
			t.Fatalf("assignment after the move: %+v", a)
		}
	}
	for _, o := range c.Node(2).Status().Origins {
		if o.ID == from.ID && (!o.Draining || !o.Evacuating) {
			t.Fatalf("evacuated origin: %+v", o)
		}
	}
}

// TestReplicasAndPromotion: with two copies a published stream gets a
// warm replica; when its origin fails, the move promotes the replica.
func TestReplicasAndPromotion(t *testing.T) {
	c := startCluster(t, 3, func(_ int, cfg *mesh.Config) { cfg.StreamReplicas = 2 })
	o1, o2 := startOrigin(t, "o1"), startOrigin(t, "o2")
	registerOrigins(t, c, o1, o2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k := key(2)
	primary, err := c.Node(1).RoutePublish(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(1).PublishAccepted(ctx, k, primary); err != nil {
		t.Fatal(err)
	}
	var replica stream.Origin
	testkit.WaitFor(t, 10*time.Second, "a warm replica", func() bool {
		_, others, ok := c.Node(2).Sources(k)
		if !ok || len(others) != 1 {
			return false
		}
		replica = others[0]
		return replica.ID != primary.ID
	})
	dead := o1
	if primary.ID == o2.o.ID {
		dead = o2
	}
	dead.close()
	to, err := c.Node(1).Reroute(ctx, k, primary)
	if err != nil || to.ID != replica.ID {
		t.Fatalf("reroute went to %v (%v), want the replica %s", to.ID, err, replica.ID)
	}
	c.WaitApplied(clusterTimeout)
	for _, a := range c.Node(0).Status().Assignments {
		if a.Key == k.String() && a.MoveKind != "replica_promoted" {
			t.Fatalf("assignment after the failover: %+v", a)
		}
	}
}
