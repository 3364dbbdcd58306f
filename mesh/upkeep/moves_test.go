package upkeep

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// fsmUpkeep is an Upkeep writing to a real state machine, with a clock the
// test moves.
type fsmUpkeep struct {
	*Upkeep
	fsm   *state.FSM
	clock time.Time
	log   []events.Event
	write func(context.Context, state.Command) (state.Result, error)
}

func newFSMUpkeep(t *testing.T, replicas int, origins ...string) *fsmUpkeep {
	f := &fsmUpkeep{fsm: state.NewFSM(), clock: time.UnixMilli(1_000_000)}
	var idx uint64
	apply := func(_ context.Context, c state.Command) (state.Result, error) {
		b, err := state.Encode(c)
		if err != nil {
			return state.Result{}, err
		}
		idx++
		res := f.fsm.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: b}).(state.Result)
		return res, res.Err()
	}
	f.Upkeep = New(Config{Replica: f.fsm, ApplyLocal: apply, Record: func(e events.Event) { f.log = append(f.log, e) },
		Now: func() time.Time { return f.clock }, Replicas: func(string) int { return replicas }, MovesPerTick: 3, MaxPlanned: 2})
	for i, id := range origins {
		o := stream.Origin{ID: id, IP: "127.0.0.1", RTMP: fmt.Sprintf("127.0.0.1:%d", 1935+i), Service: "s", PID: "1"}
		if _, err := apply(context.Background(), state.RegisterOriginCmd{Origin: o, Heartbeat: true, NowMs: f.clock.UnixMilli()}); err != nil {
			t.Fatal(err)
		}
	}
	f.write = apply
	return f
}

