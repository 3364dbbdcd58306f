package events

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func fixedClock(ms int64) func() time.Time {
	return func() time.Time { return time.UnixMilli(ms) }
}

func TestLogStampsAndOrders(t *testing.T) {
	l := NewLog("n1", 10, fixedClock(1000))
	l.Record(Event{Kind: OriginDown, Origin: "o1", Detail: "connection refused"})
	l.Record(Event{Kind: OriginUp, Origin: "o1", TimeUnixMs: 2000, Node: "spoofed"})
	l.Emit(StreamMoved, "__defaultVhost__/live/a", "from o1")
	got := l.Recent(0)
	if len(got) != 3 {
		t.Fatalf("got %d events, want 3", len(got))
	}
	for i, e := range got {
		if e.Node != "n1" || e.Seq != uint64(i+1) {
			t.Errorf("event %d: node %q seq %d", i, e.Node, e.Seq)
		}
	}
	if got[0].TimeUnixMs != 1000 || got[1].TimeUnixMs != 2000 {
		t.Errorf("times %d, %d", got[0].TimeUnixMs, got[1].TimeUnixMs)
	}
	if got[2].Kind != StreamMoved || got[2].Stream != "__defaultVhost__/live/a" || got[2].Detail != "from o1" {
		t.Errorf("emitted event %+v", got[2])
	}
	if last := l.Recent(1); len(last) != 1 || last[0].Seq != 3 {
		t.Errorf("Recent(1) = %+v", last)
	}
}

// The log never holds more than its capacity, keeps the newest events, and
// cuts long fields: it is filled from the network (origin ids, reasons).
func TestLogIsBounded(t *testing.T) {
	l := NewLog("n1", 8, fixedClock(1))
	for i := range 1000 {
		l.Record(Event{Kind: OriginDown, Origin: fmt.Sprint("o", i), Detail: strings.Repeat("é", 1000)})
	}
	got := l.Recent(0)
	if len(got) != 8 || l.Capacity() != 8 {
		t.Fatalf("kept %d events, capacity %d; want 8", len(got), l.Capacity())
	}
	for i, e := range got {
		if want := fmt.Sprint("o", 992+i); e.Origin != want {
			t.Errorf("event %d is %s, want %s", i, e.Origin, want)
		}
		if len(e.Detail) > maxField || !strings.HasPrefix(e.Detail, "é") || strings.ContainsRune(e.Detail, '\uFFFD') {
			t.Errorf("detail not cut to a valid %d bytes: %d bytes", maxField, len(e.Detail))
		}
	}
	if d := NewLog("n", 0, nil); d.Capacity() != DefaultCapacity {
		t.Errorf("default capacity %d", d.Capacity())
	}
}

func TestLogConcurrent(t *testing.T) {
	l := NewLog("n1", 64, nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				l.Emit(NodeJoined, "", "")
				l.Recent(5)
			}
		}()
	}
	wg.Wait()
	got := l.Recent(0)
	if len(got) != 64 || got[63].Seq != 800 {
		t.Fatalf("got %d events ending at seq %d", len(got), got[len(got)-1].Seq)
	}
}

func TestMoved(t *testing.T) {
	l := NewLog("n2", 4, fixedClock(5))
	l.Record(Moved("__defaultVhost__/live/a", "o1", "o2", "origin o1 down"))
	e := l.Recent(1)[0]
	if e.Kind != StreamMoved || e.Stream != "__defaultVhost__/live/a" || e.Origin != "o2" || e.Detail != "from o1: origin o1 down" || e.Node != "n2" {
		t.Errorf("moved event %+v", e)
	}
	if d := Moved("k", "o1", "o2", "").Detail; d != "from o1" {
		t.Errorf("detail without a reason: %q", d)
	}
}

func TestMerge(t *testing.T) {
	n1 := []Event{
		{TimeUnixMs: 1000, Node: "n1", Kind: NodeJoined, Member: "n3", Seq: 1},
		{TimeUnixMs: 5000, Node: "n1", Kind: OriginDown, Origin: "o1", Seq: 2},
		{TimeUnixMs: 30000, Node: "n1", Kind: NodeFailed, Member: "n3", Seq: 3},
	}
	n2 := []Event{
		{TimeUnixMs: 1200, Node: "n2", Kind: NodeJoined, Member: "n3", Seq: 1},    // same fact as n1's
		{TimeUnixMs: 2000, Node: "n2", Kind: OriginDrained, Origin: "o2", Seq: 2}, // its own
		{TimeUnixMs: 29500, Node: "n2", Kind: NodeFailed, Member: "n3", Seq: 3},   // earlier copy wins
		{TimeUnixMs: 60000, Node: "n2", Kind: NodeJoined, Member: "n3", Seq: 4},   // a new fact, later
	}
	got := Merge([][]Event{n1, n2}, 0)
	var s []string
	for _, e := range got {
		s = append(s, fmt.Sprintf("%d %s %s", e.TimeUnixMs, e.Node, e.Kind))
	}
	want := []string{
		"1000 n1 node_joined", "2000 n2 origin_drained", "5000 n1 origin_down",
		"29500 n2 node_failed", "60000 n2 node_joined",
	}
	if strings.Join(s, "\n") != strings.Join(want, "\n") {
		t.Errorf("merged:\n%s\nwant:\n%s", strings.Join(s, "\n"), strings.Join(want, "\n"))
	}
	if got := Merge([][]Event{n1, n2}, 2); len(got) != 2 || got[1].TimeUnixMs != 60000 {
		t.Errorf("limit 2: %+v", got)
	}
	// One node's own repeats are never folded.
	same := []Event{{TimeUnixMs: 1, Node: "n1", Kind: OriginDown, Origin: "o1", Seq: 1}, {TimeUnixMs: 2, Node: "n1", Kind: OriginDown, Origin: "o1", Seq: 2}}
	if got := Merge([][]Event{same}, 0); len(got) != 2 {
		t.Errorf("own repeats folded: %+v", got)
	}
}
