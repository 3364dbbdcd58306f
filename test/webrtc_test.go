package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pionwebrtc "github.com/pion/webrtc/v4"

	"github.com/srs-mesh/srs-mesh/protocols/webrtc/webrtctest"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestWebRTCThroughMesh runs WHIP and WHEP sessions through a 3-node mesh in
// front of a pion origin that behaves like SRS (ICE-lite, one UDP port).
// A publisher sends H.264 and Opus through node 1; a player receives them
// through node 2; a second player signals through node 1 but sends its UDP
// to node 3, as a load balancer may, which works only because the ICE
// session is replicated through the mesh. DELETEs, one of them through
// another node than the offer's, end every session on the nodes and on the
// origin. Players are relayed too (--rtc-fanout=false); TestWebRTCFanOut
// covers viewers answered at the node.
func TestWebRTCThroughMesh(t *testing.T) {
	origin, err := webrtctest.Start(webrtctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { origin.Close() })
	baseline := origin.Sessions()
	port := func(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
	c := startProtocolCluster(t, 3, nil, "--rtc-fanout=false",
		"--origin", "id=rtc1,ip=127.0.0.1,api="+port(origin.API)+",rtc="+port(origin.RTC))
	c.waitOriginsHealthy(t, 1)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	api := rtcClientAPI(t)
	const query = "?app=live&stream=s"

	// Publish through node 1, media to node 1.
	pub := startRTCPublisher(t, api, "http://"+n1.APIAddr+"/rtc/v1/whip/"+query, n1, n1)
	testkit.WaitFor(t, 20*time.Second, "origin receives both published tracks", func() bool {
		return origin.Tracks("live", "s") == 2 && origin.PublishedPackets() > 50
	})
	if owner := c.waitAssigned(t, "__defaultVhost__/live/s"); owner != "rtc1" {
		t.Fatalf("live/s assigned to %s", owner)
	}
	if got := selectedRemote(pub.pc); got != n1.RTCAddr {
		t.Errorf("publisher sends to %s, want node 1 at %s", got, n1.RTCAddr)
	}

	// Play through node 2, media from node 2.
	p2 := startRTCPlayer(t, api, "http://"+n2.APIAddr+"/rtc/v1/whep/"+query, n2, n2)
	p2.waitPackets(t, 20, "player through n2")

	// Signal through node 1, media from node 3.
	p3 := startRTCPlayer(t, api, "http://"+n1.APIAddr+"/rtc/v1/whep/"+query, n1, n3)
	p3.waitPackets(t, 20, "player signalled through n1 with media through n3")
	for _, p := range []*rtcPlayer{p2, p3} {
		if got := selectedRemote(p.pc); got != p.media.RTCAddr {
			t.Errorf("player receives from %s, want %s at %s", got, p.media.ID, p.media.RTCAddr)
		}
	}
	t.Logf("player via n2: %d video, %d audio packets; player via n1/n3: %d video, %d audio packets",
		p2.video.Load(), p2.audio.Load(), p3.video.Load(), p3.audio.Load())
	if n := origin.Sessions(); n != baseline+3 {
		t.Fatalf("origin has %d sessions, want %d", n, baseline+3)
	}
	for i, want := range []float64{1, 1, 1} {
		if got := rtcRelaySessions(t, c.nodes[i]); got != want {
			t.Errorf("%s relays %v WebRTC sessions, want %v", c.nodes[i].ID, got, want)
		}
	}
	// The nodes checked the MESSAGE-INTEGRITY of the clients' Binding
	// requests with the origin's ICE password, replicated with the session
	// (the n1/n3 player's to node 3); pion signs them correctly.
	const integrity = `srs_mesh_dropped_packets_total{proto="webrtc",reason="integrity"}`
	for _, nd := range c.nodes {
		found := false
		for _, l := range nodeMetricLines(t, nd) {
			if series, v, ok := strings.Cut(l, " "); ok && series == integrity {
				found = true
				if v != "0" {
					t.Errorf("%s dropped %s Binding requests that failed the integrity check", nd.ID, v)
				}
			}
		}
		if !found {
			t.Errorf("%s exports no %s", nd.ID, integrity)
		}
	}

	// DELETE the n1/n3 player through node 3 (not the node that took its
	// offer), then the n2 player through node 2: each relay and origin
	// session ends, and the publisher keeps publishing.
	rtcDelete(t, n3, p3.location)
	p3.close()
	testkit.WaitFor(t, 15*time.Second, "n3 relay and origin session of the first deleted player gone", func() bool {
		return origin.Sessions() == baseline+2 && rtcRelaySessions(t, n3) == 0
	})
	rtcDelete(t, n2, p2.location)
	p2.close()
	testkit.WaitFor(t, 15*time.Second, "n2 relay and origin session of the second deleted player gone", func() bool {
		return origin.Sessions() == baseline+1 && rtcRelaySessions(t, n2) == 0
	})
	before := origin.PublishedPackets()
	testkit.WaitFor(t, 10*time.Second, "publisher still publishing", func() bool {
		return origin.PublishedPackets() > before+20
	})

	rtcDelete(t, n1, pub.location)
	pub.close()
	testkit.WaitFor(t, 15*time.Second, "every session gone from the origin and the nodes", func() bool {
		if origin.Sessions() != baseline {
			return false
		}
		for _, nd := range c.nodes {
			if rtcRelaySessions(t, nd) != 0 {
				return false
			}
		}
		return true
	})
	t.Logf("origin back to %d sessions; no node relays a WebRTC session", baseline)
}

// rtcClientAPI is a pion API for test clients: full ICE, loopback UDP only.
func rtcClientAPI(t *testing.T) *pionwebrtc.API {
	t.Helper()
	api, err := webrtctest.ClientAPI()
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// rtcSignal POSTs the local offer (after gathering) to url and applies the
// answer, which must announce the signalling node's WebRTC address. When
// media is another node, the client points the answer's candidate at that
// node instead, as a load balancer in front of the nodes' UDP ports would.
// It returns the Location.
func rtcSignal(t *testing.T, pc *pionwebrtc.PeerConnection, url string, signalling, media *harness.Node) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pionwebrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-time.After(10 * time.Second):
		t.Fatal("ICE gathering timed out")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(pc.LocalDescription().SDP))
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := e2eHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Content-Type") != "application/sdp" {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, body)
	}
	answer := string(body)
	host, port, _ := net.SplitHostPort(signalling.RTCAddr)
	own := " " + host + " " + port + " typ host"
	if !strings.Contains(answer, own) {
		t.Fatalf("answer from %s does not announce its address %s:\n%s", signalling.ID, signalling.RTCAddr, answer)
	}
	if media != signalling {
		mhost, mport, _ := net.SplitHostPort(media.RTCAddr)
		answer = strings.ReplaceAll(answer, own, " "+mhost+" "+mport+" typ host")
	}
	if err := pc.SetRemoteDescription(pionwebrtc.SessionDescription{Type: pionwebrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "/rtc/v1/") {
		t.Fatalf("Location %q", loc)
	}
	return loc
}

