package webrtc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

const offerSDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n" +
	"c=IN IP4 0.0.0.0\r\na=ice-ufrag:off1\r\na=ice-pwd:offpwdoffpwdoffpwdoffpwd\r\na=mid:0\r\n" +
	"a=candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host\r\n"

// fakeAPI is an origin's HTTP API that answers offers with crlf(answer).
type fakeAPI struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string // "METHOD uri"
	bodies   []string
	location string
	status   int
}

func startFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{location: "/rtc/v1/whip/?action=delete&token=t1&app=live&stream=s&session=ans1:off1", status: 201}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
		f.bodies = append(f.bodies, string(b))
		loc, status := f.location, f.status
		f.mu.Unlock()
		switch {
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusOK)
		case status != 201:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, `{"code":5012,"message":"origin says no"}`)
		case strings.HasPrefix(r.URL.Path, "/rtc/v1/publish/"), strings.HasPrefix(r.URL.Path, "/rtc/v1/play/"):
			out, _ := json.Marshal(map[string]any{"code": 0, "server": "vid-x", "sdp": crlf(answer), "sessionid": "ans1:off1"})
			w.Write(out)
		default:
			w.Header().Set("Location", loc)
			w.Header().Set("Content-Type", "application/sdp")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, crlf(answer))
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) last() (string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return "", ""
	}
	return f.requests[len(f.requests)-1], f.bodies[len(f.bodies)-1]
}

type sigEnv struct {
	srv    *Server
	store  *MemorySessionStore
	router *fakeRouter
	api    *fakeAPI
	http   *httptest.Server
}

func startSignalling(t *testing.T) *sigEnv { return startSignallingWith(t, nil) }

// startSignallingWith is startSignalling with a Config that mod may change.
func startSignallingWith(t *testing.T, mod func(*Config)) *sigEnv {
	testkit.CheckGoroutines(t)
	api := startFakeAPI(t)
	e := &sigEnv{store: NewMemorySessionStore(), api: api}
	e.router = &fakeRouter{origin: stream.Origin{ID: "o1", API: strings.TrimPrefix(api.URL, "http://"), RTC: "10.0.0.5:8000"}}
	cfg := Config{Router: e.router, Store: e.store, Activity: e.store, Logger: quietLogger(),
		Candidate: netip.MustParseAddrPort("192.0.2.1:18000")}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	mux := http.NewServeMux()
	mux.Handle("/rtc/v1/", srv.Handler())
	e.http = httptest.NewServer(mux)
	t.Cleanup(func() {
		e.http.Close()
		srv.Close()
		http.DefaultClient.CloseIdleConnections()
	})
	return e
}

