package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/meshtest"
	"github.com/srs-mesh/srs-mesh/stream"
)

func TestRTCStoreRoundTrip(t *testing.T) {
	c := meshtest.Start(t, meshtest.Options{N: 1})
	c.WaitLeader(15 * time.Second)
	store := newRTCStore(c.Node(0))
	ctx := context.Background()
	s := stream.RTCSession{Ufrag: "ans:off", OriginID: "o1", OriginRTC: "10.0.0.5:8000",
		Key: "__defaultVhost__/live/a", Resource: "http://10.0.0.5:1985/rtc/v1/whip/?session=1",
		Pwd: "0123456789abcdef0123456789", CreatedUnixMs: 42}
	if err := store.PutRTCSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got, ok := store.LookupRTCSession(s.Ufrag); !ok || got != s {
		t.Fatalf("lookup = %+v %v, want %+v", got, ok, s)
	}
	if err := store.DeleteRTCSession(ctx, s.Ufrag); err != nil {
		t.Fatal(err)
	}
	if _, ok := store.LookupRTCSession(s.Ufrag); ok {
		t.Fatal("deleted session found")
	}
	if err := store.DeleteRTCSession(ctx, s.Ufrag); err != nil {
		t.Fatalf("delete of an absent session: %v", err)
	}
}

// The node takes every protocol's sessions: metered ones with either
// counter nil (an HTTP player reads nothing from its client) and unmetered
// ones (a shared upstream) alike.
func TestNodeSessions(t *testing.T) {
	c := meshtest.Start(t, meshtest.Options{N: 1})
	s := nodeSessions{c.Node(0)}
	key := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "s"}
	out := new(atomic.Uint64)
	out.Add(100)
	for _, end := range []func(){
		s.Track(key, "flv", stream.KindPlay, nil, out),
		s.Track(key, "rtmp", stream.KindPublish, new(atomic.Uint64), nil),
		s.Track(key, "upstream", "", nil, nil),
	} {
		end()
	}
}
