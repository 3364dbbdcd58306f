package webrtc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/srs-mesh/srs-mesh/stream"
)

// fakeViewers answers every play offer with a fixed SDP, or err, and
// records what it was asked.
type fakeViewers struct {
	mu      sync.Mutex
	err     error
	keys    []stream.Key
	queries []url.Values
	stopped []string
}

func (f *fakeViewers) Play(_ context.Context, key stream.Key, q url.Values, _ []byte) (ViewerAnswer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys, f.queries = append(f.keys, key), append(f.queries, q)
	if f.err != nil {
		return ViewerAnswer{}, f.err
	}
	return ViewerAnswer{SDP: []byte(testAnswer), ID: "v1", Session: "nodeufrag:clientufrag"}, nil
}

func (f *fakeViewers) Stop(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = append(f.stopped, id)
	return id == "v1"
}

const testOffer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:clientufrag\r\na=ice-pwd:0123456789abcdefghijkl\r\na=rtpmap:96 H264/90000\r\n"
const testAnswer = "v=0\r\no=- 2 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:nodeufrag\r\n"

// TestViewersAnswerPlays checks the signalling with Config.Viewers: WHEP
// and SRS's JSON play go to the Viewers and never to the origin (the
// router fails every route), with a Location naming the viewer and its
// session; errors map to statuses; a DELETE of the viewer reaches Stop.
func TestViewersAnswerPlays(t *testing.T) {
	fv := &fakeViewers{}
	e := startRelay(t, nil, func(c *Config) { c.Viewers = fv; c.OfferRate = -1 })
	hs := httptest.NewServer(e.srv.Handler())
	t.Cleanup(hs.Close)

	resp, body := post(t, hs.URL+"/rtc/v1/whep/?app=live&stream=s&token=abc", "application/sdp", testOffer)
	if resp.StatusCode != http.StatusCreated || body != testAnswer || resp.Header.Get("Content-Type") != "application/sdp" {
		t.Fatalf("WHEP: %d %q", resp.StatusCode, body)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Path != PathSession || loc.Query().Get(ViewerParam) != "v1" || loc.Query().Get(SessionParam) != "nodeufrag:clientufrag" {
		t.Errorf("Location %q", resp.Header.Get("Location"))
	}
	if fv.keys[0].String() != "__defaultVhost__/live/s" || fv.queries[0].Get("token") != "abc" {
		t.Errorf("Viewers asked for %v with %v", fv.keys[0], fv.queries[0])
	}

	req, _ := json.Marshal(map[string]string{"sdp": testOffer, "streamurl": "webrtc://host/live/j?secret=1"})
	resp, body = post(t, hs.URL+"/rtc/v1/play/", "application/json", string(req))
	var res struct {
		Code      int    `json:"code"`
		SDP       string `json:"sdp"`
		SessionID string `json:"sessionid"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil || res.Code != 0 || res.SDP != testAnswer || res.SessionID != "v1" {
		t.Fatalf("JSON play: %d %s", resp.StatusCode, body)
	}
	if fv.keys[1].Stream != "j" || fv.queries[1].Get("secret") != "1" {
		t.Errorf("JSON play asked for %v with %v", fv.keys[1], fv.queries[1])
	}

	for _, tc := range []struct {
		err  error
		want int
	}{
		{ErrViewerLimit, http.StatusServiceUnavailable},
		{stream.ErrNoOrigin, http.StatusServiceUnavailable},
		{ErrBadOffer, http.StatusBadRequest},
		{ErrNoStream, http.StatusNotFound},
		{errors.New("origin unreachable"), http.StatusBadGateway},
	} {
		fv.mu.Lock()
		fv.err = tc.err
		fv.mu.Unlock()
		if resp, body := post(t, hs.URL+"/rtc/v1/whep/?app=live&stream=s", "application/sdp", testOffer); resp.StatusCode != tc.want {
			t.Errorf("%v: %d %s, want %d", tc.err, resp.StatusCode, body, tc.want)
		}
	}
	if resp, _ := post(t, hs.URL+"/rtc/v1/whep/?app=live&stream=s", "application/sdp", "not sdp"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad offer: %d", resp.StatusCode)
	}

	if code := del(t, hs.URL+PathSession+"?"+ViewerParam+"=v1"); code != http.StatusOK {
		t.Errorf("DELETE of the viewer: %d", code)
	}
	if code := del(t, hs.URL+PathSession+"?"+ViewerParam+"=nope"); code != http.StatusNotFound {
		t.Errorf("DELETE of an unknown viewer: %d", code)
	}
	if len(fv.stopped) != 2 || fv.stopped[0] != "v1" {
		t.Errorf("Stop calls %v", fv.stopped)
	}
}

func post(t *testing.T, u, ct, body string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Post(u, ct, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func del(t *testing.T, u string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// fakeTap claims Binding requests of one ufrag and packets of the
// addresses those came from.
type fakeTap struct {
	mu      sync.Mutex
	ufrag   string
	addrs   map[netip.AddrPort]bool
	claimed [][]byte
}

func (f *fakeTap) ClaimBinding(p, user []byte, from netip.AddrPort) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !bytes.HasPrefix(user, []byte(f.ufrag+":")) {
		return false
	}
	f.addrs[from] = true
	f.claimed = append(f.claimed, bytes.Clone(p))
	return true
}

func (f *fakeTap) Take(p []byte, from netip.AddrPort) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.addrs[from] {
		return false
	}
	f.claimed = append(f.claimed, bytes.Clone(p))
	return true
}

// TestTapTakesItsFlows checks the relay's hook points: a Binding request
// naming the tap's ufrag goes to the tap, not to the session store; later
// packets from that address go to the tap and are not counted as drops;
// relayed sessions are untouched.
func TestTapTakesItsFlows(t *testing.T) {
	tap := &fakeTap{ufrag: "mine", addrs: map[netip.AddrPort]bool{}}
	e := startRelay(t, nil, func(c *Config) { c.Tap = tap })
	e.addSession(t, "relayed:peer")
	from := netip.MustParseAddrPort("10.1.1.1:5000")
	e.srv.handlePacket(bindingRequest(t, "mine:peer"), from)
	e.srv.handlePacket(rtpPacket(1, "x"), from)
	e.srv.handlePacket(rtpPacket(2, "y"), netip.MustParseAddrPort("10.1.1.2:5000"))
	tap.mu.Lock()
	n := len(tap.claimed)
	tap.mu.Unlock()
	if n != 2 {
		t.Errorf("tap took %d packets, want the Binding request and the RTP after it", n)
	}
	st := e.srv.Stats()
	if st.DroppedUnknownUfrag != 0 || st.DroppedNoSession != 1 {
		t.Errorf("drops: unknown ufrag %d, no session %d; want 0 and 1 (the stranger's RTP)", st.DroppedUnknownUfrag, st.DroppedNoSession)
	}
	c := udpListen(t)
	if resp := exchange(t, c, e.addr, bindingRequestPwd(t, "relayed:peer", testPwd)); !isBindingSuccess(resp) {
		t.Error("a relayed session's Binding request did not reach its origin")
	}
}
