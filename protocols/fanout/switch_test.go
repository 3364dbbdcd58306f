package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// frame is one frame of a generated stream.
type frame struct {
	typ  uint8
	ts   uint32
	body []byte
}

// genFrames generates a stream of n frames from ts 1000: video every 40
// ms, a keyframe every gop video frames, every video body unique; AAC
// audio every 23 ms whose bodies repeat, as silence does.
func genFrames(n, gop int) []frame {
	var out []frame
	v, a := 0, 0
	for len(out) < n {
		vts, ats := uint32(1000+40*v), uint32(1000+23*a)
		if vts <= ats {
			body := []byte{0x27, 1, 0, 0, 0, byte(v >> 8), byte(v)}
			if v%gop == 0 {
				body[0] = 0x17
			}
			out = append(out, frame{TagVideo, vts, body})
			v++
		} else {
			out = append(out, frame{TagAudio, ats, []byte{0xaf, 1, byte(a % 3)}})
			a++
		}
	}
	return out
}

// keyAt returns the index of the first keyframe at or after i.
func keyAt(fs []frame, i int) int {
	for ; i < len(fs); i++ {
		if fs[i].typ == TagVideo && fs[i].body[0] == 0x17 {
			return i
		}
	}
	panic("no keyframe")
}

// feed is a live Source the test feeds tag by tag.
type feed struct {
	reads  atomic.Int32 // times ReadTag was called
	sent   atomic.Int32 // tags taken by the reader
	ch     chan Tag
	closed chan struct{}
	once   sync.Once
	endErr error
}

func newFeed(buffer int) *feed {
	return &feed{ch: make(chan Tag, buffer), closed: make(chan struct{})}
}

func (f *feed) ReadHeader() ([]byte, error) { return Header(true, true), nil }

func (f *feed) ReadTag() (Tag, error) {
	f.reads.Add(1)
	select {
	case t, ok := <-f.ch:
		if !ok {
			return Tag{}, f.endErr
		}
		return t, nil
	case <-f.closed:
		return Tag{}, ErrClosed
	}
}

func (f *feed) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

func (f *feed) isClosed() bool {
	select {
	case <-f.closed:
		return true
	default:
		return false
	}
}

// send feeds tags; it reports false once the hub closed the source.
func (f *feed) send(tags ...Tag) bool {
	for _, t := range tags {
		select {
		case f.ch <- t:
			f.sent.Add(1)
		case <-f.closed:
			return false
		}
	}
	return true
}

// settle waits until the hub's reader of the unbuffered feed f handled
// every tag sent and waits for the next: a switch started then is decided
// at the next tag the test sends, not at one the reader still holds.
func settle(t *testing.T, f *feed) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, "the reader to handle what was sent", func() bool {
		return f.reads.Load() == f.sent.Load()+1
	})
}

// end ends the source with err (io.EOF: cleanly) after what was fed.
func (f *feed) end(err error) {
	f.endErr = err
	close(f.ch)
}

// copyOf returns the tags of a copy of fs as an origin serves it: the
// headers, then fs[from:] with timestamps shifted by base.
func copyOf(fs []frame, base uint32, from, to int) []Tag {
	var tags []Tag
	if from == 0 || from < 0 {
		tags = append(tags, NewTag(TagScript, base, metadataBody()), NewTag(TagVideo, base, avcSeq), NewTag(TagAudio, base, aacSeq))
		from = max(from, 0)
	}
	for _, f := range fs[from:to] {
		tags = append(tags, NewTag(f.typ, f.ts+base, f.body))
	}
	return tags
}

// withHeads is copyOf with the headers whatever from is.
func withHeads(fs []frame, base uint32, from, to int) []Tag {
	return append(copyOf(fs, base, -1, 0), copyOf(fs, base, from, to)...)
}

// sources is an Opener yielding feeds in turn, failing if it is ever run
// twice at once.
type sources struct {
	t       *testing.T
	list    []Source
	opens   atomic.Int32
	running atomic.Int32
	origins []Origins
}

func (s *sources) opener() Opener {
	return func(ctx context.Context) (Opened, error) {
		if s.running.Add(1) != 1 {
			s.t.Error("the Opener ran twice at once")
		}
		defer s.running.Add(-1)
		n := int(s.opens.Add(1))
		if n > len(s.list) {
			return Opened{}, errors.New("no more sources")
		}
		up := Opened{Source: s.list[n-1]}
		if n-1 < len(s.origins) {
			up.Origins = s.origins[n-1]
		}
		return up, nil
	}
}

