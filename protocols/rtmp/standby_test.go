package rtmp

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestStandbyClaimBound: a node keeps one standby per stream and at most
// MaxStandbys in all; a released claim frees its place.
func TestStandbyClaimBound(t *testing.T) {
	var s standbys
	key := func(i int) stream.Key {
		return stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: fmt.Sprint("s", i)}
	}
	conns := make([]*conn, MaxStandbys+1)
	for i := range conns {
		conns[i] = &conn{}
	}
	for i := range MaxStandbys {
		if !s.claim(key(i), conns[i]) {
			t.Fatalf("claim %d refused", i)
		}
	}
	if s.claim(key(0), conns[MaxStandbys]) {
		t.Error("a second standby of one stream was kept")
	}
	if s.claim(key(MaxStandbys), conns[MaxStandbys]) {
		t.Errorf("standby %d kept past the bound", MaxStandbys+1)
	}
	s.release(key(0), conns[MaxStandbys]) // not its claim: nothing changes
	if s.count() != MaxStandbys {
		t.Fatalf("count %d after releasing another's claim", s.count())
	}
	s.release(key(0), conns[0])
	if !s.claim(key(MaxStandbys), conns[MaxStandbys]) || s.count() != MaxStandbys {
		t.Errorf("no place after a release: count %d", s.count())
	}
}

func videoMsg(key bool, n int) chunk.Message {
	b := make([]byte, n)
	b[0] = 0x27 // inter frame, AVC
	if key {
		b[0] = 0x17
	}
	b[1] = 1 // NALU, not a sequence header
	return chunk.Message{Type: chunk.TypeVideo, Payload: b}
}

// TestStandbyHoldsGOP: a standby caches the GOP since its last key frame,
// bounded in bytes; past the bound it waits for the next key frame. A
// stream without video holds nothing.
func TestStandbyHoldsGOP(t *testing.T) {
	var sb standby
	seq := chunk.Message{Type: chunk.TypeVideo, Payload: []byte{0x17, 0, 0, 0, 0}}
	sb.cache.observe(&seq)
	sb.hold(&seq)
	inter := videoMsg(false, 100)
	sb.cache.observe(&inter)
	sb.hold(&inter) // before any key frame: not held
	if len(sb.gop.msgs) != 0 {
		t.Fatalf("held %d messages before a key frame", len(sb.gop.msgs))
	}
	for round := range 2 {
		k := videoMsg(true, 1000)
		sb.hold(&k)
		for range 3 {
			sb.hold(&inter)
		}
		if len(sb.gop.msgs) != 4 || !isKeyframe(ptr(sb.gop.message(0))) {
			t.Fatalf("round %d: held %d messages, first a key frame: %v", round, len(sb.gop.msgs), len(sb.gop.msgs) > 0 && isKeyframe(ptr(sb.gop.message(0))))
		}
	}
	// Past the bound the GOP is dropped until the next key frame.
	big := videoMsg(false, 1<<20)
	for range standbyGOPBytes>>20 + 1 {
		sb.hold(&big)
	}
	if len(sb.gop.msgs) != 0 || !sb.waitKF {
		t.Fatalf("past the bound: %d messages held (%d bytes), waiting %v", len(sb.gop.msgs), len(sb.gop.buf), sb.waitKF)
	}
	sb.hold(&inter)
	if len(sb.gop.msgs) != 0 {
		t.Fatal("held a frame while waiting for a key frame")
	}
	k := videoMsg(true, 10)
	sb.hold(&k)
	if len(sb.gop.msgs) != 1 || sb.waitKF {
		t.Fatalf("after the next key frame: %d held, waiting %v", len(sb.gop.msgs), sb.waitKF)
	}

	var audioOnly standby
	a := chunk.Message{Type: chunk.TypeAudio, Payload: []byte{0xaf, 1, 2, 3}}
	audioOnly.cache.observe(&a)
	audioOnly.hold(&a)
	if len(audioOnly.gop.msgs) != 0 {
		t.Error("an audio-only stream's frames were held")
	}
}

func ptr[T any](v T) *T { return &v }

// TestBackupPublishRefusedWhenNotLive: with BackupPublish, a publisher
// that its origin refuses while the stream is not live there (no play of
// it gets media) hears the origin's refusal, as without it.
func TestBackupPublishRefusedWhenNotLive(t *testing.T) {
	o := startFakeOrigin(t, "NetStream.Publish.BadName")
	s, addr := startProxy(t, Config{Router: routeTo(o.Addr), BackupPublish: true})
	p := dialTestPeer(t, addr)
	info, err := p.start("rtmp://"+addr+"/live", "x", true)
	if err == nil && info.String("code") == codePublishStart {
		t.Fatalf("publish started: %v", info)
	}
	if st := s.Stats(); st.Standbys != 0 || s.standby.count() != 0 {
		t.Errorf("standbys %d, claims %d", st.Standbys, s.standby.count())
	}
}

