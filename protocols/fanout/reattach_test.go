package fanout

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

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
	return func(ctx context.Context) (Source, any, error) {
		u.mu.Lock()
		fail := u.failOpens && u.pw != nil
		u.mu.Unlock()
		if fail {
			return nil, nil, errors.New("connection refused")
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
	u.write(t, flvHeader, seq2, mkTag(TagVideo, 3000, avcKey), mkTag(TagVideo, 3040, avcInter))
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

// movedSource is an FLV source that says the stream moved.
type movedSource struct {
	Source
	moved bool
}

func (m movedSource) Moved() bool { return m.moved }

// TestCleanEndAfterMoveReattaches: an upstream that ends cleanly because
// the stream moved (its old origin saw the publisher leave) is re-attached,
// not ended; a clean end of a stream that did not move ends the players.
func TestCleanEndAfterMoveReattaches(t *testing.T) {
	testkit.CheckGoroutines(t)
	for _, moved := range []bool{true, false} {
		u := &failingUpstream{}
		open := u.opener()
		r := newTestRegistry(t, Config{Reattach: 5 * time.Second})
		s := subscribe(t, r, "k", func(ctx context.Context) (Source, any, error) {
			src, info, err := open(ctx)
			return movedSource{src, moved}, info, err
		})
		u.write(t, flvHeader, tKey)
		collect(t, s, 2)
		u.end()
		if moved {
			testkit.WaitFor(t, 5*time.Second, "a second open", func() bool { return u.opens.Load() == 2 })
			u.write(t, flvHeader, tKey)
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
