package fanout

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

func TestRebaser(t *testing.T) {
	tests := []struct {
		name   string
		before []uint32 // timestamps of the first upstream
		after  []Tag    // tags of the second
		want   []uint32 // what the second's tags become
	}{
		{
			name:   "ahead",
			before: []uint32{1000, 1040},
			after:  []Tag{NewTag(TagScript, 0, metadataBody()), NewTag(TagVideo, 0, avcSeq), NewTag(TagVideo, 5000, avcKey), NewTag(TagAudio, 5020, aacRaw)},
			want:   []uint32{1080, 1080, 1080, 1100},
		},
		{
			name:   "one track behind the other",
			before: []uint32{5000, 5020},
			after:  []Tag{NewTag(TagVideo, 1000, avcKey), NewTag(TagAudio, 900, aacRaw), NewTag(TagVideo, 0, avcSeq), NewTag(TagVideo, 1040, avcInter)},
			want:   []uint32{5060, 5021, 5021, 5100},
		},
		{
			name:   "behind",
			before: []uint32{90000},
			after:  []Tag{NewTag(TagVideo, 10, avcKey), NewTag(TagVideo, 50, avcInter)},
			want:   []uint32{90040, 90080},
		},
		{
			name:   "wrap",
			before: []uint32{0xffffff00, 0xffffffe0},
			after:  []Tag{NewTag(TagVideo, 7, avcKey), NewTag(TagVideo, 47, avcInter), NewTag(TagVideo, 100007, avcInter)},
			want:   []uint32{8, 48, 100008}, // 0xffffffe0 + 40 wraps to 8
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r rebaser
			for _, ts := range tt.before {
				if got := r.apply(NewTag(TagVideo, ts, avcInter)); got.Timestamp != ts {
					t.Fatalf("before any re-attach %d became %d", ts, got.Timestamp)
				}
			}
			r.reattached()
			prev := tt.before[len(tt.before)-1] // nothing goes back before it
			for i, tag := range tt.after {
				got := r.apply(tag)
				if got.Timestamp != tt.want[i] {
					t.Errorf("tag %d: %d, want %d", i, got.Timestamp, tt.want[i])
				}
				typ, ts, _, ok := TagInfo(got.Data)
				if !ok || ts != got.Timestamp || typ != tag.Type {
					t.Errorf("tag %d: Data says %d %d %v", i, typ, ts, ok)
				}
				if int32(got.Timestamp-prev) < 0 {
					t.Errorf("tag %d: %d goes back before the switch (%d)", i, got.Timestamp, prev)
				}
			}
		})
	}
}

// avcKey2 is a keyframe other than avcKey, for an upstream whose frames
// players have not had.
var avcKey2 = append(append([]byte(nil), avcKey...), 2)

func metadataBody() []byte {
	_, _, b, _ := TagInfo(tMeta)
	return b
}

// failingUpstream is an upstream whose current pipe the test can break.
type failingUpstream struct {
	upstream
	failOpens bool // later opens fail
}

func (u *failingUpstream) opener() Opener {
	open := u.upstream.opener()
	return func(ctx context.Context) (Opened, error) {
		u.mu.Lock()
		fail := u.failOpens && u.pw != nil
		u.mu.Unlock()
		if fail {
			return Opened{}, errors.New("connection refused")
		}
		return open(ctx)
	}
}

func (u *failingUpstream) breakPipe() {
	u.mu.Lock()
	u.pw.CloseWithError(errors.New("connection reset"))
	u.mu.Unlock()
}

