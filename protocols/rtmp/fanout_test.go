package rtmp

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// playMedia plays name through the proxy at addr and returns the first n
// audio and video messages it gets.
func playMedia(t *testing.T, addr, name string, n int) []chunk.Message {
	t.Helper()
	p := dialTestPeer(t, addr)
	info, err := p.start("rtmp://"+addr+"/live", name, false)
	if err != nil {
		t.Fatal(err)
	}
	if info.String("code") != codePlayReset {
		t.Fatalf("first status %v", info)
	}
	return readMedia(t, p, n)
}

func readMedia(t *testing.T, p *testPeer, n int) []chunk.Message {
	t.Helper()
	var got []chunk.Message
	for len(got) < n {
		m, err := p.r.ReadMessage()
		if err != nil {
			t.Fatalf("after %d media messages: %v", len(got), err)
		}
		if m.Type == chunk.TypeVideo || m.Type == chunk.TypeAudio {
			if m.StreamID != fanStreamID {
				t.Fatalf("media on stream %d", m.StreamID)
			}
			m.Payload = bytes.Clone(m.Payload)
			got = append(got, m)
		}
	}
	return got
}

func testMedia() []chunk.Message {
	key := append([]byte{0x17, 1, 0, 0, 0}, payload(100000)...) // a keyframe, chunked
	return []chunk.Message{
		{CSID: 6, Type: chunk.TypeVideo, Payload: []byte{0x17, 0, 0, 0, 0, 1, 2, 3}}, // sequence header
		{CSID: 4, Type: chunk.TypeAudio, Payload: []byte{0xaf, 0, 0x12, 0x10}},       // AAC sequence header
		{CSID: 6, Type: chunk.TypeVideo, Timestamp: 0x1000000, Payload: key},
		{CSID: 4, Type: chunk.TypeAudio, Timestamp: 0x1000017, Payload: []byte{0xaf, 1, 9, 9}},
	}
}

func TestSharedPlay(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/rtmp.")
	o := startFakeOrigin(t, "")
	o.media = testMedia()
	fan := newFanOut(t, fanout.Config{})
	_, addr := startProxy(t, Config{Router: routeTo(o.Addr), FanOut: fan})
	first := playMedia(t, addr, "s?token=a", 4)
	second := playMedia(t, addr, "s?token=a", 4)
	for i, want := range o.media {
		for _, got := range [][]chunk.Message{first, second} {
			if got[i].Timestamp != want.Timestamp || got[i].Type != want.Type || !bytes.Equal(got[i].Payload, want.Payload) {
				t.Fatalf("media %d: %v, want %v", i, &got[i], &want)
			}
		}
	}
	if name := recv(t, o.names); name != "s?token=a" {
		t.Errorf("origin was asked for %q", name)
	}
	select {
	case name := <-o.names:
		t.Fatalf("a second origin play (%q) for the same stream and query", name)
	default:
	}
	// Another query is another upstream: it is authorized on its own.
	playMedia(t, addr, "s?token=b", 1)
	if name := recv(t, o.names); name != "s?token=b" {
		t.Errorf("origin was asked for %q", name)
	}
	if st := fan.Stats(); st.Upstreams != 2 {
		t.Errorf("hub stats %+v", st)
	}
}

func TestSharedPlayRefused(t *testing.T) {
	o := startFakeOrigin(t, "NetStream.Play.Forbidden")
	_, addr := startProxy(t, Config{Router: routeTo(o.Addr), FanOut: newFanOut(t, fanout.Config{})})
	p := dialTestPeer(t, addr)
	info, err := p.start("rtmp://"+addr+"/live", "s?token=bad", false)
	if err != nil {
		t.Fatal(err)
	}
	if info.String("level") != levelError || info.String("code") != codePlayFailed {
		t.Fatalf("status %v, want the refusal", info)
	}
}

// killable forwards connections to an origin until kill, which resets
// every one of them as a dying origin would.
type killable struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startKillable(t *testing.T, to string) *killable {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &killable{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { k.kill(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			k.mu.Lock()
			k.conns = append(k.conns, c, u)
			k.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(u, c); u.Close() }()
			go func() { defer wg.Done(); io.Copy(c, u); c.Close() }()
		}
	}()
	return k
}

func (k *killable) kill() {
	k.ln.Close()
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, c := range k.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
}

// newFanOut returns a registry of shared upstreams for a proxy of the
// test, closed after the proxy (when made before startProxy).
func newFanOut(t testing.TB, cfg fanout.Config) *fanout.Registry {
	r := fanout.NewRegistry(cfg)
	t.Cleanup(func() { r.Close() })
	return r
}

