package main

import (
	"context"
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
