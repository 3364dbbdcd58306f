package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// upstream is a fake origin stream: tests write tags into it and count
// opens and closes.
type upstream struct {
	mu     sync.Mutex
	pw     *io.PipeWriter
	opens  atomic.Int32
	closes atomic.Int32
}

// opener opens a new pipe for each open.
func (u *upstream) opener() Opener {
	return func(ctx context.Context) (Opened, error) {
		u.opens.Add(1)
		pr, pw := io.Pipe()
		u.mu.Lock()
		u.pw = pw
		u.mu.Unlock()
		return Opened{Source: FLVSource(closeCounter{pr, &u.closes}, DefaultMaxTagSize), Info: "info"}, nil
	}
}

type closeCounter struct {
	*io.PipeReader
	n *atomic.Int32
}

func (c closeCounter) Close() error { c.n.Add(1); return c.PipeReader.Close() }

// write writes b to the current pipe; it returns once the hub has read it.
func (u *upstream) write(t testing.TB, bs ...[]byte) {
	t.Helper()
	u.mu.Lock()
	pw := u.pw
	u.mu.Unlock()
	for _, b := range bs {
		if _, err := pw.Write(b); err != nil {
			t.Fatalf("upstream write: %v", err)
		}
	}
}

func (u *upstream) end() {
	u.mu.Lock()
	u.pw.Close()
	u.mu.Unlock()
}

// collect reads s until it has want buffers or fails after a while.
func collect(t testing.TB, s *Subscriber, want int) net.Buffers {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got net.Buffers
	for len(got) < want {
		var err error
		if got, err = s.Next(ctx, got); err != nil {
			t.Fatalf("Next after %d of %d buffers: %v", len(got), want, err)
		}
	}
	return got
}

func subscribe(t testing.TB, r *Registry, key string, open Opener) *Subscriber {
	t.Helper()
	s, err := r.Subscribe(context.Background(), key, open)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newTestRegistry(t testing.TB, cfg Config) *Registry {
	r := NewRegistry(cfg)
	t.Cleanup(func() { r.Close() })
	return r
}

var (
	tMeta  = mkTag(TagScript, 0, metadata)
	tVSeq  = mkTag(TagVideo, 0, avcSeq)
	tASeq  = mkTag(TagAudio, 0, aacSeq)
	tKey   = mkTag(TagVideo, 0, avcKey)
	tInter = mkTag(TagVideo, 40, avcInter)
	tAudio = mkTag(TagAudio, 20, aacRaw)
)

func TestFastStart(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	r := newTestRegistry(t, Config{})
	first := subscribe(t, r, "k", u.opener())
	if first.Info() != "info" {
		t.Errorf("Info = %v", first.Info())
	}
	u.write(t, flvHeader, tMeta, tVSeq, tASeq, tKey, tAudio, tInter)
	live := collect(t, first, 7)
	for i, want := range [][]byte{flvHeader, tMeta, tVSeq, tASeq, tKey, tAudio, tInter} {
		if !bytes.Equal(live[i], want) {
			t.Fatalf("first subscriber's buffer %d = %x, want %x", i, live[i], want)
		}
	}

	second := subscribe(t, r, "k", u.opener())
	got := collect(t, second, 7)
	want := [][]byte{flvHeader, tMeta, tVSeq, tASeq, tKey, tAudio, tInter}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("fast start buffer %d = %x, want %x", i, got[i], want[i])
		}
		// Shared, not copied: the same backing array as the first's.
		if &got[i][0] != &live[i][0] {
			t.Errorf("fast start buffer %d is a copy", i)
		}
	}
	u.write(t, tAudio)
	a, b := collect(t, first, 1), collect(t, second, 1)
	if &a[len(a)-1][0] != &b[len(b)-1][0] {
		t.Error("a live tag was copied per subscriber")
	}
	if n := u.opens.Load(); n != 1 {
		t.Errorf("%d opens, want 1", n)
	}
	if st := r.Stats(); st.Upstreams != 1 || st.Subscribers != 2 {
		t.Errorf("Stats = %+v", st)
	}
}

