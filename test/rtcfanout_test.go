package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pionwebrtc "github.com/pion/webrtc/v4"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc/webrtctest"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestWebRTCFanOut publishes over WHIP through node 1 into a pion origin
// that behaves like SRS and plays the stream with ten WHEP viewers through
// node 2, which answers them itself (--rtc-fanout, the default): every
// viewer receives video and audio, the origin holds two sessions (the
// publisher and node 2's one upstream), node 2's metrics count ten viewers
// on one upstream, and viewers end with a DELETE through node 2 or by
// leaving, after which the upstream ends too.
func TestWebRTCFanOut(t *testing.T) {
	origin, err := webrtctest.Start(webrtctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { origin.Close() })
	baseline := origin.Sessions()
	c := startProtocolCluster(t, 2, nil, "--origin", "id=rtc1,ip=127.0.0.1,api="+portOf(origin.API)+",rtc="+portOf(origin.RTC))
	c.waitOriginsHealthy(t, 1)
	n1, n2 := c.nodes[0], c.nodes[1]
	api := rtcClientAPI(t)
	const query = "?app=live&stream=fan"
	pub := startRTCPublisher(t, api, "http://"+n1.APIAddr+"/rtc/v1/whip/"+query, n1, n1)
	testkit.WaitFor(t, 20*time.Second, "origin receives both published tracks", func() bool {
		return origin.Tracks("live", "fan") == 2 && origin.PublishedPackets() > 50
	})

	const viewers = 10
	var players []*fanViewer
	for i := 0; i < viewers; i++ {
		players = append(players, startFanViewer(t, api, "http://"+n2.APIAddr+"/rtc/v1/whep/"+query, n2))
	}
	for i, p := range players {
		p.waitMedia(t, 20, fmt.Sprintf("viewer %d", i))
	}
	if n := origin.Sessions(); n != baseline+2 {
		t.Errorf("origin has %d sessions for a publisher and %d viewers, want %d", n, viewers, baseline+2)
	}
	if v, u := nodeMetric(t, n2, "srs_mesh_rtc_fanout_viewers"), nodeMetric(t, n2, "srs_mesh_rtc_fanout_upstreams"); v != viewers || u != 1 {
		t.Errorf("n2 reports %v viewers on %v upstreams, want %d on 1", v, u, viewers)
	}
	testkit.WaitFor(t, 10*time.Second, "/mesh/v1/streams shows n2's WebRTC fan-out", func() bool {
		doc, err := meshStreams(n1)
		if err != nil {
			return false
		}
		for _, st := range doc.Streams {
			if f := st.RTCFanOut[n2.ID]; st.Key == "__defaultVhost__/live/fan" && f.Upstreams == 1 && f.Players == viewers {
				return true
			}
		}
		return false
	})
	if got := rtcRelaySessions(t, n2); got != 0 {
		t.Errorf("n2 relays %v sessions, want none", got)
	}
	for i, p := range players {
		if p.jumps.Load() != 0 {
			t.Errorf("viewer %d saw %d sequence jumps", i, p.jumps.Load())
		}
	}

	// A viewer answered by n2 whose UDP reaches n1 plays too: n1 relays
	// it to n2 through the replicated session, and a DELETE through n1
	// ends it on n2.
	cross := startFanViewerVia(t, api, "http://"+n2.APIAddr+"/rtc/v1/whep/"+query, n2, n1)
	cross.waitMedia(t, 20, "viewer answered by n2 with its UDP through n1")
	if got := rtcRelaySessions(t, n1); got != 2 {
		t.Errorf("n1 relays %v sessions, want the publisher's and the cross-node viewer's", got)
	}
	rtcDelete(t, n1, cross.location)
	testkit.WaitFor(t, 10*time.Second, "the cross-node viewer ended on n2", func() bool {
		return nodeMetric(t, n2, "srs_mesh_rtc_fanout_viewers") == viewers
	})
	cross.Close()

	rtcDelete(t, n2, players[0].location)
	for _, p := range players {
		p.Close()
	}
	testkit.WaitFor(t, 20*time.Second, "viewers and the upstream gone from n2 and the origin", func() bool {
		return origin.Sessions() == baseline+1 && nodeMetric(t, n2, "srs_mesh_rtc_fanout_viewers") == 0 &&
			nodeMetric(t, n2, "srs_mesh_rtc_fanout_upstreams") == 0
	})
	pub.close()
}

