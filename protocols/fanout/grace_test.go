package fanout

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestPublishGraceResumes: a publisher that stops and comes back within
// the grace finds its players there: they get nothing meanwhile, then the
// new publish from its keyframe, timestamps continuing from the old one's;
// twice in a row.
func TestPublishGraceResumes(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	var rep reports
	r := newTestRegistry(t, Config{PublishGrace: 5 * time.Second, OnReattach: rep.add})
	s := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader, tMeta, tVSeq, tASeq, tKey, tInter)
	collect(t, s, 6)

	last := uint32(40)
	for round := 1; round <= 2; round++ {
		u.mu.Lock()
		old := u.pw
		u.mu.Unlock()
		u.end() // the publisher stopped
		testkit.WaitFor(t, 5*time.Second, "an open waiting for the publisher", func() bool {
			u.mu.Lock()
			defer u.mu.Unlock()
			return u.opens.Load() == int32(round+1) && u.pw != old
		})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		got, err := s.Next(ctx, nil)
		cancel()
		if err != context.DeadlineExceeded || len(got) != 0 {
			t.Fatalf("round %d: during the grace Next = %d buffers, %v; want nothing yet", round, len(got), err)
		}
		// The publisher is back: a new publish, its own timestamps.
		u.write(t, flvHeader, mkTag(TagVideo, 0, avcSeq), mkTag(TagVideo, 7000, avcKey2), mkTag(TagVideo, 7040, avcInter))
		got = collect(t, s, 3)
		want := []struct {
			kind Kind
			ts   uint32
		}{{KindVideoSeq, last + switchGap}, {KindKeyframe, last + switchGap}, {KindOther, last + switchGap + 40}}
		for i, w := range want {
			typ, ts, body, ok := TagInfo(got[i])
			if !ok || Classify(typ, body) != w.kind || ts != w.ts {
				t.Errorf("round %d, buffer %d: kind %d ts %d, want kind %d ts %d", round, i, Classify(typ, body), ts, w.kind, w.ts)
			}
		}
		last += switchGap + 40
		testkit.WaitFor(t, 5*time.Second, "the report", func() bool { return len(rep.get()) == round })
		if a := rep.get()[round-1]; a.Kind != SwitchPublisher || a.Err != nil || a.Subscribers != 1 || a.Key != "k" {
			t.Errorf("round %d: report %+v", round, a)
		}
	}
	if st := r.Stats(); st.Subscribers != 1 || st.Upstreams != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

// TestPublishGraceEnds: when no publisher comes back within the grace, the
// players end as at a clean end, and the play opened to wait for one is
// closed.
func TestPublishGraceEnds(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	var rep reports
	const grace = 300 * time.Millisecond
	r := newTestRegistry(t, Config{PublishGrace: grace, Reattach: 5 * time.Second, OnReattach: rep.add})
	s := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader, tKey)
	collect(t, s, 2)
	start := time.Now()
	u.end()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Next(ctx, nil); err != io.EOF {
		t.Fatalf("after the grace: %v, want io.EOF", err)
	}
	if took := time.Since(start); took < grace {
		t.Errorf("players ended after %v, before the grace of %v", took, grace)
	}
	u.mu.Lock()
	_, werr := u.pw.Write(flvHeader)
	u.mu.Unlock()
	if n := u.opens.Load(); n != 2 || werr == nil {
		t.Errorf("%d opens, want 2; a write to the waiting play: %v, want an error (closed)", n, werr)
	}
	a := rep.get()
	if len(a) != 1 || a[0].Kind != SwitchPublisher || !errors.Is(a[0].Err, errGraceOver) || a[0].Took < grace {
		t.Errorf("reports %+v", a)
	}
}

// TestPublishGraceBacksOff: an origin that ends each play at once while
// the stream is not published (or refuses it) is asked again, backing
// off, a bounded number of times within the grace; then the players end
// cleanly.
func TestPublishGraceBacksOff(t *testing.T) {
	testkit.CheckGoroutines(t)
	for _, fail := range []bool{false, true} {
		u := &upstream{}
		open := u.opener()
		var first sync.Once
		const grace = time.Second
		r := newTestRegistry(t, Config{PublishGrace: grace})
		s := subscribe(t, r, "k", func(ctx context.Context) (Opened, error) {
			isFirst := false
			first.Do(func() { isFirst = true })
			if isFirst {
				return open(ctx)
			}
			u.opens.Add(1)
			if fail {
				return Opened{}, errors.New("404 not found")
			}
			return Opened{Source: newScripted(io.EOF)}, nil
		})
		u.write(t, flvHeader, tKey)
		collect(t, s, 2)
		u.end()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := s.Next(ctx, nil); err != io.EOF {
			t.Errorf("fail=%v: after the grace: %v, want io.EOF", fail, err)
		}
		cancel()
		// 100ms doubling to 1s: about 4 opens in a second; never a busy loop.
		if n := u.opens.Load(); n < 3 || n > 10 {
			t.Errorf("fail=%v: %d opens within a grace of %v", fail, n, grace)
		}
	}
}

// TestPublishGraceClose: closing the registry during a grace ends the
// players with ErrClosed and leaves no goroutine behind.
func TestPublishGraceClose(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	r := NewRegistry(Config{PublishGrace: time.Minute})
	s := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader, tKey)
	collect(t, s, 2)
	u.end()
	testkit.WaitFor(t, 5*time.Second, "an open waiting for the publisher", func() bool { return u.opens.Load() == 2 })
	r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Next(ctx, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

// TestPublishGraceNeedsAFrame: what an origin sends on a play before any
// publisher (nginx-rtmp's |RtmpSampleAccess data message) does not end
// the grace: without a frame the players end at the grace's end.
func TestPublishGraceNeedsAFrame(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	var rep reports
	const grace = 300 * time.Millisecond
	r := newTestRegistry(t, Config{PublishGrace: grace, OnReattach: rep.add})
	s := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader, tKey)
	collect(t, s, 2)
	u.mu.Lock()
	old := u.pw
	u.mu.Unlock()
	u.end()
	testkit.WaitFor(t, 5*time.Second, "an open waiting for the publisher", func() bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		return u.opens.Load() == 2 && u.pw != old
	})
	sample := append([]byte{0x02, 0, 17}, "|RtmpSampleAccess"...)
	u.write(t, flvHeader, mkTag(TagScript, 0, append(sample, 0x01, 0x01, 0x01, 0x01)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	for err == nil {
		_, err = s.Next(ctx, nil)
	}
	if err != io.EOF {
		t.Fatalf("after the grace: %v, want io.EOF", err)
	}
	a := rep.get()
	if len(a) != 1 || !errors.Is(a[0].Err, errGraceOver) {
		t.Errorf("reports %+v, want one grace given up", a)
	}
}
