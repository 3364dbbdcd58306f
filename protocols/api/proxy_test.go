package api

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

func TestStripClientHeaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"end-to-end headers stay",
			http.Header{"Accept": {"application/json"}, "Content-Type": {"application/json"}, "User-Agent": {"curl/8"}, "X-Custom": {"1"}},
			http.Header{"Accept": {"application/json"}, "Content-Type": {"application/json"}, "User-Agent": {"curl/8"}, "X-Custom": {"1"}}},
		{"credentials",
			http.Header{"Authorization": {"Bearer s3cret"}, "Cookie": {"a=b"}, "Proxy-Authorization": {"Basic eA=="}, "Accept": {"*/*"}},
			http.Header{"Accept": {"*/*"}}},
		{"forwarding claims",
			http.Header{"X-Forwarded-For": {"6.6.6.6"}, "X-Forwarded-Host": {"evil"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Port": {"1"},
				"X-Real-Ip": {"6.6.6.6"}, "Forwarded": {"for=6.6.6.6"}, "Accept": {"*/*"}},
			http.Header{"Accept": {"*/*"}}},
		{"underscores and case",
			http.Header{"X_real_ip": {"6.6.6.6"}, "X_forwarded_for": {"6.6.6.6"}, "x-real-ip": {"6.6.6.6"}, "AUTHORIZATION": {"x"}, "Proxy_connection": {"x"}},
			http.Header{}},
		{"hop-by-hop and the headers Connection names",
			http.Header{"Connection": {"X-Drop, keep-alive", "x_other"}, "Keep-Alive": {"timeout=5"}, "X-Drop": {"1"}, "X-Other": {"1"},
				"Te": {"trailers"}, "Trailer": {"X"}, "Transfer-Encoding": {"chunked"}, "Upgrade": {"websocket"}, "Proxy-Connection": {"keep-alive"},
				"X-Keep": {"1"}},
			http.Header{"X-Keep": {"1"}}},
		{"empty", http.Header{}, http.Header{}},
	} {
		h := tc.in.Clone()
		stripClientHeaders(h)
		if !maps.EqualFunc(h, tc.want, slices.Equal[[]string]) {
			t.Errorf("%s: got %v, want %v", tc.name, h, tc.want)
		}
	}
}

func TestProxyURL(t *testing.T) {
	o := OriginInfo{Origin: stream.Origin{ID: "o1", API: "10.0.0.5:1985"}}
	for _, tc := range []struct{ in, want string }{
		{"http://node:1985/api/v1/vhosts/?origin=o1", "http://10.0.0.5:1985/api/v1/vhosts/"},
		{"http://node:1985/api/v1/vhosts/?origin=o1&token=s3cret&x=1&b=2", "http://10.0.0.5:1985/api/v1/vhosts/?b=2&x=1"},
		{"http://evil:80/api/v1/clients/a%20b?origin=o1", "http://10.0.0.5:1985/api/v1/clients/a%20b"},
		{"http://user:pw@evil/api/v1/raw?rpc=reload&origin=o1#frag", "http://10.0.0.5:1985/api/v1/raw?rpc=reload"},
	} {
		in, err := url.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := proxyURL(o, in).String(); got != tc.want {
			t.Errorf("proxyURL(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// A proxied call reaches the origin's API endpoint with the clean path, the
// query without origin and token, and none of the client's credentials or
// forwarding claims; the node's own X-Forwarded-For names the real peer.
func TestProxyCleansRequest(t *testing.T) {
	testkit.CheckGoroutines(t)
	o1 := newFakeSRS(t, "o1")
	_, hs := newTestServer(t, Config{Token: "s3cret"}, o1.info())
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	post := func(auth string) int {
		req, _ := http.NewRequest("POST", hs.URL+"/api/v1/vhosts/?origin=o1&token=s3cret&x=1", strings.NewReader(`{"a":1}`))
		for k, v := range map[string]string{
			"Content-Type":        "application/json",
			"X-Custom":            "kept",
			"Cookie":              "session=1",
			"Proxy-Authorization": "Basic eA==",
			"X-Forwarded-For":     "6.6.6.6",
			"X-Forwarded-Host":    "spoofed",
			"X-Real-Ip":           "6.6.6.6",
			"Forwarded":           "for=6.6.6.6",
			"Connection":          "X-Hop",
			"X-Hop":               "1",
		} {
			req.Header.Set(k, v)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	// A bearer header is the token; a wrong one is not made good by ?token=.
	if code := post("Bearer other"); code != 401 {
		t.Fatalf("wrong bearer: %d", code)
	}
	if code := post("Bearer s3cret"); code != 200 {
		t.Fatalf("proxied: %d", code)
	}
	if l := o1.log(); !slices.Equal(l, []string{"POST /api/v1/vhosts/?x=1"}) {
		t.Fatalf("o1 requests %v", l)
	}
	h := o1.lastHeader()
	for _, k := range []string{"Authorization", "Cookie", "Proxy-Authorization", "X-Real-Ip", "Forwarded", "X-Hop"} {
		if v := h.Values(k); len(v) > 0 {
			t.Errorf("origin got %s: %q", k, v)
		}
	}
	if h.Get("X-Custom") != "kept" || h.Get("Content-Type") != "application/json" {
		t.Errorf("origin lost end-to-end headers: %v", h)
	}
	if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Host") != strings.TrimPrefix(hs.URL, "http://") {
		t.Errorf("origin got X-Forwarded-For %q X-Forwarded-Host %q", h.Get("X-Forwarded-For"), h.Get("X-Forwarded-Host"))
	}
}

// An id that needs escaping is sent to the origin escaped once.
func TestOneByIDEscapesOnce(t *testing.T) {
	o1 := newFakeSRS(t, "o1")
	s, _ := newTestServer(t, Config{}, o1.info())
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/clients/a%20b", nil))
	if w.Code != 404 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if l := o1.log(); !slices.Equal(l, []string{"GET /api/v1/clients/a%20b"}) {
		t.Fatalf("o1 requests %v", l)
	}
}