// fanViewer is a WHEP viewer that checks what it receives: video and
// audio packets, whether a keyframe came, and the video's sequence
// numbers (a jump is a gap of more than 100, which a loss on loopback
// never makes, but a restarted numbering does).
type fanViewer struct {
	pc               *pionwebrtc.PeerConnection
	location         string
	video, audio     atomic.Uint64
	keyframes, jumps atomic.Uint64
	lastVideoAt      atomic.Int64
	maxGap           atomic.Int64 // longest time between two video packets, ns
	wg               sync.WaitGroup
	once             sync.Once
}

func startFanViewer(t *testing.T, api *pionwebrtc.API, url string, nd *harness.Node) *fanViewer {
	t.Helper()
	return startFanViewerVia(t, api, url, nd, nd)
}

// startFanViewerVia is startFanViewer with the viewer's UDP sent to media
// instead of the signalling node, as a load balancer may.
func startFanViewerVia(t *testing.T, api *pionwebrtc.API, url string, nd, media *harness.Node) *fanViewer {
	t.Helper()
	pc, err := api.NewPeerConnection(pionwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	v := &fanViewer{pc: pc}
	t.Cleanup(v.Close)
	for _, k := range []pionwebrtc.RTPCodecType{pionwebrtc.RTPCodecTypeVideo, pionwebrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, pionwebrtc.RTPTransceiverInit{Direction: pionwebrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *pionwebrtc.TrackRemote, _ *pionwebrtc.RTPReceiver) {
		video := tr.Kind() == pionwebrtc.RTPCodecTypeVideo
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			var last uint16
			started := false
			for {
				p, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				if !video {
					v.audio.Add(1)
					continue
				}
				v.video.Add(1)
				now := time.Now().UnixNano()
				if prev := v.lastVideoAt.Swap(now); prev != 0 && now-prev > v.maxGap.Load() {
					v.maxGap.Store(now - prev)
				}
				if h264Key(p.Payload) {
					v.keyframes.Add(1)
				}
				if d := p.SequenceNumber - last; started && d > 100 && d < 65536-100 {
					v.jumps.Add(1)
				}
				last, started = p.SequenceNumber, true
			}
		}()
	})
	v.location = rtcSignal(t, pc, url, nd, media)
	return v
}

// waitMedia waits for a keyframe and n video and n audio packets.
func (v *fanViewer) waitMedia(t *testing.T, n uint64, what string) {
	t.Helper()
	testkit.WaitFor(t, 30*time.Second, fmt.Sprintf("%s receives a keyframe, %d video and %d audio packets", what, n, n), func() bool {
		return v.keyframes.Load() > 0 && v.video.Load() >= n && v.audio.Load() >= n
	})
}

func (v *fanViewer) Close() {
	v.once.Do(func() {
		v.pc.Close()
		v.wg.Wait()
	})
}

// h264Key reports whether an H.264 RTP payload starts an IDR picture or
// carries an SPS (single NAL, STAP-A, or FU-A start).
func h264Key(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	key := func(b byte) bool { t := b & 0x1f; return t == 5 || t == 7 }
	switch p[0] & 0x1f {
	case 24:
		for i := 1; i+2 < len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			i += 2
			if i < len(p) && key(p[i]) {
				return true
			}
			i += n
		}
		return false
	case 28:
		return p[1]&0x80 != 0 && key(p[1])
	}
	return key(p[0])
}

