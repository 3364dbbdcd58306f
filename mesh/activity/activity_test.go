package activity

import (
	"slices"
	"strings"
	"testing"
)

func TestRecorder(t *testing.T) {
	r := New()
	r.Used("a")
	endB := r.Begin("b", "RTMP")
	endB2 := r.Begin("b", "")
	endC := r.Begin("c", strings.Repeat("x", 40))
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
	endB()
	endB() // idempotent
	endC()
	if s := r.Sessions(); len(s) != 1 || len(s["b"]) != 1 || s["b"]["other"] != 1 {
		t.Fatalf("sessions after ends = %v", s)
	}
	endB2()
	if s := r.Sessions(); len(s) != 0 {
		t.Fatalf("sessions after all ended = %v", s)
	}
	if got := r.Take(); len(got) != 0 {
		t.Fatalf("take with nothing to report = %v", got)
	}
}