func (e *sigEnv) do(t *testing.T, method, uri, ctype, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.http.URL+uri, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestWHIPAnswerAndDelete(t *testing.T) {
	e := startSignalling(t)
	for _, path := range []string{"/rtc/v1/whip/", "/rtc/v1/whep/", "/rtc/v1/whip-play/"} {
		t.Run(path, func(t *testing.T) {
			uri := path + "?app=live&stream=s&secret=abc"
			resp, body := e.do(t, "POST", uri, "application/sdp", offerSDP)
			if resp.StatusCode != 201 || resp.Header.Get("Content-Type") != "application/sdp" {
				t.Fatalf("status %d, type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			if req, sent := e.api.last(); req != "POST "+uri || sent != offerSDP {
				t.Fatalf("origin got %q", req)
			}
			c := candidates([]byte(body))
			if len(c) != 2 || !strings.Contains(c[0], " 192.0.2.1 18000 typ host") || strings.Contains(body, "10.0.0.5") {
				t.Fatalf("answer candidates not rewritten: %q", c)
			}
			wantLoc := "/rtc/v1/whip/?action=delete&token=t1&app=live&stream=s&session=ans1:off1&mesh_session=ans1%3Aoff1"
			if loc := resp.Header.Get("Location"); loc != wantLoc {
				t.Fatalf("Location %q, want %q", loc, wantLoc)
			}
			if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Fatal("no CORS header")
			}
			sess, ok := e.store.LookupRTCSession("ans1:off1")
			if !ok || sess.OriginRTC != "10.0.0.5:8000" || sess.OriginID != "o1" || sess.Key != "__defaultVhost__/live/s" ||
				sess.Pwd != "0123456789abcdef0123456789" ||
				sess.Resource != e.api.URL+"/rtc/v1/whip/?action=delete&token=t1&app=live&stream=s&session=ans1:off1" {
				t.Fatalf("stored session %+v", sess)
			}

			resp, body = e.do(t, "DELETE", resp.Header.Get("Location"), "", "")
			if resp.StatusCode != 200 {
				t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
			}
			if req, _ := e.api.last(); req != "DELETE /rtc/v1/whip/?action=delete&token=t1&app=live&stream=s&session=ans1:off1" {
				t.Fatalf("origin got %q", req)
			}
			if e.store.Len() != 0 {
				t.Fatal("session still stored after DELETE")
			}
		})
	}
}

func TestWHIPLocationOutsideRTCPath(t *testing.T) {
	e := startSignalling(t)
	e.api.location = "/whip/resource/abc"
	resp, _ := e.do(t, "POST", "/rtc/v1/whip/?app=live&stream=s", "application/sdp", offerSDP)
	if loc := resp.Header.Get("Location"); loc != "/rtc/v1/session/?mesh_session=ans1%3Aoff1" {
		t.Fatalf("Location %q", loc)
	}
	resp, _ = e.do(t, "DELETE", resp.Header.Get("Location"), "", "")
	if req, _ := e.api.last(); resp.StatusCode != 200 || req != "DELETE /whip/resource/abc" {
		t.Fatalf("DELETE %d reached origin as %q", resp.StatusCode, req)
	}
	// The session is gone: a second DELETE is a 404.
	if resp, _ = e.do(t, "DELETE", "/rtc/v1/session/?mesh_session=ans1%3Aoff1", "", ""); resp.StatusCode != 404 {
		t.Fatalf("second DELETE: %d", resp.StatusCode)
	}
}

// A DELETE whose session is not in the store (e.g. a Location kept from an
// SRS origin without the mesh parameter) is routed by the stream it names.
func TestDeleteRoutedByStream(t *testing.T) {
	e := startSignalling(t)
	resp, body := e.do(t, "DELETE", "/rtc/v1/whip/?action=delete&token=t9&app=live&stream=s&mesh_session=x%3Ay", "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if req, _ := e.api.last(); req != "DELETE /rtc/v1/whip/?action=delete&token=t9&app=live&stream=s" {
		t.Fatalf("origin got %q", req)
	}
}

func TestSignallingErrors(t *testing.T) {
	e := startSignalling(t)
	noUfrag := strings.ReplaceAll(offerSDP, "a=ice-ufrag:off1\r\n", "")
	for _, tc := range []struct {
		name, method, uri, body string
		status                  int
	}{
		{"bad SDP", "POST", "/rtc/v1/whip/?app=live&stream=s", "not an sdp", 400},
		{"no ufrag", "POST", "/rtc/v1/whep/?app=live&stream=s", noUfrag, 400},
		{"no stream", "POST", "/rtc/v1/whip/?app=live", offerSDP, 400},
		{"bad JSON", "POST", "/rtc/v1/publish/", "{", 400},
		{"JSON bad SDP", "POST", "/rtc/v1/play/", `{"sdp":"x","streamurl":"webrtc://h/live/s"}`, 400},
		{"unknown API", "POST", "/rtc/v1/nope/", offerSDP, 404},
		{"unknown session", "DELETE", "/rtc/v1/session/?mesh_session=a%3Ab", "", 404},
		{"method", "GET", "/rtc/v1/whip/", "", 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do(t, tc.method, tc.uri, "application/sdp", tc.body)
			var msg struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if resp.StatusCode != tc.status || json.Unmarshal([]byte(body), &msg) != nil || msg.Code != tc.status || msg.Message == "" {
				t.Fatalf("status %d body %s", resp.StatusCode, body)
			}
		})
	}
	if n := len(e.api.requests); n != 0 {
		t.Fatalf("bad requests reached the origin: %q", e.api.requests)
	}

	t.Run("unknown stream", func(t *testing.T) {
		e.router.mu.Lock()
		e.router.err = errors.New("no such stream")
		e.router.mu.Unlock()
		defer func() { e.router.mu.Lock(); e.router.err = nil; e.router.mu.Unlock() }()
		resp, body := e.do(t, "POST", "/rtc/v1/whep/?app=live&stream=gone", "application/sdp", offerSDP)
		if resp.StatusCode != 404 || !strings.Contains(body, `"code":404`) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("no origin", func(t *testing.T) {
		e.router.mu.Lock()
		e.router.err = fmt.Errorf("route: %w", stream.ErrNoOrigin)
		e.router.mu.Unlock()
		defer func() { e.router.mu.Lock(); e.router.err = nil; e.router.mu.Unlock() }()
		if resp, _ := e.do(t, "POST", "/rtc/v1/whip/?app=live&stream=s", "application/sdp", offerSDP); resp.StatusCode != 503 {
			t.Fatalf("%d", resp.StatusCode)
		}
	})
	t.Run("origin refuses", func(t *testing.T) {
		e.api.mu.Lock()
		e.api.status = 400
		e.api.mu.Unlock()
		resp, body := e.do(t, "POST", "/rtc/v1/whip/?app=live&stream=s", "application/sdp", offerSDP)
		if resp.StatusCode != 400 || !strings.Contains(body, "origin says no") || e.store.Len() != 0 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

func TestCORSPreflight(t *testing.T) {
	e := startSignalling(t)
	resp, _ := e.do(t, "OPTIONS", "/rtc/v1/whip/?app=live&stream=s", "", "")
	h := resp.Header
	if resp.StatusCode != 200 || h.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "DELETE") || h.Get("Access-Control-Allow-Headers") == "" {
		t.Fatalf("%d %v", resp.StatusCode, h)
	}
}

func TestSRSJSONAPI(t *testing.T) {
	e := startSignalling(t)
	reqBody, _ := json.Marshal(map[string]string{
		"api": "http://node:1985/rtc/v1/play/", "tid": "t1", "clientip": "",
		"streamurl": "webrtc://node/live/s?vhost=v.example", "sdp": offerSDP,
	})
	resp, body := e.do(t, "POST", "/rtc/v1/play/", "application/json", string(reqBody))
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var out struct {
		Code      int    `json:"code"`
		Server    string `json:"server"`
		SDP       string `json:"sdp"`
		SessionID string `json:"sessionid"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || out.Code != 0 || out.Server != "vid-x" || out.SessionID != "ans1:off1" {
		t.Fatalf("answer %s (%v)", body, err)
	}
	if c := candidates([]byte(out.SDP)); len(c) != 2 || !strings.Contains(c[0], "192.0.2.1 18000") {
		t.Fatalf("candidates %q", c)
	}
	if req, sent := e.api.last(); req != "POST /rtc/v1/play/" || sent != string(reqBody) {
		t.Fatalf("origin got %q", req)
	}
	if k := e.router.keys[len(e.router.keys)-1]; k.String() != "v.example/live/s" {
		t.Fatalf("routed %v", k)
	}
	if s, ok := e.store.LookupRTCSession("ans1:off1"); !ok || s.Resource != "" || s.Pwd != "0123456789abcdef0123456789" {
		t.Fatalf("stored %+v", s)
	}
}

func TestHandlerUnderStripPrefix(t *testing.T) {
	e := startSignalling(t)
	h := httptest.NewServer(http.StripPrefix("/rtc/v1", e.srv.Handler()))
	defer h.Close()
	resp, err := http.Post(h.URL+"/rtc/v1/whep/?app=live&stream=s", "application/sdp", strings.NewReader(offerSDP))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if req, _ := e.api.last(); resp.StatusCode != 201 || req != "POST /rtc/v1/whep/?app=live&stream=s" {
		t.Fatalf("%d, origin got %q", resp.StatusCode, req)
	}
}

// publishingRouter is a fakeRouter that is also a stream.Publisher:
// it reports the publishes whose origin accepted them and assigns them to
// assign (the routed origin when empty).
type publishingRouter struct {
	*fakeRouter
	assign   stream.Origin
	accepted []string
}

func (p *publishingRouter) RoutePublish(ctx context.Context, key stream.Key) (stream.Origin, error) {
	return p.Route(ctx, key)
}

func (p *publishingRouter) PublishAccepted(_ context.Context, key stream.Key, o stream.Origin) (stream.Origin, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accepted = append(p.accepted, key.Stream+"@"+o.ID)
	if p.assign.ID != "" {
		return p.assign, nil
	}
	return o, nil
}

func (p *publishingRouter) acceptedNow() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.accepted...)
}

// A WHIP (or SRS API) publish is reported accepted, which writes the
// stream's assignment, only once the origin answered it; a refused one
// leaves nothing, plays report nothing, and a publish whose stream was
// assigned elsewhere meanwhile gets 503 and its origin session is deleted.
func TestPublishAcceptedOnlyAfterTheOrigin(t *testing.T) {
	var pr *publishingRouter
	e := startSignallingWith(t, func(c *Config) {
		pr = &publishingRouter{fakeRouter: c.Router.(*fakeRouter)}
		c.Router, c.Publisher = pr, pr
	})
	e.api.status = 403
	for _, uri := range []string{"/rtc/v1/whip/?app=live&stream=refused", "/rtc/v1/publish/"} {
		body := offerSDP
		if strings.HasPrefix(uri, "/rtc/v1/publish/") {
			b, _ := json.Marshal(map[string]string{"sdp": offerSDP, "streamurl": "webrtc://h/live/refused2"})
			body = string(b)
		}
		if resp, _ := e.do(t, "POST", uri, "application/sdp", body); resp.StatusCode == 201 || resp.StatusCode == 200 {
			t.Fatalf("%s: a refused publish answered %d", uri, resp.StatusCode)
		}
	}
	if got := pr.acceptedNow(); len(got) != 0 {
		t.Fatalf("refused publishes reported accepted: %v", got)
	}
	e.api.status = 201
	if resp, body := e.do(t, "POST", "/rtc/v1/whip/?app=live&stream=ok", "application/sdp", offerSDP); resp.StatusCode != 201 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do(t, "POST", "/rtc/v1/whep/?app=live&stream=ok", "application/sdp", offerSDP); resp.StatusCode != 201 {
		t.Fatalf("play: %d %s", resp.StatusCode, body)
	}
	if got := pr.acceptedNow(); len(got) != 1 || got[0] != "ok@o1" {
		t.Fatalf("accepted: %v, want [ok@o1]", got)
	}
	e.store.DeleteRTCSession(context.Background(), "ans1:off1")
	pr.assign = stream.Origin{ID: "o2"}
	resp, body := e.do(t, "POST", "/rtc/v1/whip/?app=live&stream=late", "application/sdp", offerSDP)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "o2") {
		t.Fatalf("publish of a stream assigned elsewhere: %d %s", resp.StatusCode, body)
	}
	if req, _ := e.api.last(); !strings.HasPrefix(req, "DELETE ") {
		t.Fatalf("the origin's session was not deleted: last request %q", req)
	}
	if e.store.Len() != 0 {
		t.Fatal("a session was stored for a publish that was turned away")
	}
}
