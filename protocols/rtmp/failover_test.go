package rtmp

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// failoverRouter routes to first, and reroutes with reroute, recording the
// failed origins it was given.
type failoverRouter struct {
	first   stream.Origin
	reroute func(failed stream.Origin) (stream.Origin, error)
	failed  chan string
}

func (r *failoverRouter) Route(context.Context, stream.Key) (stream.Origin, error) {
	return r.first, nil
}

func (r *failoverRouter) RoutePlay(context.Context, stream.Key) (stream.Origin, error) {
	return r.first, nil
}

func (r *failoverRouter) Reroute(ctx context.Context, key stream.Key, failed stream.Origin) (stream.Origin, error) {
	select {
	case r.failed <- failed.ID:
	default:
	}
	return r.reroute(failed)
}

// healthRouter is a failoverRouter that also says which origins are
// healthy.
type healthRouter struct {
	*failoverRouter
	down atomic.Value // string: the id of the unhealthy origin
}

func (r *healthRouter) OriginHealthy(id string) bool {
	down, _ := r.down.Load().(string)
	return id != down
}

// failoverEvents collects FailoverEvents.
type failoverEvents chan FailoverEvent

func (e failoverEvents) Failover(ev FailoverEvent) { e <- ev }

// mediaSender publishes a synthetic stream on p: metadata and sequence
// headers first, then a frame every 5 ms, a key frame every keyEvery
// frames, audio in between. Each frame's payload carries its number at
// bytes 2..5, and its timestamp is 5 times its number.
type mediaSender struct {
	p        *testPeer
	keyEvery uint32
	stop     chan struct{}
	done     chan error
}

func startSender(p *testPeer, keyEvery uint32) *mediaSender {
	s := &mediaSender{p: p, keyEvery: keyEvery, stop: make(chan struct{}), done: make(chan error, 1)}
	go func() { s.done <- s.run() }()
	return s
}

