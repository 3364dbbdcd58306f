package sfu

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/stun/v4"
	pion "github.com/pion/webrtc/v4"
	"github.com/srs-mesh/srs-mesh/stream"
)

func TestTimelineContinuesAcrossUpstreams(t *testing.T) {
	tl := timeline{clock: 90000}
	t0 := time.Unix(1000, 0)
	var seq uint16
	var ts uint32
	for i := 0; i < 10; i++ {
		seq, ts = tl.rewrite(&rtp.Header{SSRC: 1, SequenceNumber: 65530 + uint16(i), Timestamp: 1000 + uint32(i)*3000}, t0.Add(time.Duration(i)*33*time.Millisecond))
	}
	if want := uint16(3); seq != want || ts != 1000+9*3000 {
		t.Fatalf("first upstream rewritten: seq %d ts %d, want it unchanged", seq, ts)
	}
	// Another upstream (new SSRC, unrelated numbering) 100 ms later.
	at := t0.Add(9*33*time.Millisecond + 100*time.Millisecond)
	s2, ts2 := tl.rewrite(&rtp.Header{SSRC: 2, SequenceNumber: 7, Timestamp: 555}, at)
	if s2 != seq+1 {
		t.Errorf("after a new SSRC: seq %d, want %d", s2, seq+1)
	}
	if want := ts + 9000; ts2 != want {
		t.Errorf("after a new SSRC: ts %d, want %d (100 ms at 90 kHz later)", ts2, want)
	}
	s3, ts3 := tl.rewrite(&rtp.Header{SSRC: 2, SequenceNumber: 8, Timestamp: 555 + 3000}, at.Add(33*time.Millisecond))
	if s3 != s2+1 || ts3 != ts2+3000 {
		t.Errorf("next packet: seq %d ts %d, want %d %d", s3, ts3, s2+1, ts2+3000)
	}
	// A retransmission (older) keeps its place and moves nothing.
	if s, _ := tl.rewrite(&rtp.Header{SSRC: 2, SequenceNumber: 7, Timestamp: 555}, at.Add(40*time.Millisecond)); s != s2 {
		t.Errorf("retransmission: seq %d, want %d", s, s2)
	}
	// A new session with the same SSRC (reset) continues too.
	tl.reset()
	s4, _ := tl.rewrite(&rtp.Header{SSRC: 2, SequenceNumber: 40000, Timestamp: 1}, at.Add(time.Second))
	if s4 != s3+1 {
		t.Errorf("after reset: seq %d, want %d", s4, s3+1)
	}
}

func TestCacheIsBounded(t *testing.T) {
	c := newCache(20) // rounded up to 32
	if c.len() != 32 {
		t.Fatalf("cache of %d slots, want 32", c.len())
	}
	for i := 0; i < 100; i++ {
		c.put(&packet{hdr: rtp.Header{SequenceNumber: uint16(65500 + i)}})
	}
	for i := 0; i < 100; i++ {
		seq := uint16(65500 + i)
		got := c.get(seq)
		if inRing := i >= 100-32; (got != nil) != inRing {
			t.Errorf("seq %d: cached %v, want %v", seq, got != nil, inRing)
		}
	}
	if c := newCache(1 << 20); c.len() != 1<<15 {
		t.Errorf("huge cache has %d slots, want %d", c.len(), 1<<15)
	}
}

