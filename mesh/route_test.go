package mesh_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Players of streams nobody publishes add at most MaxPlayOnly assignments
// (and at most PlayOnlyRate a second from one node); every play still gets
// an origin, and a publisher is still assigned.
func TestRoutePlayIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name       string
		max, rate  int
		wantAtMost int
	}{
		{"cap", 5, 1000, 5},
		{"rate", 1000, 1, 2}, // a burst of twice the rate
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, 1, func(_ int, cfg *mesh.Config) { cfg.MaxPlayOnly, cfg.PlayOnlyRate = tc.max, tc.rate })
			registerOrigins(t, c, startOrigin(t, "o1"))
			n := c.Node(0)
			for i := range 50 {
				k := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: fmt.Sprintf("anon%d", i)}
				if o, err := n.RoutePlay(context.Background(), k); err != nil || o.ID != "o1" {
					t.Fatalf("play %d: %v %v", i, o, err)
				}
			}
			if got := len(n.Status().Assignments); got > tc.wantAtMost {
				t.Fatalf("%d assignments after 50 anonymous plays, want at most %d", got, tc.wantAtMost)
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
