package activity

import (
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRecorder(t *testing.T) {
	r := New()
	r.Used("a")
	endB := r.Begin("b", "RTMP", "publish")
	endB2 := r.Begin("b", "", "")
	endC := r.Begin("c", strings.Repeat("x", 40), "play")
	got := r.Take()
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("first take = %v", got)
	}
	// Used keys are reported once; keys with live sessions every time.
	got = r.Take()
	slices.Sort(got)
	if !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("second take = %v", got)
	}
	s := r.Sessions()
	if len(s) != 2 || s["b"]["rtmp"] != 1 || s["b"]["other"] != 1 || s["c"][strings.Repeat("x", 32)] != 1 {
		t.Fatalf("sessions = %v", s)
	}
	s["b"]["rtmp"] = 99 // a copy
	want := map[Class]int{{"rtmp", "publish"}: 1, {"other", ""}: 1, {strings.Repeat("x", 32), "play"}: 1}
	if c := r.Classes(); !maps.Equal(c, want) {
		t.Fatalf("classes = %v, want %v", c, want)
	}
	endB()
	endB() // idempotent
	endC()
	if s := r.Sessions(); len(s) != 1 || len(s["b"]) != 1 || s["b"]["other"] != 1 {
		t.Fatalf("sessions after ends = %v", s)
	}
	if c := r.Classes(); !maps.Equal(c, map[Class]int{{"other", ""}: 1}) {
		t.Fatalf("classes after ends = %v", c)
	}
	endB2()
	if s := r.Sessions(); len(s) != 0 {
		t.Fatalf("sessions after all ended = %v", s)
	}
	if c := r.Classes(); len(c) != 0 {
		t.Fatalf("classes after all ended = %v", c)
	}
	if got := r.Take(); len(got) != 0 {
		t.Fatalf("take with nothing to report = %v", got)
	}
}

func TestRates(t *testing.T) {
	r := New()
	var in1, out1, in2, out2 atomic.Uint64
	t0 := time.Unix(1000, 0)
	end1 := r.BeginMetered("k", "rtmp", "publish", &in1, &out1)
	end2 := r.BeginMetered("k", "flv", "play", &in2, &out2)
	in1.Store(1000)
	r.SampleRates(t0) // baseline
	if got := r.Rates(); len(got) != 0 {
		t.Fatalf("rates after a baseline: %v", got)
	}
	in1.Add(125_000 * 5) // 1 Mb/s for 5 s
	out2.Add(250_000 * 2)
	end2() // its bytes still count
	end2()
	out2.Add(1 << 30) // after the end: not counted
	r.SampleRates(t0.Add(5 * time.Second))
	got := r.Rates()["k"]
	if got.InBps != 1e6 || got.OutBps != 8*250_000*2/5 {
		t.Fatalf("rates %+v", got)
	}
	r.SampleRates(t0.Add(10 * time.Second))
	if got := r.Rates()["k"]; got.InBps != 0 || got.OutBps != 0 {
		t.Fatalf("idle rates %+v", got)
	}
	if s := r.Sessions()["k"]; s["rtmp"] != 1 || s["flv"] != 0 {
		t.Fatalf("sessions %v", s)
	}
	end1()
	r.SampleRates(t0.Add(15 * time.Second))
	if len(r.Rates()) != 0 || len(r.meters) != 0 || len(r.ended) != 0 || len(r.prev) != 0 {
		t.Fatalf("ended stream kept: rates %v meters %v ended %v prev %v", r.Rates(), r.meters, r.ended, r.prev)
	}
}
