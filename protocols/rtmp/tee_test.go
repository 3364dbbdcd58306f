package rtmp

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/stream"
)

// sourceSet is a SourceSet in memory; landed receives the origins that
// Landed was told of, and a planned move completes on it.
type sourceSet struct {
	mu      sync.Mutex
	primary stream.Origin
	others  []stream.Origin
	target  string
	landed  chan string
}

func (s *sourceSet) Sources(stream.Key) (stream.Origin, []stream.Origin, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.primary, append([]stream.Origin(nil), s.others...), true
}

func (s *sourceSet) Moving(stream.Key) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.target
}

func (s *sourceSet) Landed(_ context.Context, _ stream.Key, o stream.Origin) error {
	s.mu.Lock()
	if o.ID == s.target {
		s.primary, s.others, s.target = o, nil, ""
	}
	s.mu.Unlock()
	s.landed <- o.ID
	return nil
}

func (s *sourceSet) set(f func(s *sourceSet)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// frameNumber is the number mediaSender put in a frame.
func frameNumber(m *chunk.Message) uint32 { return binary.BigEndian.Uint32(m.Payload[2:]) }

// expectStart checks that an origin fed mid-stream gets metadata, the
// sequence headers, then a key frame, and returns the key frame's number.
func expectStart(t *testing.T, o *fakeOrigin) uint32 {
	t.Helper()
	want := []func(*chunk.Message) bool{isMetadata, isVideoSequenceHeader, isAudioSequenceHeader, isKeyframe}
	var m chunk.Message
	for i, ok := range want {
		if m = waitChan(t, o.ordered); !ok(&m) {
			t.Fatalf("message %d on the fed origin: %v %x", i, &m, m.Payload)
		}
	}
	return frameNumber(&m)
}

// expectRun checks that o gets the frames after n, every one, in order,
// with the client's timestamps, for count frames, and returns the last.
func expectRun(t *testing.T, o *fakeOrigin, n uint32, count int) uint32 {
	t.Helper()
	for range count {
		m := waitChan(t, o.ordered)
		k := frameNumber(&m)
		if k != n+1 || m.Timestamp != 5*k {
			t.Fatalf("after frame %d: frame %d at %d ms", n, k, m.Timestamp)
		}
		n = k
	}
	return n
}

// TestPlannedMoveWithoutABreak: the mesh plans a move of the stream to
// another origin; the publisher feeds it too (the client's publish
// replayed, the headers, then the stream from a key frame on), tells the
// mesh it landed, then continues on it alone; the old origin keeps the
// stream for moveLinger and is then closed. The new origin misses no frame
// from its first key frame on and the client sees nothing.
func TestPlannedMoveWithoutABreak(t *testing.T) {
	o1, o2 := startFakeOrigin(t, ""), startFakeOrigin(t, "")
	ss := &sourceSet{primary: stream.Origin{ID: "o1", RTMP: o1.Addr}, landed: make(chan string, 4)}
	r := &failoverRouter{first: ss.primary, failed: make(chan string, 4),
		reroute: func(stream.Origin) (stream.Origin, error) { return stream.Origin{}, stream.ErrNoOrigin }}
	_, addr := startProxy(t, Config{Router: r, Rerouter: r, Sources: ss})
	p := dialTestPeer(t, addr)
	p.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if info, err := p.start("rtmp://"+addr+"/live", "s1?k=v", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	recv(t, o1.names)
	client := watchClient(p)
	s := startSender(p, 20)
	for m := waitChan(t, o1.ordered); m.Type != chunk.TypeVideo || frameNumber(&m) < 5; m = waitChan(t, o1.ordered) {
	}

	ss.set(func(s *sourceSet) {
		s.others, s.target = []stream.Origin{{ID: "o2", RTMP: o2.Addr}}, "o2"
	})
	if got := recv(t, o2.names); got != "s1?k=v" {
		t.Fatalf("o2 got name %q", got)
	}
	n := expectStart(t, o2)
	if got := recv(t, ss.landed); got != "o2" {
		t.Fatalf("landed %q", got)
	}
	// The publisher switches to o2 and o1 closes after moveLinger; o2 gets
	// every frame throughout.
	n = expectRun(t, o2, n, int((moveLinger+time.Second)/(5*time.Millisecond)))
	for len(o1.ordered) > 0 {
		<-o1.ordered
	}
	expectRun(t, o2, n, 100)
	if len(o1.ordered) != 0 {
		t.Fatalf("the old origin still gets the stream %v after the move", moveLinger)
	}
	select {
	case got := <-client:
		t.Fatalf("client saw %s", got)
	default:
	}
	if len(o2.names) != 0 {
		t.Fatal("the new origin got a second publish")
	}
	s.finish(t)
}

// TestReplicaTakesOver: with a warm replica the publisher feeds both
// origins; when the primary dies the replica continues with no re-publish
// and no frame missing, and the stream is moved off the dead origin.
func TestReplicaTakesOver(t *testing.T) {
	o1, o2 := startFakeOrigin(t, ""), startFakeOrigin(t, "")
	ss := &sourceSet{primary: stream.Origin{ID: "o1", RTMP: o1.Addr}, others: []stream.Origin{{ID: "o2", RTMP: o2.Addr}},
		landed: make(chan string, 4)}
	r := &failoverRouter{first: ss.primary, failed: make(chan string, 4),
		reroute: func(stream.Origin) (stream.Origin, error) { return stream.Origin{ID: "o2", RTMP: o2.Addr}, nil }}
	events := make(failoverEvents, 4)
	_, addr := startProxy(t, Config{Router: r, Rerouter: r, Sources: ss, Failovers: events})
	p := dialTestPeer(t, addr)
	p.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if info, err := p.start("rtmp://"+addr+"/live", "s2", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	client := watchClient(p)
	s := startSender(p, 20)
	recv(t, o2.names)
	n := expectStart(t, o2)
	recv(t, ss.landed)
	n = expectRun(t, o2, n, 20)
	o1.kill()
	if failed := recv(t, r.failed); failed != "o1" {
		t.Fatalf("rerouted from %q", failed)
	}
	ev := waitChan(t, events)
	if ev.Result != FailoverOK || ev.From.ID != "o1" || ev.To.ID != "o2" {
		t.Fatalf("event %+v", ev)
	}
	expectRun(t, o2, n, 100)
	if len(o2.names) != 0 {
		t.Fatal("the replica got a second publish")
	}
	ss.mu.Lock()
	primary := ss.primary
	ss.mu.Unlock()
	if primary.ID != "o1" {
		t.Fatalf("primary %s changed by a landed replica", primary.ID)
	}
	select {
	case got := <-client:
		t.Fatalf("client saw %s", got)
	default:
	}
	s.finish(t)
}

// TestPlannedMoveOntoAReplica: a planned move whose target is a warm
// replica that has the stream already completes at once: Landed is told
// again for it.
func TestPlannedMoveOntoAReplica(t *testing.T) {
	o1, o2 := startFakeOrigin(t, ""), startFakeOrigin(t, "")
	ss := &sourceSet{primary: stream.Origin{ID: "o1", RTMP: o1.Addr}, others: []stream.Origin{{ID: "o2", RTMP: o2.Addr}},
		landed: make(chan string, 4)}
	r := &failoverRouter{first: ss.primary, failed: make(chan string, 4),
		reroute: func(stream.Origin) (stream.Origin, error) { return stream.Origin{}, stream.ErrNoOrigin }}
	_, addr := startProxy(t, Config{Router: r, Rerouter: r, Sources: ss})
	p := dialTestPeer(t, addr)
	p.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if info, err := p.start("rtmp://"+addr+"/live", "s3", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	s := startSender(p, 20)
	recv(t, o2.names)
	n := expectStart(t, o2)
	if got := recv(t, ss.landed); got != "o2" {
		t.Fatalf("landed %q", got)
	}
	n = expectRun(t, o2, n, 20)
	ss.set(func(s *sourceSet) { s.target = "o2" })
	if got := recv(t, ss.landed); got != "o2" {
		t.Fatalf("landed %q for the move", got)
	}
	expectRun(t, o2, n, 100)
	ss.mu.Lock()
	primary := ss.primary.ID
	ss.mu.Unlock()
	if primary != "o2" {
		t.Fatalf("the move onto the replica did not complete: primary %s", primary)
	}
	if len(o2.names) != 0 {
		t.Fatal("the replica got a second publish")
	}
	s.finish(t)
}

// TestLegSwitchRace: a publisher makes a tee its leg (use) while the tee's
// reader answers the origin's pings on the same connection; the write
// timeout changes under the leg's lock (go test -race).
func TestLegSwitchRace(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go io.Copy(io.Discard, b)
	s := &Server{cfg: Config{IdleTimeout: time.Minute}}
	var in, out atomic.Uint64
	l := &originLeg{leg: newLeg(a, &in, &out, DefaultMaxMessageSize, &s.bufs)}
	p := &publisher{c: &conn{s: s}}
	tl := &teeLeg{origin: stream.Origin{ID: "o2"}, leg: l}
	ping := chunk.Message{Type: chunk.TypeUserControl, Payload: []byte{0, byte(chunk.EventPingRequest), 0, 0, 0, 1}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			if _, err := l.handleControl(&ping); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 200 {
		setWriteIdle(l.leg, teeWriteTimeout)
		p.use(tl)
	}
	<-done
}

// TestFailoverOntoAnUnlandedTee: the publisher feeds a replica that has
// not landed yet (no key frame went to it) when its origin dies, and the
// failover picks that replica's origin, which refuses a second publish of
// a stream while the first holds it (as SRS does). The tee is closed
// before the failover, whose publish is retried while the origin lets
// the tee's go: the stream resumes there and the client sees nothing.
func TestFailoverOntoAnUnlandedTee(t *testing.T) {
	o1, o2 := startFakeOrigin(t, ""), startFakeOrigin(t, "")
	o2.busy = true
	ss := &sourceSet{primary: stream.Origin{ID: "o1", RTMP: o1.Addr}, others: []stream.Origin{{ID: "o2", RTMP: o2.Addr}},
		landed: make(chan string, 4)}
	r := &failoverRouter{first: ss.primary, failed: make(chan string, 4),
		reroute: func(stream.Origin) (stream.Origin, error) { return stream.Origin{ID: "o2", RTMP: o2.Addr}, nil }}
	events := make(failoverEvents, 4)
	_, addr := startProxy(t, Config{Router: r, Rerouter: r, Sources: ss, Failovers: events})
	p := dialTestPeer(t, addr)
	p.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if info, err := p.start("rtmp://"+addr+"/live", "s4", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	client := watchClient(p)
	var keys atomic.Bool
	stop, done := make(chan struct{}), make(chan error, 1)
	go func() {
		w := p.w
		for _, m := range []chunk.Message{
			{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Payload: []byte{0x17, 0x00, 0, 0, 0, 1, 0x64}},
		} {
			if err := w.WriteMessage(&m); err != nil {
				done <- err
				return
			}
		}
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for n := uint32(1); ; n++ {
			select {
			case <-stop:
				done <- w.Flush()
				return
			case <-tk.C:
			}
			m := chunk.Message{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Timestamp: 5 * n, Payload: []byte{0x27, 0x01, 0, 0, 0, 0, 0}}
			if keys.Load() && n%10 == 0 {
				m.Payload[0] = 0x17
			}
			binary.BigEndian.PutUint32(m.Payload[2:], n)
			if err := w.WriteMessage(&m); err != nil {
				done <- err
				return
			}
			if err := w.Flush(); err != nil {
				done <- err
				return
			}
		}
	}()
	recv(t, o1.names)
	if got := recv(t, o2.names); got != "s4" {
		t.Fatalf("o2 got %q", got)
	}
	if m := waitChan(t, o2.ordered); !isVideoSequenceHeader(&m) {
		t.Fatalf("the tee sent %v first", &m)
	}
	o1.kill()
	recv(t, r.failed)
	keys.Store(true)
	ev := waitChan(t, events)
	if ev.Result != FailoverOK || ev.To.ID != "o2" {
		t.Fatalf("event %+v", ev)
	}
	for m := waitChan(t, o2.received); !isKeyframe(&m); m = waitChan(t, o2.received) {
	}
	select {
	case got := <-client:
		t.Fatalf("client saw %s", got)
	default:
	}
	close(stop)
	if err := waitChan(t, done); err != nil {
		t.Fatal(err)
	}
}

// TestTeeRetryBackoff: a tee that keeps failing is tried again after a
// pause that doubles up to teeRetryMax.
func TestTeeRetryBackoff(t *testing.T) {
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for n, w := range want {
		if got := retryAfter(n); got != w {
			t.Errorf("after %d failures: %v, want %v", n, got, w)
		}
	}
	if got := retryAfter(1000); got != teeRetryMax {
		t.Errorf("after many failures: %v", got)
	}
	var tt tees
	tt.retry, tt.fails = map[string]time.Time{}, map[string]int{}
	now := time.Unix(0, 0)
	tt.backoff("o2", now)
	tt.backoff("o2", now)
	if got := tt.retry["o2"].Sub(now); got != 4*time.Second {
		t.Fatalf("second failure: retry in %v", got)
	}
}

// TestTakeOverPick: the tee that takes over is the planned move's target,
// else the primary, else the lowest origin id; never an unlanded tee or an
// old leg kept after a move.
func TestTakeOverPick(t *testing.T) {
	ss := &sourceSet{primary: stream.Origin{ID: "o3"}}
	p := &publisher{c: &conn{s: &Server{}}, ss: ss}
	leg := func(id string, landed bool) *teeLeg {
		return &teeLeg{origin: stream.Origin{ID: id}, landed: landed}
	}
	old := leg("o0", true)
	old.closeAt = time.Now()
	p.t.legs = map[string]*teeLeg{"o0": old, "o1": leg("o1", false), "o5": leg("o5", true), "o4": leg("o4", true),
		"o3": leg("o3", true), "o6": leg("o6", true)}
	for range 20 {
		if got := p.takeOverPick().origin.ID; got != "o3" {
			t.Fatalf("picked %s, want the primary", got)
		}
	}
	ss.set(func(s *sourceSet) { s.target = "o6" })
	if got := p.takeOverPick().origin.ID; got != "o6" {
		t.Fatalf("picked %s, want the target", got)
	}
	ss.set(func(s *sourceSet) { s.target, s.primary = "", stream.Origin{ID: "o9"} })
	for range 20 {
		if got := p.takeOverPick().origin.ID; got != "o3" {
			t.Fatalf("picked %s, want the lowest id", got)
		}
	}
}

// TestReplicaTakesOverRelaysStatus: once a warm replica took over, what
// its origin tells the publisher (an error onStatus) reaches the client,
// as the first origin's did.
func TestReplicaTakesOverRelaysStatus(t *testing.T) {
	o1, o2 := startFakeOrigin(t, ""), startFakeOrigin(t, "")
	ss := &sourceSet{primary: stream.Origin{ID: "o1", RTMP: o1.Addr}, others: []stream.Origin{{ID: "o2", RTMP: o2.Addr}},
		landed: make(chan string, 4)}
	r := &failoverRouter{first: ss.primary, failed: make(chan string, 4),
		reroute: func(stream.Origin) (stream.Origin, error) { return stream.Origin{ID: "o2", RTMP: o2.Addr}, nil }}
	events := make(failoverEvents, 4)
	_, addr := startProxy(t, Config{Router: r, Rerouter: r, Sources: ss, Failovers: events})
	p := dialTestPeer(t, addr)
	p.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if info, err := p.start("rtmp://"+addr+"/live", "s5", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	client := watchClient(p)
	s := startSender(p, 20)
	recv(t, o2.names)
	expectStart(t, o2)
	recv(t, ss.landed)
	o1.kill()
	if ev := waitChan(t, events); ev.Result != FailoverOK || ev.To.ID != "o2" {
		t.Fatalf("event %+v", ev)
	}
	s.finish(t)
	if err := p.command(3, 1, "sayStatus", 0.0, nil); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, client); got != "error status: NetStream.Test.Said said" {
		t.Fatalf("client saw %q", got)
	}
}

// TestTeeQueueBounds: a tee whose origin takes nothing holds at most
// teeQueueMessages messages and teeQueueBytes payload bytes; past them
// put fails at once (the publisher drops the tee) rather than waiting.
func TestTeeQueueBounds(t *testing.T) {
	for _, tt := range []struct {
		name    string
		payload int
		max     int // puts that fit, queued or in the writer's hand
	}{
		{"messages", 10, teeQueueMessages},
		{"bytes", 1 << 20, teeQueueBytes / (1 << 20)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe() // b never reads: every write blocks
			defer b.Close()
			s := &Server{}
			var in, out atomic.Uint64
			l := &originLeg{leg: newLeg(a, &in, &out, DefaultMaxMessageSize, &s.bufs)}
			p := &publisher{c: &conn{s: s}}
			w := p.startWriter(l)
			m := chunk.Message{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Payload: make([]byte, tt.payload)}
			n := 0
			var err error
			for ; n <= tt.max+1; n++ {
				if err = w.put(&m, true, false); err != nil {
					break
				}
			}
			if !errors.Is(err, errTeeBehind) || n != tt.max {
				t.Fatalf("%d puts, then %v; want %d then errTeeBehind", n, err, tt.max)
			}
			a.Close()
			w.close()
			if err := w.put(&m, true, false); err == nil {
				t.Fatal("put after close")
			}
		})
	}
}

// TestStalledTeeDropped: a replica's origin that stops reading does not
// slow the publisher: the primary gets every frame, in order, while the
// tee's queue fills; the tee is dropped and opened again later.
func TestStalledTeeDropped(t *testing.T) {
	o1, o2 := startFakeOrigin(t, ""), startFakeOrigin(t, "")
	o2.stall = true
	ss := &sourceSet{primary: stream.Origin{ID: "o1", RTMP: o1.Addr}, others: []stream.Origin{{ID: "o2", RTMP: o2.Addr}},
		landed: make(chan string, 4)}
	r := &failoverRouter{first: ss.primary, failed: make(chan string, 4),
		reroute: func(stream.Origin) (stream.Origin, error) { return stream.Origin{}, stream.ErrNoOrigin }}
	_, addr := startProxy(t, Config{Router: r, Rerouter: r, Sources: ss})
	p := dialTestPeer(t, addr)
	p.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if info, err := p.start("rtmp://"+addr+"/live", "s6", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	client := watchClient(p)
	stop, done := make(chan struct{}), make(chan error, 1)
	go func() {
		w := p.w
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for n := uint32(1); ; n++ {
			select {
			case <-stop:
				done <- w.Flush()
				return
			case <-tk.C:
			}
			m := chunk.Message{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Timestamp: 5 * n, Payload: make([]byte, 32<<10)}
			m.Payload[0], m.Payload[1] = 0x27, 1
			if n%20 == 1 {
				m.Payload[0] = 0x17
			}
			binary.BigEndian.PutUint32(m.Payload[2:], n)
			if err := w.WriteMessage(&m); err != nil {
				done <- err
				return
			}
			if err := w.Flush(); err != nil {
				done <- err
				return
			}
		}
	}()
	recv(t, o2.names)
	// The primary gets every frame until the tee is opened again.
	deadline := time.Now().Add(15 * time.Second)
	for n := uint32(0); len(o2.names) == 0; n++ {
		if time.Now().After(deadline) {
			t.Fatal("the stalled tee was never opened again")
		}
		m := waitChan(t, o1.ordered)
		if k := frameNumber(&m); k != n+1 {
			t.Fatalf("after frame %d the primary got frame %d", n, k)
		}
	}
	if got := recv(t, o2.names); got != "s6" {
		t.Fatalf("reopened with %q", got)
	}
	close(stop)
	if err := waitChan(t, done); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-client:
		t.Fatalf("client saw %s", got)
	default:
	}
}

// BenchmarkTeePut is the cost of feeding a tee a 4 KiB message over an
// in-memory connection that takes everything: "queued" through the tee's
// writer (the publisher queues a copy, the writer writes it), "direct"
// written by the caller as tees were before they had writers.
func BenchmarkTeePut(b *testing.B) {
	for _, queued := range []bool{true, false} {
		name := "direct"
		if queued {
			name = "queued"
		}
		b.Run(name, func(b *testing.B) {
			a, c := net.Pipe()
			defer c.Close()
			go io.Copy(io.Discard, c)
			s := &Server{}
			var in, out atomic.Uint64
			l := &originLeg{leg: newLeg(a, &in, &out, DefaultMaxMessageSize, &s.bufs)}
			p := &publisher{c: &conn{s: s}}
			w := p.startWriter(l)
			m := chunk.Message{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Payload: make([]byte, 4096)}
			b.SetBytes(int64(len(m.Payload)))
			b.ReportAllocs()
			for b.Loop() {
				if !queued {
					if err := p.sendOn(l, &m, true); err != nil {
						b.Fatal(err)
					}
					continue
				}
				for w.put(&m, true, false) != nil {
					// The queue is full: the writer catches up (a
					// publisher drops the tee instead).
					runtime.Gosched()
				}
			}
			b.StopTimer()
			a.Close()
			w.close()
		})
	}
}
