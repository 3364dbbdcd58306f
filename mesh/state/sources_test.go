package state

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"slices"
	"testing"

	"github.com/srs-mesh/srs-mesh/stream"
)

// streamsCount recomputes the per-origin load from the assignments, as
// Restore does, to check the counts every command keeps.
func checkCounts(t *testing.T, f *FSM) {
	t.Helper()
	f.mu.RLock()
	defer f.mu.RUnlock()
	want := map[string]int{}
	for _, a := range f.assignments {
		for _, id := range a.holders() {
			want[id]++
		}
	}
	if !maps.Equal(want, f.streams) {
		t.Fatalf("load counts %v, recomputed %v", f.streams, want)
	}
}

func TestPlannedMove(t *testing.T) {
	f := fsmWith(t, "o1", "o2", "o3")
	var moved []string
	f.OnMoved(func(k string) { moved = append(moved, k) })
	const key = "v/live/a"
	from := assignKey(t, f, key, 1000).Origin.ID

	r := apply(t, f, PlanMoveCmd{Key: key, From: from, NowMs: 2000})
	if r.Err() != nil || r.Origin == nil || r.Origin.ID == from {
		t.Fatalf("plan: %+v", r)
	}
	to := r.Origin.ID
	checkCounts(t, f)
	if p, _, tg, _ := f.Sources(key); p != from || tg != to {
		t.Fatalf("sources during the move: primary %s target %s", p, tg)
	}
	if o, _ := f.Route(key); o.ID != from {
		t.Fatalf("players follow %s before the move completes, want %s", o.ID, from)
	}
	// A second plan while one is in progress is refused.
	if r := apply(t, f, PlanMoveCmd{Key: key, From: from, NowMs: 2100}); !errors.Is(r.Err(), ErrMovePending) {
		t.Fatalf("second plan: %v", r.Err())
	}
	// Completing to another origin than the target is refused.
	if r := apply(t, f, CompleteMoveCmd{Key: key, To: from, NowMs: 2200}); !errors.Is(r.Err(), ErrMovePending) {
		t.Fatalf("complete to the wrong origin: %v", r.Err())
	}
	if len(moved) != 0 {
		t.Fatalf("moved before completion: %v", moved)
	}
	if r := apply(t, f, CompleteMoveCmd{Key: key, To: to, NowMs: 3000}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	checkCounts(t, f)
	c := f.Contents().Assignments[0]
	if c.Origin != to || c.Target != "" || c.Epoch != 1 || c.MoveKind != MovePlanned || c.MovedFrom != from {
		t.Fatalf("after completion: %+v", c.Assignment)
	}
	if !slices.Equal(moved, []string{key}) {
		t.Fatalf("OnMoved saw %v", moved)
	}
	// A late completion (a retry) changes nothing.
	if r := apply(t, f, CompleteMoveCmd{Key: key, To: to, NowMs: 3100}); !errors.Is(r.Err(), ErrMovePending) {
		t.Fatalf("repeated completion: %v", r.Err())
	}
}

func TestCancelledMove(t *testing.T) {
	f := fsmWith(t, "o1", "o2")
	const key = "v/live/a"
	from := assignKey(t, f, key, 1000).Origin.ID
	to := apply(t, f, PlanMoveCmd{Key: key, From: from, NowMs: 2000}).Origin.ID
	apply(t, f, CancelMoveCmd{Key: key, To: to})
	checkCounts(t, f)
	if p, _, tg, _ := f.Sources(key); p != from || tg != "" {
		t.Fatalf("after cancel: primary %s target %q", p, tg)
	}
	// A failover during a planned move drops the plan.
	to = apply(t, f, PlanMoveCmd{Key: key, From: from, NowMs: 3000}).Origin.ID
	apply(t, f, SetHealthCmd{Changes: []HealthChange{{ID: from, Healthy: false}}})
	if r := apply(t, f, MoveCmd{Key: key, From: from, NowMs: 4000}); r.Err() != nil || r.Origin.ID != to {
		t.Fatalf("failover: %+v", r)
	}
	checkCounts(t, f)
	if _, _, tg, _ := f.Sources(key); tg != "" {
		t.Fatalf("target %q survived a failover", tg)
	}
}

func TestPlanMoveRefusals(t *testing.T) {
	f := fsmWith(t, "o1")
	const key = "v/live/a"
	assignKey(t, f, key, 1000)
	if r := apply(t, f, PlanMoveCmd{Key: key, From: "o1", NowMs: 2000}); !errors.Is(r.Err(), stream.ErrNoOrigin) {
		t.Fatalf("plan with no other origin: %v", r.Err())
	}
	if r := apply(t, f, PlanMoveCmd{Key: key, From: "o2", NowMs: 2000}); !errors.Is(r.Err(), ErrMovePending) {
		t.Fatalf("plan from the wrong origin: %v", r.Err())
	}
	if r := apply(t, f, PlanMoveCmd{Key: key, From: "o1", To: "o1", NowMs: 2000}); !errors.Is(r.Err(), ErrBadCommand) {
		t.Fatalf("plan onto its own origin: %v", r.Err())
	}
	checkCounts(t, f)
}

func TestReplicasPromoted(t *testing.T) {
	f := fsmWith(t, "o1", "o2", "o3")
	var moved []string
	f.OnMoved(func(k string) { moved = append(moved, k) })
	const key = "v/live/a"
	primary := assignKey(t, f, key, 1000).Origin.ID
	var others []string
	for _, id := range []string{"o1", "o2", "o3"} {
		if id != primary {
			others = append(others, id)
		}
	}
	if r := apply(t, f, SetReplicasCmd{Key: key, Replicas: others[:1]}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	checkCounts(t, f)
	// Refused: the primary as a replica, a duplicate, an unknown origin,
	// too many.
	for _, bad := range [][]string{{primary}, {others[0], others[0]}, {"o9"}, {"o1", "o2", "o3", "o4"}} {
		if r := apply(t, f, SetReplicasCmd{Key: key, Replicas: bad}); !errors.Is(r.Err(), ErrBadCommand) {
			t.Fatalf("replicas %v: %v", bad, r.Err())
		}
	}
	apply(t, f, SetHealthCmd{Changes: []HealthChange{{ID: primary, Healthy: false}}})
	r := apply(t, f, MoveCmd{Key: key, From: primary, NowMs: 2000})
	if r.Err() != nil || r.Origin.ID != others[0] {
		t.Fatalf("failover with a replica went to %+v, want %s", r, others[0])
	}
	checkCounts(t, f)
	c := f.Contents().Assignments[0]
	if c.MoveKind != MovePromoted || len(c.Replicas) != 0 || c.Epoch != 1 {
		t.Fatalf("after promotion: %+v", c.Assignment)
	}
	if !slices.Equal(moved, []string{key}) {
		t.Fatalf("OnMoved saw %v", moved)
	}
	// A repairing assign promotes a replica too.
	apply(t, f, SetReplicasCmd{Key: key, Replicas: others[1:]})
	apply(t, f, SetHealthCmd{Changes: []HealthChange{{ID: others[0], Healthy: false}}})
	if r := assignKey(t, f, key, 3000); r.Origin.ID != others[1] {
		t.Fatalf("repair went to %s, want the replica %s", r.Origin.ID, others[1])
	}
	checkCounts(t, f)
	// Removing a replica's origin, and deleting the assignment, keep the
	// counts right.
	apply(t, f, SetReplicasCmd{Key: key, Replicas: []string{primary}})
	apply(t, f, RemoveOriginCmd{ID: primary})
	checkCounts(t, f)
	if _, reps, _, _ := f.Sources(key); len(reps) != 0 {
		t.Fatalf("replica on a removed origin kept: %v", reps)
	}
	apply(t, f, DeleteAssignmentsCmd{Keys: []string{key}, CutoffMs: 1 << 60})
	checkCounts(t, f)
}

// TestPlannedMoveOntoAReplicaCounts: a move whose target is a replica keeps
// every origin's load right through plan, replica changes, completion and
// a snapshot's restore, and copies of the state never change under their
// reader.
func TestPlannedMoveOntoAReplicaCounts(t *testing.T) {
	f := fsmWith(t, "o1", "o2", "o3")
	const key = "v/live/a"
	primary := assignKey(t, f, key, 1000).Origin.ID
	var others []string
	for _, id := range []string{"o1", "o2", "o3"} {
		if id != primary {
			others = append(others, id)
		}
	}
	apply(t, f, SetReplicasCmd{Key: key, Replicas: others})
	copied := f.Contents()
	r := apply(t, f, PlanMoveCmd{Key: key, From: primary, NowMs: 2000})
	if r.Err() != nil || r.Origin.ID != others[0] {
		t.Fatalf("plan: %+v, want the first replica %s", r, others[0])
	}
	checkCounts(t, f)
	if _, reps, tg, _ := f.Sources(key); tg != others[0] || slices.Contains(reps, tg) {
		t.Fatalf("target %s also a replica: %v", tg, reps)
	}
	// A replica change while the move runs.
	apply(t, f, SetReplicasCmd{Key: key, Replicas: nil})
	checkCounts(t, f)
	apply(t, f, RemoveOriginCmd{ID: others[1]})
	checkCounts(t, f)
	if got := copied.Assignments[0].Replicas; !slices.Equal(got, others) {
		t.Fatalf("a copy of the state changed under its reader: %v", got)
	}
	sink := &memSink{}
	snap, _ := f.Snapshot()
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	if err := g.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, g)
	if !maps.Equal(f.streams, g.streams) {
		t.Fatalf("restored counts %v, live %v", g.streams, f.streams)
	}
	if r := apply(t, f, CompleteMoveCmd{Key: key, To: others[0], NowMs: 3000}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	checkCounts(t, f)
}

// TestRestoreTellsMoved: a node that restores a snapshot learns, through
// OnMoved and in key order, every stream whose origin the snapshot changes
// or adds, and nothing of the others.
func TestRestoreTellsMoved(t *testing.T) {
	f := fsmWith(t, "o1", "o2")
	apply(t, f, AssignCmd{Key: "v/live/b", Prefer: "o1", NowMs: 1000})
	apply(t, f, AssignCmd{Key: "v/live/same", Prefer: "o1", NowMs: 1000})
	g := fsmWith(t, "o1", "o2")
	apply(t, g, AssignCmd{Key: "v/live/b", Prefer: "o2", NowMs: 1000})
	apply(t, g, AssignCmd{Key: "v/live/same", Prefer: "o1", NowMs: 1000})
	apply(t, g, AssignCmd{Key: "v/live/a", Prefer: "o2", NowMs: 1000})
	snap, err := g.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	var moved []string
	f.OnMoved(func(k string) { moved = append(moved, k) })
	if err := f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(moved, []string{"v/live/a", "v/live/b"}) {
		t.Fatalf("OnMoved saw %v", moved)
	}
	if o, _ := f.Route("v/live/b"); o.ID != "o2" {
		t.Fatalf("b on %s after restore", o.ID)
	}
}
