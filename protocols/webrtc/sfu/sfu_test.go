package sfu_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pionwebrtc "github.com/pion/webrtc/v4"

	"github.com/srs-mesh/srs-mesh/protocols/webrtc"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc/sfu"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc/webrtctest"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// switchRouter routes every stream to its current origin.
type switchRouter struct {
	mu sync.Mutex
	o  stream.Origin
}

func (r *switchRouter) set(o stream.Origin) {
	r.mu.Lock()
	r.o = o
	r.mu.Unlock()
}

func (r *switchRouter) Route(context.Context, stream.Key) (stream.Origin, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.o, nil
}

func (r *switchRouter) RoutePlay(ctx context.Context, k stream.Key) (stream.Origin, error) {
	return r.Route(ctx, k)
}

// node is a relay and a fan-out sharing one UDP port, with signalling on
// an HTTP test server.
type node struct {
	relay *webrtc.Server
	fan   *sfu.Server
	url   string
	store *webrtc.MemorySessionStore
}

func startNode(t *testing.T, router stream.Router, cfg sfu.Config) *node {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	local := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	var relay atomic.Pointer[webrtc.Server]
	cfg.Router, cfg.Candidate, cfg.LocalAddr = router, local, local
	cfg.Logger = slog.New(slog.DiscardHandler)
	store := webrtc.NewMemorySessionStore()
	cfg.Store, cfg.Activity, cfg.NodeID, cfg.NodeRTC = store, store, "n", local
	if cfg.TouchInterval == 0 {
		cfg.TouchInterval = 20 * time.Millisecond
	}
	cfg.Write = func(p []byte, to netip.AddrPort) (int, error) { return relay.Load().WriteToUDPAddrPort(p, to) }
	cfg.Conn = pc // the fan-out writes to the socket itself, in batches
	fan, err := sfu.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rcfg := webrtc.Config{Router: router, Store: store, Candidate: local,
		Viewers: fan, Tap: fan, OfferRate: -1}
	if cfg.Standbys != nil {
		rcfg.Standbys = fan
	}
	rs, err := webrtc.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	relay.Store(rs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		rs.ServeUDP(pc)
	}()
	hs := httptest.NewServer(rs.Handler())
	t.Cleanup(func() {
		hs.Close()
		fan.Close()
		rs.Close()
		<-done
	})
	return &node{relay: rs, fan: fan, url: hs.URL, store: store}
}

// viewer is a WHEP client that counts packets and sequence jumps.
type viewer struct {
	pc                  *pionwebrtc.PeerConnection
	location            string
	video, audio, jumps atomic.Uint64
	wg                  sync.WaitGroup
}

func startViewer(t *testing.T, api *pionwebrtc.API, url string) *viewer {
	t.Helper()
	pc, err := api.NewPeerConnection(pionwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	v := &viewer{pc: pc}
	t.Cleanup(func() {
		pc.Close()
		v.wg.Wait()
	})
	for _, k := range []pionwebrtc.RTPCodecType{pionwebrtc.RTPCodecTypeVideo, pionwebrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, pionwebrtc.RTPTransceiverInit{Direction: pionwebrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *pionwebrtc.TrackRemote, _ *pionwebrtc.RTPReceiver) {
		n := &v.audio
		if tr.Kind() == pionwebrtc.RTPCodecTypeVideo {
			n = &v.video
		}
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			var last uint16
			for i := 0; ; i++ {
				p, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				if d := p.SequenceNumber - last; i > 0 && d > 100 && d < 65536-100 {
					v.jumps.Add(1)
				}
				last = p.SequenceNumber
				n.Add(1)
			}
		}()
	})
	v.location = signal(t, pc, url)
	return v
}

func signal(t *testing.T, pc *pionwebrtc.PeerConnection, url string) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pionwebrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	resp, err := http.Post(url, "application/sdp", strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, body)
	}
	if err := pc.SetRemoteDescription(pionwebrtc.SessionDescription{Type: pionwebrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		t.Fatal(err)
	}
	return resp.Header.Get("Location")
}