func (s *mediaSender) run() error {
	w := s.p.w
	meta, _ := appendMeta()
	for _, m := range []chunk.Message{
		{CSID: 4, Type: chunk.TypeDataAMF0, StreamID: 1, Payload: meta},
		{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Payload: []byte{0x17, 0x00, 0, 0, 0, 1, 0x64}},
		{CSID: 4, Type: chunk.TypeAudio, StreamID: 1, Payload: []byte{0xaf, 0x00, 0x12, 0x10}},
	} {
		if err := w.WriteMessage(&m); err != nil {
			return err
		}
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for n := uint32(0); ; n++ {
		select {
		case <-s.stop:
			return w.Flush()
		case <-t.C:
		}
		m := chunk.Message{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Timestamp: 5 * n, Payload: []byte{0x27, 0x01, 0, 0, 0, 0, 0}}
		if n%s.keyEvery == 0 {
			m.Payload[0] = 0x17
		}
		if n%3 == 1 {
			m = chunk.Message{CSID: 4, Type: chunk.TypeAudio, StreamID: 1, Timestamp: 5 * n, Payload: []byte{0xaf, 0x01, 0, 0, 0, 0}}
		}
		binary.BigEndian.PutUint32(m.Payload[2:], n)
		if err := w.WriteMessage(&m); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

func (s *mediaSender) finish(t *testing.T) {
	t.Helper()
	close(s.stop)
	if err := waitChan(t, s.done); err != nil {
		t.Fatalf("publisher: %v", err)
	}
}

func appendMeta() ([]byte, error) {
	return []byte("\x02\x00\x0d@setDataFrame\x02\x00\x0aonMetaData\x03\x00\x00\x09"), nil
}

// watchClient reads what the proxy sends the publisher and reports the
// first error onStatus or the end of the connection.
func watchClient(p *testPeer) chan string {
	out := make(chan string, 1)
	go func() {
		for {
			c, _, err := p.next()
			if err != nil {
				out <- "closed: " + err.Error()
				return
			}
			if c.Name == "onStatus" && c.info().String("level") == levelError {
				out <- "error status: " + c.info().String("code") + " " + c.info().String("description")
				return
			}
		}
	}()
	return out
}

// TestPublisherFailover: the origin of a publisher dies (its connections
// are reset); the proxy keeps the client, moves the stream through the
// Rerouter, replays connect and publish with the same tcUrl query and stream
// name on the new origin, and sends it metadata, sequence headers and then
// the stream from a key frame on, with the client's timestamps. The client
// sees no error and no close.
func TestPublisherFailover(t *testing.T) {
	o1, o2 := startFakeOrigin(t, ""), startFakeOrigin(t, "")
	r := &failoverRouter{
		first:  stream.Origin{ID: "o1", RTMP: o1.Addr},
		failed: make(chan string, 4),
		reroute: func(failed stream.Origin) (stream.Origin, error) {
			return stream.Origin{ID: "o2", RTMP: o2.Addr}, nil
		},
	}
	events := make(failoverEvents, 4)
	_, addr := startProxy(t, Config{Router: r, Rerouter: r, Failovers: events})
	p := dialTestPeer(t, addr)
	p.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if info, err := p.start("rtmp://"+addr+"/live?vhost=v1", "s1?secret=x", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	if got := recv(t, o1.names); got != "s1?secret=x" {
		t.Fatalf("o1 got name %q", got)
	}
	tc1 := recv(t, o1.tcURLs)
	client := watchClient(p)
	s := startSender(p, 40)

	// Wait for o1 to get frames past the first key frame, then kill it.
	for {
		m := waitChan(t, o1.ordered)
		if m.Type == chunk.TypeVideo && len(m.Payload) >= 6 && binary.BigEndian.Uint32(m.Payload[2:]) >= 10 {
			break
		}
	}
	o1.kill()
	killed := time.Now()

	if got := recv(t, o2.names); got != "s1?secret=x" {
		t.Fatalf("o2 got name %q", got)
	}
	if tc2 := recv(t, o2.tcURLs); tc2 != "rtmp://"+o2.Addr+"/live?vhost=v1" || tc1 != "rtmp://"+o1.Addr+"/live?vhost=v1" {
		t.Fatalf("tcUrls %q then %q", tc1, tc2)
	}
	if failed := recv(t, r.failed); failed != "o1" {
		t.Fatalf("rerouted from %q", failed)
	}
	// Metadata, sequence headers, then a key frame first.
	want := []func(*chunk.Message) bool{isMetadata, isVideoSequenceHeader, isAudioSequenceHeader, isKeyframe}
	var first chunk.Message
	for i, ok := range want {
		m := waitChan(t, o2.ordered)
		if !ok(&m) {
			t.Fatalf("message %d on the new origin: %v %x", i, &m, m.Payload)
		}
		first = m
	}
	n := binary.BigEndian.Uint32(first.Payload[2:])
	if n%40 != 0 || n == 0 || first.Timestamp != 5*n {
		t.Fatalf("first frame on the new origin: number %d timestamp %d", n, first.Timestamp)
	}
	// Frames keep coming, in order, with the client's timestamps.
	for i := 0; i < 20; i++ {
		m := waitChan(t, o2.ordered)
		k := binary.BigEndian.Uint32(m.Payload[2:])
		if k != n+1 || m.Timestamp != 5*k {
			t.Fatalf("after %d: frame %d timestamp %d", n, k, m.Timestamp)
		}
		n = k
	}
	ev := waitChan(t, events)
	if ev.Result != FailoverOK || ev.From.ID != "o1" || ev.To.ID != "o2" || ev.Kind != "publish" || ev.Key.Stream != "s1" ||
		ev.Duration <= 0 || ev.Duration > 3*time.Second+time.Since(killed) {
		t.Fatalf("event %+v", ev)
	}
	t.Logf("resumed %v after the failure was seen", ev.Duration)
	select {
	case got := <-client:
		t.Fatalf("client saw %s", got)
	default:
	}
	s.finish(t)
}

// TestPublisherFailoverEnds: when no origin takes the stream within
// FailoverTimeout, or the new origin refuses the publish, the client gets
// an error onStatus and a close.
func TestPublisherFailoverEnds(t *testing.T) {
	refusing := startFakeOrigin(t, "NetStream.Publish.Denied")
	for _, c := range []struct {
		name    string
		reroute func(stream.Origin) (stream.Origin, error)
		result  string
	}{
		{"no origin", func(stream.Origin) (stream.Origin, error) { return stream.Origin{}, stream.ErrNoOrigin }, FailoverNoOrigin},
		{"refused", func(stream.Origin) (stream.Origin, error) {
			return stream.Origin{ID: "o2", RTMP: refusing.Addr}, nil
		}, FailoverRefused},
	} {
		t.Run(c.name, func(t *testing.T) {
			o1 := startFakeOrigin(t, "")
			r := &failoverRouter{first: stream.Origin{ID: "o1", RTMP: o1.Addr}, failed: make(chan string, 64), reroute: c.reroute}
			events := make(failoverEvents, 4)
			const foTimeout = 500 * time.Millisecond
			_, addr := startProxy(t, Config{Router: r, Rerouter: r, Failovers: events, FailoverTimeout: foTimeout})
			p := dialTestPeer(t, addr)
			if info, err := p.start("rtmp://"+addr+"/live", "s2", true); err != nil || info.String("code") != codePublishStart {
				t.Fatalf("%v %v", info, err)
			}
			client := watchClient(p)
			s := startSender(p, 10)
			waitChan(t, o1.ordered)
			start := time.Now() // before the failure, so before the failover's deadline is set
			o1.kill()
			got := recv(t, client)
			if got[:len("error status: "+codePublishFailed)] != "error status: "+codePublishFailed {
				t.Fatalf("client saw %s", got)
			}
			// A lower bound only: a slow machine makes the give-up later, never earlier.
			if c.result == FailoverNoOrigin && time.Since(start) < foTimeout {
				t.Fatalf("gave up after %v, before FailoverTimeout %v", time.Since(start), foTimeout)
			}
			ev := waitChan(t, events)
			if ev.Result != c.result || ev.Err == nil {
				t.Fatalf("event %+v", ev)
			}
			if c.result == FailoverRefused && !errors.Is(ev.Err, ErrOriginRefused) {
				t.Fatalf("refusal error %v", ev.Err)
			}
			close(s.stop)
			<-s.done
		})
	}
}

// TestPublisherWithoutRerouter: with a Router that cannot reroute, the
// publisher is closed when its origin fails, as before failover existed.
func TestPublisherWithoutRerouter(t *testing.T) {
	o1 := startFakeOrigin(t, "")
	_, addr := startProxy(t, Config{Router: routeTo(o1.Addr)})
	p := dialTestPeer(t, addr)
	if info, err := p.start("rtmp://"+addr+"/live", "s3", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	client := watchClient(p)
	s := startSender(p, 10)
	waitChan(t, o1.ordered)
	o1.kill()
	if got := recv(t, client); got[:len("closed")] != "closed" {
		t.Fatalf("client saw %s", got)
	}
	close(s.stop)
	<-s.done
}

// TestPublisherLeavesUnhealthyOrigin: an origin that the mesh marks
// unhealthy while its leg still works (a machine that vanished without
// closing its connections looks like this) is left as if the leg had
// failed.
func TestPublisherLeavesUnhealthyOrigin(t *testing.T) {
	o1, o2 := startFakeOrigin(t, ""), startFakeOrigin(t, "")
	r := &healthRouter{failoverRouter: &failoverRouter{
		first:  stream.Origin{ID: "o1", RTMP: o1.Addr},
		failed: make(chan string, 4),
		reroute: func(failed stream.Origin) (stream.Origin, error) {
			return stream.Origin{ID: "o2", RTMP: o2.Addr}, nil
		},
	}}
	events := make(failoverEvents, 4)
	_, addr := startProxy(t, Config{Router: r, Rerouter: r, OriginHealth: r, Failovers: events})
	p := dialTestPeer(t, addr)
	if info, err := p.start("rtmp://"+addr+"/live", "s4", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	client := watchClient(p)
	s := startSender(p, 20)
	waitChan(t, o1.ordered)
	r.down.Store("o1")
	if got := recv(t, o2.names); got != "s4" {
		t.Fatalf("o2 got name %q", got)
	}
	ev := waitChan(t, events)
	if ev.Result != FailoverOK || ev.From.ID != "o1" || ev.To.ID != "o2" || ev.Reason != reasonUnhealthy {
		t.Fatalf("event %+v", ev)
	}
	select {
	case got := <-client:
		t.Fatalf("client saw %s", got)
	default:
	}
	s.finish(t)
}

// TestPublisherFailoverSkipsDeadOrigin: when the origin the stream moved
// to cannot be reached either, the proxy reroutes again, naming that one as
// failed, until an origin takes the stream.
func TestPublisherFailoverSkipsDeadOrigin(t *testing.T) {
	o1, o3 := startFakeOrigin(t, ""), startFakeOrigin(t, "")
	dead := startFakeOrigin(t, "")
	deadAddr := dead.Addr
	dead.ln.Close()
	r := &failoverRouter{
		first:  stream.Origin{ID: "o1", RTMP: o1.Addr},
		failed: make(chan string, 16),
		reroute: func(failed stream.Origin) (stream.Origin, error) {
			if failed.ID == "o1" {
				return stream.Origin{ID: "o2", RTMP: deadAddr}, nil
			}
			return stream.Origin{ID: "o3", RTMP: o3.Addr}, nil
		},
	}
	events := make(failoverEvents, 4)
	_, addr := startProxy(t, Config{Router: r, Rerouter: r, Failovers: events})
	p := dialTestPeer(t, addr)
	if info, err := p.start("rtmp://"+addr+"/live", "s5", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	s := startSender(p, 20)
	waitChan(t, o1.ordered)
	o1.kill()
	if got := recv(t, o3.names); got != "s5" {
		t.Fatalf("o3 got name %q", got)
	}
	if a, b := recv(t, r.failed), recv(t, r.failed); a != "o1" || b != "o2" {
		t.Fatalf("rerouted from %q then %q", a, b)
	}
	if ev := waitChan(t, events); ev.Result != FailoverOK || ev.To.ID != "o3" {
		t.Fatalf("event %+v", ev)
	}
	s.finish(t)
}

// TestPublisherKickedNoFailover: an origin that closes a publisher's leg
// and still accepts connections ended the session on purpose (a kick): the
// client's connection ends and the stream does not move.
func TestPublisherKickedNoFailover(t *testing.T) {
	o1, o2 := startFakeOrigin(t, ""), startFakeOrigin(t, "")
	r := &failoverRouter{
		first:  stream.Origin{ID: "o1", RTMP: o1.Addr},
		failed: make(chan string, 4),
		reroute: func(failed stream.Origin) (stream.Origin, error) {
			return stream.Origin{ID: "o2", RTMP: o2.Addr}, nil
		},
	}
	_, addr := startProxy(t, Config{Router: r, Rerouter: r})
	p := dialTestPeer(t, addr)
	p.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if info, err := p.start("rtmp://"+addr+"/live", "s1", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	recv(t, o1.names)
	client := watchClient(p)
	s := startSender(p, 40)
	waitChan(t, o1.ordered)
	o1.kick()
	if got := waitChan(t, client); !strings.HasPrefix(got, "closed") && !strings.HasPrefix(got, "error status") {
		t.Fatalf("client saw %q", got)
	}
	select {
	case f := <-r.failed:
		t.Fatalf("rerouted off %s after a kick", f)
	case name := <-o2.names:
		t.Fatalf("published %q on another origin after a kick", name)
	default:
	}
	close(s.stop)
	waitChan(t, s.done) // its writes fail: the connection is closed
}

// TestPublisherResetNoFailover: a publisher's leg that breaks with a reset
// (or a broken pipe) while its origin still accepts connections is that
// session's error, whatever the error: the stream does not move. A client
// can provoke such a reset (a message the origin refuses), so it must not
// be able to move its stream off a healthy origin.
func TestPublisherResetNoFailover(t *testing.T) {
	o1, o2 := startFakeOrigin(t, ""), startFakeOrigin(t, "")
	r := &failoverRouter{
		first:  stream.Origin{ID: "o1", RTMP: o1.Addr},
		failed: make(chan string, 4),
		reroute: func(failed stream.Origin) (stream.Origin, error) {
			return stream.Origin{ID: "o2", RTMP: o2.Addr}, nil
		},
	}
	events := make(failoverEvents, 4)
	_, addr := startProxy(t, Config{Router: r, Failovers: events})
	p := dialTestPeer(t, addr)
	p.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if info, err := p.start("rtmp://"+addr+"/live", "s1", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	recv(t, o1.names)
	client := watchClient(p)
	s := startSender(p, 40)
	waitChan(t, o1.ordered)
	o1.reset()
	if got := waitChan(t, client); !strings.HasPrefix(got, "closed") && !strings.HasPrefix(got, "error status") {
		t.Fatalf("client saw %q", got)
	}
	close(s.stop)
	waitChan(t, s.done)
	select {
	case f := <-r.failed:
		t.Fatalf("rerouted off %s after a reset of a live origin", f)
	case name := <-o2.names:
		t.Fatalf("published %q on another origin after a reset", name)
	case ev := <-events:
		t.Fatalf("failover after a reset: %+v", ev)
	default:
	}
}

// TestOversizedMessageRefused: a publisher's message above MaxMessageSize
// is refused at the node: the client gets an error onStatus, the origin
// gets nothing of it, the refusal is counted, and the stream does not move.
func TestOversizedMessageRefused(t *testing.T) {
	o1, o2 := startFakeOrigin(t, ""), startFakeOrigin(t, "")
	r := &failoverRouter{
		first:  stream.Origin{ID: "o1", RTMP: o1.Addr},
		failed: make(chan string, 4),
		reroute: func(failed stream.Origin) (stream.Origin, error) {
			return stream.Origin{ID: "o2", RTMP: o2.Addr}, nil
		},
	}
	const max = 64 << 10
	srv, addr := startProxy(t, Config{Router: r, MaxMessageSize: max})
	p := dialTestPeer(t, addr)
	p.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if info, err := p.start("rtmp://"+addr+"/live", "s1", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	recv(t, o1.names)
	client := watchClient(p)
	ok := chunk.Message{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Payload: make([]byte, max)}
	ok.Payload[0] = 0x17
	big := chunk.Message{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Timestamp: 40, Payload: make([]byte, max+1)}
	big.Payload[0] = 0x27
	if err := p.w.WriteMessage(&ok); err != nil {
		t.Fatal(err)
	}
	p.w.Flush()
	if m := waitChan(t, o1.ordered); len(m.Payload) != max {
		t.Fatalf("origin got a message of %d bytes, want the %d-byte one", len(m.Payload), max)
	}
	if err := p.w.WriteMessage(&big); err == nil { // the node may close before the whole message is sent
		p.w.Flush()
	}
	got := waitChan(t, client)
	if !strings.HasPrefix(got, "error status: "+codePublishFailed) || !strings.Contains(got, "larger than") {
		t.Fatalf("client saw %q", got)
	}
	testkit.WaitFor(t, 5*time.Second, "the refusal counted", func() bool { return srv.Stats().OversizedMessages == 1 })
	select {
	case m := <-o1.ordered:
		t.Fatalf("origin got a message of %d bytes after the refusal", len(m.Payload))
	case f := <-r.failed:
		t.Fatalf("rerouted off %s", f)
	case name := <-o2.names:
		t.Fatalf("published %q on another origin", name)
	default:
	}
}

// publishRouter is a Router and a Publisher: it
// routes publishes to first and assigns accepted ones to assign.
type publishRouter struct {
	first, assign stream.Origin
	accepted      chan string
}

func (r *publishRouter) Route(context.Context, stream.Key) (stream.Origin, error) {
	return stream.Origin{}, errors.New("publishes must not use Route")
}

func (r *publishRouter) RoutePlay(context.Context, stream.Key) (stream.Origin, error) {
	return stream.Origin{}, errors.New("publishes must not use RoutePlay")
}

func (r *publishRouter) RoutePublish(context.Context, stream.Key) (stream.Origin, error) {
	return r.first, nil
}

func (r *publishRouter) PublishAccepted(_ context.Context, _ stream.Key, o stream.Origin) (stream.Origin, error) {
	r.accepted <- o.ID
	return r.assign, nil
}

// A publish is reported accepted only once its origin accepted it: a
// refused one never is (the mesh writes nothing for it). When the stream
// is assigned elsewhere meanwhile, the publish is replayed on that origin.
func TestPublishAcceptedOnlyAfterTheOrigin(t *testing.T) {
	refusing, o1, o2 := startFakeOrigin(t, "NetStream.Publish.Denied"), startFakeOrigin(t, ""), startFakeOrigin(t, "")
	t.Run("refused", func(t *testing.T) {
		r := &publishRouter{first: stream.Origin{ID: "r", RTMP: refusing.Addr}, accepted: make(chan string, 4)}
		_, addr := startProxy(t, Config{Router: r, Publisher: r})
		p := dialTestPeer(t, addr)
		p.nc.SetDeadline(time.Now().Add(10 * time.Second))
		if info, err := p.start("rtmp://"+addr+"/live", "s1", true); err == nil && info.String("code") == codePublishStart {
			t.Fatalf("a refused publish started: %v", info)
		}
		recv(t, refusing.names)
		select {
		case id := <-r.accepted:
			t.Fatalf("a refused publish was reported accepted on %s", id)
		default:
		}
	})
	t.Run("assigned elsewhere", func(t *testing.T) {
		r := &publishRouter{first: stream.Origin{ID: "o1", RTMP: o1.Addr}, assign: stream.Origin{ID: "o2", RTMP: o2.Addr},
			accepted: make(chan string, 4)}
		_, addr := startProxy(t, Config{Router: r, Publisher: r})
		p := dialTestPeer(t, addr)
		p.nc.SetDeadline(time.Now().Add(10 * time.Second))
		if info, err := p.start("rtmp://"+addr+"/live", "s2", true); err != nil || info.String("code") != codePublishStart {
			t.Fatalf("%v %v", info, err)
		}
		if id := recv(t, r.accepted); id != "o1" {
			t.Fatalf("accepted on %s", id)
		}
		recv(t, o1.names)
		if got := recv(t, o2.names); got != "s2" {
			t.Fatalf("o2 got %q", got)
		}
		s := startSender(p, 10)
		if m := waitChan(t, o2.ordered); m.Type != chunk.TypeDataAMF0 {
			t.Fatalf("o2 got %v first", &m)
		}
		s.finish(t)
	})
}

// A message above MaxMessageSize before publish or play (a command, say)
// ends the session at once: counted as oversized, not relayed anywhere.
func TestOversizedMessageDuringSetUp(t *testing.T) {
	o := startFakeOrigin(t, "")
	srv, addr := startProxy(t, Config{Router: routeTo(o.Addr), MaxMessageSize: 4096})
	p := dialTestPeer(t, addr)
	big := chunk.Message{CSID: 3, Type: chunk.TypeCommandAMF0, Payload: make([]byte, 4097)}
	if err := p.w.WriteMessage(&big); err == nil {
		p.w.Flush()
	}
	if _, _, err := p.next(); err == nil {
		t.Fatal("the session went on after an oversized message")
	}
	testkit.WaitFor(t, 5*time.Second, "the refusal counted", func() bool { return srv.Stats().OversizedMessages == 1 })
	if st := srv.Stats(); st.ClientFailures != 0 {
		t.Fatalf("also counted as %d client failures", st.ClientFailures)
	}
	select {
	case name := <-o.names:
		t.Fatalf("the origin was asked for %q", name)
	default:
	}
}
