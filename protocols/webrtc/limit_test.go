package webrtc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
)

// offerFrom sends a WHIP offer (or, with path, another request) to the
// handler as if from the TCP peer remote.
func offerFrom(h http.Handler, method, path, remote string) *httptest.ResponseRecorder {
	body := ""
	if method == http.MethodPost {
		body = offerSDP
	}
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	req.Header.Set("X-Forwarded-For", "203.0.113.9") // never read
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

const whipURI = "/rtc/v1/whip/?app=live&stream=s"

// Past its burst a client gets 429 with Retry-After; other clients, and its
// DELETEs, are not affected.
// testClock is a clock that moves only when told to.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Unix(1000, 0).UnixNano())
	return c
}

func (c *testClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// stopOfferClock makes e's offer limit count by a clock that moves only
// when the test moves it, so that no bucket refills however slow the run.
func stopOfferClock(e *sigEnv) *testClock {
	c := newTestClock()
	e.srv.offerLimit.now = c.Now
	return c
}

func TestOfferRateLimitPerClient(t *testing.T) {
	e := startSignalling(t) // the defaults: 5/s, bursts of 20
	clock := stopOfferClock(e)
	h := e.srv.Handler()
	for i := range DefaultOfferBurst {
		path := whipURI
		if i%2 == 1 {
			path = "/rtc/v1/whep/?app=live&stream=s"
		}
		if rec := offerFrom(h, "POST", path, "10.0.0.1:40000"); rec.Code != 201 {
			t.Fatalf("offer %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	sent := len(e.api.requests)
	for _, path := range []string{whipURI, "/rtc/v1/publish/", "/rtc/v1/play/", "/rtc/v1/whip-play/?app=live&stream=s"} {
		rec := offerFrom(h, "POST", path, "10.0.0.1:40001") // another port, same client
		var body struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if rec.Code != http.StatusTooManyRequests || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Code != 429 ||
			body.Message == "" || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%s over the limit: %d %q", path, rec.Code, rec.Body)
		}
		if ra := rec.Header().Get("Retry-After"); ra != "1" {
			t.Fatalf("Retry-After %q, want 1", ra)
		}
		if rec.Header().Get("Access-Control-Allow-Origin") != "*" {
			t.Fatal("a refusal without CORS headers: browsers cannot read it")
		}
	}
	if n := len(e.api.requests); n != sent {
		t.Fatalf("%d refused offers reached the origin", n-sent)
	}
	// Another client, an IPv6 one, and the first client's DELETE and
	// preflight go on.
	for _, remote := range []string{"10.0.0.2:40000", "[2001:db8::1]:40000"} {
		if rec := offerFrom(h, "POST", whipURI, remote); rec.Code != 201 {
			t.Fatalf("offer from %s: %d %s", remote, rec.Code, rec.Body)
		}
	}
	if rec := offerFrom(h, "DELETE", "/rtc/v1/session/?mesh_session=ans1%3Aoff1", "10.0.0.1:40000"); rec.Code != 200 {
		t.Fatalf("DELETE over the offer limit: %d %s", rec.Code, rec.Body)
	}
	if rec := offerFrom(h, "OPTIONS", whipURI, "10.0.0.1:40000"); rec.Code != 200 {
		t.Fatalf("preflight over the offer limit: %d", rec.Code)
	}
	st := e.srv.Stats()
	if st.OffersLimited != 4 || st.SignallingErrors != 0 || st.Offers != DefaultOfferBurst+2 {
		t.Fatalf("stats %+v", st)
	}
	// The bucket refills at OfferRate: one offer after 1/OfferRate, not two.
	clock.Add(time.Second / DefaultOfferRate)
	if rec := offerFrom(h, "POST", whipURI, "10.0.0.1:40000"); rec.Code != 201 {
		t.Fatalf("offer after the refill: %d %s", rec.Code, rec.Body)
	}
	if rec := offerFrom(h, "POST", whipURI, "10.0.0.1:40000"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("second offer after one refill: %d %s", rec.Code, rec.Body)
	}
}

func TestOfferRateLimitConfig(t *testing.T) {
	e := startSignallingWith(t, func(c *Config) { c.OfferRate, c.OfferBurst = 0.1, 1 })
	stopOfferClock(e)
	h := e.srv.Handler()
	if rec := offerFrom(h, "POST", whipURI, "10.0.0.1:1"); rec.Code != 201 {
		t.Fatalf("first offer: %d", rec.Code)
	}
	if rec := offerFrom(h, "POST", whipURI, "10.0.0.1:1"); rec.Code != 429 || rec.Header().Get("Retry-After") != "10" {
		t.Fatalf("second offer: %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}

	off := startSignallingWith(t, func(c *Config) { c.OfferRate = -1 })
	for i := range 3 * DefaultOfferBurst {
		if rec := offerFrom(off.srv.Handler(), "POST", whipURI, "10.0.0.1:1"); rec.Code != 201 {
			t.Fatalf("offer %d without a limit: %d", i, rec.Code)
		}
	}
}

func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"10.0.0.1:5", "10.0.0.1/32"},
		{"[::ffff:10.0.0.1]:5", "10.0.0.1/32"},
		{"[2001:db8:1:2:3:4:5:6]:5", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:5", "fe80::/64"},
		{"not an address", "invalid Prefix"},
		{"", "invalid Prefix"},
	} {
		if got := clientKey(tc.remote).String(); got != tc.want {
			t.Errorf("clientKey(%q) = %s, want %s", tc.remote, got, tc.want)
		}
	}
}

// The table of clients stays within its bound however many addresses make
// offers; addresses beyond it share one bucket; idle clients are forgotten.
func TestOfferLimiterTableIsBounded(t *testing.T) {
	const max, burst = 100, 2
	l := newOfferLimiter(5, burst, max)
	now := time.Unix(1000, 0)
	allowed := 0
	for i := range 10 * max {
		key := clientKey(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255))
		if ok, _ := l.allow(key, now); ok {
			allowed++
		}
		if n := l.size(); n > max {
			t.Fatalf("%d clients tracked, bound %d", n, max)
		}
	}
	// Each tracked client had its own bucket; the other 900 shared one.
	if allowed != max+burst {
		t.Fatalf("%d offers allowed, want %d", allowed, max+burst)
	}
	// A tracked client is still limited by its own bucket.
	first := clientKey("10.0.0.0:1")
	l.allow(first, now)
	if ok, wait := l.allow(first, now); ok || wait <= 0 || wait > time.Second {
		t.Fatalf("a tracked client past its burst: %v %v", ok, wait)
	}
	// A minute later the clients are idle: as many new ones get their own
	// buckets again, and the table does not grow past its bound.
	later := now.Add(time.Minute)
	for i := range max {
		key := clientKey(fmt.Sprintf("[2001:db8:%x::1]:1", i))
		if ok, _ := l.allow(key, later); !ok {
			t.Fatalf("new client %d after the others went idle was refused", i)
		}
		if n := l.size(); n > max {
			t.Fatalf("%d clients tracked, bound %d", n, max)
		}
	}
	if _, ok := l.clients[first]; ok || l.size() != max {
		t.Fatalf("idle clients kept; %d tracked", l.size())
	}
}

// The handler's table is bounded when offers come from many addresses.
func TestOfferLimitUnderManyAddresses(t *testing.T) {
	e := startSignallingWith(t, func(c *Config) { c.MaxOfferClients = 50 })
	stopOfferClock(e) // the shared overflow bucket must not refill during the 200 offers
	h := e.srv.Handler()
	codes := map[int]int{}
	for i := range 200 {
		rec := offerFrom(h, "POST", whipURI, fmt.Sprintf("10.1.%d.%d:9", i/256, i%256))
		codes[rec.Code]++
	}
	if n := e.srv.offerLimit.size(); n != 50 {
		t.Fatalf("%d clients tracked, want the bound 50", n)
	}
	if codes[201] != 50+DefaultOfferBurst || codes[429] != 200-50-DefaultOfferBurst {
		t.Fatalf("answers %v", codes)
	}
}

// failingStore refuses every session, as the mesh does when its table is
// full of sessions relays carry.
type failingStore struct{ *MemorySessionStore }

var errTableFull = errors.New("mesh: rtc session table is full of active sessions")

func (failingStore) PutRTCSession(context.Context, stream.RTCSession) error {
	return fmt.Errorf("%w (20 sessions)", errTableFull)
}

// An offer whose session the store refuses gets 503 with a JSON message,
// and the origin's resource is deleted.
func TestStoreRefusalIs503(t *testing.T) {
	e := startSignallingWith(t, func(c *Config) { c.Store = failingStore{NewMemorySessionStore()} })
	for _, path := range []string{whipURI, "/rtc/v1/publish/"} {
		body := offerSDP
		if path == "/rtc/v1/publish/" {
			b, _ := json.Marshal(map[string]string{"sdp": offerSDP, "streamurl": "webrtc://h/live/s"})
			body = string(b)
		}
		resp, got := e.do(t, "POST", path, "", body)
		var msg struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if resp.StatusCode != 503 || json.Unmarshal([]byte(got), &msg) != nil || msg.Code != 503 ||
			!strings.Contains(msg.Message, "full of active sessions") {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, got)
		}
	}
	found := false
	for _, r := range e.api.requests {
		found = found || strings.HasPrefix(r, "DELETE /rtc/v1/whip/?action=delete")
	}
	if !found {
		t.Fatalf("the origin's resource was not deleted: %q", e.api.requests)
	}
}
