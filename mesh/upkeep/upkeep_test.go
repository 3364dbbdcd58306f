package upkeep

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// replica is a replica in memory; stale and playOnly are the batches
// StaleKeys and StalePlayOnlyKeys answer, one per call.
type replica struct {
	key             []byte
	origins         []state.OriginState
	stale, playOnly [][]string
	cutoffs         []int64
}

func (r *replica) TokenKey() ([]byte, bool) { return r.key, r.key != nil }
func (r *replica) Origin(id string) (stream.Origin, bool) {
	for _, o := range r.origins {
		if o.Origin.ID == id {
			return o.Origin, true
		}
	}
	return stream.Origin{}, false
}
func (r *replica) Origins() []state.OriginState   { return r.origins }
func (r *replica) Contents() state.Contents       { return state.Contents{Origins: r.origins} }
func (r *replica) Candidates() []stream.Candidate { return nil }
func (r *replica) StaleKeys(cutoff int64, _ int) []string {
	return r.next(&r.stale, cutoff)
}
func (r *replica) StalePlayOnlyKeys(cutoff int64, _ int) []string {
	return r.next(&r.playOnly, cutoff)
}
func (r *replica) next(batches *[][]string, cutoff int64) []string {
	r.cutoffs = append(r.cutoffs, cutoff)
	if len(*batches) == 0 {
		return nil
	}
	b := (*batches)[0]
	*batches = (*batches)[1:]
	return b
}

type recorder struct {
	cmds   []state.Command
	events []events.Event
}

func (w *recorder) apply(_ context.Context, c state.Command) (state.Result, error) {
	w.cmds = append(w.cmds, c)
	return state.Result{}, nil
}

var now = time.UnixMilli(10_000_000)

func newUpkeep(r *replica, w *recorder) *Upkeep {
	return New(Config{Replica: r, ApplyLocal: w.apply, Record: func(e events.Event) { w.events = append(w.events, e) },
		OriginTTL: time.Minute, AssignmentTTL: time.Hour, PlayOnlyTTL: time.Second, Now: func() time.Time { return now }})
}

func TestEnsureTokenKeyWritesOnce(t *testing.T) {
	r, w := &replica{}, &recorder{}
	u := newUpkeep(r, w)
	u.EnsureTokenKey(context.Background())
	if len(w.cmds) != 1 || len(w.cmds[0].(state.SetTokenKeyCmd).Key) != 32 {
		t.Fatalf("writes %+v, want one 32-byte key", w.cmds)
	}
	r.key = []byte("k")
	u.EnsureTokenKey(context.Background())
	if len(w.cmds) != 1 {
		t.Fatalf("%d writes with a key known, want 1", len(w.cmds))
	}
}

func TestRegisterStaticWritesWhatDiffers(t *testing.T) {
	same := stream.Origin{ID: "same", IP: "10.0.0.1", Static: true}
	r := &replica{origins: []state.OriginState{{Origin: same}, {Origin: stream.Origin{ID: "moved", IP: "10.0.0.2", Static: true}}}}
	w := &recorder{}
	newUpkeep(r, w).RegisterStatic(context.Background(), []stream.Origin{
		{ID: "same", IP: "10.0.0.1"}, {ID: "moved", IP: "10.0.0.3"}, {ID: "new", IP: "10.0.0.4"}})
	var ids []string
	for _, c := range w.cmds {
		rc := c.(state.RegisterOriginCmd)
		if !rc.Origin.Static || rc.NowMs != now.UnixMilli() {
			t.Fatalf("registration %+v", rc)
		}
		ids = append(ids, rc.Origin.ID)
	}
	if fmt.Sprint(ids) != "[moved new]" || len(w.events) != 1 || w.events[0].Origin != "new" {
		t.Fatalf("registered %v, events %+v; want [moved new] and one event for new", ids, w.events)
	}
}

func TestCollectOriginsRemovesTheSilentOnes(t *testing.T) {
	cutoff := now.Add(-time.Minute).UnixMilli()
	r := &replica{origins: []state.OriginState{
		{Origin: stream.Origin{ID: "static", Static: true}, LastHeartbeatMs: 1},
		{Origin: stream.Origin{ID: "never"}},
		{Origin: stream.Origin{ID: "recent"}, LastHeartbeatMs: cutoff + 1},
		{Origin: stream.Origin{ID: "silent"}, LastHeartbeatMs: cutoff},
	}}
	w := &recorder{}
	newUpkeep(r, w).CollectOrigins(context.Background())
	if len(w.cmds) != 1 || w.cmds[0] != (state.RemoveOriginCmd{ID: "silent", StaleBeforeMs: cutoff}) {
		t.Fatalf("writes %+v, want the removal of silent", w.cmds)
	}
	if len(w.events) != 1 || w.events[0].Kind != events.OriginRemoved {
		t.Fatalf("events %+v", w.events)
	}
}

func TestCollectAssignmentsInBatches(t *testing.T) {
	r := &replica{playOnly: [][]string{{"p1"}}, stale: [][]string{{"a1", "a2"}, {"a3"}}}
	w := &recorder{}
	newUpkeep(r, w).CollectAssignments(context.Background())
	var got []string
	for _, c := range w.cmds {
		got = append(got, fmt.Sprint(c.(state.DeleteAssignmentsCmd).Keys))
	}
	if fmt.Sprint(got) != "[[p1] [a1 a2] [a3]]" {
		t.Fatalf("deleted %v", got)
	}
	play, all := now.Add(-time.Second).UnixMilli(), now.Add(-time.Hour).UnixMilli()
	if fmt.Sprint(r.cutoffs) != fmt.Sprint([]int64{play, play, all, all, all}) {
		t.Fatalf("cutoffs %v", r.cutoffs)
	}
}
