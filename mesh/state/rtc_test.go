package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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
	if f.RTCSessionCount() != 0 || len(f.rtc.idle)+len(f.rtc.active) != 0 {
		t.Fatalf("table not empty: %d %d", f.RTCSessionCount(), len(f.rtc.idle)+len(f.rtc.active))
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
		for _, e := range f.rtc.m {
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

// check verifies the table's invariants: every session is in the map and in
// exactly one heap (idle or active, as its LastActiveUnixMs says) at its
// index, both heaps are ordered, and the table is within MaxRTCSessions.
func (t *rtcTable) check() error {
	if n := len(t.idle) + len(t.active); n != len(t.m) || n > MaxRTCSessions {
		return fmt.Errorf("%d sessions in the map, %d in the heaps", len(t.m), n)
	}
	for _, h := range []struct {
		name   string
		h      rtcHeap
		active bool
	}{{"idle", t.idle, false}, {"active", t.active, true}} {
		for i, e := range h.h {
			if e.idx != i || t.m[e.s.Ufrag] != e || e.s.Validate() != nil || e.active() != h.active {
				return fmt.Errorf("%s heap entry %d inconsistent: idx %d, %+v", h.name, i, e.idx, e.s)
			}
			if i > 0 && rtcOlder(e, h.h[(i-1)/2]) {
				return fmt.Errorf("%s heap out of order at %d", h.name, i)
			}
		}
	}
	return nil
}

func mustCheck(t testing.TB, f *FSM) {
	t.Helper()
	if err := f.rtc.check(); err != nil {
		t.Fatal(err)
	}
}

// ufrags lists the stored sessions' ufrags, sorted.
func ufrags(f *FSM) string {
	var out []string
	for _, s := range f.Contents().RTCSessions {
		out = append(out, s.Ufrag)
	}
	return strings.Join(out, " ")
}

// rtcAt is a session created at created and last carried at active (0:
// never).
func rtcAt(ufrag string, created, active int64) stream.RTCSession {
	s := rtcSess(ufrag, created)
	s.LastActiveUnixMs = active
	return s
}

// A full table evicts the session last seen the longest ago among those the
// put does not protect; a table of protected sessions refuses the put.
func TestFSMRTCEvictionOrder(t *testing.T) {
	for _, tc := range []struct {
		name    string
		table   []stream.RTCSession
		protect int64
		want    string // the surviving ufrags, sorted, after putting "new"
		full    bool   // the put fails with ErrRTCTableFull
	}{
		{name: "oldest creation, nothing active",
			table: []stream.RTCSession{rtcAt("a", 300, 0), rtcAt("b", 100, 0), rtcAt("c", 200, 0)},
			want:  "a c new"},
		{name: "ties broken by ufrag",
			table: []stream.RTCSession{rtcAt("b", 100, 0), rtcAt("a", 100, 0), rtcAt("c", 100, 0)},
			want:  "b c new"},
		{name: "activity makes a session younger",
			table: []stream.RTCSession{rtcAt("a", 100, 400), rtcAt("b", 200, 0), rtcAt("c", 300, 0)},
			want:  "a c new"},
		{name: "last seen is the later of creation and activity",
			table: []stream.RTCSession{rtcAt("a", 250, 150), rtcAt("b", 200, 0), rtcAt("c", 300, 0)},
			want:  "a c new"},
		{name: "tie between an idle and an active session",
			table: []stream.RTCSession{rtcAt("b", 100, 200), rtcAt("a", 200, 0), rtcAt("c", 300, 0)},
			want:  "b c new"},
		{name: "without protection an old active session goes",
			table: []stream.RTCSession{rtcAt("a", 100, 150), rtcAt("b", 200, 0), rtcAt("c", 300, 0)},
			want:  "b c new"},
		{name: "protected active session outlives newer idle ones",
			table:   []stream.RTCSession{rtcAt("a", 100, 150), rtcAt("b", 200, 0), rtcAt("c", 300, 0)},
			protect: 150, want: "a c new"},
		{name: "an active session older than the window is not protected",
			table:   []stream.RTCSession{rtcAt("a", 100, 150), rtcAt("b", 200, 0), rtcAt("c", 300, 0)},
			protect: 151, want: "b c new"},
		{name: "idle sessions are never protected, however new",
			table:   []stream.RTCSession{rtcAt("a", 100, 500), rtcAt("b", 900, 0), rtcAt("c", 800, 0)},
			protect: 400, want: "a b new"},
		{name: "an active session past the window goes, newer active ones stay",
			table:   []stream.RTCSession{rtcAt("a", 100, 500), rtcAt("b", 100, 300), rtcAt("c", 100, 600)},
			protect: 400, want: "a c new"},
		{name: "every session protected",
			table:   []stream.RTCSession{rtcAt("a", 100, 500), rtcAt("b", 100, 450), rtcAt("c", 100, 400)},
			protect: 400, full: true, want: "a b c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFSM()
			for _, s := range tc.table {
				if r := apply(t, f, PutRTCSessionCmd{Session: s, MaxSessions: 3}); r.Err() != nil {
					t.Fatal(r.Err())
				}
			}
			before := f.Contents()
			r := apply(t, f, PutRTCSessionCmd{Session: rtcAt("new", 1000, 0), ProtectSinceMs: tc.protect, MaxSessions: 3})
			if tc.full != errors.Is(r.Err(), ErrRTCTableFull) {
				t.Fatalf("put: %v", r.Err())
			}
			if got := ufrags(f); got != tc.want {
				t.Fatalf("sessions %q, want %q", got, tc.want)
			}
			if tc.full {
				a, _ := json.Marshal(before)
				b, _ := json.Marshal(f.Contents())
				if !bytes.Equal(a, b) {
					t.Fatal("a refused put changed the table")
				}
				if !strings.Contains(r.Err().Error(), "full of active sessions") {
					t.Fatalf("error %q", r.Err())
				}
			}
			mustCheck(t, f)
		})
	}
}

// Replacing a session needs no room, and keeps what relays reported.
func TestFSMRTCReplaceKeepsActivity(t *testing.T) {
	f := NewFSM()
	for _, s := range []stream.RTCSession{rtcAt("a", 100, 500), rtcAt("b", 100, 500)} {
		apply(t, f, PutRTCSessionCmd{Session: s, MaxSessions: 2})
	}
	s := rtcAt("a", 200, 0)
	if r := apply(t, f, PutRTCSessionCmd{Session: s, ProtectSinceMs: 400, MaxSessions: 2}); r.Err() != nil {
		t.Fatalf("replace in a full table of protected sessions: %v", r.Err())
	}
	if got, _ := f.RTCSession("a"); got.CreatedUnixMs != 200 || got.LastActiveUnixMs != 500 {
		t.Fatalf("replaced session %+v", got)
	}
	mustCheck(t, f)
}

func TestFSMTouchRTCSessions(t *testing.T) {
	f := NewFSM()
	for _, s := range []stream.RTCSession{rtcAt("a", 100, 0), rtcAt("b", 200, 0), rtcAt("c", 300, 0)} {
		apply(t, f, PutRTCSessionCmd{Session: s})
	}
	if r := apply(t, f, TouchRTCSessionsCmd{Ufrags: []string{"a", "gone"}, NowMs: 1000}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	apply(t, f, TouchRTCSessionsCmd{Ufrags: []string{"a"}, NowMs: 900}) // never goes back
	if s, _ := f.RTCSession("a"); s.LastActiveUnixMs != 1000 || s.CreatedUnixMs != 100 {
		t.Fatalf("touched session %+v", s)
	}
	if f.RTCSessionCount() != 3 || len(f.rtc.active) != 1 {
		t.Fatalf("%d sessions, %d active", f.RTCSessionCount(), len(f.rtc.active))
	}
	mustCheck(t, f)
	for _, now := range []int64{0, -1} {
		if r := apply(t, f, TouchRTCSessionsCmd{Ufrags: []string{"b"}, NowMs: now}); !errors.Is(r.Err(), ErrBadCommand) {
			t.Fatalf("touch at %d: %v", now, r.Err())
		}
	}
	// The touched session is now the youngest: a full table evicts "b".
	if r := apply(t, f, PutRTCSessionCmd{Session: rtcAt("d", 400, 0), ProtectSinceMs: 950, MaxSessions: 3}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if got := ufrags(f); got != "a c d" {
		t.Fatalf("after eviction: %q", got)
	}
	mustCheck(t, f)
}

// A command with a smaller bound than the table's size shrinks the table as
// far as unprotected sessions allow.
func TestFSMRTCSmallerBoundShrinksTable(t *testing.T) {
	f := NewFSM()
	for i := range 6 {
		active := int64(0)
		if i < 2 {
			active = 1000
		}
		apply(t, f, PutRTCSessionCmd{Session: rtcAt(fmt.Sprintf("s%d", i), int64(100+i), active)})
	}
	if r := apply(t, f, PutRTCSessionCmd{Session: rtcAt("new", 500, 0), ProtectSinceMs: 900, MaxSessions: 3}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	// s2..s5 are evicted; the two protected ones stay, so the table holds
	// three sessions.
	if got := ufrags(f); got != "new s0 s1" {
		t.Fatalf("after the put: %q", got)
	}
	mustCheck(t, f)
	// MaxSessions beyond MaxRTCSessions, or none, means MaxRTCSessions.
	for _, max := range []int{0, -5, MaxRTCSessions + 1} {
		if c := (PutRTCSessionCmd{MaxSessions: max}); c.rtcCap() != MaxRTCSessions {
			t.Fatalf("cap for %d: %d", max, c.rtcCap())
		}
	}
}

// The leader expires sessions by when they were last seen: a session
// created long ago that a relay still carries stays.
func TestFSMExpireRTCSessionsByActivity(t *testing.T) {
	f := NewFSM()
	for _, s := range []stream.RTCSession{rtcAt("old-idle", 100, 0), rtcAt("old-active", 100, 0), rtcAt("new", 900, 0)} {
		apply(t, f, PutRTCSessionCmd{Session: s})
	}
	apply(t, f, TouchRTCSessionsCmd{Ufrags: []string{"old-active"}, NowMs: 800})
	stale := f.StaleRTCSessions(500, 10)
	if fmt.Sprint(stale) != "[old-idle]" {
		t.Fatalf("stale = %v", stale)
	}
	// A touch that races the leader's decision wins.
	stale = f.StaleRTCSessions(850, 10)
	if fmt.Sprint(stale) != "[old-idle old-active]" {
		t.Fatalf("stale = %v", stale)
	}
	apply(t, f, TouchRTCSessionsCmd{Ufrags: []string{"old-active"}, NowMs: 860})
	apply(t, f, ExpireRTCSessionsCmd{Ufrags: stale, CutoffMs: 850})
	if got := ufrags(f); got != "new old-active" {
		t.Fatalf("after expiry: %q", got)
	}
	mustCheck(t, f)
}

// Two replicas applying the same random log of puts, touches, deletions and
// expiries hold the same table, and every eviction takes the session a
// brute-force search over the whole table names.
func TestFSMRTCEvictionMatchesModel(t *testing.T) {
	const cap = 16
	rng := rand.New(rand.NewPCG(1, 2))
	var log [][]byte
	var puts []PutRTCSessionCmd
	for i := range 4000 {
		now := int64(1000 + i*10)
		var c Command
		switch rng.IntN(12) {
		case 0:
			var us []string
			for u := range 40 {
				us = append(us, fmt.Sprintf("u%02d", u))
			}
			c = TouchRTCSessionsCmd{Ufrags: us, NowMs: now}
		case 1, 2, 3:
			var us []string
			for range rng.IntN(4) + 1 {
				us = append(us, fmt.Sprintf("u%02d", rng.IntN(40)))
			}
			c = TouchRTCSessionsCmd{Ufrags: us, NowMs: now - int64(rng.IntN(2000))}
		case 4:
			c = DeleteRTCSessionCmd{Ufrag: fmt.Sprintf("u%02d", rng.IntN(40))}
		case 5:
			c = ExpireRTCSessionsCmd{Ufrags: []string{fmt.Sprintf("u%02d", rng.IntN(40))}, CutoffMs: now - 3000}
		default:
			p := PutRTCSessionCmd{Session: rtcAt(fmt.Sprintf("u%02d", rng.IntN(40)), now-int64(rng.IntN(2000)), 0),
				ProtectSinceMs: now - int64(rng.IntN(1500)), MaxSessions: cap}
			puts = append(puts, p)
			c = p
		}
		log = append(log, mustCmd(t, c))
	}
	var want []byte
	full := 0
	for replica := range 2 {
		f := NewFSM()
		for i, data := range log {
			before := map[string]stream.RTCSession{}
			for _, s := range f.Contents().RTCSessions {
				before[s.Ufrag] = s
			}
			r := f.Apply(&raft.Log{Type: raft.LogCommand, Index: uint64(i + 1), Data: data}).(Result)
			mustCheck(t, f)
			c, _ := Decode(data)
			p, ok := c.(*PutRTCSessionCmd)
			if !ok {
				continue
			}
			_, replaced := before[p.Session.Ufrag]
			if replaced || len(before) < cap {
				if r.Err() != nil || f.RTCSessionCount() != len(before)+btoi(!replaced) {
					t.Fatalf("entry %d: put with room: %v", i, r.Err())
				}
				continue
			}
			// The model: the unprotected session last seen the longest ago.
			var victim *stream.RTCSession
			for _, s := range before {
				if s.LastActiveUnixMs > 0 && s.LastSeenUnixMs() >= p.ProtectSinceMs {
					continue // protected
				}
				if victim == nil || s.LastSeenUnixMs() < victim.LastSeenUnixMs() ||
					(s.LastSeenUnixMs() == victim.LastSeenUnixMs() && s.Ufrag < victim.Ufrag) {
					victim = &s
				}
			}
			_, gone := f.RTCSession(victim0(victim))
			switch {
			case victim == nil:
				if !errors.Is(r.Err(), ErrRTCTableFull) || f.RTCSessionCount() != cap {
					t.Fatalf("entry %d: put into a protected table: %v", i, r.Err())
				}
				full += btoi(replica == 0)
			case r.Err() != nil || gone || f.RTCSessionCount() != cap:
				t.Fatalf("entry %d: evicted the wrong session (want %s): %v", i, victim.Ufrag, r.Err())
			}
		}
		got, _ := json.Marshal(f.Contents())
		if replica == 0 {
			want = got
		} else if !bytes.Equal(got, want) {
			t.Fatal("replicas diverged")
		}
	}
	if full == 0 || len(puts) == 0 {
		t.Fatalf("the log never filled the table with protected sessions (%d puts)", len(puts))
	}
	t.Logf("%d puts, %d refused", len(puts), full)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func victim0(s *stream.RTCSession) string {
	if s == nil {
		return ""
	}
	return s.Ufrag
}

// A snapshot keeps the sessions' activity, and the restored replica evicts
// as the original does.
func TestFSMSnapshotRestoreRTCActivity(t *testing.T) {
	f := NewFSM()
	for i := range 5 {
		apply(t, f, PutRTCSessionCmd{Session: rtcAt(fmt.Sprintf("s%d", i), int64(100+i), 0)})
	}
	apply(t, f, TouchRTCSessionsCmd{Ufrags: []string{"s0", "s1"}, NowMs: 1000})
	snap, _ := f.Snapshot()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sink.String(), `"ufrag":"s0","origin":"o1","origin_rtc":"127.0.0.1:8000","key":"v/live/a","resource":"http://127.0.0.1:1985/rtc/v1/whep/?token=x","pwd":"0123456789abcdef0123456789","created_unix_ms":100,"last_active_unix_ms":1000}`) {
		t.Fatalf("snapshot without activity: %s", sink.String())
	}
	g := NewFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, g)
	if len(g.rtc.active) != 2 || len(g.rtc.idle) != 3 {
		t.Fatalf("restored %d active, %d idle", len(g.rtc.active), len(g.rtc.idle))
	}
	for _, r := range []*FSM{f, g} {
		for i := range 4 {
			res := apply(t, r, PutRTCSessionCmd{Session: rtcAt(fmt.Sprintf("n%d", i), 2000, 0), ProtectSinceMs: 900, MaxSessions: 5})
			if res.Err() != nil {
				t.Fatalf("put %d: %v", i, res.Err())
			}
		}
		mustCheck(t, r)
	}
	a, _ := json.Marshal(f.Contents())
	b, _ := json.Marshal(g.Contents())
	// The idle sessions go first, the newest too; the active ones stay.
	if !bytes.Equal(a, b) || ufrags(g) != "n1 n2 n3 s0 s1" {
		t.Fatalf("restored replica diverged: %q vs %q", ufrags(f), ufrags(g))
	}
	// A snapshot above MaxRTCSessions is cut, the sessions last seen the
	// longest ago first.
	var big Contents
	for i := range MaxRTCSessions + 3 {
		big.RTCSessions = append(big.RTCSessions, rtcAt(fmt.Sprintf("b%06d", i), int64(10+i), 0))
	}
	big.RTCSessions[0].LastActiveUnixMs = 1 << 40
	data, _ := json.Marshal(big)
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, g)
	for _, u := range []string{"b000001", "b000002", "b000003"} {
		if _, ok := g.RTCSession(u); ok {
			t.Fatalf("%s kept", u)
		}
	}
	if _, ok := g.RTCSession("b000000"); !ok || g.RTCSessionCount() != MaxRTCSessions {
		t.Fatalf("the active session was cut; %d sessions", g.RTCSessionCount())
	}
}

// Put commands written before protection existed decode without it and
// evict as they did: the oldest session, active or not.
func TestFSMOldPutCommandEvictsOldest(t *testing.T) {
	f := NewFSM()
	for i := range 3 {
		apply(t, f, PutRTCSessionCmd{Session: rtcAt(fmt.Sprintf("s%d", i), int64(100+i), 0), MaxSessions: 3})
	}
	apply(t, f, TouchRTCSessionsCmd{Ufrags: []string{"s1", "s2"}, NowMs: 1000})
	c, err := Decode(append([]byte{byte(CmdPutRTCSession)}, `{"session":{"ufrag":"old","created_unix_ms":5}}`...))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.(*PutRTCSessionCmd); p.ProtectSinceMs != 0 || p.MaxSessions != 0 || p.rtcCap() != MaxRTCSessions {
		t.Fatalf("decoded %+v", p)
	}
	// With MaxRTCSessions the table has room; an explicit small bound and no
	// protection evicts the oldest session.
	apply(t, f, PutRTCSessionCmd{Session: rtcAt("x", 50, 0), MaxSessions: 3})
	if got := ufrags(f); got != "s1 s2 x" {
		t.Fatalf("after an unprotected put: %q", got)
	}
	apply(t, f, PutRTCSessionCmd{Session: rtcAt("y", 60, 0), MaxSessions: 3})
	if got := ufrags(f); got != "s1 s2 y" {
		t.Fatalf("after a second unprotected put: %q", got)
	}
	mustCheck(t, f)
}