func TestIsKeyframe(t *testing.T) {
	for _, tc := range []struct {
		name, codec string
		p           []byte
		want        bool
	}{
		{"h264 IDR", "h264", []byte{0x65, 0x88}, true},
		{"h264 SPS", "h264", []byte{0x67, 0x42}, true},
		{"h264 P slice", "h264", []byte{0x41, 0x9a}, false},
		{"h264 STAP-A with SPS", "h264", []byte{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}, true},
		{"h264 STAP-A with SPS second", "h264", []byte{0x78, 0, 2, 0x06, 0x01, 0, 2, 0x67, 0x42}, true},
		{"h264 STAP-A without", "h264", []byte{0x78, 0, 2, 0x06, 0x01, 0, 2, 0x68, 0xce}, false},
		{"h264 STAP-A truncated", "h264", []byte{0x78, 0, 9}, false},
		{"h264 STAP-A zero size", "h264", []byte{0x78, 0, 0, 0x67}, false},
		{"h264 FU-A IDR start", "h264", []byte{0x7c, 0x85, 1}, true},
		{"h264 FU-A IDR middle", "h264", []byte{0x7c, 0x05, 1}, false},
		{"h264 FU-A P start", "h264", []byte{0x7c, 0x81, 1}, false},
		{"h264 FU-A short", "h264", []byte{0x7c}, false},
		{"h264 empty", "h264", nil, false},
		{"vp8 key", "vp8", []byte{0x10, 0x00}, true},
		{"vp8 inter", "vp8", []byte{0x10, 0x01}, false},
		{"vp8 not a start", "vp8", []byte{0x00, 0x00}, false},
		{"vp8 key, extended picture id", "vp8", []byte{0x90, 0x80, 0x81, 0x02, 0x00}, true},
		{"vp8 key, short picture id", "vp8", []byte{0x90, 0x80, 0x02, 0x00}, true},
		{"vp8 truncated", "vp8", []byte{0x90}, false},
		{"vp8 extension past the end", "vp8", []byte{0x90, 0xf0}, false},
		{"opus", "opus", []byte{0x65}, false},
	} {
		if got := isKeyframe(tc.codec, tc.p); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func FuzzIsKeyframe(f *testing.F) {
	for _, seed := range [][]byte{{0x65}, {0x78, 0, 2, 0x67, 0x42}, {0x7c, 0x85}, {0x90, 0x80, 0x81, 0x02, 0x00}, {0x10, 0}} {
		f.Add("h264", seed)
		f.Add("vp8", seed)
	}
	f.Fuzz(func(t *testing.T, codec string, p []byte) {
		isKeyframe(codec, p) // must not panic
	})
}

func TestPacer(t *testing.T) {
	p := pacer{interval: time.Second}
	t0 := time.Unix(5, 0)
	if !p.allow(t0) || p.allow(t0.Add(500*time.Millisecond)) || !p.allow(t0.Add(time.Second)) {
		t.Error("pacer lets through other than once per interval")
	}
}

// fakeUpstream counts the RTCP a group sends upstream.
type fakeUpstream struct{ plis int }

func (f *fakeUpstream) WriteRTCP(pkts []rtcp.Packet) error {
	for _, p := range pkts {
		if _, ok := p.(*rtcp.PictureLossIndication); ok {
			f.plis++
		}
	}
	return nil
}

// testGroup is a group with a fake upstream and no goroutine.
func testGroup(cfg Config) (*group, *fakeUpstream) {
	cfg.Router, cfg.Candidate, cfg.LocalAddr = switchless{}, netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:1")
	cfg.Write = func([]byte, netip.AddrPort) (int, error) { return 0, nil }
	cfg.setDefaults()
	s := &Server{cfg: cfg}
	g := s.newGroup("g", streamKey, "")
	g.tracks[kindVideo].codec = "h264"
	g.tracks[kindVideo].ssrc.Store(42)
	up := &fakeUpstream{}
	g.up = up
	return g, up
}

// testViewer joins a viewer with a queue of n packets to g, connected.
func testViewer(g *group, n int) *viewer {
	v := &viewer{g: g, q: make(chan queued, n), done: make(chan struct{}), out: new(atomic.Uint64)}
	l := append(*g.list.Load(), v)
	g.list.Store(&l)
	return v
}

// video forwards one video packet of upstream sequence number seq.
func video(g *group, seq uint16, key bool) {
	payload := []byte{0x41, 0}
	if key {
		payload = []byte{0x65, 0}
	}
	g.forward(g.tracks[kindVideo], &rtp.Packet{Header: rtp.Header{SSRC: 9, SequenceNumber: seq, Timestamp: uint32(seq) * 3000}, Payload: payload})
}

func drainQueue(v *viewer) []queued {
	var out []queued
	for {
		select {
		case q := <-v.q:
			out = append(out, q)
		default:
			return out
		}
	}
}

func TestNewViewerStartsAtCachedKeyframe(t *testing.T) {
	g, up := testGroup(Config{})
	for seq := uint16(100); seq < 110; seq++ {
		video(g, seq, seq == 104)
	}
	v := testViewer(g, 64)
	if wait := g.start(g.tracks[kindVideo], v); wait {
		t.Fatal("viewer waits for a keyframe although one is cached")
	}
	got := drainQueue(v)
	if len(got) != 6 || got[0].seq != 104 || !got[0].p.keyframe {
		t.Fatalf("cached start queued %d packets from %d, want 6 from the keyframe at 104", len(got), got[0].seq)
	}
	// Without a recent keyframe, the viewer waits and one is requested.
	g2, up2 := testGroup(Config{CachedStart: time.Nanosecond})
	video(g2, 1, true)
	time.Sleep(time.Millisecond) // the keyframe must age past CachedStart
	v2 := testViewer(g2, 64)
	if !g2.start(g2.tracks[kindVideo], v2) {
		t.Fatal("viewer starts at a stale keyframe")
	}
	g2.requestKeyframe(false)
	video(g2, 2, false)
	video(g2, 3, true)
	video(g2, 4, false)
	got = drainQueue(v2)
	if len(got) != 2 || !got[0].p.keyframe {
		t.Fatalf("waiting viewer got %d packets, want the keyframe and the next", len(got))
	}
	if got[0].seq != 2 || got[1].seq != 3 {
		t.Errorf("waiting viewer's numbering %d, %d: want 2, 3 (continuous from its first packet)", got[0].seq, got[1].seq)
	}
	if up.plis != 0 || up2.plis != 1 {
		t.Errorf("PLIs upstream %d and %d, want 0 and 1", up.plis, up2.plis)
	}
}

func TestNACKAnsweredFromCache(t *testing.T) {
	g, _ := testGroup(Config{CacheSize: 16})
	v := testViewer(g, 64)
	video(g, 1, true)
	g.start(g.tracks[kindVideo], v)
	for seq := uint16(2); seq < 40; seq++ {
		video(g, seq, false)
	}
	drainQueue(v)
	g.resend(v, kindVideo, 35)
	g.resend(v, kindVideo, 3) // long gone from a 16-packet cache
	got := drainQueue(v)
	if len(got) != 1 || got[0].seq != 35 || got[0].p.hdr.SequenceNumber != 35 {
		t.Fatalf("NACK of 35 answered with %+v", got)
	}
	st := &g.s.st
	if st.nacks.Load() != 2 || st.nacksServed.Load() != 1 || st.nacksMissed.Load() != 1 {
		t.Errorf("NACKs %d served %d missed %d, want 2 1 1", st.nacks.Load(), st.nacksServed.Load(), st.nacksMissed.Load())
	}
}

func TestKeyframeRequestsAggregated(t *testing.T) {
	g, up := testGroup(Config{KeyframeInterval: time.Hour})
	for i := 0; i < 50; i++ { // fifty viewers' PLIs at once
		g.requestKeyframe(false)
	}
	if up.plis != 1 {
		t.Errorf("%d PLIs upstream for 50 requests, want 1", up.plis)
	}
	g.requestKeyframe(true) // a new upstream asks at once
	if up.plis != 2 || g.s.st.plisUpstream.Load() != 2 || g.s.st.keyframeRequests.Load() != 51 {
		t.Errorf("PLIs %d (counted %d), requests %d", up.plis, g.s.st.plisUpstream.Load(), g.s.st.keyframeRequests.Load())
	}
}

func TestSlowViewerSkipsThenIsKicked(t *testing.T) {
	g, up := testGroup(Config{KeyframeInterval: time.Nanosecond})
	v := testViewer(g, 4)
	video(g, 1, true)
	g.start(g.tracks[kindVideo], v)
	for seq := uint16(2); seq <= 4; seq++ {
		video(g, seq, false)
	}
	video(g, 5, false) // the queue is full: skip to the next keyframe
	st := &g.s.st
	if st.skipped.Load() != 1 || st.queueDrops.Load() != 1 || up.plis != 1 {
		t.Fatalf("after an overflow: skipped %d drops %d PLIs %d", st.skipped.Load(), st.queueDrops.Load(), up.plis)
	}
	got := drainQueue(v)
	video(g, 6, false) // not a keyframe: skipped while waiting
	video(g, 7, true)
	got = drainQueue(v)
	if len(got) != 1 || got[0].seq != 5 {
		t.Fatalf("after the skip the viewer got %+v, want the keyframe as its sequence number 5", got)
	}
	// Two more overflows in a row kick it.
	for seq := uint16(8); seq < 30; seq++ {
		video(g, seq, true)
	}
	select {
	case <-v.done:
	default:
		t.Fatal("viewer not kicked")
	}
	if st.kicked.Load() != 1 {
		t.Errorf("kicked %d", st.kicked.Load())
	}
}

func TestPortBoundsAddresses(t *testing.T) {
	var sent int
	p := newPort(nil, func([]byte, netip.AddrPort) (int, error) { sent++; return 0, nil })
	p.add("abcd", "")
	if p.ClaimBinding([]byte{0}, []byte("zzzz:peer"), netip.MustParseAddrPort("10.0.0.1:1")) {
		t.Error("a Binding request for another ufrag claimed")
	}
	var addrs []netip.AddrPort
	for i := 0; i < 10; i++ {
		a := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(1000+i))
		addrs = append(addrs, a)
		if !p.ClaimBinding([]byte{0}, []byte("abcd:peer"), a) {
			t.Fatalf("Binding request from %v not claimed", a)
		}
	}
	if n := len(p.addrs); n != maxAddrsPerUfrag {
		t.Errorf("%d addresses mapped for one viewer, want %d", n, maxAddrsPerUfrag)
	}
	if p.Take([]byte{0x80}, addrs[0]) || !p.Take([]byte{0x80}, addrs[9]) {
		t.Error("Take: evicted address taken or latest address refused")
	}
	p.remove("abcd")
	if len(p.addrs) != 0 || p.Take([]byte{0x80}, addrs[9]) {
		t.Error("addresses kept after the viewer left")
	}
	// The queue to pion is bounded.
	p.add("q", "")
	for i := 0; i < portQueue+5; i++ {
		p.ClaimBinding([]byte{0}, []byte("q:x"), addrs[9])
	}
	if d := p.dropped.Load(); d < 5 {
		t.Errorf("%d packets dropped past a full queue, want at least 5", d)
	}
}

var streamKey = stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "s"}