// played reads s to its end and returns the tags after the header.
func played(t *testing.T, s *Subscriber) []frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []frame
	for {
		bufs, err := s.Next(ctx, nil)
		for _, b := range bufs {
			if IsHeader(b) {
				continue
			}
			typ, ts, body, ok := TagInfo(b)
			if !ok {
				t.Fatalf("not a tag: %x", b)
			}
			out = append(out, frame{typ, ts, append([]byte(nil), body...)})
		}
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Next after %d tags: %v", len(out), err)
		}
	}
}

// wantStream checks that got is the headers, then fs[:n] each once, at
// their own timestamps.
func wantStream(t *testing.T, got []frame, fs []frame) {
	t.Helper()
	want := []frame{{TagScript, 0, metadataBody()}, {TagVideo, 0, avcSeq}, {TagAudio, 0, aacSeq}}
	want = append(want, fs...)
	for i := 0; i < max(len(got), len(want)); i++ {
		if i >= len(got) || i >= len(want) {
			t.Fatalf("got %d tags, want %d", len(got), len(want))
		}
		g, w := got[i], want[i]
		if g.typ != w.typ || g.ts != w.ts || !bytes.Equal(g.body, w.body) {
			t.Fatalf("tag %d: type %d ts %d body %x; want type %d ts %d body %x", i, g.typ, g.ts, g.body, w.typ, w.ts, w.body)
		}
	}
}

// monotonic checks that timestamps never go back on a track.
func monotonic(t *testing.T, got []frame) {
	t.Helper()
	last := map[uint8]uint32{}
	for i, f := range got {
		if l, ok := last[f.typ]; ok && int32(f.ts-l) < 0 {
			t.Errorf("tag %d (type %d) at %d goes back from %d", i, f.typ, f.ts, l)
		}
		last[f.typ] = f.ts
	}
}

// reports collects a registry's reports.
type reports struct {
	mu   sync.Mutex
	list []Reattach
}

func (r *reports) add(a Reattach) {
	r.mu.Lock()
	r.list = append(r.list, a)
	r.mu.Unlock()
}

func (r *reports) get() []Reattach {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Reattach(nil), r.list...)
}

// waitKey waits until the pending switch p (the hub's, taken when the
// switch started) has its keyframe, and returns it. The hub may adopt p,
// and stop listing it, before waitKey first looks.
func waitKey(t *testing.T, p *pending) *pending {
	t.Helper()
	if p == nil {
		t.Fatal("no switch pending")
	}
	testkit.WaitFor(t, 5*time.Second, "the new upstream's keyframe", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.key
	})
	return p
}

// TestPlannedSwitch: the new upstream starts behind the old one (its first
// keyframe was delivered already) or ahead of it (the old one has not come
// to it yet), with another timestamp base; players get every frame once,
// at its own timestamp, and the switch is reported as aligned.
func TestPlannedSwitch(t *testing.T) {
	fs := genFrames(300, 10)
	for _, tt := range []struct {
		name string
		at   int    // frames the old upstream delivered before the switch
		from int    // where the new upstream starts (a keyframe)
		base uint32 // the new upstream's timestamp base
	}{
		{"behind", 100, keyAt(fs, 60), 500000},
		{"behind by one GOP, far", 100, keyAt(fs, 20), 1 << 31},
		{"ahead", 100, keyAt(fs, 110), 7},
		{"ahead, wrapping", 100, keyAt(fs, 101), 0xffffff00},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testkit.CheckGoroutines(t)
			var rep reports
			a, b := newFeed(0), newFeed(1000)
			src := &sources{t: t, list: []Source{a, b}, origins: []Origins{{}, {From: "a", To: "b"}}}
			r := newTestRegistry(t, Config{OnSwitch: rep.add, SwitchTimeout: time.Minute})
			s := subscribe(t, r, "live/x?", src.opener())
			a.send(copyOf(fs, 0, 0, tt.at)...)
			settle(t, a)
			if n := r.Switch("live/x"); n != 1 {
				t.Fatalf("Switch = %d, want 1", n)
			}
			pn := s.h.sw.Load() // the switch may be adopted before waitKey looks
			b.send(withHeads(fs, tt.base, tt.from, 200)...)
			waitKey(t, pn)
			// The old upstream goes on until the hub switches away from it.
			for i := tt.at; i < len(fs) && a.send(copyOf(fs, 0, i, i+1)...); i++ {
			}
			if !a.isClosed() {
				t.Fatal("the old upstream was never closed")
			}
			b.send(copyOf(fs, tt.base, 200, 300)...)
			b.end(io.EOF)
			got := played(t, s)
			wantStream(t, got, fs)
			rs := rep.get()
			if len(rs) != 1 || rs[0].Kind != SwitchPlanned || !rs[0].Aligned || rs[0].Err != nil ||
				rs[0].Origins != (Origins{From: "a", To: "b"}) || rs[0].Subscribers != 1 {
				t.Errorf("reports = %+v", rs)
			}
			if tt.from < tt.at && rs[0].Repeats == 0 {
				t.Errorf("behind, but no repeats reported: %+v", rs[0])
			}
			if st := r.Stats(); st.Switched != 1 || st.Reattached != 0 {
				t.Errorf("Stats = %+v", st)
			}
		})
	}
}

