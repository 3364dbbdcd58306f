package mesh_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

func TestRTCSessionReplicated(t *testing.T) {
	c := startCluster(t, 3, func(i int, cfg *mesh.Config) { cfg.RTCSessionTTL = time.Second })
	l := c.WaitLeader(clusterTimeout)
	follower := (l + 1) % 3
	other := (l + 2) % 3
	ctx := context.Background()
	now := time.Now().UnixMilli()

	// Written on a follower (forwarded to the leader): the follower reads
	// its own write at once, the third node soon after.
	s := stream.RTCSession{Ufrag: "ans1:off1", OriginID: "o1", OriginRTC: "127.0.0.1:8000",
		Key: "__defaultVhost__/live/s1", Resource: "http://127.0.0.1:1985/rtc/v1/whep/?x=1", Pwd: "0123456789abcdef0123456789", CreatedUnixMs: now}
	if err := c.Node(follower).PutRTCSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got, ok := c.Node(follower).LookupRTCSession(s.Ufrag); !ok || got != s {
		t.Fatalf("lookup on the writing node right after put: %+v %v", got, ok)
	}
	testkit.WaitFor(t, clusterTimeout, "session on every node", func() bool {
		for i := range 3 {
			if got, ok := c.Node(i).LookupRTCSession(s.Ufrag); !ok || got != s {
				return false
			}
		}
		return true
	})
	if st := c.Node(other).Status(); st.RTCSessions != 1 {
		t.Fatalf("status rtc_sessions = %d", st.RTCSessions)
	}

	// Deleted on another node: gone there at once and everywhere soon.
	if err := c.Node(other).DeleteRTCSession(ctx, s.Ufrag); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Node(other).LookupRTCSession(s.Ufrag); ok {
		t.Fatal("session found on the deleting node after delete")
	}
	testkit.WaitFor(t, clusterTimeout, "session deleted on every node", func() bool {
		for i := range 3 {
			if _, ok := c.Node(i).LookupRTCSession(s.Ufrag); ok {
				return false
			}
		}
		return true
	})
	if err := c.Node(l).DeleteRTCSession(ctx, s.Ufrag); err != nil {
		t.Fatalf("delete of an absent session: %v", err)
	}

	// The leader expires sessions older than RTCSessionTTL.
	old := s
	old.Ufrag, old.CreatedUnixMs = "old:x", now-time.Hour.Milliseconds()
	fresh := s
	fresh.Ufrag, fresh.CreatedUnixMs = "fresh:x", time.Now().Add(time.Hour).UnixMilli()
	for _, x := range []stream.RTCSession{old, fresh} {
		if err := c.Node(follower).PutRTCSession(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, clusterTimeout, "expired session collected", func() bool {
		_, ok := c.Node(other).LookupRTCSession(old.Ufrag)
		return !ok
	})
	if _, ok := c.Node(other).LookupRTCSession(fresh.Ufrag); !ok {
		t.Fatal("fresh session collected")
	}
	if err := c.Node(0).PutRTCSession(ctx, stream.RTCSession{}); err == nil {
		t.Fatal("session without ufrag accepted")
	}
}

func TestRTCSessionWithoutQuorumFailsWithinBound(t *testing.T) {
	c := startCluster(t, 3, func(i int, cfg *mesh.Config) { cfg.RouteTimeout = 500 * time.Millisecond })
	l := c.WaitLeader(clusterTimeout)
	survivor := (l + 1) % 3
	for i := range 3 {
		if i != survivor {
			c.Kill(i)
		}
	}
	start := time.Now()
	err := c.Node(survivor).PutRTCSession(context.Background(), stream.RTCSession{Ufrag: "a:b", CreatedUnixMs: 1})
	if err == nil {
		t.Fatal("put without quorum succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("put without quorum took %v", d)
	}
	t.Logf("put without quorum: %v after %v", err, time.Since(start))
}

func BenchmarkLookupRTCSession(b *testing.B) {
	c := startCluster(b, 1, nil)
	n := c.Node(0)
	for i := range 1000 {
		if err := n.PutRTCSession(context.Background(), stream.RTCSession{Ufrag: fmt.Sprintf("a%d:b", i), CreatedUnixMs: 1}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, ok := n.LookupRTCSession("a500:b"); !ok {
			b.Fatal("not found")
		}
	}
}
