package health

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// A successful probe is replicated when the replica's time trails it by
// more than ReplicateEvery, never for an unhealthy origin or one with a real
// change this round.
func TestRefreshes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	c := New(Config{ProbeTimeout: time.Second, OriginTimeout: 4 * time.Second, HeartbeatTimeout: 30 * time.Second})
	up := state.OriginState{Origin: stream.Origin{ID: "up", RTMP: ln.Addr().String()}, Healthy: true}
	down := state.OriginState{Origin: stream.Origin{ID: "down", RTMP: ln.Addr().String()}, Healthy: false}
	origins := []state.OriginState{up, down}
	changes := c.Round(context.Background(), origins)
	if len(changes) != 1 || changes[0].ID != "down" || !changes[0].Healthy {
		t.Fatalf("changes %+v", changes)
	}
	refresh := c.Refreshes(origins, changes)
	if len(refresh) != 1 || refresh[0].ID != "up" || refresh[0].ProbeMs == 0 {
		t.Fatalf("refreshes %+v", refresh)
	}
	up.LastProbeMs = refresh[0].ProbeMs
	if again := c.Refreshes([]state.OriginState{up}, nil); len(again) != 0 {
		t.Fatalf("refreshed again at once: %+v", again)
	}
}