// TestSRSWebRTCFanOut is the WebRTC fan-out against real SRS 7 origins
// (opt-in, SRS_MESH_TEST_SRS): an RTMP publish through node 1, which SRS
// converts to WebRTC (rtmp_to_rtc), and 30 WHEP viewers through node 2.
// Every viewer receives a keyframe and continuous video; the origin counts
// the publisher and one WebRTC session from the mesh, not 30. Then the
// origin is killed: the viewers keep their sessions and receive video
// again, from the other origin, with their sequence numbers going on.
func TestSRSWebRTCFanOut(t *testing.T) { srsWebRTCFanOut(t) }

// TestSRSWebRTCFanOutWarmReplica is TestSRSWebRTCFanOut with a warm
// replica of the stream on the other origin (--stream-replicas 2): the
// killed origin's stream is promoted there, and the node's upstream
// follows it.
func TestSRSWebRTCFanOutWarmReplica(t *testing.T) { srsWebRTCFanOut(t, "--stream-replicas", "2") }

func srsWebRTCFanOut(t *testing.T, extra ...string) {
	if os.Getenv(harness.SRSBinaryEnv) != "" && !harness.SRSHasFFmpegFit() {
		harness.Missing(t, "srs", "this SRS has no FFmpeg transcoder (--ffmpeg-fit=off), so it cannot bridge RTMP to WebRTC")
	}
	c, _, ids := startSRSMeshWith(t, append([]string{"--rtc-offer-rate", "0"}, extra...)...) // 30 offers from one address
	n1, n2 := c.nodes[0], c.nodes[1]
	pub := harness.PublishRTMP(t, n1.RTMPURL("live/fan"))
	const key = "__defaultVhost__/live/fan"
	owner := c.waitAssigned(t, key)
	var origin *harness.SRS
	for s, id := range ids {
		if id == owner {
			origin = s
		}
	}
	if len(extra) > 0 {
		testkit.WaitFor(t, 30*time.Second, "the stream has a warm replica", func() bool {
			var st mesh.Status
			if c.nodes[1].Status(&st) != nil {
				return false
			}
			a, ok := assignmentOf(st, key)
			return ok && len(a.Replicas) == 1
		})
	}
	// SRS answers WHEP for the stream once its RTMP-to-WebRTC bridge runs.
	testkit.WaitFor(t, 30*time.Second, "SRS has the stream", func() bool {
		return len(srsClientTypes(t, origin, "fan")) > 0
	})
	api := rtcClientAPI(t)
	viewers := 30
	if testing.Short() {
		viewers = 10
	}
	url := "http://" + n2.APIAddr + "/rtc/v1/whep/?app=live&stream=fan"
	var players []*fanViewer
	for i := 0; i < viewers; i++ {
		players = append(players, startFanViewer(t, api, url, n2))
	}
	for i, p := range players {
		testkit.WaitFor(t, 30*time.Second, fmt.Sprintf("viewer %d receives a keyframe and video", i), func() bool {
			return p.keyframes.Load() > 0 && p.video.Load() >= 50
		})
	}
	clients := srsClientTypes(t, origin, "fan")
	t.Logf("%d viewers through %s; %s counts %d clients of the stream: %v", viewers, n2.ID, owner, len(clients), clients)
	if len(clients) > 2 {
		t.Errorf("the origin counts %d clients of the stream, want at most the publisher and one session from the mesh", len(clients))
	}
	if v, u := nodeMetric(t, n2, "srs_mesh_rtc_fanout_viewers"), nodeMetric(t, n2, "srs_mesh_rtc_fanout_upstreams"); v != float64(viewers) || u != 1 {
		t.Errorf("%s reports %v viewers on %v upstreams, want %d on 1", n2.ID, v, u, viewers)
	}

	before, keys := make([]uint64, len(players)), make([]uint64, len(players))
	for i, p := range players {
		before[i], keys[i] = p.video.Load(), p.keyframes.Load()
		p.maxGap.Store(0)
	}
	t.Logf("killing %s, the stream's origin", owner)
	origin.Kill()
	killed := time.Now()
	testkit.WaitFor(t, 60*time.Second, "every viewer receives video again, from a keyframe", func() bool {
		for i, p := range players {
			if p.video.Load() < before[i]+100 || p.keyframes.Load() == keys[i] {
				return false
			}
		}
		return true
	})
	t.Logf("every viewer has video again %v after the kill", time.Since(killed).Round(10*time.Millisecond))
	var freeze time.Duration
	for _, p := range players {
		freeze = max(freeze, time.Duration(p.maxGap.Load()))
	}
	t.Logf("longest video freeze of a viewer across the kill: %v", freeze.Round(10*time.Millisecond))
	for i, p := range players {
		if st := p.pc.ConnectionState(); st != pionwebrtc.PeerConnectionStateConnected {
			t.Errorf("viewer %d: connection %s", i, st)
		}
		if j := p.jumps.Load(); j != 0 {
			t.Errorf("viewer %d: %d sequence jumps", i, j)
		}
	}
	if o := c.waitAssigned(t, key); o == owner {
		t.Errorf("%s is still on the dead origin", key)
	}
	if pub.Exited() {
		t.Errorf("publisher exited: %s", pub.Output())
	}
}

