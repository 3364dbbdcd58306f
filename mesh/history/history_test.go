package history

import (
	"fmt"
	"testing"
	"time"
)

func TestRingRates(t *testing.T) {
	r := New(10)
	t0 := time.UnixMilli(1_000_000)
	r.Observe(t0, Counters{BytesIn: 1000, BytesOut: 5000, Assignments: 3})
	if got := r.Samples(); len(got) != 0 {
		t.Fatalf("baseline made a sample: %+v", got)
	}
	r.Observe(t0.Add(5*time.Second), Counters{BytesIn: 1000 + 5*125_000, BytesOut: 5000 + 5*250_000, Assignments: 13,
		Sessions: map[string]int{"rtmp": 2, "flv": 3, "srt": 0}})
	r.Observe(t0.Add(5*time.Second), Counters{BytesIn: 1})  // no time passed: ignored, but is the new baseline
	r.Observe(t0.Add(10*time.Second), Counters{BytesIn: 0}) // a reset counter: zero, never negative
	got := r.Samples()
	if len(got) != 2 {
		t.Fatalf("got %d samples, want 2: %+v", len(got), got)
	}
	s := got[0]
	if s.TimeUnixMs != t0.Add(5*time.Second).UnixMilli() || s.InBps != 1e6 || s.OutBps != 2e6 || s.AssignmentsPerSec != 2 {
		t.Errorf("sample %+v", s)
	}
	if len(s.Sessions) != 2 || s.Sessions["rtmp"] != 2 || s.Sessions["flv"] != 3 {
		t.Errorf("sessions %v", s.Sessions)
	}
	if got[1].InBps != 0 {
		t.Errorf("reset counter gave %v", got[1].InBps)
	}
	got[0].Sessions["rtmp"] = 99
	if r.Samples()[0].Sessions["rtmp"] != 2 {
		t.Error("Samples shares its maps")
	}
}

// The ring keeps its capacity and the newest samples, and a sample keeps a
// bounded number of protocols.
func TestRingIsBounded(t *testing.T) {
	r := New(5)
	t0 := time.Unix(0, 0)
	sessions := map[string]int{}
	for i := range 100 {
		sessions[fmt.Sprint("p", i)] = 1
	}
	for i := range 1000 {
		r.Observe(t0.Add(time.Duration(i)*time.Second), Counters{BytesIn: uint64(i), Sessions: sessions})
	}
	got := r.Samples()
	if len(got) != 5 || r.Capacity() != 5 {
		t.Fatalf("kept %d samples", len(got))
	}
	if got[4].TimeUnixMs != 999_000 || got[0].TimeUnixMs != 995_000 {
		t.Errorf("kept %d..%d", got[0].TimeUnixMs, got[4].TimeUnixMs)
	}
	if len(got[0].Sessions) != maxProtocols {
		t.Errorf("sample keeps %d protocols", len(got[0].Sessions))
	}
	if New(0).Capacity() != DefaultCapacity {
		t.Error("default capacity")
	}
}

// TestCacheAndFanOut: a sample carries the cache's request rate and hit
// ratio over the interval, the fan-out gauges and the estimates of
// viewers.
func TestCacheAndFanOut(t *testing.T) {
	r := New(0)
	t0 := time.Unix(100, 0)
	r.Observe(t0, Counters{CacheRequests: 100, CacheOrigin: 10})
	r.Observe(t0.Add(5*time.Second), Counters{CacheRequests: 200, CacheOrigin: 20, FanOutPlayers: 70, FanOutUpstreams: 2,
		HLSViewers: 12, DASHViewers: 3})
	r.Observe(t0.Add(10*time.Second), Counters{CacheRequests: 200, CacheOrigin: 20})
	s := r.Samples()
	if len(s) != 2 {
		t.Fatalf("%d samples", len(s))
	}
	if s[0].CacheRequestsPerSec != 20 || s[0].CacheHitRatio != 0.9 || s[0].FanOutPlayers != 70 || s[0].FanOutUpstreams != 2 ||
		s[0].HLSViewersEstimated != 12 || s[0].DASHViewersEstimated != 3 {
		t.Errorf("first sample %+v", s[0])
	}
	if s[1].CacheRequestsPerSec != 0 || s[1].CacheHitRatio != 0 || s[1].FanOutPlayers != 0 || s[1].HLSViewersEstimated != 0 {
		t.Errorf("idle sample %+v", s[1])
	}
}
