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