func TestReattachAfterUpstreamFailure(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &failingUpstream{}
	var mu sync.Mutex
	var reports []Reattach
	r := newTestRegistry(t, Config{Reattach: 5 * time.Second, OnReattach: func(a Reattach) {
		mu.Lock()
		reports = append(reports, a)
		mu.Unlock()
	}})
	s := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader, tMeta, tVSeq, tASeq, tKey, tInter)
	collect(t, s, 6)

	u.breakPipe()
	testkit.WaitFor(t, 5*time.Second, "a second open", func() bool { return u.opens.Load() == 2 })
	seq2 := mkTag(TagVideo, 0, append(append([]byte(nil), avcSeq...), 1))
	// Another keyframe than the first upstream's: players never had it.
	u.write(t, flvHeader, seq2, mkTag(TagVideo, 3000, avcKey2), mkTag(TagVideo, 3040, avcInter))
	got := collect(t, s, 3)
	if len(got) != 3 || IsHeader(got[0]) {
		t.Fatalf("after the re-attach got %d buffers, the first a header: %v", len(got), IsHeader(got[0]))
	}
	want := []struct {
		kind Kind
		ts   uint32
	}{{KindVideoSeq, 40 + switchGap}, {KindKeyframe, 40 + switchGap}, {KindOther, 80 + switchGap}}
	for i, w := range want {
		typ, ts, body, ok := TagInfo(got[i])
		if !ok || Classify(typ, body) != w.kind || ts != w.ts {
			t.Errorf("buffer %d: kind %d ts %d, want kind %d ts %d", i, Classify(typ, body), ts, w.kind, w.ts)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "the report", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(reports) == 1
	})
	if reports[0].Err != nil || reports[0].Key != "k" {
		t.Errorf("report = %+v", reports[0])
	}
	if st := r.Stats(); st.Reattached != 1 || st.Subscribers != 1 {
		t.Errorf("Stats = %+v", st)
	}

	// A clean end still ends the subscriber.
	u.end()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Next(ctx, nil); err != io.EOF {
		t.Errorf("after a clean end: %v, want io.EOF", err)
	}
	if n := u.opens.Load(); n != 2 {
		t.Errorf("%d opens after a clean end, want 2", n)
	}
}

func TestReattachGivesUp(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &failingUpstream{failOpens: true}
	done := make(chan Reattach, 1)
	r := newTestRegistry(t, Config{Reattach: 300 * time.Millisecond, OnReattach: func(a Reattach) { done <- a }})
	s := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader, tKey)
	collect(t, s, 2)
	u.breakPipe()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Next(ctx, nil); err == nil || err == io.EOF || ctx.Err() != nil {
		t.Fatalf("Next = %v, want the re-attach's error", err)
	}
	if a := <-done; a.Err == nil || a.Took < 300*time.Millisecond {
		t.Errorf("report = %+v", a)
	}
}

func TestNoReattachWithoutConfig(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &failingUpstream{}
	r := newTestRegistry(t, Config{})
	s := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader, tKey)
	collect(t, s, 2)
	u.breakPipe()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Next(ctx, nil); err == nil || err == io.EOF {
		t.Fatalf("Next = %v, want the upstream's error", err)
	}
	if n := u.opens.Load(); n != 1 {
		t.Errorf("%d opens, want 1", n)
	}
}

func TestHeader(t *testing.T) {
	for _, tt := range []struct {
		audio, video bool
		flags        byte
	}{{true, true, 5}, {true, false, 4}, {false, true, 1}} {
		h := Header(tt.audio, tt.video)
		got, err := NewReader(bytes.NewReader(h), 1).ReadHeader()
		if err != nil || !bytes.Equal(got, h) || len(h) != HeaderSize || h[4] != tt.flags || !IsHeader(h) {
			t.Errorf("Header(%v, %v) = %x: read back %x, %v", tt.audio, tt.video, h, got, err)
		}
	}
}