func startOrigin(t *testing.T) *webrtctest.Origin {
	t.Helper()
	o, err := webrtctest.Start(webrtctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// publish sends synthetic H.264 and Opus to an origin directly.
func publish(t *testing.T, api *pionwebrtc.API, o *webrtctest.Origin, name string) {
	t.Helper()
	p, err := webrtctest.NewPublisher(api)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	signal(t, p.PC, "http://"+o.API+"/rtc/v1/whip/?app=live&stream="+name)
	p.Start()
	testkit.WaitFor(t, 10*time.Second, "origin receives the publish", func() bool { return o.Tracks("live", name) == 2 })
}

// TestFanOut plays one stream with several viewers through one node: one
// upstream session at the origin, media at every viewer, and the
// upstream ends with the last viewer.
func TestFanOut(t *testing.T) {
	api, err := webrtctest.ClientAPI()
	if err != nil {
		t.Fatal(err)
	}
	o := startOrigin(t)
	publish(t, api, o, "s")
	base := o.Sessions()
	n := startNode(t, &switchRouter{o: o.StreamOrigin("o1")}, sfu.Config{})
	var vs []*viewer
	for i := 0; i < 5; i++ {
		vs = append(vs, startViewer(t, api, n.url+"/rtc/v1/whep/?app=live&stream=s"))
	}
	for _, v := range vs {
		testkit.WaitFor(t, 10*time.Second, "viewer receives video and audio", func() bool {
			return v.video.Load() > 20 && v.audio.Load() > 20
		})
	}
	if got := o.Sessions(); got != base+1 {
		t.Errorf("origin sessions %d, want %d", got, base+1)
	}
	st := n.fan.Stats()
	if st.Viewers != 5 || st.Upstreams != 1 {
		t.Errorf("stats %+v", st)
	}
	// Each viewer's session is stored, naming the node, and kept alive.
	if n.store.Len() != 5 {
		t.Errorf("%d sessions stored for 5 viewers", n.store.Len())
	}
	sess, ok := n.store.LookupRTCSession(sessionOf(t, vs[0].location))
	if !ok || sess.OriginID != "node:n" || sess.Key != "__defaultVhost__/live/s" || sess.Pwd == "" {
		t.Errorf("viewer's session %+v", sess)
	}
	testkit.WaitFor(t, 5*time.Second, "the viewer's session is touched", func() bool {
		s, _ := n.store.LookupRTCSession(sess.Ufrag)
		return s.LastActiveUnixMs > 0
	})
	for _, v := range vs {
		v.pc.Close()
	}
	testkit.WaitFor(t, 10*time.Second, "viewers and upstream gone", func() bool {
		st := n.fan.Stats()
		return st.Viewers == 0 && st.Upstreams == 0 && o.Sessions() == base && n.store.Len() == 0
	})
}

// sessionOf is the stored session a viewer's Location names.
func sessionOf(t *testing.T, location string) string {
	t.Helper()
	u, err := url.Parse(location)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get(webrtc.SessionParam)
}

// TestRideThrough moves the stream to another origin while viewers play:
// the upstream re-attaches there, the viewers' connections stay up, their
// sequence numbers go on, and the first origin's session ends.
func TestRideThrough(t *testing.T) {
	api, err := webrtctest.ClientAPI()
	if err != nil {
		t.Fatal(err)
	}
	a, b := startOrigin(t), startOrigin(t)
	publish(t, api, a, "s")
	publish(t, api, b, "s")
	baseA, baseB := a.Sessions(), b.Sessions()
	router := &switchRouter{o: a.StreamOrigin("a")}
	n := startNode(t, router, sfu.Config{})
	var vs []*viewer
	for i := 0; i < 3; i++ {
		vs = append(vs, startViewer(t, api, n.url+"/rtc/v1/whep/?app=live&stream=s"))
	}
	for _, v := range vs {
		testkit.WaitFor(t, 10*time.Second, "viewer receives video", func() bool { return v.video.Load() > 20 })
	}
	router.set(b.StreamOrigin("b"))
	n.fan.Moved(stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "s"})
	testkit.WaitFor(t, 10*time.Second, "upstream on b, none on a", func() bool {
		return b.Sessions() == baseB+1 && a.Sessions() == baseA
	})
	before := make([]uint64, len(vs))
	for i, v := range vs {
		before[i] = v.video.Load()
	}
	for i, v := range vs {
		testkit.WaitFor(t, 10*time.Second, "viewer receives video from b", func() bool { return v.video.Load() > before[i]+50 })
		if st := v.pc.ConnectionState(); st != pionwebrtc.PeerConnectionStateConnected {
			t.Errorf("viewer %d: %s", i, st)
		}
		if j := v.jumps.Load(); j != 0 {
			t.Errorf("viewer %d: %d sequence jumps across the move", i, j)
		}
	}
	if st := n.fan.Stats(); st.Reattaches != 1 || st.Upstreams != 1 || st.Viewers != 3 {
		t.Errorf("stats after the move: %+v", st)
	}
}

// TestViewerLimits refuses viewers past the per-stream and per-node
// bounds with 503, and admits them again once others left.
func TestViewerLimits(t *testing.T) {
	api, err := webrtctest.ClientAPI()
	if err != nil {
		t.Fatal(err)
	}
	o := startOrigin(t)
	publish(t, api, o, "s")
	publish(t, api, o, "t")
	n := startNode(t, &switchRouter{o: o.StreamOrigin("o")}, sfu.Config{MaxViewersPerStream: 2, MaxViewers: 3})
	url := func(name string) string { return n.url + "/rtc/v1/whep/?app=live&stream=" + name }
	v1 := startViewer(t, api, url("s"))
	startViewer(t, api, url("s"))
	if code := offerStatus(t, api, url("s")); code != http.StatusServiceUnavailable {
		t.Errorf("third viewer of a stream: %d, want 503", code)
	}
	startViewer(t, api, url("t"))
	if code := offerStatus(t, api, url("t")); code != http.StatusServiceUnavailable {
		t.Errorf("fourth viewer of the node: %d, want 503", code)
	}
	if st := n.fan.Stats(); st.Refused != 2 || st.Viewers != 3 { // before the long query
		t.Errorf("stats %+v", st)
	}
	if code := offerStatus(t, api, url("s")+"&x="+strings.Repeat("a", sfu.MaxQuery)); code != http.StatusBadRequest {
		t.Errorf("viewer with a %d-byte query: %d, want 400", sfu.MaxQuery, code)
	}
	v1.pc.Close()
	testkit.WaitFor(t, 10*time.Second, "a viewer left", func() bool { return n.fan.Stats().Viewers == 2 })
	startViewer(t, api, url("s"))
}

// offerStatus POSTs a viewer's offer and returns the status.
func offerStatus(t *testing.T, api *pionwebrtc.API, url string) int {
	t.Helper()
	pc, err := api.NewPeerConnection(pionwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.AddTransceiverFromKind(pionwebrtc.RTPCodecTypeVideo, pionwebrtc.RTPTransceiverInit{Direction: pionwebrtc.RTPTransceiverDirectionRecvonly})
	offer, _ := pc.CreateOffer(nil)
	pc.SetLocalDescription(offer)
	resp, err := http.Post(url, "application/sdp", strings.NewReader(offer.SDP))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestViewersEndWhenStreamLost closes the only origin: the upstream cannot
// re-attach, and after ReattachTimeout its viewers and the upstream end.
func TestViewersEndWhenStreamLost(t *testing.T) {
	api, err := webrtctest.ClientAPI()
	if err != nil {
		t.Fatal(err)
	}
	o := startOrigin(t)
	publish(t, api, o, "s")
	n := startNode(t, &switchRouter{o: o.StreamOrigin("o")}, sfu.Config{ReattachTimeout: 300 * time.Millisecond, UpstreamSilence: 300 * time.Millisecond})
	v := startViewer(t, api, n.url+"/rtc/v1/whep/?app=live&stream=s")
	testkit.WaitFor(t, 10*time.Second, "viewer receives video", func() bool { return v.video.Load() > 10 })
	o.Close()
	testkit.WaitFor(t, 10*time.Second, "viewer and upstream ended", func() bool {
		st := n.fan.Stats()
		return st.Viewers == 0 && st.Upstreams == 0
	})
	if st := n.fan.Stats(); st.UpstreamFailures == 0 {
		t.Errorf("no failed re-attach counted: %+v", st)
	}
}

// TestFanOutOverTCP plays through a node's ICE-TCP listener with a client
// that has no UDP: the answer offers the node's TCP candidate, and the
// viewer receives media over TCP. The listener's connection cap closes a
// connection beyond it at once, and a connection that sends no STUN
// Binding request is closed after the handshake timeout.
func TestFanOutOverTCP(t *testing.T) {
	api, err := webrtctest.ClientAPI()
	if err != nil {
		t.Fatal(err)
	}
	tcpAPI, err := webrtctest.TCPClientAPI()
	if err != nil {
		t.Fatal(err)
	}
	o := startOrigin(t)
	publish(t, api, o, "s")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, &switchRouter{o: o.StreamOrigin("o1")}, sfu.Config{TCP: ln,
		TCPCandidate: ln.Addr().(*net.TCPAddr).AddrPort(), MaxTCPConns: 2, TCPHandshakeTimeout: 500 * time.Millisecond})
	v := startViewer(t, tcpAPI, n.url+"/rtc/v1/whep/?app=live&stream=s")
	if !strings.Contains(v.pc.RemoteDescription().SDP, "tcp") {
		t.Fatalf("answer without a TCP candidate:\n%s", v.pc.RemoteDescription().SDP)
	}
	testkit.WaitFor(t, 15*time.Second, "TCP viewer receives video and audio", func() bool {
		return v.video.Load() > 20 && v.audio.Load() > 20
	})
	pair, err := v.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err == nil && pair != nil && pair.Local.Protocol != pionwebrtc.ICEProtocolTCP {
		t.Errorf("media over %v, want TCP", pair.Local.Protocol)
	}
	if st := n.fan.Stats(); st.TCPConns != 1 {
		t.Errorf("%d TCP connections open, want 1", st.TCPConns)
	}

	// An idle connection takes the last slot and is closed after the
	// handshake timeout; one beyond the cap is closed at once.
	idle, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	testkit.WaitFor(t, 5*time.Second, "the idle connection is counted", func() bool { return n.fan.Stats().TCPConns == 2 })
	over, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	over.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("a connection beyond the cap stayed open: %v", err)
	}
	if st := n.fan.Stats(); st.TCPRefused != 1 {
		t.Errorf("refused %d, want 1", st.TCPRefused)
	}
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("a connection without a Binding request stayed open: %v", err)
	}
	testkit.WaitFor(t, 5*time.Second, "the idle connection's slot is free", func() bool { return n.fan.Stats().TCPConns == 1 })
	if v.video.Load() == 0 {
		t.Error("no video")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestCodecChangeEndsViewers moves the stream to an origin whose publish
// carries another video codec: the viewers, who negotiated H.264, cannot
// be sent VP8, so the upstream is refused, they are ended (not left
// frozen), the change is counted, and a viewer that plays again is
// offered the new codec by a new upstream.
func TestCodecChangeEndsViewers(t *testing.T) {
	api, err := webrtctest.ClientAPI()
	if err != nil {
		t.Fatal(err)
	}
	a, b := startOrigin(t), startOrigin(t)
	publish(t, api, a, "s")
	p, err := webrtctest.NewPublisherCodec(api, pionwebrtc.RTPCodecCapability{MimeType: pionwebrtc.MimeTypeVP8, ClockRate: 90000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	signal(t, p.PC, "http://"+b.API+"/rtc/v1/whip/?app=live&stream=s")
	p.Start()
	testkit.WaitFor(t, 10*time.Second, "b receives the VP8 publish", func() bool { return b.Tracks("live", "s") == 2 })

	router := &switchRouter{o: a.StreamOrigin("a")}
	n := startNode(t, router, sfu.Config{})
	v := startViewer(t, api, n.url+"/rtc/v1/whep/?app=live&stream=s")
	testkit.WaitFor(t, 10*time.Second, "viewer receives video", func() bool { return v.video.Load() > 20 })
	router.set(b.StreamOrigin("b"))
	n.fan.Moved(stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "s"})
	testkit.WaitFor(t, 10*time.Second, "the H.264 viewer ended", func() bool {
		st := n.fan.Stats()
		return st.CodecChanges == 1 && st.Viewers == 0 && st.Upstreams == 0
	})
	testkit.WaitFor(t, 10*time.Second, "the viewer's connection closed", func() bool {
		st := v.pc.ConnectionState()
		return st == pionwebrtc.PeerConnectionStateClosed || st == pionwebrtc.PeerConnectionStateFailed ||
			st == pionwebrtc.PeerConnectionStateDisconnected
	})

	again := startViewer(t, api, n.url+"/rtc/v1/whep/?app=live&stream=s")
	if sdp := again.pc.RemoteDescription().SDP; !strings.Contains(sdp, "a=rtpmap:"+firstVideoPT(sdp)+" VP8/90000") {
		t.Errorf("the new viewer's answer does not put VP8 first:\n%s", sdp)
	}
	// The test publisher's video payloads are not VP8 key frames, so the
	// new viewer's video waits for one; its audio flows.
	testkit.WaitFor(t, 10*time.Second, "a new viewer receives audio", func() bool { return again.audio.Load() > 20 })
}

// firstVideoPT is the first payload type of an SDP's video section.
func firstVideoPT(sdp string) string {
	for _, l := range strings.Split(sdp, "\n") {
		if f := strings.Fields(l); len(f) > 3 && f[0] == "m=video" {
			return f[3]
		}
	}
	return ""
}