// srsClientTypes lists the clients of stream name on an SRS origin, from
// its /api/v1/clients, by type.
func srsClientTypes(t *testing.T, s *harness.SRS, name string) []string {
	t.Helper()
	resp, err := e2eHTTP.Get("http://" + s.APIAddr + "/api/v1/clients/?count=1000")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Clients []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"clients"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil
	}
	var out []string
	for _, c := range body.Clients {
		if c.Name == name {
			out = append(out, c.Type)
		}
	}
	return out
}

// TestWebRTCFanOutOverTCP plays through a node's --rtc-tcp listener with a
// pion viewer that has no UDP (only active ICE-TCP candidates), as a
// viewer behind a network that blocks UDP: the node's answer carries its
// passive TCP candidate, the viewer receives a keyframe, video and audio,
// and the node counts the TCP connection.
func TestWebRTCFanOutOverTCP(t *testing.T) {
	origin, err := webrtctest.Start(webrtctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { origin.Close() })
	tcpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(harness.UniquePort(t, false)))
	c := startProtocolCluster(t, 1, nil, "--origin", "id=rtc1,ip=127.0.0.1,api="+portOf(origin.API)+",rtc="+portOf(origin.RTC),
		"--rtc-tcp", tcpAddr)
	c.waitOriginsHealthy(t, 1)
	nd := c.nodes[0]
	const query = "?app=live&stream=tcpfan"
	pub := startRTCPublisher(t, rtcClientAPI(t), "http://"+nd.APIAddr+"/rtc/v1/whip/"+query, nd, nd)
	defer pub.close()
	testkit.WaitFor(t, 20*time.Second, "origin receives both published tracks", func() bool {
		return origin.Tracks("live", "tcpfan") == 2 && origin.PublishedPackets() > 50
	})
	tcpAPI, err := webrtctest.TCPClientAPI()
	if err != nil {
		t.Fatal(err)
	}
	v := startFanViewer(t, tcpAPI, "http://"+nd.APIAddr+"/rtc/v1/whep/"+query, nd)
	host, port, _ := net.SplitHostPort(tcpAddr)
	if want := " " + host + " " + port + " typ host tcptype passive"; !strings.Contains(v.pc.RemoteDescription().SDP, want) {
		t.Fatalf("answer without the node's TCP candidate %q:\n%s", want, v.pc.RemoteDescription().SDP)
	}
	v.waitMedia(t, 20, "TCP-only viewer")
	if n := nodeMetric(t, nd, "srs_mesh_rtc_fanout_tcp_connections"); n != 1 {
		t.Errorf("node reports %v ICE-TCP connections, want 1", n)
	}
	v.Close()
	testkit.WaitFor(t, 20*time.Second, "the viewer and its TCP connection gone", func() bool {
		return nodeMetric(t, nd, "srs_mesh_rtc_fanout_viewers") == 0 && nodeMetric(t, nd, "srs_mesh_rtc_fanout_tcp_connections") == 0
	})
}