func TestSharedPlayReattaches(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/rtmp.")
	a, b := startFakeOrigin(t, ""), startFakeOrigin(t, "")
	a.media = testMedia()
	b.media = []chunk.Message{
		{CSID: 6, Type: chunk.TypeVideo, Payload: []byte{0x17, 0, 0, 0, 0, 4, 5, 6}},
		{CSID: 6, Type: chunk.TypeVideo, Timestamp: 500, Payload: []byte{0x17, 1, 0, 0, 0, 7}},
		{CSID: 6, Type: chunk.TypeVideo, Timestamp: 540, Payload: []byte{0x27, 1, 0, 0, 0, 8}},
	}
	front := startKillable(t, a.Addr)
	var at atomic.Value
	at.Store(front.ln.Addr().String())
	router := &fakeRouter{route: func(context.Context, stream.Key) (stream.Origin, error) {
		addr := at.Load().(string)
		id := "a"
		if addr == b.Addr {
			id = "b"
		}
		return stream.Origin{ID: id, RTMP: addr}, nil
	}}
	reports := make(chan fanout.Reattach, 1)
	_, addr := startProxy(t, Config{Router: router, FanOut: newFanOut(t, fanout.Config{Reattach: 5 * time.Second,
		OnReattach: func(r fanout.Reattach) { reports <- r }})})
	p := dialTestPeer(t, addr)
	if _, err := p.start("rtmp://"+addr+"/live", "s", false); err != nil {
		t.Fatal(err)
	}
	before := readMedia(t, p, 4)
	at.Store(b.Addr)
	front.kill()
	after := readMedia(t, p, 3)
	if !bytes.Equal(after[0].Payload, b.media[0].Payload) {
		t.Errorf("the new origin's sequence header did not come first: %x", after[0].Payload)
	}
	last := before[len(before)-1].Timestamp
	for i, m := range after {
		if int32(m.Timestamp-last) < 0 {
			t.Errorf("message %d after the switch at %d, before %d", i, m.Timestamp, last)
		}
		last = m.Timestamp
	}
	if d := after[2].Timestamp - after[1].Timestamp; d != 40 {
		t.Errorf("frame spacing after the switch %d, want 40", d)
	}
	r := waitChan(t, reports)
	if r.Err != nil || r.Origins.From != "a" || r.Origins.To != "b" || r.Subscribers != 1 || fanout.StreamOf(r.Key) != "__defaultVhost__/live/s" || r.Took <= 0 {
		t.Errorf("re-attach report %+v", r)
	}
}

// TestSharedPlayNginx plays one nginx-rtmp stream with several FFmpeg
// players through the proxy: they decode, and share one upstream.
func TestSharedPlayNginx(t *testing.T) {
	harness.Need(t, "ffmpeg")
	n := harness.StartNginx(t, harness.NginxOptions{})
	fan := newFanOut(t, fanout.Config{})
	s, addr := startProxy(t, Config{Router: routeTo(n.RTMPAddr), FanOut: fan})
	pub := harness.PublishRTMP(t, "rtmp://"+n.RTMPAddr+"/live/s")
	harness.PlayUntil(t, "rtmp://"+n.RTMPAddr+"/live/s", 2*time.Second, 10, 20*time.Second)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := harness.PlayUntil(t, "rtmp://"+addr+"/live/s", 3*time.Second, 30, 30*time.Second)
			t.Logf("played %d frames", res.VideoFrames)
		}()
	}
	testkit.WaitFor(t, 20*time.Second, "three players on one upstream", func() bool {
		st := fan.Stats()
		return st.Subscribers == 3 && st.Upstreams == 1
	})
	wg.Wait()
	if pub.Exited() {
		t.Fatalf("publisher exited: %s", pub.Output())
	}
	// Players that went away are noticed by the writer (no goroutine of
	// theirs reads), and their sessions end.
	testkit.WaitFor(t, 10*time.Second, "the players' sessions to end", func() bool {
		return fan.Stats().Subscribers == 0 && s.Stats().Players == 0
	})
}

// discardConn is a net.Conn whose writes go nowhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error)      { return len(b), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

func TestFanWriterAllocs(t *testing.T) {
	var in, out atomic.Uint64
	var pool bufPool
	l := newLeg(discardConn{}, &in, &out, 1<<20, &pool)
	l.w.SetChunkSize(clientChunkSize)
	w := fanWriter{l: l, sid: 1, idle: time.Second, out: &out}
	bufs := net.Buffers{fanout.Header(true, true)}
	for _, m := range testMedia() {
		bufs = append(bufs, fanout.NewTag(m.Type, m.Timestamp, m.Payload).Data)
	}
	batch := make(net.Buffers, len(bufs))
	w.write(bufs) // grows the arena and the iovec once
	if n := testing.AllocsPerRun(100, func() {
		copy(batch, bufs)
		if err := w.write(batch); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per batch of %d messages, want 0", n, len(bufs)-1)
	}
}

// TestFanWriterFraming: what a fan-out player receives parses as the same
// messages, chunked and with extended timestamps.
func TestFanWriterFraming(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	var in, out atomic.Uint64
	var pool bufPool
	l := newLeg(c1, &in, &out, 1<<20, &pool)
	w := fanWriter{l: l, sid: 1, out: &out}
	media := testMedia()
	bufs := net.Buffers{fanout.Header(true, true)}
	for _, m := range media {
		bufs = append(bufs, fanout.NewTag(m.Type, m.Timestamp, m.Payload).Data)
	}
	errc := make(chan error, 1)
	go func() {
		l.mu.Lock()
		l.w.SetChunkSize(4096)
		l.mu.Unlock()
		errc <- w.write(bufs)
	}()
	r := chunk.NewReader(c2, 1<<20, 4096)
	for i, want := range media {
		for {
			m, err := r.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if m.Type == chunk.TypeSetChunkSize {
				continue
			}
			if m.Type != want.Type || m.Timestamp != want.Timestamp || m.StreamID != 1 || !bytes.Equal(m.Payload, want.Payload) {
				t.Fatalf("message %d: %v, want %v", i, &m, &want)
			}
			break
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	_ = binary.BigEndian
}
