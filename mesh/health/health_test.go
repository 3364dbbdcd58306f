package health

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// A successful probe is replicated whenever it is newer than the replica's
// time, never for an unhealthy origin or one with a real change this round;
// the change that marks an origin down carries its last successful probe.
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
		t.Fatalf("refreshed again with nothing new: %+v", again)
	}
	up.LastProbeMs = refresh[0].ProbeMs - 1
	if again := c.Refreshes([]state.OriginState{up}, nil); len(again) != 1 {
		t.Fatalf("a newer probe is not refreshed: %+v", again)
	}

	// The origin stops answering: two failed probes mark it down, with the
	// time it last answered.
	lastOK := refresh[0].ProbeMs
	ln.Close()
	up.LastProbeMs = lastOK
	var down2 []state.HealthChange
	for range 2 {
		down2 = c.Round(context.Background(), []state.OriginState{up})
	}
	if len(down2) != 1 || down2[0].Healthy || down2[0].ProbeMs != lastOK {
		t.Fatalf("down change %+v, want the last successful probe %d", down2, lastOK)
	}
}
