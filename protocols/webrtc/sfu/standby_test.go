package sfu

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/webrtc"
	"github.com/srs-mesh/srs-mesh/stream"
)

// countingRouter fails every route and counts them.
type countingRouter struct{ n atomic.Int64 }

func (r *countingRouter) Route(context.Context, stream.Key) (stream.Origin, error) {
	r.n.Add(1)
	return stream.Origin{}, stream.ErrNoOrigin
}

func (r *countingRouter) RoutePlay(ctx context.Context, k stream.Key) (stream.Origin, error) {
	return r.Route(ctx, k)
}

// assigned knows the streams of its set.
type assigned map[stream.Key]bool

func (a assigned) Sources(key stream.Key) (stream.Origin, []stream.Origin, bool) {
	return stream.Origin{}, nil, a[key]
}

func testKey(name string) stream.Key {
	return stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: name}
}

// TestStandbyBounds: a node keeps one standby per stream and at most
// MaxStandbys in all, and none of a stream the mesh never assigned; a
// refused claim costs the origin nothing (no route, no watch).
func TestStandbyBounds(t *testing.T) {
	r := &countingRouter{}
	known := assigned{}
	for i := range MaxStandbys + 1 {
		known[testKey(fmt.Sprint("s", i))] = true
	}
	s, err := New(Config{Router: r, Candidate: netip.MustParseAddrPort("127.0.0.1:9"), LocalAddr: netip.MustParseAddrPort("127.0.0.1:9"),
		Write: func([]byte, netip.AddrPort) (int, error) { return 0, nil }, Assignments: known})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()

	if _, err := s.Standby(ctx, testKey("never"), nil, nil); !errors.Is(err, webrtc.ErrNotStandby) {
		t.Errorf("unassigned stream: %v", err)
	}
	s.mu.Lock()
	s.standbys[testKey("s0")] = &standbyPub{id: "x"}
	s.mu.Unlock()
	if _, err := s.Standby(ctx, testKey("s0"), nil, nil); !errors.Is(err, webrtc.ErrNotStandby) {
		t.Errorf("second standby of a stream: %v", err)
	}
	s.mu.Lock()
	for i := 1; i < MaxStandbys; i++ {
		s.standbys[testKey(fmt.Sprint("s", i))] = &standbyPub{id: fmt.Sprint(i)}
	}
	s.mu.Unlock()
	if _, err := s.Standby(ctx, testKey(fmt.Sprint("s", MaxStandbys)), nil, nil); !errors.Is(err, webrtc.ErrNotStandby) {
		t.Errorf("standby %d: %v", MaxStandbys+1, err)
	}
	if n := r.n.Load(); n != 0 {
		t.Errorf("%d routes asked for refused claims", n)
	}
	if n := s.Standbys(); n != MaxStandbys {
		t.Errorf("%d standbys", n)
	}
	// A claim whose watch fails leaves no trace.
	s.mu.Lock()
	delete(s.standbys, testKey("s1"))
	s.mu.Unlock()
	if _, err := s.Standby(ctx, testKey("s1"), nil, nil); !errors.Is(err, webrtc.ErrNotStandby) {
		t.Errorf("standby without a live stream: %v", err)
	}
	if n := s.Standbys(); n != MaxStandbys-1 {
		t.Errorf("%d standbys after a failed watch", n)
	}
	s.mu.Lock()
	clear(s.standbys) // the fakes have no goroutine for Close to end
	s.mu.Unlock()
}

// TestStandbySwitchBudget: a stream's standbys on a node take over at most
// maxSwitches times within switchWindow; the budget remembers at most
// maxSwitchKeys streams and maxSwitches times per stream.
func TestStandbySwitchBudget(t *testing.T) {
	var b switchBudget
	k := testKey("s")
	now := time.Unix(1000, 0)
	for i := range maxSwitches {
		at := now.Add(time.Duration(i) * time.Second)
		if b.spent(k, at) {
			t.Fatalf("switch %d held back", i+1)
		}
		b.record(k, at)
	}
	if !b.spent(k, now.Add(30*time.Second)) {
		t.Fatalf("switch %d allowed within the window", maxSwitches+1)
	}
	if b.spent(testKey("other"), now) {
		t.Fatal("another stream held back")
	}
	if b.spent(k, now.Add(switchWindow+time.Second)) {
		t.Fatal("held back once the first switch left the window")
	}
	for i := range maxSwitchKeys + 10 {
		b.record(testKey(fmt.Sprint("k", i)), now)
	}
	for i := range 3 * maxSwitches {
		b.record(k, now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := len(b.by); n > maxSwitchKeys {
		t.Errorf("%d streams remembered, bound %d", n, maxSwitchKeys)
	}
	if n := len(b.by[k]); n > maxSwitches {
		t.Errorf("%d times of one stream remembered", n)
	}
}
