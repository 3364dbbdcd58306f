package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/srs-mesh/srs-mesh/stream"
)

func rtcSess(ufrag string, created int64) stream.RTCSession {
	return stream.RTCSession{Ufrag: ufrag, OriginID: "o1", OriginRTC: "127.0.0.1:8000", Key: "v/live/a",
		Resource: "http://127.0.0.1:1985/rtc/v1/whep/?token=x", Pwd: "0123456789abcdef0123456789", CreatedUnixMs: created}
}

func TestFSMPutLookupDeleteRTCSession(t *testing.T) {
	f := NewFSM()
	s := rtcSess("a:b", 100)
	if r := apply(t, f, PutRTCSessionCmd{Session: s}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if got, ok := f.RTCSession("a:b"); !ok || got != s {
		t.Fatalf("lookup = %+v %v", got, ok)
	}
	// A put with the same ufrag replaces the session.
	s2 := s
	s2.OriginID, s2.CreatedUnixMs = "o2", 200
	apply(t, f, PutRTCSessionCmd{Session: s2})
	if got, _ := f.RTCSession("a:b"); got != s2 || f.RTCSessionCount() != 1 {
		t.Fatalf("replace: %+v, %d sessions", got, f.RTCSessionCount())
	}
	if r := apply(t, f, DeleteRTCSessionCmd{Ufrag: "a:b"}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if _, ok := f.RTCSession("a:b"); ok {
		t.Fatal("deleted session still found")
	}
	// Deleting an absent session is not an error.
	if r := apply(t, f, DeleteRTCSessionCmd{Ufrag: "a:b"}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	for _, bad := range []stream.RTCSession{{}, {Ufrag: strings.Repeat("u", stream.MaxRTCUfragBytes+1)}, {Ufrag: "x", Resource: strings.Repeat("r", stream.MaxRTCResourceBytes+1)},
		{Ufrag: "x", Pwd: strings.Repeat("p", stream.MaxRTCPwdBytes+1)}} {
		if r := apply(t, f, PutRTCSessionCmd{Session: bad}); !errors.Is(r.Err(), ErrBadCommand) {
			t.Fatalf("put %.20q: %+v", bad.Ufrag, r)
		}
	}
	if f.RTCSessionCount() != 0 || len(f.rtcAge) != 0 {
		t.Fatalf("table not empty: %d %d", f.RTCSessionCount(), len(f.rtcAge))
	}
}

func TestFSMExpireRTCSessions(t *testing.T) {
	f := NewFSM()
	for i, u := range []string{"a:1", "b:1", "c:1"} {
		apply(t, f, PutRTCSessionCmd{Session: rtcSess(u, int64(100*(i+1)))})
	}
	stale := f.StaleRTCSessions(250, 10)
	if fmt.Sprint(stale) != "[a:1 b:1]" {
		t.Fatalf("stale = %v", stale)
	}
	if got := f.StaleRTCSessions(250, 1); fmt.Sprint(got) != "[a:1]" {
		t.Fatalf("stale max 1 = %v (oldest first)", got)
	}
	// "b:1" is put again (a new offer with the same ufrag) after the leader
	// decided to expire it: it survives.
	apply(t, f, PutRTCSessionCmd{Session: rtcSess("b:1", 300)})
	apply(t, f, ExpireRTCSessionsCmd{Ufrags: stale, CutoffMs: 250})
	if _, ok := f.RTCSession("a:1"); ok {
		t.Fatal("a:1 not expired")
	}
	for _, u := range []string{"b:1", "c:1"} {
		if _, ok := f.RTCSession(u); !ok {
			t.Fatalf("%s expired", u)
		}
	}
}

func TestFSMRTCSessionCapEvictsOldestDeterministically(t *testing.T) {
	// Two replicas apply the same log in which sessions arrive out of age
	// order; both must evict the same ones.
	var log [][]byte
	for i := range MaxRTCSessions + 50 {
		// Creation times collide in pairs, so ties are broken by ufrag.
		created := int64((i*7919)%(MaxRTCSessions+50)) / 2
		log = append(log, mustCmd(t, PutRTCSessionCmd{Session: rtcSess(fmt.Sprintf("u%06d:x", i), created)}))
	}
	replicas := []*FSM{NewFSM(), NewFSM()}
	for _, f := range replicas {
		for i, data := range log {
			f.Apply(&raft.Log{Type: raft.LogCommand, Index: uint64(i + 1), Data: data})
		}
		if n := f.RTCSessionCount(); n != MaxRTCSessions {
			t.Fatalf("%d sessions, want the cap %d", n, MaxRTCSessions)
		}
		// Every survivor is at least as new as every evicted session.
		minAlive := int64(1 << 62)
		for _, e := range f.rtc {
			minAlive = min(minAlive, e.s.CreatedUnixMs)
		}
		if minAlive != 25 {
			t.Fatalf("oldest surviving session created at %d, want 25", minAlive)
		}
	}
	a, _ := json.Marshal(replicas[0].Contents())
	b, _ := json.Marshal(replicas[1].Contents())
	if !bytes.Equal(a, b) {
		t.Fatal("replicas diverged after eviction")
	}
}

func TestFSMSnapshotRestoreRTCSessions(t *testing.T) {
	f := fsmWith(t, "o1")
	for i := range 5 {
		f.Apply(&raft.Log{Type: raft.LogCommand, Index: uint64(10 + i),
			Data: mustCmd(t, PutRTCSessionCmd{Session: rtcSess(fmt.Sprintf("s%d:x", i), int64(i))})})
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	apply(t, f, DeleteRTCSessionCmd{Ufrag: "s0:x"}) // after the snapshot
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	apply(t, g, PutRTCSessionCmd{Session: rtcSess("junk:x", 1)})
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if n := g.RTCSessionCount(); n != 5 {
		t.Fatalf("restored %d sessions, want 5", n)
	}
	if _, ok := g.RTCSession("junk:x"); ok {
		t.Fatal("restore kept old state")
	}
	if s, ok := g.RTCSession("s0:x"); !ok || s != rtcSess("s0:x", 0) {
		t.Fatalf("restored session = %+v %v", s, ok)
	}
	if g.appliedIndex() != 14 {
		t.Fatalf("restored index %d, want 14", g.appliedIndex())
	}
	// The age heap works after a restore.
	apply(t, g, ExpireRTCSessionsCmd{Ufrags: g.StaleRTCSessions(3, 10), CutoffMs: 3})
	if n := g.RTCSessionCount(); n != 2 {
		t.Fatalf("after expiry: %d sessions, want 2", n)
	}
	// A snapshot of an older version without sessions restores to none.
	if err := g.Restore(io.NopCloser(strings.NewReader(`{"origins":[],"assignments":[]}`))); err != nil || g.RTCSessionCount() != 0 {
		t.Fatalf("restore without sessions: %v, %d", err, g.RTCSessionCount())
	}
}

// Commands and snapshots written by nodes that did not record the ICE
// password still decode; their sessions have an empty Pwd.
func TestFSMRTCSessionWithoutPwd(t *testing.T) {
	f := NewFSM()
	old := append([]byte{byte(CmdPutRTCSession)},
		`{"session":{"ufrag":"a:b","origin":"o1","origin_rtc":"127.0.0.1:8000","key":"v/live/a","created_unix_ms":7}}`...)
	if r := f.Apply(&raft.Log{Type: raft.LogCommand, Index: 1, Data: old}).(Result); r.Err() != nil {
		t.Fatal(r.Err())
	}
	want := stream.RTCSession{Ufrag: "a:b", OriginID: "o1", OriginRTC: "127.0.0.1:8000", Key: "v/live/a", CreatedUnixMs: 7}
	if got, ok := f.RTCSession("a:b"); !ok || got != want {
		t.Fatalf("old command: %+v %v", got, ok)
	}
	snap := `{"origins":[],"assignments":[],"rtc_sessions":[` +
		`{"ufrag":"c:d","origin":"o1","origin_rtc":"127.0.0.1:8000","key":"v/live/a","created_unix_ms":8},` +
		`{"ufrag":"e:f","origin":"o1","origin_rtc":"127.0.0.1:8000","key":"v/live/a","pwd":"p1","created_unix_ms":9},` +
		`{"ufrag":"g:h","pwd":"` + strings.Repeat("p", stream.MaxRTCPwdBytes+1) + `","created_unix_ms":9}]}`
	if err := f.Restore(io.NopCloser(strings.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if s, ok := f.RTCSession("c:d"); !ok || s.Pwd != "" {
		t.Fatalf("old snapshot: %+v %v", s, ok)
	}
	if s, ok := f.RTCSession("e:f"); !ok || s.Pwd != "p1" {
		t.Fatalf("snapshot with pwd: %+v %v", s, ok)
	}
	if _, ok := f.RTCSession("g:h"); ok || f.RTCSessionCount() != 2 {
		t.Fatalf("restored a session with an oversized pwd; %d sessions", f.RTCSessionCount())
	}
}

func TestFSMWaitApplied(t *testing.T) {
	f := NewFSM()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := f.WaitApplied(ctx, 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for an index never applied: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- f.WaitApplied(context.Background(), 3) }()
	for i := uint64(1); i <= 3; i++ {
		f.Apply(&raft.Log{Type: raft.LogCommand, Index: i, Data: mustCmd(t, DeleteRTCSessionCmd{Ufrag: "x"})})
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := f.WaitApplied(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
}
