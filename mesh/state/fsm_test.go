package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/srs-mesh/srs-mesh/stream"
)

func mustCmd(t testing.TB, c Command) []byte {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func apply(t testing.TB, f *FSM, c Command) Result {
	t.Helper()
	r := f.Apply(&raft.Log{Type: raft.LogCommand, Data: mustCmd(t, c)})
	return r.(Result)
}

func testOrigin(id string) stream.Origin {
	return stream.Origin{ID: id, IP: "127.0.0.1", RTMP: "127.0.0.1:1935", Service: "s1", PID: "1"}
}

func fsmWith(t testing.TB, ids ...string) *FSM {
	f := NewFSM()
	for _, id := range ids {
		if r := apply(t, f, RegisterOriginCmd{Origin: testOrigin(id), Heartbeat: true, NowMs: 1000}); r.Err() != nil {
			t.Fatal(r.Err())
		}
	}
	return f
}

func assignKey(t testing.TB, f *FSM, key string, now int64) Result {
	t.Helper()
	return apply(t, f, AssignCmd{Key: key, NowMs: now})
}

func TestFSMRegisterOrigin(t *testing.T) {
	f := fsmWith(t, "o1")
	st := f.Origins()
	if len(st) != 1 || !st[0].Healthy || st[0].LastHeartbeatMs != 1000 {
		t.Fatalf("after register: %+v", st)
	}
	// Probes decide health of a TCP origin: a plain heartbeat does not undo
	// an unhealthy verdict...
	apply(t, f, SetHealthCmd{Changes: []HealthChange{{ID: "o1", Healthy: false, Reason: "probe failed"}}})
	apply(t, f, RegisterOriginCmd{Origin: testOrigin("o1"), Heartbeat: true, NowMs: 2000})
	st = f.Origins()
	if st[0].Healthy || st[0].LastHeartbeatMs != 2000 || st[0].Reason != "probe failed" {
		t.Fatalf("heartbeat must refresh but not heal: %+v", st[0])
	}
	// ...but a restarted origin (new pid) starts healthy.
	o := testOrigin("o1")
	o.PID = "2"
	apply(t, f, RegisterOriginCmd{Origin: o, Heartbeat: true, NowMs: 3000})
	if st = f.Origins(); !st[0].Healthy || st[0].Origin.PID != "2" {
		t.Fatalf("restart must heal: %+v", st[0])
	}
	// A UDP-only origin is judged by heartbeats.
	u := stream.Origin{ID: "u1", IP: "127.0.0.1", SRT: "127.0.0.1:10080"}
	apply(t, f, RegisterOriginCmd{Origin: u, Heartbeat: true, NowMs: 1})
	apply(t, f, SetHealthCmd{Changes: []HealthChange{{ID: "u1", Healthy: false, Reason: "stale"}}})
	apply(t, f, RegisterOriginCmd{Origin: u, Heartbeat: true, NowMs: 2})
	if s := f.Origins()[1]; !s.Healthy || s.Reason != "" {
		t.Fatalf("heartbeat must heal udp-only origin: %+v", s)
	}
	if r := apply(t, f, RegisterOriginCmd{}); !errors.Is(r.Err(), ErrBadCommand) {
		t.Fatalf("origin without id: %v", r.Err())
	}
}

func TestFSMRemoveOrigin(t *testing.T) {
	f := fsmWith(t, "o1")
	assignKey(t, f, "v/live/a", 1)
	if r := apply(t, f, RemoveOriginCmd{ID: "o1"}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if st := f.Contents(); len(st.Origins) != 0 || len(st.Assignments) != 0 || len(f.streams) != 0 {
		t.Fatalf("after remove: %+v %v", st, f.streams)
	}
	if r := apply(t, f, RemoveOriginCmd{ID: "o1"}); !errors.Is(r.Err(), ErrUnknownOrigin) {
		t.Fatalf("remove unknown: %v", r.Err())
	}
}

func TestFSMSetDraining(t *testing.T) {
	f := fsmWith(t, "o1", "o2")
	if r := apply(t, f, SetDrainingCmd{ID: "o3", Draining: true}); !errors.Is(r.Err(), ErrUnknownOrigin) {
		t.Fatalf("drain unknown: %v", r.Err())
	}
	first := assignKey(t, f, "v/live/a", 1).Origin.ID
	apply(t, f, SetDrainingCmd{ID: first, Draining: true})
	// The draining origin keeps its stream, both for local reads and Assign.
	if o, ok := f.Route("v/live/a"); !ok || o.ID != first {
		t.Fatalf("route after drain = %v %v, want %s", o.ID, ok, first)
	}
	if r := assignKey(t, f, "v/live/a", 2); r.Origin.ID != first || r.Created {
		t.Fatalf("assign after drain moved the stream: %+v", r)
	}
	// New streams avoid it.
	for i := range 20 {
		if r := assignKey(t, f, fmt.Sprintf("v/live/n%d", i), 3); r.Origin.ID == first {
			t.Fatalf("new key assigned to draining origin")
		}
	}
	apply(t, f, SetDrainingCmd{ID: first, Draining: false})
	if st := f.Origins(); st[0].Draining || st[1].Draining {
		t.Fatalf("undrain: %+v", st)
	}
}

func TestFSMAssignBalancesAndIsStable(t *testing.T) {
	f := fsmWith(t, "o1", "o2", "o3")
	for i := range 30 {
		r := assignKey(t, f, fmt.Sprintf("v/live/s%d", i), int64(i))
		if r.Err() != nil || !r.Created {
			t.Fatalf("assign %d: %+v", i, r)
		}
	}
	for _, id := range []string{"o1", "o2", "o3"} {
		if f.streams[id] != 10 {
			t.Fatalf("streams = %v, want 10 each", f.streams)
		}
	}
	r1 := assignKey(t, f, "v/live/s7", 100)
	if r1.Created || r1.Origin.ID != f.assignedOrigin("v/live/s7") {
		t.Fatalf("existing assignment must be returned unchanged: %+v", r1)
	}
	if a := f.assignments["v/live/s7"]; a.LastUsedMs != 100 || a.CreatedMs != 7 {
		t.Fatalf("assign must refresh last use only: %+v", a)
	}
	if r := assignKey(t, f, "not-a-key", 1); !errors.Is(r.Err(), ErrBadCommand) {
		t.Fatalf("bad key: %v", r.Err())
	}
}

func TestFSMAssignDeterministic(t *testing.T) {
	// Two replicas applying the same log hold the same state, whatever the
	// map iteration order.
	var log [][]byte
	for _, id := range []string{"o1", "o2", "o3", "o4"} {
		log = append(log, mustCmd(t, RegisterOriginCmd{Origin: testOrigin(id), Heartbeat: true, NowMs: 5}))
	}
	log = append(log, mustCmd(t, SetHealthCmd{Changes: []HealthChange{{ID: "o2", Healthy: false}}}))
	for i := range 100 {
		log = append(log, mustCmd(t, AssignCmd{Key: fmt.Sprintf("v/app/k%d", i%70), NowMs: int64(i)}))
	}
	var want []byte
	for replica := range 5 {
		f := NewFSM()
		for i, d := range log {
			f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: d})
		}
		got, _ := json.Marshal(f.Contents())
		if replica == 0 {
			want = got
		} else if !bytes.Equal(got, want) {
			t.Fatalf("replica %d diverged", replica)
		}
	}
}

