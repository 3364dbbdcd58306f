package webrtc

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pionwebrtc "github.com/pion/webrtc/v4"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc/webrtctest"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// clientAPI is a pion API for test clients: full ICE, loopback UDP only.
func clientAPI(t testing.TB) *pionwebrtc.API {
	t.Helper()
	api, err := webrtctest.ClientAPI()
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// signal POSTs the local offer (after gathering) to url and applies the
// answer. It returns the Location.
func signal(t testing.TB, hc *http.Client, pc *pionwebrtc.PeerConnection, url string) string {
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
	resp, err := hc.Post(url, "application/sdp", strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Content-Type") != "application/sdp" {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, body)
	}
	if err := pc.SetRemoteDescription(pionwebrtc.SessionDescription{Type: pionwebrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		t.Fatal(err)
	}
	return resp.Header.Get("Location")
}

// publisher sends H.264 and Opus RTP over WHIP until the test ends.
type publisher struct {
	*webrtctest.Publisher
	pc       *pionwebrtc.PeerConnection
	location string
}

func startPublisher(t testing.TB, api *pionwebrtc.API, hc *http.Client, url string) *publisher {
	t.Helper()
	wp, err := webrtctest.NewPublisher(api)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wp.Close)
	p := &publisher{Publisher: wp, pc: wp.PC}
	p.location = signal(t, hc, wp.PC, url)
	wp.Start()
	return p
}

func (p *publisher) close() { p.Close() }

// player receives over WHEP and counts RTP packets per kind.
type player struct {
	*webrtctest.Player
	pc           *pionwebrtc.PeerConnection
	location     string
	video, audio *atomic.Uint64
}

func startPlayer(t testing.TB, api *pionwebrtc.API, hc *http.Client, url string) *player {
	t.Helper()
	wp, err := webrtctest.NewPlayer(api)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wp.Close)
	p := &player{Player: wp, pc: wp.PC, video: &wp.Video, audio: &wp.Audio}
	p.location = signal(t, hc, wp.PC, url)
	return p
}

func (p *player) close() { p.Close() }

// meshNode is one Server with its own HTTP listener and UDP socket.
type meshNode struct {
	srv  *Server
	http *httptest.Server
	udp  *net.UDPConn
}

// startNodes starts two nodes sharing store. Each node announces the OTHER
// node's UDP address in its answers, as if a load balancer sent every UDP
// flow to another node than its HTTP offer.
func startNodes(t *testing.T, store *MemorySessionStore, router stream.Router) (n1, n2 *meshNode) {
	t.Helper()
	u1, u2 := udpListen(t), udpListen(t)
	mk := func(udp *net.UDPConn, cand *net.UDPConn) *meshNode {
		srv, err := New(Config{Router: router, Store: store, Activity: store, Logger: quietLogger(),
			Candidate: addrOf(cand), SweepInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.ServeUDP(udp) }()
		mux := http.NewServeMux()
		mux.Handle("/rtc/v1/", srv.Handler())
		n := &meshNode{srv: srv, http: httptest.NewServer(mux), udp: udp}
		t.Cleanup(func() {
			n.http.Close()
			srv.Close()
			if err := <-served; err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("ServeUDP: %v", err)
			}
		})
		return n
	}
	return mk(u1, u2), mk(u2, u1)
}

func TestWebRTCThroughTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("real WebRTC sessions")
	}
	testkit.CheckGoroutines(t)
	origin, err := webrtctest.Start(webrtctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { origin.Close() })
	store := NewMemorySessionStore()
	n1, n2 := startNodes(t, store, &fakeRouter{origin: origin.StreamOrigin("o1")})
	hc := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	api := clientAPI(t)

	// Publish through node 1's HTTP; the media flows through node 2.
	pub := startPublisher(t, api, hc, n1.http.URL+"/rtc/v1/whip/?app=live&stream=cam")
	testkit.Eventually(t, 10*time.Second, func() error {
		if n := origin.Tracks("live", "cam"); n != 2 {
			return fmt.Errorf("origin has %d tracks (n2 stats %+v)", n, n2.srv.Stats())
		}
		return nil
	})
	// Play through node 2's HTTP; the media flows through node 1.
	play := startPlayer(t, api, hc, n2.http.URL+"/rtc/v1/whep/?app=live&stream=cam")
	testkit.Eventually(t, 10*time.Second, func() error {
		if v, a := play.video.Load(), play.audio.Load(); v < 20 || a < 20 {
			return fmt.Errorf("player got %d video, %d audio packets (n1 %+v)", v, a, n1.srv.Stats())
		}
		return nil
	})
	// Each client's ICE selected the other node's relay address.
	selected := func(pc *pionwebrtc.PeerConnection) string {
		for _, tr := range pc.GetTransceivers() {
			var dt *pionwebrtc.DTLSTransport
			if tr.Sender() != nil {
				dt = tr.Sender().Transport()
			} else if tr.Receiver() != nil {
				dt = tr.Receiver().Transport()
			}
			if dt != nil {
				if pair, err := dt.ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
					return fmt.Sprintf("%s:%d", pair.Remote.Address, pair.Remote.Port)
				}
			}
		}
		return ""
	}
	if got, want := selected(pub.pc), addrOf(n2.udp).String(); got != want {
		t.Errorf("publisher sends to %s, want node 2 at %s", got, want)
	}
	if got, want := selected(play.pc), addrOf(n1.udp).String(); got != want {
		t.Errorf("player receives from %s, want node 1 at %s", got, want)
	}
	s1, s2 := n1.srv.Stats(), n2.srv.Stats()
	if s1.Sessions != 1 || s2.Sessions != 1 || s1.Answers != 1 || s2.Answers != 1 {
		t.Fatalf("node stats:\n%+v\n%+v", s1, s2)
	}
	if s1.PacketsOut == 0 || s2.PacketsIn == 0 {
		t.Fatalf("media did not cross the relays:\n%+v\n%+v", s1, s2)
	}
	if origin.Sessions() != 2 || store.Len() != 2 {
		t.Fatalf("origin sessions %d, stored %d", origin.Sessions(), store.Len())
	}
	// Both sessions carry the origin's ICE password, so each relay checked
	// the MESSAGE-INTEGRITY of the client's Binding requests; pion signs
	// them correctly.
	store.mu.RLock()
	for u, rec := range store.m {
		if rec.Pwd == "" {
			t.Errorf("session %s stored without the origin's ICE password", u)
		}
	}
	store.mu.RUnlock()
	if d := s1.DroppedIntegrity + s2.DroppedIntegrity; d != 0 {
		t.Fatalf("%d Binding requests failed the integrity check:\n%+v\n%+v", d, s1, s2)
	}
	if !strings.HasPrefix(play.location, "/rtc/v1/") || !strings.Contains(play.location, SessionParam+"=") {
		t.Fatalf("player Location %q", play.location)
	}

	// DELETE the player through node 2: the origin ends it and node 1, which
	// relays it, reclaims its socket.
	del := func(n *meshNode, loc string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodDelete, n.http.URL+loc, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("DELETE %s: %d", loc, resp.StatusCode)
		}
	}
	del(n2, play.location)
	testkit.Eventually(t, 5*time.Second, func() error {
		if o, s := origin.Sessions(), n1.srv.Stats().Sessions; o != 1 || s != 0 || store.Len() != 1 {
			return fmt.Errorf("origin sessions %d, node 1 sessions %d, stored %d", o, s, store.Len())
		}
		return nil
	})
	play.close()
	before := origin.PublishedPackets()
	testkit.Eventually(t, 5*time.Second, func() error {
		if origin.PublishedPackets() < before+10 {
			return fmt.Errorf("publisher stalled after the player left")
		}
		return nil
	})

	del(n1, pub.location)
	testkit.Eventually(t, 5*time.Second, func() error {
		if o, s := origin.Sessions(), n2.srv.Stats().Sessions; o != 0 || s != 0 || store.Len() != 0 {
			return fmt.Errorf("origin sessions %d, node 2 sessions %d, stored %d", o, s, store.Len())
		}
		return nil
	})
	if d := n1.srv.Stats().Dropped() + n2.srv.Stats().Dropped(); d > 20 {
		t.Errorf("dropped %d packets:\n%+v\n%+v", d, n1.srv.Stats(), n2.srv.Stats())
	}
	pub.close()
}