// A subscriber arriving with no whole GOP cached starts at the next
// keyframe, with the metadata and sequence headers first.
func TestJoinBeforeKeyframe(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	r := newTestRegistry(t, Config{})
	s := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader, tMeta, tVSeq, tASeq, tInter, tAudio, tKey, tInter)
	got := collect(t, s, 6)
	for i, want := range [][]byte{flvHeader, tMeta, tVSeq, tASeq, tKey, tInter} {
		if !bytes.Equal(got[i], want) {
			t.Errorf("buffer %d = %x, want %x", i, got[i], want)
		}
	}
}

// The GOP cache is bounded: past GOPTags the GOP is not cached, and a new
// subscriber waits for the next keyframe.
func TestGOPBound(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	r := newTestRegistry(t, Config{GOPTags: 3})
	first := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader, tVSeq, tKey, tInter, tInter, tInter)
	collect(t, first, 6)
	s := subscribe(t, r, "k", u.opener())
	u.write(t, tInter, tKey)
	collect(t, first, 2)
	got := collect(t, s, 3)
	for i, want := range [][]byte{flvHeader, tVSeq, tKey} {
		if !bytes.Equal(got[i], want) {
			t.Errorf("buffer %d = %x, want %x", i, got[i], want)
		}
	}
}

// A subscriber that stops reading is dropped and then kicked; the others
// get every tag, and the upstream never waits for it.
func TestStalledSubscriber(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	r := newTestRegistry(t, Config{QueueBytes: 1000, BehindBytes: 3000})
	fast := subscribe(t, r, "k", u.opener())
	stalled := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader, tVSeq, tASeq)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := len(collect(t, fast, 1)) // the sequence headers come with the first keyframe
	var bufs net.Buffers
	const gops = 50
	for i := range gops {
		u.write(t, tKey, tInter, tInter, tAudio)
		for got < 3+4*(i+1) { // the fast one reads as it goes
			var err error
			if bufs, err = fast.Next(ctx, bufs[:0]); err != nil {
				t.Fatalf("fast subscriber after %d buffers: %v", got, err)
			}
			got += len(bufs)
		}
	}
	// The stalled one was cut: its queue holds what fitted, then ErrSlow.
	var err error
	for err == nil {
		_, err = stalled.Next(ctx, nil)
	}
	if !errors.Is(err, ErrSlow) {
		t.Errorf("stalled subscriber ended with %v, want ErrSlow", err)
	}
	if st := r.Stats(); st.Dropped < 1 || st.Kicked != 1 {
		t.Errorf("Stats = %+v, want drops and one kick", st)
	}
	if stalled.Drops() < 1 {
		t.Errorf("stalled Drops = %d", stalled.Drops())
	}
}

// A subscriber whose queue fills drops until a keyframe, then resumes with
// the sequence headers that changed meanwhile.
func TestDropResumesAtKeyframe(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	r := newTestRegistry(t, Config{QueueBytes: 3 * len(tKey)})
	s := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader, tVSeq, tKey)
	collect(t, s, 3)
	newSeq := mkTag(TagVideo, 0, hevcSeq)
	u.write(t, tInter, tInter, tInter, tInter, newSeq, tInter) // fills, drops
	got := collect(t, s, 3)
	u.write(t, tInter, tKey)
	got = append(got, collect(t, s, 2)...)
	want := [][]byte{tInter, tInter, tInter, newSeq, tKey}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("buffer %d = %x, want %x", i, got[i], want[i])
		}
	}
	if s.Drops() != 1 || r.Stats().Dropped != 1 {
		t.Errorf("Drops = %d, Stats = %+v", s.Drops(), r.Stats())
	}
}

