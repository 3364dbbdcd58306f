package mesh_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Players of streams nobody publishes add at most MaxPlayOnly assignments
// (and at most PlayOnlyRate a second from one node, after a burst of twice
// that); every play still gets an origin, and a publisher is still assigned.
// The rate bound counts the seconds the plays took, so a slow run does not
// fail it.
func TestRoutePlayIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name      string
		max, rate int
	}{
		{"cap", 5, 1000},
		{"rate", 1000, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, 1, func(_ int, cfg *mesh.Config) { cfg.MaxPlayOnly, cfg.PlayOnlyRate = tc.max, tc.rate })
			registerOrigins(t, c, startOrigin(t, "o1"))
			n := c.Node(0)
			began := time.Now()
			for i := range 50 {
				k := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: fmt.Sprintf("anon%d", i)}
				if o, err := n.RoutePlay(context.Background(), k); err != nil || o.ID != "o1" {
					t.Fatalf("play %d: %v %v", i, o, err)
				}
			}
			elapsed := time.Since(began)
			wantAtMost := min(tc.max, 2*tc.rate+int(float64(tc.rate)*elapsed.Seconds()))
			if got := len(n.Status().Assignments); got > wantAtMost {
				t.Fatalf("%d assignments after 50 anonymous plays in %v, want at most %d", got, elapsed, wantAtMost)
			}
			if _, err := n.Route(context.Background(), key(1)); err != nil {
				t.Fatalf("a publisher after the flood: %v", err)
			}
			found := false
			for _, a := range n.Status().Assignments {
				found = found || a.Key == key(1).String()
			}
			if !found {
				t.Fatal("the publisher's stream was not assigned")
			}
		})
	}
}

// A publish writes its assignment only once the origin accepted it:
// RoutePublish writes nothing, so refused publishes leave no state.
// PublishAccepted writes at most PublishRate a second from one node (a
// burst of twice as many) and MaxAssignments in the mesh, prefers the
// origin that accepted, and routes every publish either way.
func TestRoutePublishIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name       string
		max, rate  int
		wantAtMost int
	}{
		{"cap", 5, 1000, 5},
		{"rate", 1000, 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, 1, func(_ int, cfg *mesh.Config) { cfg.MaxAssignments, cfg.PublishRate = tc.max, tc.rate })
			registerOrigins(t, c, startOrigin(t, "o1"), startOrigin(t, "o2"))
			n := c.Node(0)
			ctx := context.Background()
			// Publishes that the origins refuse: routed, never written.
			for i := range 50 {
				k := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: fmt.Sprintf("refused%d", i)}
				if o, err := n.RoutePublish(ctx, k); err != nil || o.ID == "" {
					t.Fatalf("publish %d: %v %v", i, o, err)
				}
			}
			if got := len(n.Status().Assignments); got != 0 {
				t.Fatalf("%d assignments after 50 publishes nobody accepted", got)
			}
			// Accepted ones: bounded writes, every one routed.
			o2, _ := n.Origin("o2")
			for i := range 50 {
				k := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: fmt.Sprintf("accepted%d", i)}
				if o, err := n.PublishAccepted(ctx, k, o2); err != nil || o.ID != "o2" {
					t.Fatalf("accepted publish %d: %v %v", i, o, err)
				}
			}
			as := n.Status().Assignments
			if len(as) == 0 || len(as) > tc.wantAtMost {
				t.Fatalf("%d assignments after 50 accepted publishes, want 1..%d", len(as), tc.wantAtMost)
			}
			for _, a := range as {
				if a.Origin != "o2" {
					t.Fatalf("%s assigned to %s, not to the origin that accepted it", a.Key, a.Origin)
				}
			}
			// An assigned stream keeps its origin: a publish accepted
			// elsewhere is sent to it.
			k, _ := stream.ParseKey(as[0].Key)
			o1, _ := n.Origin("o1")
			if o, err := n.PublishAccepted(ctx, k, o1); err != nil || o.ID != "o2" {
				t.Fatalf("a second publish of an assigned stream: %v %v", o, err)
			}
			if o, err := n.RoutePublish(ctx, k); err != nil || o.ID != "o2" {
				t.Fatalf("route of an assigned stream: %v %v", o, err)
			}
		})
	}
}