func (f *fsmUpkeep) must(t *testing.T, c state.Command) state.Result {
	t.Helper()
	res, err := f.write(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestEvacuatePlansMovesAtABoundedRate(t *testing.T) {
	f := newFSMUpkeep(t, 1, "o1", "o2")
	for i := range 5 {
		f.must(t, state.AssignCmd{Key: fmt.Sprintf("v/live/s%d", i), Prefer: "o1", NowMs: f.clock.UnixMilli()})
	}
	f.must(t, state.SetDrainingCmd{ID: "o1", Draining: true, Move: true})
	f.Sources(context.Background())
	targets := 0
	for _, a := range f.fsm.Contents().Assignments {
		if a.Target == "o2" {
			targets++
		}
	}
	if targets != 2 {
		t.Fatalf("%d planned moves in progress, want MaxPlanned=2", targets)
	}
	// Complete one; the next call plans another.
	for _, a := range f.fsm.Contents().Assignments {
		if a.Target != "" {
			f.must(t, state.CompleteMoveCmd{Key: a.Key, To: a.Target, NowMs: f.clock.UnixMilli()})
			break
		}
	}
	f.Sources(context.Background())
	on := map[string]int{}
	targets = 0
	for _, a := range f.fsm.Contents().Assignments {
		on[a.Origin]++
		if a.Target != "" {
			targets++
		}
	}
	if on["o2"] != 1 || targets != 2 {
		t.Fatalf("on %v with %d planned, want one moved and two planned", on, targets)
	}
	// Plans that time out fall back to a move with a break.
	for range 6 {
		f.clock = f.clock.Add(DefaultMoveTimeout + time.Second)
		f.Sources(context.Background())
	}
	for _, a := range f.fsm.Contents().Assignments {
		if a.Origin != "o2" {
			t.Fatalf("%s still on %s (target %q)", a.Key, a.Origin, a.Target)
		}
	}
	var fallbacks int
	for _, e := range f.log {
		if e.Kind == events.StreamMoved && e.MoveKind == state.MoveFailover {
			fallbacks++
		}
	}
	if fallbacks == 0 {
		t.Fatal("no event for a move that fell back")
	}
}

func TestReplicasKeptUp(t *testing.T) {
	f := newFSMUpkeep(t, 2, "o1", "o2", "o3")
	const key = "v/live/a"
	primary := f.must(t, state.AssignCmd{Key: key, NowMs: f.clock.UnixMilli()}).Origin.ID
	f.must(t, state.AssignCmd{Key: "v/live/players", PlayOnly: true, NowMs: f.clock.UnixMilli()})
	f.Sources(context.Background())
	_, reps, _, _ := f.fsm.Sources(key)
	if len(reps) != 1 || reps[0] == primary {
		t.Fatalf("replicas %v of a stream on %s, want one elsewhere", reps, primary)
	}
	if _, r, _, _ := f.fsm.Sources("v/live/players"); len(r) != 0 {
		t.Fatalf("a stream only players use got replicas %v", r)
	}
	// The replica's origin fails: another replaces it.
	f.must(t, state.SetHealthCmd{Changes: []state.HealthChange{{ID: reps[0], Healthy: false}}})
	f.Sources(context.Background())
	_, now, _, _ := f.fsm.Sources(key)
	if len(now) != 1 || now[0] == reps[0] || now[0] == primary {
		t.Fatalf("replicas after a failure: %v (was %v, primary %s)", now, reps, primary)
	}
	// A steady state writes nothing.
	before := f.fsm.Contents().Index
	f.Sources(context.Background())
	if f.fsm.Contents().Index != before {
		t.Fatal("Sources wrote with nothing to change")
	}
}

// TestCancellationsBeforeUnplaceableStreams: streams of an evacuated
// origin that no origin can take (the others drain) come first in key
// order, yet a planned move that is no longer wanted is cancelled in the
// same call; the unplaceable streams back off, per stream, and are never
// planned onto a draining origin.
func TestCancellationsBeforeUnplaceableStreams(t *testing.T) {
	f := newFSMUpkeep(t, 1, "o1", "o2", "o3")
	for i := range 6 {
		f.must(t, state.AssignCmd{Key: fmt.Sprintf("v/live/a%d", i), Prefer: "o1", NowMs: f.clock.UnixMilli()})
	}
	f.must(t, state.AssignCmd{Key: "v/live/z", Prefer: "o3", NowMs: f.clock.UnixMilli()})
	f.must(t, state.PlanMoveCmd{Key: "v/live/z", From: "o3", To: "o2", NowMs: f.clock.UnixMilli()})
	// o3 drains without moving its streams: z's move is no longer wanted.
	f.must(t, state.SetDrainingCmd{ID: "o3", Draining: true})
	f.must(t, state.SetDrainingCmd{ID: "o2", Draining: true})
	f.must(t, state.SetDrainingCmd{ID: "o1", Draining: true, Move: true})
	f.Sources(context.Background())
	for _, a := range f.fsm.Contents().Assignments {
		if a.Target != "" {
			t.Fatalf("%s has a planned move to %s", a.Key, a.Target)
		}
	}
	if len(f.plans) != 6 || f.plans["v/live/a0"].fails != 1 {
		t.Fatalf("backoff %v", f.plans)
	}
	// Not tried again before its pause; tried again after it.
	f.Sources(context.Background())
	if f.plans["v/live/a0"].fails != 1 {
		t.Fatalf("retried before the backoff: %v", f.plans["v/live/a0"])
	}
	f.clock = f.clock.Add(planRetry * time.Nanosecond)
	f.Sources(context.Background())
	if b := f.plans["v/live/a0"]; b.fails != 2 || b.atMs != f.clock.UnixMilli()+2*planRetry/1e6 {
		t.Fatalf("second backoff %v", b)
	}
	// A stream that ends leaves the backoff.
	f.must(t, state.DeleteAssignmentsCmd{Keys: []string{"v/live/a0"}, CutoffMs: 1 << 60})
	f.Sources(context.Background())
	if _, ok := f.plans["v/live/a0"]; ok || len(f.plans) != 5 {
		t.Fatalf("backoff %v", f.plans)
	}
	// An origin that takes streams again gets them.
	f.must(t, state.SetDrainingCmd{ID: "o2", Draining: false})
	f.clock = f.clock.Add(planRetryMax * time.Nanosecond)
	f.Sources(context.Background())
	targets := 0
	for _, a := range f.fsm.Contents().Assignments {
		if a.Target == "o2" {
			targets++
		}
	}
	if targets != 2 {
		t.Fatalf("%d planned moves, want MaxPlanned=2", targets)
	}
}

// TestPlanSkipsADrainingReplica: a stream of an evacuated origin whose
// warm replica is on another draining origin moves to an origin that is
// not draining, not to the replica.
func TestPlanSkipsADrainingReplica(t *testing.T) {
	f := newFSMUpkeep(t, 2, "o1", "o2", "o3")
	f.must(t, state.AssignCmd{Key: "v/live/a", Prefer: "o1", NowMs: f.clock.UnixMilli()})
	f.must(t, state.SetReplicasCmd{Key: "v/live/a", Replicas: []string{"o2"}})
	f.must(t, state.SetDrainingCmd{ID: "o2", Draining: true, Move: true})
	f.must(t, state.SetDrainingCmd{ID: "o1", Draining: true, Move: true})
	f.Sources(context.Background())
	if a := f.fsm.Contents().Assignments[0]; a.Target != "o3" {
		t.Fatalf("planned onto %q, want o3", a.Target)
	}
}