// A new upstream whose frames the old one never has (another encoding)
// is switched to at the timeout, the way a re-attach does: at its
// keyframe, one frame after the last tag delivered.
func TestPlannedSwitchTimeout(t *testing.T) {
	testkit.CheckGoroutines(t)
	fs := genFrames(200, 10)
	other := genFrames(200, 10)
	for i := range other {
		other[i].body = append(other[i].body, 0xee)
	}
	var rep reports
	a, b := newFeed(0), newFeed(1000)
	src := &sources{t: t, list: []Source{a, b}}
	r := newTestRegistry(t, Config{OnSwitch: rep.add, SwitchTimeout: 200 * time.Millisecond})
	s := subscribe(t, r, "k?q", src.opener())
	a.send(copyOf(fs, 0, 0, 50)...)
	settle(t, a)
	r.Switch("k")
	pn := s.h.sw.Load() // the switch may be adopted before waitKey looks
	b.send(withHeads(other, 9000, keyAt(other, 30), 150)...)
	p := waitKey(t, pn)
	testkit.WaitFor(t, 5*time.Second, "the switch's deadline", func() bool { return time.Now().After(p.deadline) })
	last := 50
	for ; last < len(fs) && a.send(copyOf(fs, 0, last, last+1)...); last++ {
	}
	b.send(copyOf(other, 9000, 150, 200)...) // read by the hub, after the switch
	b.end(io.EOF)
	got := played(t, s)
	monotonic(t, got)
	// The old upstream's frames up to the switch (the one after the
	// deadline included), then the new one's: its keyframe one frame later.
	n := 3 + last
	wantStream(t, got[:n], fs[:last])
	k := keyAt(other, 30)
	floor := fs[last-1].ts + switchGap
	if len(got) != n+200-k {
		t.Fatalf("%d tags, want %d", len(got), n+200-k)
	}
	for i, f := range other[k:200] {
		if g := got[n+i]; !bytes.Equal(g.body, f.body) || g.ts != floor+f.ts-other[k].ts {
			t.Fatalf("tag %d after the switch: %+v, want %x at %d", i, g, f.body, floor+f.ts-other[k].ts)
		}
	}
	if rs := rep.get(); len(rs) != 1 || rs[0].Aligned || rs[0].Err != nil || rs[0].Took < 200*time.Millisecond {
		t.Errorf("reports = %+v", rs)
	}
}

