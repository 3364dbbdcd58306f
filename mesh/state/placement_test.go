package state

import (
	"errors"
	"fmt"
	"testing"

	"github.com/srs-mesh/srs-mesh/stream"
)

func registerWith(t *testing.T, f *FSM, o stream.Origin, load *stream.Load, now int64) {
	t.Helper()
	if r := apply(t, f, RegisterOriginCmd{Origin: o, Load: load, Heartbeat: true, NowMs: now}); r.Err() != nil {
		t.Fatal(r.Err())
	}
}

// An origin at its max_streams gets no new stream; its existing streams stay
// with it; once every origin is full, the assign fails with ErrOriginsFull
// (which callers that only know ErrNoOrigin also recognise), through the
// Result a follower receives as well.
func TestPlacementMaxStreams(t *testing.T) {
	f := NewFSM()
	a, b := testOrigin("a"), testOrigin("b")
	a.MaxStreams, b.MaxStreams = 2, 3
	registerWith(t, f, a, nil, 1000)
	registerWith(t, f, b, nil, 1000)
	got := map[string]int{}
	for i := range 5 {
		r := assignKey(t, f, fmt.Sprintf("__defaultVhost__/live/s%d", i), 2000)
		if r.Err() != nil {
			t.Fatalf("stream %d: %v", i, r.Err())
		}
		got[r.Origin.ID]++
	}
	if got["a"] != 2 || got["b"] != 3 {
		t.Fatalf("placement with caps 2 and 3: %v", got)
	}
	// An existing stream still routes to its full origin.
	if r := assignKey(t, f, "__defaultVhost__/live/s0", 3000); r.Err() != nil || r.Created {
		t.Fatalf("existing stream on a full origin: %+v", r)
	}
	r := assignKey(t, f, "__defaultVhost__/live/one-too-many", 3000)
	if !errors.Is(r.Err(), stream.ErrOriginsFull) || !errors.Is(r.Err(), stream.ErrNoOrigin) {
		t.Fatalf("every origin full: %+v (%v), want ErrOriginsFull", r, r.Err())
	}
	if r.Code != codeOriginsFull {
		t.Fatalf("code %q, want %q", r.Code, codeOriginsFull)
	}
	if len(f.Contents().Assignments) != 5 {
		t.Fatal("a refused assign changed the state")
	}
	// A full origin that is unhealthy or draining makes "no origin", not
	// "full", once nothing else could take the stream.
	apply(t, f, SetDrainingCmd{ID: "a", Draining: true})
	apply(t, f, SetDrainingCmd{ID: "b", Draining: true})
	if r := assignKey(t, f, "__defaultVhost__/live/x", 3000); errors.Is(r.Err(), stream.ErrOriginsFull) || !errors.Is(r.Err(), stream.ErrNoOrigin) {
		t.Fatalf("all draining: %v, want plain ErrNoOrigin", r.Err())
	}
	// A heartbeat without max_streams (SRS's own) keeps the known cap.
	apply(t, f, SetDrainingCmd{ID: "a", Draining: false})
	registerWith(t, f, testOrigin("a"), nil, 4000)
	if o, _ := f.Origin("a"); o.MaxStreams != 2 {
		t.Fatalf("cap after a heartbeat without one: %d", o.MaxStreams)
	}
}