// TestCleanEndAfterMoveReattaches: an upstream that ends cleanly because
// the stream moved (its old origin saw the publisher leave) is re-attached,
// not ended; a clean end of a stream that did not move ends the players.
func TestCleanEndAfterMoveReattaches(t *testing.T) {
	testkit.CheckGoroutines(t)
	for _, moved := range []bool{true, false} {
		u := &failingUpstream{}
		open := u.opener()
		r := newTestRegistry(t, Config{Reattach: 5 * time.Second})
		s := subscribe(t, r, "k", func(ctx context.Context) (Opened, error) {
			up, err := open(ctx)
			up.Moved = func(context.Context) bool { return moved }
			return up, err
		})
		u.write(t, flvHeader, tKey)
		collect(t, s, 2)
		u.end()
		if moved {
			testkit.WaitFor(t, 5*time.Second, "a second open", func() bool { return u.opens.Load() == 2 })
			u.write(t, flvHeader, mkTag(TagVideo, 0, avcKey2))
			collect(t, s, 1)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := s.Next(ctx, nil); err != io.EOF || u.opens.Load() != 1 {
			t.Errorf("clean end without a move: %v, %d opens", err, u.opens.Load())
		}
		cancel()
	}
}

// scripted is a Source that yields its tags, then fails with err (nil:
// blocks until closed).
type scripted struct {
	tags   []Tag
	err    error
	closed chan struct{}
	once   sync.Once
}

func newScripted(err error, tags ...Tag) *scripted {
	return &scripted{tags: tags, err: err, closed: make(chan struct{})}
}

func (s *scripted) ReadHeader() ([]byte, error) { return Header(true, true), nil }

func (s *scripted) ReadTag() (Tag, error) {
	if len(s.tags) > 0 {
		t := s.tags[0]
		s.tags = s.tags[1:]
		return t, nil
	}
	if s.err != nil {
		return Tag{}, s.err
	}
	<-s.closed
	return Tag{}, ErrClosed
}

func (s *scripted) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

// TestSwitchSourceAtKeyframe switches a hub's player from one live source
// to another, as the Source contract says: the second source's frames
// ahead of its first keyframe are dropped, its metadata and sequence
// headers come first, and timestamps continue from the first source's.
// The player's side is the same Subscriber throughout.
func TestSwitchSourceAtKeyframe(t *testing.T) {
	testkit.CheckGoroutines(t)
	avcSeq2 := append(append([]byte(nil), avcSeq...), 2)
	a := newScripted(errors.New("connection reset"),
		NewTag(TagScript, 0, metadataBody()), NewTag(TagVideo, 0, avcSeq), NewTag(TagAudio, 0, aacSeq),
		NewTag(TagVideo, 1000, avcKey), NewTag(TagAudio, 1020, aacRaw), NewTag(TagVideo, 1040, avcInter))
	b := newScripted(nil,
		NewTag(TagScript, 0, metadataBody()), NewTag(TagVideo, 0, avcSeq2), NewTag(TagAudio, 0, aacSeq),
		NewTag(TagVideo, 7000, avcInter), NewTag(TagAudio, 7010, aacRaw), // mid-GOP: dropped
		NewTag(TagVideo, 7040, avcKey2), NewTag(TagAudio, 7060, aacRaw), NewTag(TagVideo, 7080, avcInter))
	sources := []Source{a, b}
	var opens atomic.Int32
	open := func(context.Context) (Opened, error) {
		n := opens.Add(1)
		if int(n) > len(sources) {
			return Opened{}, errors.New("no more sources")
		}
		return Opened{Source: sources[n-1]}, nil
	}
	r := newTestRegistry(t, Config{Reattach: 5 * time.Second})
	s := subscribe(t, r, "k", open)

	got := collect(t, s, 1+6+6)
	if !IsHeader(got[0]) {
		t.Fatalf("first buffer is not the FLV header")
	}
	type want struct {
		kind Kind
		ts   uint32
		body []byte
	}
	switchAt := uint32(1040 + switchGap)
	wants := []want{
		{KindMetadata, 0, nil}, {KindVideoSeq, 0, avcSeq}, {KindAudioSeq, 0, aacSeq},
		{KindKeyframe, 1000, nil}, {KindOther, 1020, nil}, {KindOther, 1040, nil},
		// The switch: the new source's metadata and sequence headers at the
		// switch, then its keyframe one frame after the last tag delivered.
		{KindMetadata, switchAt, nil}, {KindVideoSeq, switchAt, avcSeq2}, {KindAudioSeq, switchAt, aacSeq},
		{KindKeyframe, switchAt, avcKey2}, {KindOther, switchAt + 20, aacRaw}, {KindOther, switchAt + 40, avcInter},
	}
	for i, w := range wants {
		typ, ts, body, ok := TagInfo(got[1+i])
		if !ok || Classify(typ, body) != w.kind || ts != w.ts || w.body != nil && !bytes.Equal(body, w.body) {
			t.Errorf("tag %d: kind %d ts %d body %x, want kind %d ts %d body %x", i, Classify(typ, body), ts, body, w.kind, w.ts, w.body)
		}
	}
	if n := opens.Load(); n != 2 {
		t.Errorf("%d opens, want 2", n)
	}
	// A player that joins after the switch starts at the new source's
	// keyframe, with its sequence headers.
	late := subscribe(t, r, "k", open)
	fast := collect(t, late, 1+3+3)
	if typ, _, body, _ := TagInfo(fast[2]); Classify(typ, body) != KindVideoSeq || !bytes.Equal(body, avcSeq2) {
		t.Errorf("late player's video sequence header %x, want the new source's", body)
	}
	if typ, ts, body, _ := TagInfo(fast[4]); Classify(typ, body) != KindKeyframe || ts != switchAt {
		t.Errorf("late player's GOP starts with kind %d at %d, want the new keyframe at %d", Classify(typ, body), ts, switchAt)
	}
}

// Without video, the first audio frame of the new source is where the
// switch happens; the gate never holds back an audio-only stream.
func TestSwitchAudioOnly(t *testing.T) {
	testkit.CheckGoroutines(t)
	a := newScripted(errors.New("connection reset"), NewTag(TagAudio, 0, aacSeq), NewTag(TagAudio, 500, aacRaw))
	b := newScripted(nil, NewTag(TagAudio, 0, aacSeq), NewTag(TagAudio, 9000, aacRaw), NewTag(TagAudio, 9020, aacRaw))
	sources := []Source{a, b}
	var opens atomic.Int32
	r := newTestRegistry(t, Config{Reattach: 5 * time.Second})
	s := subscribe(t, r, "k", func(context.Context) (Opened, error) {
		return Opened{Source: sources[opens.Add(1)-1]}, nil
	})
	got := collect(t, s, 1+2+3)
	for i, ts := range []uint32{0, 500, 500 + switchGap, 500 + switchGap, 520 + switchGap} {
		if _, got, _, _ := TagInfo(got[1+i]); got != ts {
			t.Errorf("tag %d at %d, want %d", i, got, ts)
		}
	}
}

// A new source that sends no keyframe is held back for switchKeyWait
// frames at most; metadata and sequence headers always pass.
func TestSwitchKeyWaitBound(t *testing.T) {
	var r rebaser
	if r.skip(NewTag(TagVideo, 0, avcInter), true) {
		t.Fatal("a frame was dropped before any switch")
	}
	r.apply(NewTag(TagVideo, 0, avcInter))
	r.reattached()
	for _, tag := range []Tag{NewTag(TagScript, 0, metadataBody()), NewTag(TagVideo, 0, avcSeq), NewTag(TagAudio, 0, aacSeq)} {
		if r.skip(tag, true) {
			t.Errorf("kind %d dropped while the keyframe is awaited", tag.Kind)
		}
	}
	for i := range switchKeyWait {
		if !r.skip(NewTag(TagVideo, uint32(i), avcInter), true) {
			t.Fatalf("frame %d passed before the keyframe", i)
		}
	}
	if r.skip(NewTag(TagVideo, switchKeyWait, avcInter), true) {
		t.Error("frames still dropped past switchKeyWait")
	}
}

// Follow's upstreams say which origins a re-attach left and reached, and
// tell at a clean end whether the stream moved, whatever wraps their
// Source (Tracked).
func TestFollow(t *testing.T) {
	var at atomic.Value
	at.Store("a")
	route := func(context.Context) (stream.Origin, error) { return stream.Origin{ID: at.Load().(string)}, nil }
	open := Follow(stream.Origin{ID: "a"}, route, time.Second, func(_ context.Context, o stream.Origin, first bool) (Source, any, error) {
		return Tracked(newScripted(nil), func() {}), "info " + o.ID, nil
	})
	ctx := context.Background()
	first, err := open(ctx)
	if err != nil || first.Info != "info a" || first.Origins != (Origins{}) {
		t.Fatalf("first open: %+v, %v", first, err)
	}
	if first.Moved(ctx) {
		t.Error("moved while the route names the origin played")
	}
	at.Store("b")
	if !first.Moved(ctx) {
		t.Error("not moved once the route names another origin")
	}
	second, err := open(ctx)
	if err != nil || second.Info != nil || second.Origins != (Origins{From: "a", To: "b"}) || second.Moved(ctx) {
		t.Errorf("re-attach: %+v, %v", second, err)
	}
	first.Source.Close()
	second.Source.Close()
}