// rtcPublisher sends H.264 and Opus RTP over WHIP until closed.
type rtcPublisher struct {
	*webrtctest.Publisher
	pc       *pionwebrtc.PeerConnection
	location string
}

func startRTCPublisher(t *testing.T, api *pionwebrtc.API, url string, signalling, media *harness.Node) *rtcPublisher {
	t.Helper()
	wp, err := webrtctest.NewPublisher(api)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wp.Close)
	p := &rtcPublisher{Publisher: wp, pc: wp.PC}
	p.location = rtcSignal(t, wp.PC, url, signalling, media)
	wp.Start()
	return p
}

func (p *rtcPublisher) close() { p.Close() }

// rtcPlayer receives over WHEP and counts RTP packets per kind.
type rtcPlayer struct {
	*webrtctest.Player
	pc           *pionwebrtc.PeerConnection
	location     string
	media        *harness.Node
	video, audio *atomic.Uint64
}

func startRTCPlayer(t *testing.T, api *pionwebrtc.API, url string, signalling, media *harness.Node) *rtcPlayer {
	t.Helper()
	wp, err := webrtctest.NewPlayer(api)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wp.Close)
	p := &rtcPlayer{Player: wp, pc: wp.PC, media: media, video: &wp.Video, audio: &wp.Audio}
	p.location = rtcSignal(t, wp.PC, url, signalling, media)
	return p
}