func TestFSMReassignUnhealthyOrUnknown(t *testing.T) {
	f := fsmWith(t, "o1", "o2")
	first := assignKey(t, f, "v/live/a", 1).Origin.ID
	other := "o1"
	if first == "o1" {
		other = "o2"
	}
	apply(t, f, SetHealthCmd{Changes: []HealthChange{{ID: first, Healthy: false, Reason: "refused"}}})
	if _, ok := f.Route("v/live/a"); ok {
		t.Fatal("route must treat an assignment to an unhealthy origin as absent")
	}
	r := assignKey(t, f, "v/live/a", 2)
	if !r.Created || r.Origin.ID != other {
		t.Fatalf("reassign = %+v, want %s", r, other)
	}
	if f.streams[first] != 0 || f.streams[other] != 1 {
		t.Fatalf("streams after move: %v", f.streams)
	}
	// No usable origin at all.
	apply(t, f, SetHealthCmd{Changes: []HealthChange{{ID: other, Healthy: false}}})
	if r := assignKey(t, f, "v/live/b", 3); !errors.Is(r.Err(), stream.ErrNoOrigin) {
		t.Fatalf("no origin: %+v", r)
	}
	// Healing restores the origin; unknown ids in a health change are ignored.
	apply(t, f, SetHealthCmd{Changes: []HealthChange{{ID: other, Healthy: true, ProbeMs: 9}, {ID: "gone"}}})
	if o, ok := f.Route("v/live/a"); !ok || o.ID != other {
		t.Fatalf("route after heal: %v %v", o, ok)
	}
	if s := f.Origins(); s[0].LastProbeMs != 9 && s[1].LastProbeMs != 9 {
		t.Fatalf("probe time not recorded: %+v", s)
	}
}