// switchless routes nothing; the groups of these tests never attach.
type switchless struct{}

func (switchless) Route(context.Context, stream.Key) (stream.Origin, error) {
	return stream.Origin{}, stream.ErrNoOrigin
}

func (switchless) RoutePlay(context.Context, stream.Key) (stream.Origin, error) {
	return stream.Origin{}, stream.ErrNoOrigin
}

func TestPortChecksIntegrityOfNewAddresses(t *testing.T) {
	p := newPort(nil, func([]byte, netip.AddrPort) (int, error) { return 0, nil })
	const pwd = "0123456789abcdefghijkl"
	p.add("abcd", pwd)
	request := func(key string) []byte {
		m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername("abcd:peer"),
			stun.NewShortTermIntegrity(key), stun.Fingerprint)
		if err != nil {
			t.Fatal(err)
		}
		return m.Raw
	}
	forged, good := netip.MustParseAddrPort("10.0.0.9:9"), netip.MustParseAddrPort("10.0.0.1:1")
	if !p.ClaimBinding(request("wrong-password-000000"), []byte("abcd:peer"), forged) {
		t.Fatal("a forged request for a viewer's ufrag went to the relay")
	}
	if p.Take([]byte{0x80}, forged) || p.integrity.Load() != 1 {
		t.Errorf("forged request mapped its address (integrity drops %d)", p.integrity.Load())
	}
	if !p.ClaimBinding(request(pwd), []byte("abcd:peer"), good) || !p.Take([]byte{0x80}, good) {
		t.Error("a signed request did not map its address")
	}
}