// waitPackets waits until the player has received n video and n audio
// packets.
func (p *rtcPlayer) waitPackets(t *testing.T, n uint64, what string) {
	t.Helper()
	testkit.WaitFor(t, 30*time.Second, fmt.Sprintf("%s receives %d video and %d audio packets", what, n, n), func() bool {
		return p.video.Load() >= n && p.audio.Load() >= n
	})
}

func (p *rtcPlayer) close() { p.Close() }

// selectedRemote is the remote address of the ICE pair pc selected.
func selectedRemote(pc *pionwebrtc.PeerConnection) string {
	for _, tr := range pc.GetTransceivers() {
		var dt *pionwebrtc.DTLSTransport
		if tr.Sender() != nil {
			dt = tr.Sender().Transport()
		} else if tr.Receiver() != nil {
			dt = tr.Receiver().Transport()
		}
		if dt != nil {
			if pair, err := dt.ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
				return net.JoinHostPort(pair.Remote.Address, fmt.Sprint(pair.Remote.Port))
			}
		}
	}
	return ""
}

// rtcDelete sends DELETE <location> to a node's API port.
func rtcDelete(t *testing.T, nd *harness.Node, location string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, "http://"+nd.APIAddr+location, nil)
	resp, err := e2eHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE %s through %s: %d %s", location, nd.ID, resp.StatusCode, body)
	}
}

// rtcRelaySessions is the number of WebRTC sessions a node relays, from its
// /metrics.
func rtcRelaySessions(t *testing.T, nd *harness.Node) float64 {
	t.Helper()
	return nodeMetric(t, nd, `srs_mesh_connections{proto="webrtc"}`)
}

// TestWebRTCOfferRateLimit checks --rtc-offer-rate and --rtc-offer-burst on
// a running node: past the burst, offers from one address get 429 with
// Retry-After before they reach routing, DELETE is not limited, and the
// refusals are counted in /metrics.
func TestWebRTCOfferRateLimit(t *testing.T) {
	c := startProtocolCluster(t, 1, nil, "--rtc-offer-rate", "0.01", "--rtc-offer-burst", "2")
	nd := c.nodes[0]
	do := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+nd.APIAddr+path, strings.NewReader("v=0\r\n"))
		req.Header.Set("Content-Type", "application/sdp")
		resp, err := e2eHTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	const whip = "/rtc/v1/whip/?app=live&stream=s"
	for i := range 2 {
		// Not a valid offer: refused after the limit let it through.
		if resp, body := do("POST", whip); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("offer %d within the burst: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := do("POST", "/rtc/v1/whep/?app=live&stream=s")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "100" ||
		!strings.Contains(body, `"code":429`) {
		t.Fatalf("offer past the burst: %d, Retry-After %q, %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if resp, body := do("DELETE", "/rtc/v1/session/?mesh_session=a%3Ab"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("DELETE past the offer limit: %d %s", resp.StatusCode, body)
	}
	const limited = `srs_mesh_session_failures_total{proto="webrtc",reason="rate_limited"}`
	if v := nodeMetric(t, nd, limited); v != 1 {
		t.Fatalf("%s = %v, want 1", limited, v)
	}
}
