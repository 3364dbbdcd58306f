package webrtc

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/srs-mesh/srs-mesh/stream"
)

// fakeStandbys keeps every refused publisher, or refuses with err, and
// records the streams it was asked about.
type fakeStandbys struct {
	mu   sync.Mutex
	err  error
	keys []stream.Key
}

func (f *fakeStandbys) Standby(_ context.Context, key stream.Key, _ url.Values, _ []byte) (ViewerAnswer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = append(f.keys, key)
	if f.err != nil {
		return ViewerAnswer{}, f.err
	}
	return ViewerAnswer{SDP: []byte(testAnswer), ID: "sb1"}, nil
}

func (f *fakeStandbys) asked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.keys)
}

// TestStandbyKeepsRefusedPublishers: a WHIP publish that the origin
// refuses as busy (a 5xx, 400 or 409, or the request closed unanswered,
// as SRS does) goes to Config.Standbys, whose answer the client gets with
// a Location naming it at the node; a refusal of authorization (403), a
// play, and a publisher the Standbys does not keep get the origin's
// refusal as before.
func TestStandbyKeepsRefusedPublishers(t *testing.T) {
	var mu sync.Mutex
	status := http.StatusInternalServerError
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		st := status
		mu.Unlock()
		if st == 0 {
			// Close the request unanswered.
			if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
				c.Close()
			}
			return
		}
		w.WriteHeader(st)
		w.Write([]byte("stream busy"))
	}))
	t.Cleanup(api.Close)
	setStatus := func(s int) {
		mu.Lock()
		status = s
		mu.Unlock()
	}
	fs := &fakeStandbys{}
	host := strings.TrimPrefix(api.URL, "http://")
	e := startRelay(t, nil, func(c *Config) {
		c.Router = &fakeRouter{origin: stream.Origin{ID: "o1", API: host, RTC: "127.0.0.1:9"}}
		c.Standbys = fs
		c.OfferRate = -1
	})
	hs := httptest.NewServer(e.srv.Handler())
	t.Cleanup(hs.Close)
	whip := hs.URL + "/rtc/v1/whip/?app=live&stream=s"

	for _, st := range []int{http.StatusInternalServerError, http.StatusConflict, 0} {
		setStatus(st)
		resp, body := post(t, whip, "application/sdp", testOffer)
		if resp.StatusCode != http.StatusCreated || body != testAnswer {
			t.Fatalf("origin %d: %d %q", st, resp.StatusCode, body)
		}
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc.Path != PathSession || loc.Query().Get(ViewerParam) != "sb1" {
			t.Errorf("origin %d: Location %q", st, resp.Header.Get("Location"))
		}
	}
	if n := fs.asked(); n != 3 {
		t.Fatalf("Standbys asked %d times", n)
	}

	setStatus(http.StatusForbidden)
	if resp, _ := post(t, whip, "application/sdp", testOffer); resp.StatusCode != http.StatusForbidden {
		t.Errorf("refused authorization: %d", resp.StatusCode)
	}
	setStatus(http.StatusInternalServerError)
	if resp, _ := post(t, hs.URL+"/rtc/v1/whep/?app=live&stream=s", "application/sdp", testOffer); resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("refused play: %d", resp.StatusCode)
	}
	if n := fs.asked(); n != 3 {
		t.Fatalf("Standbys asked %d times after a 403 and a play", n)
	}

	fs.mu.Lock()
	fs.err = ErrNotStandby
	fs.mu.Unlock()
	if resp, body := post(t, whip, "application/sdp", testOffer); resp.StatusCode != http.StatusInternalServerError || body != "stream busy" {
		t.Errorf("not kept: %d %q", resp.StatusCode, body)
	}
	setStatus(0)
	if resp, _ := post(t, whip, "application/sdp", testOffer); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("not kept, request closed: %d", resp.StatusCode)
	}
}