// TestPublishStall: with BackupPublish and PublishStall, a publisher whose
// connection stays open but who sends no media is ended, and counted.
func TestPublishStall(t *testing.T) {
	o := startFakeOrigin(t, "")
	s, addr := startProxy(t, Config{Router: routeTo(o.Addr), BackupPublish: true, PublishStall: 200 * time.Millisecond})
	p := dialTestPeer(t, addr)
	if info, err := p.start("rtmp://"+addr+"/live", "x", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	m := chunk.Message{CSID: 6, Type: chunk.TypeAudio, StreamID: 1, Payload: []byte{0xaf, 1, 2}}
	if err := p.w.WriteMessage(&m); err != nil {
		t.Fatal(err)
	}
	p.w.Flush()
	expectClosed(t, p.nc, 5*time.Second)
	testkit.WaitFor(t, 5*time.Second, "the stall counted", func() bool { return s.Stats().Stalled == 1 })
}

// TestStallBudget: a node ends at most maxStallEnds publishes of a stream
// for stalls within stallWindow, and remembers at most maxStallKeys
// streams.
func TestStallBudget(t *testing.T) {
	var b stallBudget
	k := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "s"}
	now := time.Unix(1000, 0)
	for i := range maxStallEnds {
		if !b.allow(k, now.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("stall end %d refused", i)
		}
	}
	if b.allow(k, now.Add(10*time.Second)) {
		t.Fatalf("stall end %d allowed within the window", maxStallEnds+1)
	}
	if !b.allow(k, now.Add(stallWindow+time.Second)) {
		t.Fatal("no stall end allowed once the window passed")
	}
	for i := range maxStallKeys + 10 {
		b.allow(stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: fmt.Sprint("k", i)}, now.Add(stallWindow+2*time.Second))
	}
	if n := len(b.by); n > maxStallKeys {
		t.Errorf("%d streams remembered, bound %d", n, maxStallKeys)
	}
}

// unassigned is a SourceSet that knows no stream.
type unassigned struct{ asked chan stream.Key }

func (u unassigned) Sources(key stream.Key) (stream.Origin, []stream.Origin, bool) {
	u.asked <- key
	return stream.Origin{}, nil, false
}

func (unassigned) Moving(stream.Key) string { return "" }

func (unassigned) Landed(context.Context, stream.Key, stream.Origin) error { return nil }

// TestBackupPublishNeedsAnAssignment: a refused publisher of a stream the
// mesh never assigned is refused at once, without a play of the origin (a
// flood of refused publishes costs the origin nothing more).
func TestBackupPublishNeedsAnAssignment(t *testing.T) {
	o := startFakeOrigin(t, "NetStream.Publish.BadName")
	ss := unassigned{asked: make(chan stream.Key, 1)}
	s, addr := startProxy(t, Config{Router: routeTo(o.Addr), BackupPublish: true, Sources: ss})
	p := dialTestPeer(t, addr)
	info, err := p.start("rtmp://"+addr+"/live", "x", true)
	if err == nil && info.String("code") == codePublishStart {
		t.Fatalf("publish started: %v", info)
	}
	if key := waitChan(t, ss.asked); key.Stream != "x" {
		t.Errorf("asked about %v", key)
	}
	if s.standby.count() != 0 {
		t.Errorf("claims %d", s.standby.count())
	}
}

// TestSwitchBudget: a stream's standbys on a node take over at most
// maxSwitches times within stallWindow, whatever ended the active
// publisher; a held-back standby may switch once the window frees one.
// Refused tries (the active publisher was only slow) spend nothing.
func TestSwitchBudget(t *testing.T) {
	key := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "s"}
	other := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "t"}
	s := &Server{}
	sb := &standby{c: &conn{s: s, req: stream.RTMPRequest{Key: key}}}
	now := time.Unix(1000, 0)
	for i := range maxSwitches {
		at := now.Add(time.Duration(i) * time.Second)
		if !sb.switchAllowed(at) {
			t.Fatalf("switch %d held back", i+1)
		}
		if !sb.switchAllowed(at) {
			t.Fatalf("switch %d held back after a refused try", i+1)
		}
		s.standby.switches.record(key, at)
	}
	if sb.switchAllowed(now.Add(30 * time.Second)) {
		t.Fatalf("switch %d allowed within the window", maxSwitches+1)
	}
	if !(&standby{c: &conn{s: s, req: stream.RTMPRequest{Key: other}}}).switchAllowed(now.Add(30 * time.Second)) {
		t.Fatal("another stream's switch held back")
	}
	if !sb.switchAllowed(now.Add(stallWindow + time.Second)) {
		t.Fatal("no switch allowed once the first left the window")
	}
	// The budget is bounded in streams and in times per stream.
	var b keyBudget
	for i := range maxStallKeys + 10 {
		b.record(stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: fmt.Sprint("k", i)}, now)
	}
	for i := range 2 * maxBudgetTimes {
		b.record(key, now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := len(b.by); n > maxStallKeys {
		t.Errorf("%d streams remembered, bound %d", n, maxStallKeys)
	}
	if n := len(b.by[key]); n > maxBudgetTimes {
		t.Errorf("%d times of one stream remembered, bound %d", n, maxBudgetTimes)
	}
}
