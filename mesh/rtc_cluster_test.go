package mesh_test

import (
	"context"
	"errors"
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
	// The caller allows far longer than RouteTimeout: the put must end by
	// its own bound, before the caller's deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.Node(survivor).PutRTCSession(ctx, stream.RTCSession{Ufrag: "a:b", CreatedUnixMs: 1})
	if err == nil {
		t.Fatal("put without quorum succeeded")
	}
	if ctx.Err() != nil {
		t.Fatalf("put without quorum returned only when the caller gave up: %v", err)
	}
	t.Logf("put without quorum: %v", err)
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

func rtcSession(ufrag string, created int64) stream.RTCSession {
	return stream.RTCSession{Ufrag: ufrag, OriginID: "o1", OriginRTC: "127.0.0.1:8000",
		Key: "__defaultVhost__/live/s1", Pwd: "0123456789abcdef0123456789", CreatedUnixMs: created}
}

// A flood of offers that fills the session table evicts its own sessions,
// never one a relay carries; a table full of carried sessions refuses new
// ones and keeps them all.
func TestRTCActiveSessionSurvivesFlood(t *testing.T) {
	const max = 20
	c := startCluster(t, 3, func(i int, cfg *mesh.Config) {
		cfg.MaxRTCSessions = max
		cfg.RTCTouchInterval = 50 * time.Millisecond
	})
	l := c.WaitLeader(clusterTimeout)
	writer, relay := (l+1)%3, (l+2)%3
	ctx := context.Background()
	now := time.Now().UnixMilli()

	// The session is older than every flooded one: by creation alone it
	// would be the first to go.
	live := rtcSession("live:x", now-time.Hour.Milliseconds())
	if err := c.Node(writer).PutRTCSession(ctx, live); err != nil {
		t.Fatal(err)
	}
	// A follower's relay carries it: the report is forwarded to the leader.
	testkit.WaitFor(t, clusterTimeout, "relay activity on every node", func() bool {
		c.Node(relay).TouchRTCSessions([]string{live.Ufrag})
		for i := range 3 {
			if s, ok := c.Node(i).LookupRTCSession(live.Ufrag); !ok || s.LastActiveUnixMs == 0 {
				return false
			}
		}
		return true
	})

	var flood []string
	for i := range 5 * max {
		s := rtcSession(fmt.Sprintf("flood%03d:x", i), now+int64(i))
		flood = append(flood, s.Ufrag)
		if err := c.Node(i%3).PutRTCSession(ctx, s); err != nil {
			t.Fatalf("flood put %d: %v", i, err)
		}
	}
	// The session count stays at the bound: wait for the last put instead.
	testkit.WaitFor(t, clusterTimeout, "the last flooded session on every node", func() bool {
		for i := range 3 {
			if _, ok := c.Node(i).LookupRTCSession(flood[len(flood)-1]); !ok {
				return false
			}
		}
		return true
	})
	for i := range 3 {
		if _, ok := c.Node(i).LookupRTCSession(live.Ufrag); !ok {
			t.Fatalf("node %d: the carried session was evicted by the flood", i)
		}
		if n := c.Node(i).Status().RTCSessions; n != max {
			t.Fatalf("node %d holds %d sessions, want %d", i, n, max)
		}
		// The flood evicted its own oldest sessions.
		if _, ok := c.Node(i).LookupRTCSession(flood[len(flood)-max+1]); !ok {
			t.Fatalf("node %d: a recent flooded session was evicted before older ones", i)
		}
		if _, ok := c.Node(i).LookupRTCSession(flood[len(flood)-max]); ok {
			t.Fatalf("node %d: the oldest flooded session survived", i)
		}
	}

	// Now every session in the table is carried: a new one is refused, on
	// the leader and through a follower, and the table is unchanged.
	last := flood[len(flood)-1]
	testkit.WaitFor(t, clusterTimeout, "every session carried", func() bool {
		c.Node(relay).TouchRTCSessions(append([]string{live.Ufrag}, flood...))
		s, ok := c.Node(writer).LookupRTCSession(last)
		return ok && s.LastActiveUnixMs > 0
	})
	c.WaitApplied(clusterTimeout)
	for _, i := range []int{l, writer} {
		err := c.Node(i).PutRTCSession(ctx, rtcSession(fmt.Sprintf("refused%d:x", i), time.Now().UnixMilli()))
		if !errors.Is(err, mesh.ErrRTCTableFull) {
			t.Fatalf("put into a table of carried sessions on node %d: %v", i, err)
		}
	}
	if _, ok := c.Node(writer).LookupRTCSession(live.Ufrag); !ok || c.Node(writer).Status().RTCSessions != max {
		t.Fatal("a refused put changed the table")
	}
	// A session that ends makes room.
	if err := c.Node(writer).DeleteRTCSession(ctx, last); err != nil {
		t.Fatal(err)
	}
	if err := c.Node(writer).PutRTCSession(ctx, rtcSession("after:x", time.Now().UnixMilli())); err != nil {
		t.Fatalf("put after a delete: %v", err)
	}
}

// The leader expires sessions by when they were last seen: one created long
// ago that a relay still carries stays.
func TestRTCActiveSessionIsNotExpired(t *testing.T) {
	c := startCluster(t, 3, func(i int, cfg *mesh.Config) {
		cfg.RTCSessionTTL = 2 * time.Second
		cfg.RTCTouchInterval = 50 * time.Millisecond
	})
	l := c.WaitLeader(clusterTimeout)
	relay := (l + 1) % 3
	ctx := context.Background()
	old := time.Now().Add(-time.Hour).UnixMilli()
	carried, idle := rtcSession("carried:x", old), rtcSession("idle:x", old)
	for _, s := range []stream.RTCSession{carried, idle} {
		if err := c.Node(relay).PutRTCSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, clusterTimeout, "idle session expired", func() bool {
		c.Node(relay).TouchRTCSessions([]string{carried.Ufrag})
		_, ok := c.Node(l).LookupRTCSession(idle.Ufrag)
		return !ok
	})
	if _, ok := c.Node(l).LookupRTCSession(carried.Ufrag); !ok {
		t.Fatal("a carried session expired")
	}
}

// A session the relay starts carrying is reported at once, not at the next
// RTCTouchInterval: until then it is not protected. Later reports wait for
// the interval.
func TestRTCFirstActivityIsReportedAtOnce(t *testing.T) {
	c := startCluster(t, 3, func(i int, cfg *mesh.Config) {
		cfg.RTCTouchInterval = time.Minute
		cfg.RTCActiveWindow = 2 * time.Minute
	})
	l := c.WaitLeader(clusterTimeout)
	relay := (l + 1) % 3
	ctx := context.Background()
	s := rtcSession("new:x", time.Now().UnixMilli())
	if err := c.Node(l).PutRTCSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(clusterTimeout)
	c.Node(relay).TouchRTCSessions([]string{s.Ufrag})
	var first int64
	testkit.WaitFor(t, 5*time.Second, "first activity reported", func() bool {
		got, _ := c.Node(l).LookupRTCSession(s.Ufrag)
		first = got.LastActiveUnixMs
		return first != 0
	})
	time.Sleep(10 * time.Millisecond)
	c.Node(relay).TouchRTCSessions([]string{s.Ufrag})
	time.Sleep(500 * time.Millisecond)
	if got, _ := c.Node(l).LookupRTCSession(s.Ufrag); got.LastActiveUnixMs != first {
		t.Fatalf("a later report was written before the interval: %d, first %d", got.LastActiveUnixMs, first)
	}
}