func TestLinger(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	r := newTestRegistry(t, Config{Linger: 200 * time.Millisecond})
	s, err := r.Subscribe(context.Background(), "k", u.opener())
	if err != nil {
		t.Fatal(err)
	}
	u.write(t, flvHeader, tVSeq, tKey)
	collect(t, s, 3)
	s.Close()
	// Back within the linger: the same upstream, with a fast start.
	s2 := subscribe(t, r, "k", u.opener())
	collect(t, s2, 3)
	if n := u.opens.Load(); n != 1 {
		t.Fatalf("%d opens, want 1", n)
	}
	s2.Close()
	if err := testkit.Poll(5*time.Second, func() error {
		if n := u.closes.Load(); n != 1 {
			return fmt.Errorf("upstream closed %d times", n)
		}
		if st := r.Stats(); st.Upstreams != 0 || st.Subscribers != 0 {
			return fmt.Errorf("Stats = %+v", st)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A new subscriber opens a new upstream.
	s3 := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader)
	collect(t, s3, 1)
	if n := u.opens.Load(); n != 2 {
		t.Errorf("%d opens, want 2", n)
	}
}

func TestUpstreamEndEndsSubscribers(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	r := newTestRegistry(t, Config{})
	a := subscribe(t, r, "k", u.opener())
	b := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader, tVSeq, tKey)
	u.end()
	for _, s := range []*Subscriber{a, b} {
		var out bytes.Buffer
		n, err := s.WriteTo(&out)
		if err != nil || n != int64(len(flvHeader)+len(tVSeq)+len(tKey)) {
			t.Errorf("WriteTo = %d, %v", n, err)
		}
	}
	if err := testkit.Poll(5*time.Second, func() error {
		if st := r.Stats(); st.Upstreams != 0 {
			return fmt.Errorf("Stats = %+v", st)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A corrupt upstream ends its subscribers with the parse error.
func TestUpstreamError(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	r := newTestRegistry(t, Config{})
	s := subscribe(t, r, "k", u.opener())
	u.mu.Lock()
	u.pw.Write([]byte("not an flv stream")) // the hub stops reading at once
	u.mu.Unlock()
	if _, err := s.WriteTo(io.Discard); !errors.Is(err, ErrNotFLV) {
		t.Errorf("WriteTo: %v, want ErrNotFLV", err)
	}
}

func TestOpenError(t *testing.T) {
	testkit.CheckGoroutines(t)
	r := newTestRegistry(t, Config{})
	bad := errors.New("403")
	s, err := r.Subscribe(context.Background(), "k", func(context.Context) (Opened, error) { return Opened{}, bad })
	if err != bad || s != nil {
		t.Fatalf("Subscribe = %v, %v; want the opener's error", s, err)
	}
	if st := r.Stats(); st.Upstreams != 0 || st.Subscribers != 0 {
		t.Errorf("Stats = %+v", st)
	}
	// Those waiting for a failing open get ErrUpstream.
	release := make(chan struct{})
	entered := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		_, err := r.Subscribe(context.Background(), "k", func(context.Context) (Opened, error) {
			close(entered)
			<-release
			return Opened{}, bad
		})
		errc <- err
	}()
	<-entered
	go func() {
		time.Sleep(50 * time.Millisecond)
		close(release)
	}()
	if _, err := r.Subscribe(context.Background(), "k", nil); err != ErrUpstream {
		t.Errorf("waiting subscriber: %v, want ErrUpstream", err)
	}
	if err := <-errc; err != bad {
		t.Errorf("opening subscriber: %v", err)
	}
}

func TestRegistryBound(t *testing.T) {
	testkit.CheckGoroutines(t)
	u1, u2 := &upstream{}, &upstream{}
	r := newTestRegistry(t, Config{MaxHubs: 1, Linger: -1})
	a := subscribe(t, r, "a", u1.opener())
	if _, err := r.Subscribe(context.Background(), "b", u2.opener()); err != ErrFull {
		t.Fatalf("second hub: %v, want ErrFull", err)
	}
	subscribe(t, r, "a", u1.opener()) // the same key joins
	a.Close()
	if err := testkit.Poll(5*time.Second, func() error {
		if st := r.Stats(); st.Subscribers != 1 {
			return fmt.Errorf("Stats = %+v", st)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Closing the registry ends every hub and subscriber.
func TestRegistryClose(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	r := NewRegistry(Config{})
	s := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader)
	collect(t, s, 1)
	r.Close()
	if _, err := s.WriteTo(io.Discard); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteTo after Close: %v", err)
	}
	if _, err := r.Subscribe(context.Background(), "k", u.opener()); err != ErrClosed {
		t.Errorf("Subscribe after Close: %v", err)
	}
}

// Delivering a tag to N subscribers, and their taking it, allocates
// nothing per tag per subscriber: tags are shared, queues reused.
func TestDeliverAllocs(t *testing.T) {
	u := &upstream{}
	r := newTestRegistry(t, Config{})
	const n = 50
	subs := make([]*Subscriber, n)
	for i := range subs {
		subs[i] = subscribe(t, r, "k", u.opener())
	}
	u.write(t, flvHeader)
	for _, s := range subs {
		collect(t, s, 1)
	}
	h := subs[0].h
	tags := []Tag{{Type: TagVideo, Kind: KindKeyframe, Data: tKey}, {Type: TagVideo, Data: tInter}, {Type: TagAudio, Data: tAudio}}
	bufs := make([]net.Buffers, n)
	out := new(net.Buffers)
	// A bound so that a tag not delivered fails the test, not hangs it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	i, runs := 0, 0
	var errs, wrong int // counted, not reported, inside the measured loop
	var firstErr error
	allocs := testing.AllocsPerRun(1000, func() {
		want := tags[i%len(tags)].Data
		h.deliver(tags[i%len(tags)])
		i++
		runs++
		for j, s := range subs {
			var err error
			bufs[j], err = s.Next(ctx, bufs[j][:0])
			if err != nil {
				if errs == 0 {
					firstErr = err
				}
				errs++
			}
			if len(bufs[j]) != 1 || !bytes.Equal(bufs[j][0], want) {
				wrong++
			}
			*out = bufs[j] // and written as the HTTP path does
			out.WriteTo(io.Discard)
		}
	})
	if errs != 0 {
		t.Errorf("Next failed %d times of %d, first: %v", errs, runs*n, firstErr)
	}
	if wrong != 0 {
		t.Errorf("Next returned other than the one delivered tag %d times of %d", wrong, runs*n)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per tag for %d subscribers, want 0", allocs, n)
	}
}

// A subscriber joining between the header and the first keyframe gets the
// metadata and sequence headers once, with the keyframe.
func TestJoinBetweenHeaderAndKeyframe(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	r := newTestRegistry(t, Config{})
	first := subscribe(t, r, "k", u.opener())
	u.write(t, flvHeader, tMeta)
	collect(t, first, 1)
	s := subscribe(t, r, "k", u.opener())
	u.write(t, tVSeq, tASeq, tKey)
	got := collect(t, s, 5)
	for i, want := range [][]byte{flvHeader, tMeta, tVSeq, tASeq, tKey} {
		if !bytes.Equal(got[i], want) {
			t.Errorf("buffer %d = %x, want %x", i, got[i], want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if more, _ := s.Next(ctx, nil); len(more) != 0 {
		t.Errorf("then %d more buffers", len(more))
	}
}

// BenchmarkDeliver measures delivering one tag to 1,000 subscribers and
// their taking it.
func BenchmarkDeliver(b *testing.B) {
	u := &upstream{}
	r := NewRegistry(Config{})
	defer r.Close()
	subs := make([]*Subscriber, 1000)
	for i := range subs {
		s, err := r.Subscribe(context.Background(), "k", u.opener())
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		subs[i] = s
	}
	u.write(b, flvHeader)
	for _, s := range subs {
		collect(b, s, 1)
	}
	h := subs[0].h
	tag := Tag{Type: TagVideo, Data: tInter}
	bufs := make([]net.Buffers, len(subs))
	ctx := context.Background()
	h.deliver(Tag{Type: TagVideo, Kind: KindKeyframe, Data: tKey}) // subscribers start at a keyframe
	for j, s := range subs {
		bufs[j], _ = s.Next(ctx, bufs[j][:0])
	}
	b.ReportAllocs()
	for b.Loop() {
		h.deliver(tag)
		for j, s := range subs {
			bufs[j], _ = s.Next(ctx, bufs[j][:0])
		}
	}
}

// TestWakeEvery: tags that arrive within Config.WakeEvery of a wake-up are
// signalled together by the hub's timer, none lost; with the wake-ups held
// off for longer than the test runs, the upstream's end still delivers
// them.
func TestWakeEvery(t *testing.T) {
	testkit.CheckGoroutines(t)
	want := [][]byte{flvHeader, tMeta, tVSeq, tASeq, tKey, tAudio, tInter}
	for _, tc := range []struct {
		name string
		wake time.Duration
	}{{"timer", 50 * time.Millisecond}, {"end", time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			u := &upstream{}
			r := newTestRegistry(t, Config{WakeEvery: tc.wake})
			s := subscribe(t, r, "k", u.opener())
			u.write(t, want...)
			if tc.wake == time.Hour {
				u.end()
			}
			got := collect(t, s, len(want))
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("buffer %d = %x, want %x", i, got[i], want[i])
				}
			}
		})
	}
}