func TestAnswerCodecs(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
	for _, tc := range []struct {
		name         string
		sdp          string
		video, audio string // MimeType, "" for none
	}{
		{"SRS-like", head + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n" +
			"m=video 9 UDP/TLS/RTP/SAVPF 106\r\na=rtpmap:106 H264/90000\r\na=fmtp:106 packetization-mode=1;profile-level-id=42e01f\r\n",
			"video/H264", "audio/opus"},
		{"video only", head + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n", "video/VP8", ""},
		{"rejected audio", head + "m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n", "", ""},
		{"unknown payload type", head + "m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:96 VP8/90000\r\n", "", ""},
		{"payload type not a number", head + "m=video 9 UDP/TLS/RTP/SAVPF x\r\n", "", ""},
		{"application only", head + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", "", ""},
		{"not SDP", "hello", "", ""},
	} {
		got := answerCodecs([]byte(tc.sdp))
		mime := func(k int) string {
			if got[k] == nil {
				return ""
			}
			return got[k].MimeType
		}
		if mime(kindVideo) != tc.video || mime(kindAudio) != tc.audio {
			t.Errorf("%s: video %q audio %q, want %q %q", tc.name, mime(kindVideo), mime(kindAudio), tc.video, tc.audio)
		}
	}
}

func FuzzAnswerCodecs(f *testing.F) {
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"))
	f.Add([]byte("v=0\r\nm=audio 9 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		answerCodecs(b) // must not panic
	})
}

// BenchmarkForward fans one upstream packet out to 1,000 connected
// viewers' queues (timeline, cache, keyframe detection and the per-viewer
// queueing; pion's SRTP and the socket are not included).
func BenchmarkForward(b *testing.B) {
	g, _ := testGroup(Config{QueueLen: 1024})
	var vs []*viewer
	for range 1000 {
		v := testViewer(g, 1024)
		v.begin(kindVideo, nil)
		v.waitKey = false
		vs = append(vs, v)
	}
	payload := make([]byte, 1100)
	payload[0] = 0x41
	t := g.tracks[kindVideo]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g.forward(t, &rtp.Packet{Header: rtp.Header{SSRC: 9, SequenceNumber: uint16(i), Timestamp: uint32(i / 3 * 3000)}, Payload: payload})
		if i%512 == 511 {
			b.StopTimer()
			for _, v := range vs {
				drainQueue(v)
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/viewer")
}

// bigVideo forwards a video packet of upstream sequence number seq with
// an n-byte payload.
func bigVideo(g *group, seq uint16, key bool, n int) {
	payload := make([]byte, n)
	payload[0] = 0x41
	if key {
		payload[0] = 0x65
	}
	g.forward(g.tracks[kindVideo], &rtp.Packet{Header: rtp.Header{SSRC: 9, SequenceNumber: seq, Timestamp: uint32(seq) * 3000}, Payload: payload})
}

// TestViewerQueueBytesBound: a viewer's queue holds at most QueueBytes,
// however many packets it has room for; beyond, its video skips to the
// next keyframe, and a viewer that keeps overflowing is kicked.
func TestViewerQueueBytesBound(t *testing.T) {
	g, _ := testGroup(Config{QueueBytes: 10_000, ViewerBitrate: -1, KeyframeInterval: time.Nanosecond})
	v := testViewer(g, 1024)
	bigVideo(g, 1, true, 1000)
	g.start(g.tracks[kindVideo], v)
	for seq := uint16(2); seq < 20; seq++ {
		bigVideo(g, seq, false, 1000)
	}
	st := &g.s.st
	if q := v.qbytes.Load(); q > 10_000 || q < 9_000 {
		t.Fatalf("queue holds %d bytes, want at most 10000 and close to it", q)
	}
	if st.queueDrops.Load() == 0 || st.skipped.Load() != 1 {
		t.Fatalf("drops %d skips %d after overflowing the queue's bytes", st.queueDrops.Load(), st.skipped.Load())
	}
	var n int64
	for _, q := range drainQueue(v) {
		n += int64(q.p.size)
	}
	v.qbytes.Add(-n) // as the shard's flush does
	for seq := uint16(20); seq < 200; seq++ {
		bigVideo(g, seq, true, 1000)
	}
	select {
	case <-v.done:
	default:
		t.Fatal("a viewer that keeps overflowing its queue's bytes was not kicked")
	}
	if st.kicked.Load() != 1 {
		t.Errorf("kicked %d", st.kicked.Load())
	}
}

// TestViewerBitrateCap: a viewer that drains its queue at once still gets
// no more than its bitrate (after the burst): packets beyond are dropped
// and counted, its video skips to the next keyframe, retransmissions are
// refused, and a viewer that keeps exceeding it is kicked.
func TestViewerBitrateCap(t *testing.T) {
	g, _ := testGroup(Config{ViewerBitrate: 8_000, KeyframeInterval: time.Nanosecond}) // 1000 bytes/s
	v := testViewer(g, 1024)
	v.rate = newBucket(g.s.cfg.ViewerBitrate, g.s.cfg.viewerBurst())
	bigVideo(g, 1, true, 1000)
	g.start(g.tracks[kindVideo], v)
	st := &g.s.st
	var got int
	seq := uint16(2)
	for ; st.rateDrops.Load() == 0 && seq < 1000; seq++ {
		bigVideo(g, seq, false, 1000)
		for _, q := range drainQueue(v) {
			v.qbytes.Add(-int64(q.p.size))
			got += q.p.size
		}
	}
	if st.rateDrops.Load() == 0 {
		t.Fatal("a viewer was sent 1 MB beyond its 1000-byte/s cap")
	}
	if got > minBurst+1000 || got < minBurst-2000 {
		t.Errorf("sent %d bytes before the cap, want its burst of %d", got, minBurst)
	}
	if st.skipped.Load() != 1 || st.queueDrops.Load() != 0 {
		t.Errorf("skips %d queue drops %d", st.skipped.Load(), st.queueDrops.Load())
	}
	drops := st.rateDrops.Load()
	g.resend(v, kindVideo, seq-3)
	if st.rateDrops.Load() != drops+1 || st.nacksServed.Load() != 0 {
		t.Errorf("a retransmission beyond the cap: rate drops %d, served %d", st.rateDrops.Load()-drops, st.nacksServed.Load())
	}
	for i := 0; i < 10; i++ {
		bigVideo(g, seq, true, 1000)
		seq++
	}
	select {
	case <-v.done:
	default:
		t.Fatal("a viewer that keeps exceeding its bitrate was not kicked")
	}
	if st.kicked.Load() != 1 {
		t.Errorf("kicked %d", st.kicked.Load())
	}
}

func TestSameCodec(t *testing.T) {
	c := func(mime string, clock uint32, ch uint16, pt uint8, fmtp string) *pion.RTPCodecParameters {
		return &pion.RTPCodecParameters{PayloadType: pion.PayloadType(pt),
			RTPCodecCapability: pion.RTPCodecCapability{MimeType: mime, ClockRate: clock, Channels: ch, SDPFmtpLine: fmtp}}
	}
	for _, tc := range []struct {
		name string
		a, b *pion.RTPCodecParameters
		want bool
	}{
		{"another payload type", c("video/H264", 90000, 0, 96, "packetization-mode=1"), c("video/h264", 90000, 0, 106, "profile-level-id=42e01f"), true},
		{"another codec", c("video/H264", 90000, 0, 96, ""), c("video/VP8", 90000, 0, 96, ""), false},
		{"another clock rate", c("audio/opus", 48000, 2, 111, ""), c("audio/opus", 16000, 2, 111, ""), false},
		{"another channel count", c("audio/opus", 48000, 2, 111, ""), c("audio/opus", 48000, 1, 111, ""), false},
		{"no channel count is one", c("audio/PCMU", 8000, 0, 0, ""), c("audio/pcmu", 8000, 1, 0, ""), true},
	} {
		if got := sameCodec(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
