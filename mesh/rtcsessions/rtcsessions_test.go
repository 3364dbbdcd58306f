package rtcsessions

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// replica is a session table in memory; stale lists what StaleRTCSessions
// answers, one batch per call.
type replica struct {
	sessions map[string]stream.RTCSession
	stale    [][]string
	waited   []uint64
}

func (r *replica) RTCSession(u string) (stream.RTCSession, bool) {
	s, ok := r.sessions[u]
	return s, ok
}

func (r *replica) StaleRTCSessions(cutoffMs int64, max int) []string {
	if len(r.stale) == 0 {
		return nil
	}
	b := r.stale[0]
	r.stale = r.stale[1:]
	return b
}

func (r *replica) WaitApplied(ctx context.Context, index uint64) error {
	r.waited = append(r.waited, index)
	return nil
}

// writes records the commands a Store writes.
type writes struct {
	mu   sync.Mutex
	cmds []state.Command
}

func (w *writes) apply(_ context.Context, c state.Command) (state.Result, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cmds = append(w.cmds, c)
	return state.Result{Index: uint64(len(w.cmds))}, nil
}

var now = time.UnixMilli(1_000_000)

func newStore(r *replica, w *writes) *Store {
	return New(Config{Replica: r, Apply: w.apply, ApplyLocal: w.apply, MaxSessions: 10, ActiveWindow: time.Minute,
		TouchInterval: time.Hour, SessionTTL: time.Hour, WriteTimeout: time.Second, Now: func() time.Time { return now }})
}

// The ufrags recorded between two flushes are bounded; a flush empties
// them and writes only the sessions this replica holds.
func TestTouchIsBounded(t *testing.T) {
	r, w := &replica{sessions: map[string]stream.RTCSession{}}, &writes{}
	s := newStore(r, w)
	ufrags := make([]string, maxPendingTouches+100)
	for i := range ufrags {
		ufrags[i] = fmt.Sprintf("a%06d:b", i)
	}
	s.Touch(ufrags)
	if n := len(s.active); n != maxPendingTouches {
		t.Fatalf("%d pending ufrags, want the bound %d", n, maxPendingTouches)
	}
	s.flush(context.Background())
	if len(s.active) != 0 || len(w.cmds) != 0 {
		t.Fatalf("after a flush: %d pending, %d writes of unknown sessions", len(s.active), len(w.cmds))
	}
}

// A flush writes the known sessions in batches stamped now; ufrags that
// cannot name a session are never recorded.
func TestFlushBatches(t *testing.T) {
	r, w := &replica{sessions: map[string]stream.RTCSession{}}, &writes{}
	var ufrags []string
	for i := range 2500 {
		u := fmt.Sprintf("a%d:b", i)
		r.sessions[u] = stream.RTCSession{Ufrag: u, LastActiveUnixMs: 1}
		ufrags = append(ufrags, u)
	}
	s := newStore(r, w)
	s.Touch(append(ufrags, "", strings.Repeat("x", stream.MaxRTCUfragBytes+1)))
	if n := len(s.active); n != 2500 {
		t.Fatalf("%d pending, want 2500", n)
	}
	select {
	case <-s.kick:
		t.Fatal("sessions reported before were kicked")
	default:
	}
	s.flush(context.Background())
	var sizes []int
	for _, c := range w.cmds {
		tc := c.(state.TouchRTCSessionsCmd)
		if tc.NowMs != now.UnixMilli() {
			t.Fatalf("stamped %d, want %d", tc.NowMs, now.UnixMilli())
		}
		sizes = append(sizes, len(tc.Ufrags))
	}
	if fmt.Sprint(sizes) != "[1000 1000 500]" {
		t.Fatalf("batches %v, want [1000 1000 500]", sizes)
	}
}

// A session no relay has reported yet asks Run for a report at once.
func TestFirstTouchKicks(t *testing.T) {
	r := &replica{sessions: map[string]stream.RTCSession{"new:x": {Ufrag: "new:x"}}}
	s := newStore(r, &writes{})
	s.Touch([]string{"new:x"})
	select {
	case <-s.kick:
	default:
		t.Fatal("a first report did not kick the flush")
	}
}

// Put writes the session without its activity, protecting the sessions
// carried within ActiveWindow, and waits for its own write.
func TestPut(t *testing.T) {
	r, w := &replica{}, &writes{}
	s := newStore(r, w)
	sess := stream.RTCSession{Ufrag: "a:b", OriginID: "o1", OriginRTC: "127.0.0.1:8000", Key: "__defaultVhost__/live/s", LastActiveUnixMs: 99}
	if err := s.Put(context.Background(), sess); err != nil {
		t.Fatal(err)
	}
	c := w.cmds[0].(state.PutRTCSessionCmd)
	if c.Session.LastActiveUnixMs != 0 || c.MaxSessions != 10 || c.ProtectSinceMs != now.Add(-time.Minute).UnixMilli() {
		t.Fatalf("put %+v", c)
	}
	if fmt.Sprint(r.waited) != "[1]" {
		t.Fatalf("waited for %v, want [1]", r.waited)
	}
	if err := s.Put(context.Background(), stream.RTCSession{}); err == nil || len(w.cmds) != 1 {
		t.Fatalf("an invalid session: %v, %d writes", err, len(w.cmds))
	}
}

// Collect expires stale sessions in batches until none is left.
func TestCollect(t *testing.T) {
	r, w := &replica{stale: [][]string{{"a:1", "a:2"}, {"a:3"}}}, &writes{}
	newStore(r, w).Collect(context.Background())
	if len(w.cmds) != 2 {
		t.Fatalf("%d writes, want 2", len(w.cmds))
	}
	c := w.cmds[1].(state.ExpireRTCSessionsCmd)
	if c.CutoffMs != now.Add(-time.Hour).UnixMilli() || fmt.Sprint(c.Ufrags) != "[a:3]" {
		t.Fatalf("expire %+v", c)
	}
}