func TestFSMTouchAndGC(t *testing.T) {
	f := fsmWith(t, "o1")
	assignKey(t, f, "v/live/a", 100)
	assignKey(t, f, "v/live/b", 100)
	apply(t, f, TouchCmd{Keys: []string{"v/live/a", "v/live/unknown"}, NowMs: 500})
	apply(t, f, TouchCmd{Keys: []string{"v/live/a"}, NowMs: 400}) // never goes back
	if a := f.assignments["v/live/a"]; a.LastUsedMs != 500 {
		t.Fatalf("touch: %+v", a)
	}
	stale := f.StaleKeys(300, 10)
	if len(stale) != 1 || stale[0] != "v/live/b" {
		t.Fatalf("stale = %v", stale)
	}
	// The delete carries the cutoff: "a" was touched after it and survives.
	apply(t, f, DeleteAssignmentsCmd{Keys: []string{"v/live/a", "v/live/b"}, CutoffMs: 300})
	if _, ok := f.assignments["v/live/b"]; ok {
		t.Fatal("b not collected")
	}
	if _, ok := f.assignments["v/live/a"]; !ok {
		t.Fatal("a collected despite recent use")
	}
	if f.streams["o1"] != 1 {
		t.Fatalf("streams = %v", f.streams)
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	f := fsmWith(t, "o1", "o2", "o3")
	for i := range 10 {
		assignKey(t, f, fmt.Sprintf("v/live/s%d", i), int64(i))
	}
	apply(t, f, SetDrainingCmd{ID: "o2", Draining: true})
	apply(t, f, SetHealthCmd{Changes: []HealthChange{{ID: "o3", Healthy: false, Reason: "x"}}})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Changes after the snapshot was taken do not leak into it.
	assignKey(t, f, "v/live/late", 99)
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	g := fsmWith(t, "junk")
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	want := f.Contents()
	want.Assignments = want.Assignments[:0]
	for _, ka := range f.Contents().Assignments {
		if ka.Key != "v/live/late" {
			want.Assignments = append(want.Assignments, ka)
		}
	}
	a, _ := json.Marshal(want)
	b, _ := json.Marshal(g.Contents())
	if !bytes.Equal(a, b) {
		t.Fatalf("restore mismatch:\n%s\n%s", a, b)
	}
	for id, n := range g.streams {
		c := 0
		for _, ka := range want.Assignments {
			if ka.Origin == id {
				c++
			}
		}
		if c != n {
			t.Fatalf("streams[%s] = %d, want %d", id, n, c)
		}
	}
	if err := g.Restore(io.NopCloser(bytes.NewReader([]byte("{")))); err == nil {
		t.Fatal("restore of garbage must fail")
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	for _, tc := range [][]byte{nil, {1}, {99, '{', '}'}, {byte(CmdAssign), 'x'}, append([]byte{byte(CmdTouch)}, make([]byte, MaxCommandBytes)...)} {
		if _, err := Decode(tc); !errors.Is(err, ErrBadCommand) {
			t.Errorf("decode(%.10q) = %v", tc, err)
		}
	}
	f := NewFSM()
	if r := f.Apply(&raft.Log{Type: raft.LogCommand, Data: []byte{0}}).(Result); !errors.Is(r.Err(), ErrBadCommand) {
		t.Fatalf("apply garbage: %+v", r)
	}
	if r := f.Apply(&raft.Log{Type: raft.LogNoop}).(Result); r.Err() != nil {
		t.Fatalf("non-command log: %+v", r)
	}
}

func FuzzApply(f *testing.F) {
	seeds := [][]byte{
		mustCmd(f, RegisterOriginCmd{Origin: testOrigin("o1"), Heartbeat: true, NowMs: 1}),
		mustCmd(f, RemoveOriginCmd{ID: "o1"}),
		mustCmd(f, SetHealthCmd{Changes: []HealthChange{{ID: "o1", Healthy: false, Reason: "r"}}}),
		mustCmd(f, SetDrainingCmd{ID: "o1", Draining: true}),
		mustCmd(f, AssignCmd{Key: "v/live/a", NowMs: 2}),
		mustCmd(f, TouchCmd{Keys: []string{"v/live/a"}, NowMs: 3}),
		mustCmd(f, DeleteAssignmentsCmd{Keys: []string{"v/live/a"}, CutoffMs: 4}),
		mustCmd(f, PutRTCSessionCmd{Session: rtcSess("ans:off", 5)}),
		mustCmd(f, DeleteRTCSessionCmd{Ufrag: "ans:off"}),
		mustCmd(f, ExpireRTCSessionsCmd{Ufrags: []string{"ans:off", "x"}, CutoffMs: 6}),
		mustCmd(f, TouchRTCSessionsCmd{Ufrags: []string{"ans:off", "x"}, NowMs: 7}),
		mustCmd(f, PutRTCSessionCmd{Session: rtcSess("new:x", 8), ProtectSinceMs: 1, MaxSessions: 1}),
		mustCmd(f, MoveCmd{Key: "v/live/a", From: "o1", NowMs: 9, MinIntervalMs: 5}),
		mustCmd(f, SetProtocolCmd{Version: 2}),
		mustCmd(f, SetProtocolCmd{Version: 99}),
		{0x33, '{', '}'},
		{byte(CmdPutRTCSession), '{', '"', 's', 'e', 's', 's', 'i', 'o', 'n', '"', ':', 'n', 'u', 'l', 'l', '}'},
		{byte(CmdExpireRTCSessions), '{', '"', 'u', 'f', 'r', 'a', 'g', 's', '"', ':', '[', 'n', 'u', 'l', 'l', ']', '}'},
		{byte(CmdAssign), 'n', 'u', 'l', 'l'},
		{byte(CmdSetHealth), '{', '"', 'c', 'h', 'a', 'n', 'g', 'e', 's', '"', ':', '[', 'n', 'u', 'l', 'l', ']', '}'},
		{0xff, '{', '}'},
		{},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := fsmWith(t, "o1", "o2")
		assignKey(t, m, "v/live/a", 1)
		apply(t, m, PutRTCSessionCmd{Session: rtcSess("ans:off", 1)})
		r := m.Apply(&raft.Log{Type: raft.LogCommand, Data: data}).(Result)
		_ = r.Err()
		// The state must stay serializable and consistent.
		st := m.Contents()
		n := 0
		for _, c := range m.streams {
			n += c
		}
		if n != len(st.Assignments) {
			t.Fatalf("streams total %d != %d assignments", n, len(st.Assignments))
		}
		if err := m.rtc.check(); err != nil {
			t.Fatal(err)
		}
	})
}

// The registration rules: a heartbeat never overwrites a static origin, an
// unauthenticated heartbeat never moves an origin to other addresses, and
// new origins stop at MaxOrigins.
func TestFSMRegistrationRules(t *testing.T) {
	f := NewFSM()
	static := testOrigin("static")
	static.Static = true
	if r := apply(t, f, RegisterOriginCmd{Origin: static, NowMs: 1}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	moved := testOrigin("static")
	moved.RTMP = "10.6.6.6:1935"
	for _, c := range []RegisterOriginCmd{
		{Origin: moved, Heartbeat: true, NowMs: 2},
		{Origin: moved, Heartbeat: true, Authenticated: true, NowMs: 2},
	} {
		if r := apply(t, f, c); !errors.Is(r.Err(), ErrRegistrationRefused) {
			t.Errorf("heartbeat over a static origin (authenticated %v): %v", c.Authenticated, r.Err())
		}
	}
	if o, _ := f.Origin("static"); o != static {
		t.Fatalf("static origin now %+v", o)
	}

	o := testOrigin("srs1")
	if r := apply(t, f, RegisterOriginCmd{Origin: o, Heartbeat: true, NowMs: 3}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	// The same addresses (a restart: new service and pid) need no token.
	restarted := o
	restarted.Service, restarted.PID = "s2", "2"
	if r := apply(t, f, RegisterOriginCmd{Origin: restarted, Heartbeat: true, NowMs: 4}); r.Err() != nil {
		t.Fatalf("restart at the same addresses: %v", r.Err())
	}
	elsewhere := restarted
	elsewhere.IP, elsewhere.RTMP = "10.6.6.6", "10.6.6.6:1935"
	if r := apply(t, f, RegisterOriginCmd{Origin: elsewhere, Heartbeat: true, NowMs: 5}); !errors.Is(r.Err(), ErrRegistrationRefused) {
		t.Fatalf("unauthenticated move: %v", r.Err())
	}
	if got, _ := f.Origin("srs1"); got != restarted {
		t.Fatalf("origin moved to %+v", got)
	}
	if r := apply(t, f, RegisterOriginCmd{Origin: elsewhere, Heartbeat: true, Authenticated: true, NowMs: 6}); r.Err() != nil {
		t.Fatalf("authenticated move: %v", r.Err())
	}

	// Two origins are known; a cap of 2 refuses a third but not a refresh.
	if r := apply(t, f, RegisterOriginCmd{Origin: testOrigin("srs3"), Heartbeat: true, MaxOrigins: 2, NowMs: 7}); !errors.Is(r.Err(), ErrRegistrationRefused) {
		t.Fatalf("origin over the cap: %v", r.Err())
	}
	if r := apply(t, f, RegisterOriginCmd{Origin: elsewhere, Heartbeat: true, MaxOrigins: 2, NowMs: 8}); r.Err() != nil {
		t.Fatalf("refresh at the cap: %v", r.Err())
	}
	if n := len(f.Origins()); n != 2 {
		t.Fatalf("%d origins", n)
	}
}

// A conditional removal keeps an origin that heartbeat after the cutoff.
func TestFSMRemoveStaleOrigin(t *testing.T) {
	f := fsmWith(t, "o1") // last heartbeat at 1000
	if r := apply(t, f, RemoveOriginCmd{ID: "o1", StaleBeforeMs: 1000}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if _, ok := f.Origin("o1"); !ok {
		t.Fatal("an origin that heartbeat at the cutoff was removed")
	}
	if r := apply(t, f, RemoveOriginCmd{ID: "o1", StaleBeforeMs: 1001}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if _, ok := f.Origin("o1"); ok {
		t.Fatal("a stale origin was kept")
	}
}

// The first token key applied stays; a bad one is refused; a snapshot keeps
// it.
func TestFSMTokenKey(t *testing.T) {
	f := NewFSM()
	if _, ok := f.TokenKey(); ok {
		t.Fatal("a key before any was set")
	}
	first := bytes.Repeat([]byte{1}, 32)
	for _, c := range []SetTokenKeyCmd{{Key: first}, {Key: bytes.Repeat([]byte{2}, 32)}} {
		if r := apply(t, f, c); r.Err() != nil {
			t.Fatal(r.Err())
		}
	}
	if r := apply(t, f, SetTokenKeyCmd{Key: []byte("short")}); !errors.Is(r.Err(), ErrBadCommand) {
		t.Fatalf("a 5-byte key: %v", r.Err())
	}
	if k, ok := f.TokenKey(); !ok || !bytes.Equal(k, first) {
		t.Fatalf("key %x", k)
	}
	snap, _ := f.Snapshot()
	var sink memSink
	snap.Persist(&sink)
	g := NewFSM()
	if err := g.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	if k, ok := g.TokenKey(); !ok || !bytes.Equal(k, first) {
		t.Fatalf("restored key %x", k)
	}
}

// Play-only assignments stop at MaxPlayOnly; a publisher's assignment of a
// play-only key keeps its origin and clears the mark; deletions keep the
// count right.
func TestFSMPlayOnly(t *testing.T) {
	f := fsmWith(t, "o1", "o2")
	play := func(k string) Result {
		return apply(t, f, AssignCmd{Key: k, NowMs: 10, PlayOnly: true, MaxPlayOnly: 2})
	}
	first := play("v/live/a")
	if first.Err() != nil || !first.Created {
		t.Fatalf("first play-only: %+v", first)
	}
	if r := play("v/live/b"); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if r := play("v/live/c"); !errors.Is(r.Err(), ErrPlayOnlyFull) {
		t.Fatalf("third play-only: %v", r.Err())
	}
	if r := play("v/live/a"); r.Err() != nil || r.Created {
		t.Fatalf("a known play-only key at the cap: %+v", r)
	}
	pub := apply(t, f, AssignCmd{Key: "v/live/a", NowMs: 11})
	if pub.Err() != nil || pub.Origin.ID != first.Origin.ID {
		t.Fatalf("publisher of a play-only key: %+v, want origin %s", pub, first.Origin.ID)
	}
	if n := f.PlayOnlyCount(); n != 1 || f.assignments["v/live/a"].PlayOnly {
		t.Fatalf("play-only count %d after a publisher", n)
	}
	if r := play("v/live/c"); r.Err() != nil {
		t.Fatalf("play-only under the cap again: %v", r.Err())
	}
	if keys := f.StalePlayOnlyKeys(11, 10); len(keys) != 2 {
		t.Fatalf("stale play-only keys %v", keys)
	}
	apply(t, f, DeleteAssignmentsCmd{Keys: []string{"v/live/b", "v/live/c"}, CutoffMs: 11})
	apply(t, f, RemoveOriginCmd{ID: first.Origin.ID})
	if n := f.PlayOnlyCount(); n != 0 {
		t.Fatalf("play-only count %d after deletions", n)
	}
}

func TestFSMHasHTTPEndpoint(t *testing.T) {
	f := NewFSM()
	o := testOrigin("o1")
	o.HTTP = "127.0.0.1:8080"
	apply(t, f, RegisterOriginCmd{Origin: o, Heartbeat: true, NowMs: 1})
	if !f.HasHTTPEndpoint("127.0.0.1:8080") || f.HasHTTPEndpoint("127.0.0.1:8081") || f.HasHTTPEndpoint("") {
		t.Fatal("HasHTTPEndpoint")
	}
}

// TestFSMMove: a move takes the stream off the failed origin, bumps the
// epoch once, is a no-op when repeated or when another node moved it first,
// is rate limited per stream, and fails when no other origin is healthy.
func TestFSMMove(t *testing.T) {
	f := fsmWith(t, "o1", "o2", "o3")
	from := assignKey(t, f, "v/live/a", 1).Origin.ID
	r := apply(t, f, MoveCmd{Key: "v/live/a", From: from, NowMs: 100, MinIntervalMs: 50})
	if r.Err() != nil || !r.Created || r.Origin.ID == from {
		t.Fatalf("move: %+v", r)
	}
	to := r.Origin.ID
	if e, base, ms := f.Moved("v/live/a"); e != 1 || ms != 100 || base != 1 {
		t.Fatalf("epoch %d base %d moved %d, want 1, 1 at 100", e, base, ms)
	}
	if o, ok := f.Route("v/live/a"); !ok || o.ID != to {
		t.Fatalf("route after move: %v %v", o, ok)
	}
	// Another node saw the same failure: nothing changes.
	if r := apply(t, f, MoveCmd{Key: "v/live/a", From: from, NowMs: 101, MinIntervalMs: 50}); r.Err() != nil || r.Created || r.Origin.ID != to {
		t.Fatalf("repeated move: %+v", r)
	}
	if f.Epoch("v/live/a") != 1 || f.streams[from] != 0 || f.streams[to] != 1 {
		t.Fatalf("after repeat: epoch %d streams %v", f.Epoch("v/live/a"), f.streams)
	}
	// Too soon after the last move.
	if r := apply(t, f, MoveCmd{Key: "v/live/a", From: to, NowMs: 120, MinIntervalMs: 50}); !errors.Is(r.Err(), ErrMoveTooSoon) {
		t.Fatalf("move too soon: %+v", r)
	}
	// Later it may move again, never back to the origin it leaves.
	r = apply(t, f, MoveCmd{Key: "v/live/a", From: to, NowMs: 200, MinIntervalMs: 50})
	if r.Err() != nil || r.Origin.ID == to || f.Epoch("v/live/a") != 2 {
		t.Fatalf("second move: %+v epoch %d", r, f.Epoch("v/live/a"))
	}
	// No healthy origin but the failed one.
	g := fsmWith(t, "o1", "o2")
	cur := assignKey(t, g, "v/live/b", 1).Origin.ID
	other := map[string]string{"o1": "o2", "o2": "o1"}[cur]
	apply(t, g, SetHealthCmd{Changes: []HealthChange{{ID: other, Healthy: false}}})
	if r := apply(t, g, MoveCmd{Key: "v/live/b", From: cur, NowMs: 5}); !errors.Is(r.Err(), stream.ErrNoOrigin) {
		t.Fatalf("move without a healthy origin: %+v", r)
	}
	if g.Epoch("v/live/b") != 0 {
		t.Fatal("a failed move changed the epoch")
	}
	// A repair by AssignCmd (the origin became unhealthy) bumps it too.
	apply(t, g, SetHealthCmd{Changes: []HealthChange{{ID: other, Healthy: true}, {ID: cur, Healthy: false}}})
	if r := assignKey(t, g, "v/live/b", 6); r.Origin.ID != other || g.Epoch("v/live/b") != 1 {
		t.Fatalf("repair: %+v epoch %d", r, g.Epoch("v/live/b"))
	}
	// Malformed moves.
	for _, c := range []MoveCmd{{Key: "bad", From: "o1"}, {Key: "v/live/a"}} {
		if r := apply(t, f, c); !errors.Is(r.Err(), ErrBadCommand) {
			t.Errorf("%+v: %+v", c, r)
		}
	}
}

// TestSeqBase: each move raises the sequence base by the most segments the
// origin it leaves can have written (half a second each) since it got the
// stream, so the next origin's numbers continue past them.
func TestSeqBase(t *testing.T) {
	f := fsmWith(t, "o1", "o2", "o3")
	first := assignKey(t, f, "v/live/a", 1_000).Origin.ID
	r := apply(t, f, MoveCmd{Key: "v/live/a", From: first, NowMs: 61_000})
	if _, base, _ := f.Moved("v/live/a"); base != 121 { // 60 s: at most 120 segments, plus one
		t.Fatalf("base after a minute on the first origin: %d, want 121", base)
	}
	apply(t, f, MoveCmd{Key: "v/live/a", From: r.Origin.ID, NowMs: 71_000})
	if e, base, _ := f.Moved("v/live/a"); e != 2 || base != 121+21 {
		t.Fatalf("after 10 s more: epoch %d base %d, want 2 and %d", e, base, 121+21)
	}
	if got := segmentsSince(5, 1); got != 1 {
		t.Errorf("a clock that went back: %d, want 1", got)
	}
}

// TestMoveRespectsCapacity: a move never puts a stream on an origin at its
// max_streams, and a key without an assignment is not moved (it is
// assigned with AssignCmd and its bounds instead).
func TestMoveRespectsCapacity(t *testing.T) {
	f := fsmWith(t, "a")
	full := testOrigin("full")
	full.MaxStreams = 1
	if r := apply(t, f, RegisterOriginCmd{Origin: full, Heartbeat: true, NowMs: 1000}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	var onA []string
	for i := range 6 {
		k := "v/live/s" + strconv.Itoa(i)
		if r := assignKey(t, f, k, 2000); r.Err() != nil {
			t.Fatal(r.Err())
		} else if r.Origin.ID == "a" {
			onA = append(onA, k)
		}
	}
	for _, k := range onA {
		r := apply(t, f, MoveCmd{Key: k, From: "a", NowMs: 3000})
		if r.Err() == nil && r.Origin.ID == "full" && f.streams["full"] > 1 {
			t.Fatalf("moved %s onto a full origin: %d streams", k, f.streams["full"])
		}
		if r.Err() != nil && !errors.Is(r.Err(), stream.ErrOriginsFull) {
			t.Fatalf("move of %s: %v, want origins full", k, r.Err())
		}
	}
	if f.streams["full"] != 1 {
		t.Errorf("full holds %d streams, want 1", f.streams["full"])
	}
	if r := apply(t, f, MoveCmd{Key: "v/live/none", From: "a", NowMs: 3000}); !errors.Is(r.Err(), stream.ErrNoOrigin) || len(f.assignments) != 6 {
		t.Errorf("move of an unassigned key: %v, %d assignments", r.Err(), len(f.assignments))
	}
}

// A publisher's assignment goes to the origin that accepted the publish
// (Prefer) when Select could pick it, and an existing assignment on a
// healthy origin never moves for it; new assignments stop at
// MaxAssignments, repairs do not.
func TestFSMAssignPreferAndBound(t *testing.T) {
	f := fsmWith(t, "o1", "o2", "o3")
	for i, pref := range []string{"o2", "o3", "o1", "o2"} {
		k := fmt.Sprintf("v/live/p%d", i)
		r := apply(t, f, AssignCmd{Key: k, NowMs: 10, Prefer: pref})
		if r.Err() != nil || !r.Created || r.Origin.ID != pref {
			t.Fatalf("%s preferring %s: %+v", k, pref, r)
		}
	}
	// An existing assignment stays where it is.
	if r := apply(t, f, AssignCmd{Key: "v/live/p0", NowMs: 11, Prefer: "o1"}); r.Created || r.Origin.ID != "o2" {
		t.Fatalf("prefer moved an existing assignment: %+v", r)
	}
	// An unhealthy, draining or unknown preference is ignored.
	apply(t, f, SetHealthCmd{Changes: []HealthChange{{ID: "o3", Healthy: false}}})
	apply(t, f, SetDrainingCmd{ID: "o1", Draining: true})
	for _, pref := range []string{"o3", "o1", "nope"} {
		if r := apply(t, f, AssignCmd{Key: "v/live/x" + pref, NowMs: 12, Prefer: pref}); r.Err() != nil || r.Origin.ID != "o2" {
			t.Fatalf("preferring %s: %+v", pref, r)
		}
	}
	// The table's bound: 7 assignments exist.
	if r := apply(t, f, AssignCmd{Key: "v/live/full", NowMs: 13, MaxAssignments: 7}); !errors.Is(r.Err(), ErrAssignmentsFull) {
		t.Fatalf("past the bound: %+v", r)
	}
	if _, ok := f.assignments["v/live/full"]; ok {
		t.Fatal("a refused assignment was stored")
	}
	// A repair of an existing assignment (p1 is on unhealthy o3) is not new.
	if r := apply(t, f, AssignCmd{Key: "v/live/p1", NowMs: 14, MaxAssignments: 7, Prefer: "o2"}); r.Err() != nil || r.Origin.ID != "o2" || !r.Created {
		t.Fatalf("repair at the bound: %+v", r)
	}
	if r := apply(t, f, AssignCmd{Key: "v/live/more", NowMs: 15, MaxAssignments: 8}); r.Err() != nil {
		t.Fatalf("below the bound: %+v", r)
	}
}