// A new upstream that fails leaves the players on the old one.
func TestPlannedSwitchNewFails(t *testing.T) {
	testkit.CheckGoroutines(t)
	fs := genFrames(100, 10)
	var rep reports
	a, b := newFeed(0), newFeed(10)
	src := &sources{t: t, list: []Source{a, b}}
	r := newTestRegistry(t, Config{OnSwitch: rep.add})
	s := subscribe(t, r, "k?", src.opener())
	a.send(copyOf(fs, 0, 0, 40)...)
	r.Switch("k")
	b.send(copyOf(fs, 0, 0, 5)...) // headers, no keyframe... then it fails
	b.end(errors.New("connection reset"))
	testkit.WaitFor(t, 5*time.Second, "the new upstream's end", func() bool {
		p := s.h.sw.Load()
		if p == nil {
			return true
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.ended
	})
	a.send(copyOf(fs, 0, 40, 100)...)
	a.end(io.EOF)
	wantStream(t, played(t, s), fs)
	if rs := rep.get(); len(rs) != 1 || rs[0].Err == nil || rs[0].Kind != SwitchPlanned {
		t.Errorf("reports = %+v", rs)
	}
	if st := r.Stats(); st.Switched != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// An Opener that reaches the origin played changes nothing.
func TestPlannedSwitchSameOrigin(t *testing.T) {
	testkit.CheckGoroutines(t)
	fs := genFrames(60, 10)
	var rep reports
	a, b := newFeed(0), newFeed(10)
	src := &sources{t: t, list: []Source{a, b}, origins: []Origins{{}, {From: "a", To: "a"}}}
	r := newTestRegistry(t, Config{OnSwitch: rep.add})
	s := subscribe(t, r, "k?", src.opener())
	a.send(copyOf(fs, 0, 0, 30)...)
	r.Switch("k")
	testkit.WaitFor(t, 5*time.Second, "the new upstream closed", b.isClosed)
	a.send(copyOf(fs, 0, 30, 60)...)
	a.end(io.EOF)
	wantStream(t, played(t, s), fs)
	if rs := rep.get(); len(rs) != 0 {
		t.Errorf("reports = %+v", rs)
	}
}

// The old upstream ends (its origin stopped the stream after the move)
// while the switch waits for the new upstream's keyframe: the hub waits
// for it rather than re-attaching, and players miss nothing.
func TestPlannedSwitchOldEnds(t *testing.T) {
	testkit.CheckGoroutines(t)
	fs := genFrames(200, 10)
	for _, oldErr := range []error{io.EOF, errors.New("connection reset")} {
		var rep reports
		a, b := newFeed(0), newFeed(1000)
		src := &sources{t: t, list: []Source{a, b}}
		r := newTestRegistry(t, Config{OnSwitch: rep.add, Reattach: 5 * time.Second, SwitchTimeout: time.Minute})
		s := subscribe(t, r, "k?", src.opener())
		a.send(copyOf(fs, 0, 0, 80)...)
		r.Switch("k")
		a.end(oldErr)
		testkit.WaitFor(t, 5*time.Second, "the old upstream closed", a.isClosed)
		b.send(withHeads(fs, 123456, keyAt(fs, 40), 200)...) // behind: from a keyframe delivered
		b.end(io.EOF)
		wantStream(t, played(t, s), fs)
		if rs := rep.get(); len(rs) != 1 || !rs[0].Aligned || rs[0].Err != nil {
			t.Errorf("%v: reports = %+v", oldErr, rs)
		}
		if n := src.opens.Load(); n != 2 {
			t.Errorf("%v: %d opens, want 2 (no re-attach)", oldErr, n)
		}
		r.Close()
	}
}

// A re-attach to an upstream that already holds the stream and its GOP
// (a warm replica) drops the frames players had, and delivers the rest
// at their own timestamps.
func TestReattachDeduplicates(t *testing.T) {
	testkit.CheckGoroutines(t)
	fs := genFrames(200, 10)
	var rep reports
	a, b := newFeed(0), newFeed(1000)
	src := &sources{t: t, list: []Source{a, b}}
	r := newTestRegistry(t, Config{OnReattach: rep.add, Reattach: 5 * time.Second})
	s := subscribe(t, r, "k?", src.opener())
	a.send(copyOf(fs, 0, 0, 90)...)
	a.end(errors.New("connection reset"))
	b.send(withHeads(fs, 77777, keyAt(fs, 75), 200)...)
	b.end(io.EOF)
	wantStream(t, played(t, s), fs)
	rs := rep.get()
	if len(rs) != 1 || rs[0].Kind != SwitchFailover || !rs[0].Aligned || rs[0].Repeats == 0 || rs[0].Err != nil {
		t.Errorf("reports = %+v", rs)
	}
	if st := r.Stats(); st.Reattached != 1 || st.Switched != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// A re-attached upstream whose GOP starts after what players had (frames
// lost in the failure) is aligned too: the frames players never had are
// delivered, at their own timestamps.
func TestReattachAlignsAhead(t *testing.T) {
	testkit.CheckGoroutines(t)
	fs := genFrames(200, 10)
	a, b := newFeed(0), newFeed(1000)
	src := &sources{t: t, list: []Source{a, b}}
	r := newTestRegistry(t, Config{Reattach: 5 * time.Second})
	s := subscribe(t, r, "k?", src.opener())
	a.send(copyOf(fs, 0, 0, 90)...)
	a.end(errors.New("connection reset"))
	k := keyAt(fs, 100) // players never had it: rebased
	b.send(withHeads(fs, 5, k, 200)...)
	b.end(io.EOF)
	got := played(t, s)
	monotonic(t, got)
	wantStream(t, got[:3+90], fs[:90])
	if g := got[3+90+3]; !bytes.Equal(g.body, fs[k].body) { // after the re-sent headers
		t.Errorf("after the re-attach: %+v, want the new keyframe", g)
	}
}

// Close during a pending switch ends everything and waits for it.
func TestCloseDuringSwitch(t *testing.T) {
	testkit.CheckGoroutines(t)
	fs := genFrames(100, 10)
	a, b := newFeed(0), newFeed(100)
	src := &sources{t: t, list: []Source{a, b}}
	r := NewRegistry(Config{})
	s := subscribe(t, r, "k?", src.opener())
	a.send(copyOf(fs, 0, 0, 30)...)
	settle(t, a)
	r.Switch("k")
	pn := s.h.sw.Load() // the switch may be adopted before waitKey looks
	b.send(withHeads(fs, 0, keyAt(fs, 40), 100)...)
	waitKey(t, pn)
	r.Close()
	if !a.isClosed() || !b.isClosed() {
		t.Errorf("after Close: old closed %v, new closed %v", a.isClosed(), b.isClosed())
	}
	if _, err := s.WriteTo(io.Discard); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteTo after Close: %v", err)
	}
}

// Close while the switch's Opener is still running waits for it.
func TestCloseDuringSwitchOpen(t *testing.T) {
	testkit.CheckGoroutines(t)
	a := newFeed(0)
	entered := make(chan struct{})
	var opens atomic.Int32
	r := NewRegistry(Config{})
	s := subscribe(t, r, "k?", func(ctx context.Context) (Opened, error) {
		if opens.Add(1) == 1 {
			return Opened{Source: a}, nil
		}
		close(entered)
		<-ctx.Done()
		return Opened{}, ctx.Err()
	})
	a.send(copyOf(genFrames(10, 10), 0, 0, 10)...)
	if n := r.Switch("k"); n != 1 {
		t.Fatalf("Switch = %d", n)
	}
	<-entered
	if n := r.Switch("k"); n != 0 {
		t.Errorf("a second Switch while one is pending = %d, want 0", n)
	}
	r.Close()
	if _, err := s.WriteTo(io.Discard); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteTo after Close: %v", err)
	}
}

// The switch's buffer is bounded: past GOPTags or GOPBytes it starts
// again at the next keyframe.
func TestSwitchBufferBound(t *testing.T) {
	testkit.CheckGoroutines(t)
	fs := genFrames(400, 10) // about 27 tags a GOP
	for _, cfg := range []Config{{GOPTags: 12}, {GOPBytes: 12 * 30}} {
		t.Run(fmt.Sprintf("%+v", cfg), func(t *testing.T) {
			a, b := newFeed(0), newFeed(1000)
			src := &sources{t: t, list: []Source{a, b}}
			cfg.SwitchTimeout = time.Minute
			r := newTestRegistry(t, cfg)
			s := subscribe(t, r, "k?", src.opener())
			a.send(copyOf(fs, 0, 0, 20)...)
			r.Switch("k")
			b.send(withHeads(fs, 0, keyAt(fs, 100), 400)...)
			testkit.WaitFor(t, 5*time.Second, "the new upstream read", func() bool { return b.reads.Load() == int32(3+400-keyAt(fs, 100)+1) })
			p := s.h.sw.Load()
			p.mu.Lock()
			n, size, restarts := len(p.buf), p.bufBytes, p.restarts
			p.mu.Unlock()
			if restarts == 0 || cfg.GOPTags > 0 && n > cfg.GOPTags || cfg.GOPBytes > 0 && size > cfg.GOPBytes {
				t.Errorf("buffer: %d tags, %d bytes, %d restarts", n, size, restarts)
			}
		})
	}
}

// The ring of delivered keyframes is bounded.
func TestSeenRingBound(t *testing.T) {
	var s seenRing
	for i := range seenKeyframes + 10 {
		s.add(uint64(i+1), uint32(i))
	}
	if _, ok := s.find(1); ok {
		t.Error("the oldest keyframe was kept past the bound")
	}
	for _, i := range []int{10, seenKeyframes + 9} {
		if ts, ok := s.find(uint64(i + 1)); !ok || ts != uint32(i) {
			t.Errorf("keyframe %d: %d, %v", i, ts, ok)
		}
	}
}

// Delivering from the reader's path allocates nothing per tag when no
// switch is pending: the keyframe ring and the switch checks are free.
func TestReadPathAllocs(t *testing.T) {
	r := newTestRegistry(t, Config{})
	a := newFeed(0)
	s := subscribe(t, r, "k?", func(context.Context) (Opened, error) { return Opened{Source: a}, nil })
	h := s.h
	a.send(copyOf(genFrames(10, 10), 0, 0, 10)...)
	collect(t, s, 1+3+10)
	// The reader is done with the last tag once it waits for the next.
	testkit.WaitFor(t, 5*time.Second, "the reader to wait", func() bool { return a.reads.Load() == 3+10+1 })
	tags := copyOf(genFrames(300, 10), 0, 10, 300)
	i := 0
	var bufs [][]byte
	ctx := context.Background()
	allocs := testing.AllocsPerRun(200, func() {
		t := tags[i%len(tags)]
		i++
		if h.ts.repeat(t) || h.sw.Load() != nil {
			return
		}
		h.emit(t)
		bufs, _ = s.Next(ctx, bufs[:0])
	})
	if allocs != 0 {
		t.Errorf("%v allocations per tag", allocs)
	}
	a.end(io.EOF)
}

// Two planned switches in a row, each with its own timestamp base: the
// players still get every frame once.
func TestPlannedSwitchTwice(t *testing.T) {
	testkit.CheckGoroutines(t)
	fs := genFrames(300, 10)
	var rep reports
	a, b, c := newFeed(0), newFeed(0), newFeed(1000)
	src := &sources{t: t, list: []Source{a, b, c}}
	r := newTestRegistry(t, Config{OnSwitch: rep.add, SwitchTimeout: time.Minute})
	s := subscribe(t, r, "k?", src.opener())
	a.send(copyOf(fs, 0, 0, 100)...)
	settle(t, a)
	r.Switch("k")
	pn := s.h.sw.Load() // the switch may be adopted before waitKey looks
	from := keyAt(fs, 60)
	go b.send(withHeads(fs, 4000, from, 150)...) // b is unbuffered: it is fed as the hub reads it
	waitKey(t, pn)
	for i := 100; a.send(copyOf(fs, 0, i, i+1)...); i++ {
	}
	testkit.WaitFor(t, 5*time.Second, "b read to 150", func() bool { return b.reads.Load() == int32(3+150-from+1) })
	if n := r.Switch("k"); n != 1 {
		t.Fatalf("second Switch = %d", n)
	}
	pn = s.h.sw.Load() // the switch may be adopted before waitKey looks
	c.send(withHeads(fs, 90000, keyAt(fs, 120), 300)...)
	waitKey(t, pn)
	for i := 150; b.send(copyOf(fs, 4000, i, i+1)...); i++ {
	}
	c.end(io.EOF)
	wantStream(t, played(t, s), fs)
	if rs := rep.get(); len(rs) != 2 || !rs[0].Aligned || !rs[1].Aligned {
		t.Errorf("reports = %+v", rs)
	}
}

// BenchmarkReadPath measures the reader's per-tag path with no switch
// pending (rebasing, the switch checks, the keyframe ring, delivering to
// one subscriber and its taking the tag), over a stream with a keyframe
// every 30 video frames.
func BenchmarkReadPath(b *testing.B) {
	r := NewRegistry(Config{})
	defer r.Close()
	a := newFeed(0)
	s, err := r.Subscribe(context.Background(), "k?", func(context.Context) (Opened, error) { return Opened{Source: a}, nil })
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	a.send(copyOf(genFrames(1, 30), 0, 0, 1)...)
	collect(b, s, 1+3+1)
	if err := testkit.Poll(5*time.Second, func() error {
		if a.reads.Load() != 3+1+1 {
			return errors.New("the reader is busy")
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	h := s.h
	tags := copyOf(genFrames(3000, 30), 0, 1, 3000)
	var bufs [][]byte
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		t := tags[i%len(tags)]
		i++
		if !h.ts.repeat(t) && h.sw.Load() == nil {
			h.emit(t)
		}
		bufs, _ = s.Next(ctx, bufs[:0])
	}
	a.end(io.EOF)
}

// A sequence header that changed on the new upstream reaches the players
// ahead of its first frame, at the last video timestamp they had.
func TestPlannedSwitchNewHeader(t *testing.T) {
	testkit.CheckGoroutines(t)
	fs := genFrames(300, 10)
	avcSeq2 := append(append([]byte(nil), avcSeq...), 2)
	a, b := newFeed(0), newFeed(1000)
	src := &sources{t: t, list: []Source{a, b}}
	r := newTestRegistry(t, Config{SwitchTimeout: time.Minute})
	s := subscribe(t, r, "k?", src.opener())
	a.send(copyOf(fs, 0, 0, 100)...)
	settle(t, a)
	r.Switch("k")
	pn := s.h.sw.Load() // the switch may be adopted before waitKey looks
	heads := []Tag{NewTag(TagScript, 50, metadataBody()), NewTag(TagVideo, 50, avcSeq2), NewTag(TagAudio, 50, aacSeq)}
	b.send(append(heads, copyOf(fs, 50, keyAt(fs, 60), 300)...)...)
	waitKey(t, pn)
	a.send(copyOf(fs, 0, 100, 101)...) // the hub switches here, instead of delivering it
	testkit.WaitFor(t, 5*time.Second, "the switch", a.isClosed)
	b.end(io.EOF)
	var lastV uint32
	for _, f := range fs[:100] {
		if f.typ == TagVideo {
			lastV = f.ts
		}
	}
	want := append(append(append([]frame(nil), fs[:100]...), frame{TagVideo, lastV, avcSeq2}), fs[100:]...)
	wantStream(t, played(t, s), want)
}

// An audio-only stream has nothing to align by: a planned switch goes to
// the new upstream at its first frame, rebased.
func TestPlannedSwitchAudioOnly(t *testing.T) {
	testkit.CheckGoroutines(t)
	var rep reports
	a, b := newFeed(0), newFeed(100)
	src := &sources{t: t, list: []Source{a, b}}
	r := newTestRegistry(t, Config{OnSwitch: rep.add, SwitchTimeout: time.Minute})
	s := subscribe(t, r, "k?", src.opener())
	silence := []byte{0xaf, 1, 0}
	a.send(NewTag(TagAudio, 0, aacSeq), NewTag(TagAudio, 1000, silence), NewTag(TagAudio, 1023, silence))
	settle(t, a)
	r.Switch("k")
	pn := s.h.sw.Load() // the switch may be adopted before waitKey looks
	b.send(NewTag(TagAudio, 0, aacSeq), NewTag(TagAudio, 70000, silence), NewTag(TagAudio, 70023, silence))
	waitKey(t, pn)
	a.send(NewTag(TagAudio, 1046, silence))
	testkit.WaitFor(t, 5*time.Second, "the switch", a.isClosed)
	b.end(io.EOF)
	got := played(t, s)
	var ts []uint32
	for _, f := range got {
		ts = append(ts, f.ts)
	}
	if want := []uint32{0, 1000, 1023, 1046, 1046 + switchGap, 1069 + switchGap}; fmt.Sprint(ts) != fmt.Sprint(want) {
		t.Errorf("timestamps %v, want %v", ts, want)
	}
	if rs := rep.get(); len(rs) != 1 || rs[0].Aligned || rs[0].Err != nil {
		t.Errorf("reports = %+v", rs)
	}
}

// TestSwitchIndex: Switch finds the hubs of a stream, whatever their
// query, through an index by stream that forgets hubs as they close.
func TestSwitchIndex(t *testing.T) {
	r := newTestRegistry(t, Config{SwitchTimeout: time.Minute})
	open := func(ctx context.Context) (Opened, error) { return Opened{Source: newFeed(16)}, nil }
	xa := subscribe(t, r, "live/x?a", open)
	subscribe(t, r, "live/x?b", open)
	subscribe(t, r, "live/y?", open)
	count := func(st string) int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.byStream[st])
	}
	if count("live/x") != 2 || count("live/y") != 1 {
		t.Fatalf("index %v", r.byStream)
	}
	xa.Close()
	testkit.WaitFor(t, 5*time.Second, "the closed hub leaves the index", func() bool { return count("live/x") == 1 })
	if n := r.Switch("live/z"); n != 0 {
		t.Fatalf("Switch of a stream with no hub = %d", n)
	}
}