// The load an origin reports moves new streams to the less loaded one; with
// equal load, the weight does; every replica decides alike.
func TestPlacementFollowsLoad(t *testing.T) {
	build := func() *FSM {
		f := NewFSM()
		registerWith(t, f, testOrigin("busy"), &stream.Load{CPUPermille: 900}, 1000)
		registerWith(t, f, testOrigin("idle"), &stream.Load{CPUPermille: 100}, 1000)
		return f
	}
	f, g := build(), build()
	got := map[string]int{}
	for i := range 20 {
		k := fmt.Sprintf("__defaultVhost__/live/s%d", i)
		r, r2 := assignKey(t, f, k, 2000), assignKey(t, g, k, 2000)
		if r.Err() != nil || r.Origin.ID != r2.Origin.ID {
			t.Fatalf("%s: %v / %v, replicas disagree or fail", k, r.Origin, r2.Origin)
		}
		got[r.Origin.ID]++
	}
	// Costs: (n+1)*1900 for busy, (n+1)*1100 for idle: idle takes about
	// 19/30 of the streams.
	if got["idle"] <= got["busy"] || got["busy"] == 0 {
		t.Fatalf("placement under load busy=90%% idle=10%%: %v", got)
	}
	// The first stream always goes to the idle origin.
	h := build()
	if r := assignKey(t, h, "__defaultVhost__/live/first", 1); r.Origin.ID != "idle" {
		t.Fatalf("first stream went to %s", r.Origin.ID)
	}
	// A new load report changes the next choices.
	registerWith(t, h, testOrigin("busy"), &stream.Load{CPUPermille: 0}, 2000)
	registerWith(t, h, testOrigin("idle"), &stream.Load{CPUPermille: 1000}, 2000)
	if r := assignKey(t, h, "__defaultVhost__/live/second", 3); r.Origin.ID != "busy" {
		t.Fatalf("after the loads swapped, the stream went to %s", r.Origin.ID)
	}

	// Weights: with no load, an origin of weight 3 takes three times the
	// streams of one of weight 1.
	w := NewFSM()
	big, small := testOrigin("big"), testOrigin("small")
	big.Weight = 3
	registerWith(t, w, big, nil, 1)
	registerWith(t, w, small, nil, 1)
	got = map[string]int{}
	for i := range 40 {
		got[assignKey(t, w, fmt.Sprintf("__defaultVhost__/live/w%d", i), 2).Origin.ID]++
	}
	if got["big"] != 30 || got["small"] != 10 {
		t.Fatalf("weights 3:1 over 40 streams: %v", got)
	}
}

// Loads and capacities out of bounds are refused; the network rates come
// from consecutive samples.
func TestRegisterLoad(t *testing.T) {
	f := fsmWith(t, "o")
	for _, c := range []RegisterOriginCmd{
		{Origin: testOrigin("o"), Load: &stream.Load{CPUPermille: 1001}},
		{Origin: testOrigin("o"), Load: &stream.Load{Conns: -1}},
		{Origin: stream.Origin{ID: "o", IP: "127.0.0.1", RTMP: "127.0.0.1:1935", MaxStreams: -1}},
		{Origin: stream.Origin{ID: "o", IP: "127.0.0.1", RTMP: "127.0.0.1:1935", Weight: stream.MaxWeight + 1}},
	} {
		if r := apply(t, f, c); !errors.Is(r.Err(), ErrBadCommand) {
			t.Errorf("%+v: %v, want ErrBadCommand", c, r.Err())
		}
	}
	registerWith(t, f, testOrigin("o"), &stream.Load{SampleMs: 10_000, RecvBytes: 1_000_000, SendBytes: 0}, 2)
	registerWith(t, f, testOrigin("o"), &stream.Load{SampleMs: 20_000, RecvBytes: 2_250_000, SendBytes: 125_000, CPUPermille: 300}, 3)
	l := f.Origins()[0].Load
	if l.RecvKbps != 1000 || l.SendKbps != 100 || l.CPUPermille != 300 {
		t.Fatalf("rates from two samples 10 s apart: %+v", l)
	}
	// Counters that went back (a restart) give no rate.
	registerWith(t, f, testOrigin("o"), &stream.Load{SampleMs: 30_000, RecvBytes: 10}, 4)
	if l := f.Origins()[0].Load; l.RecvKbps != 0 || l.SendKbps != 0 {
		t.Fatalf("rates after counters reset: %+v", l)
	}
	// A heartbeat without a load keeps the last one.
	registerWith(t, f, testOrigin("o"), nil, 5)
	if l := f.Origins()[0].Load; l.SampleMs != 30_000 {
		t.Fatalf("load after a heartbeat without one: %+v", l)
	}
}
