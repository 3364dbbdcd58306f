package api

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/srs-mesh/srs-mesh/stream/bearer"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

func TestNeedsTokenAndTokenOK(t *testing.T) {
	const tok = "s3cret"
	for _, tc := range []struct {
		method, target, auth string
		needs, ok            bool
	}{
		{"GET", "/api/v1/streams/", "", false, false},
		{"HEAD", "/api/v1/summaries", "", false, false},
		{"OPTIONS", "/api/v1/clients/x", "", false, false},
		{"GET", "/api/v1/streams/?origin=o1", "", true, false},
		{"GET", "/api/v1/streams/?origin=", "", true, false},
		{"GET", "/api/v1/streams/?%6Frigin=o1", "", true, false}, // decoded like selectOrigins does
		{"OPTIONS", "/api/v1/vhosts/?origin=o1", "", true, false},
		{"DELETE", "/api/v1/clients/c1", "", true, false},
		{"POST", "/api/v1/raw", "", true, false},
		{"PUT", "/api/v1/vhosts/", "", true, false},
		{"PATCH", "/api/v1/vhosts/", "", true, false},
		{"BREW", "/api/v1/streams/", "", true, false},
		{"DELETE", "/api/v1/clients/c1", "Bearer s3cret", true, true},
		{"DELETE", "/api/v1/clients/c1", "bearer  s3cret ", true, true},
		{"DELETE", "/api/v1/clients/c1?token=s3cret", "", true, true},
		{"DELETE", "/api/v1/clients/c1", "Bearer s3cre", true, false},
		{"DELETE", "/api/v1/clients/c1", "Bearer s3cretx", true, false},
		{"DELETE", "/api/v1/clients/c1", "Basic s3cret", true, false},
		{"DELETE", "/api/v1/clients/c1", "s3cret", true, false},
		{"DELETE", "/api/v1/clients/c1", "Bearer ", true, false},
		{"DELETE", "/api/v1/clients/c1?token=", "", true, false},
		{"DELETE", "/api/v1/clients/c1?token=S3CRET", "", true, false},
		// A bearer header is the token; a query token does not override it.
		{"DELETE", "/api/v1/clients/c1?token=s3cret", "Bearer wrong", true, false},
		{"DELETE", "/api/v1/clients/c1?token=wrong", "Bearer s3cret", true, true},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		if got := needsToken(r); got != tc.needs {
			t.Errorf("needsToken(%s %s) = %v", tc.method, tc.target, got)
		}
		if got := bearer.Match(bearer.FromRequest(r), tok); got != tc.ok {
			t.Errorf("tokenOK(%s %s, %q) = %v", tc.method, tc.target, tc.auth, got)
		}
	}
}

// With a token configured, writes and ?origin= calls without it are 401s
// that reach no origin; with it they work; public reads need none.
func TestTokenRequired(t *testing.T) {
	testkit.CheckGoroutines(t)
	o1 := newFakeSRS(t, "o1", "a")
	o2 := newFakeSRS(t, "o2", "b")
	s, _ := newTestServer(t, Config{Token: "s3cret"}, o1.info(), o2.info())
	serve := func(method, target, auth string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		return w
	}
	for _, tc := range []struct {
		method, target, auth string
		status               int
	}{
		{"GET", "/api/v1/streams/", "", 200},
		{"GET", "/api/v1/clients", "", 200},
		{"GET", "/api/v1/summaries", "", 200},
		{"GET", "/api/v1/versions", "", 200},
		{"HEAD", "/api/v1/streams/", "", 200},
		{"GET", "/api/v1/streams/vid-o10", "", 200},
		{"OPTIONS", "/api/v1/clients/co10?origin=o1", "", 200},
		{"GET", "/api/v1/streams/?origin=o1", "", 401},
		{"GET", "/api/v1/vhosts/?origin=o1", "", 401},
		{"GET", "/api/v1/vhosts/?origin=o1", "Bearer nope", 401},
		{"GET", "/api/v1/vhosts/?origin=o1&token=nope", "", 401},
		{"DELETE", "/api/v1/clients/co10", "", 401},
		{"DELETE", "/api/v1/streams/vid-o10", "", 401},
		{"DELETE", "/api/v1/clients/co10?origin=o1", "", 401},
		{"DELETE", "/api/v1/clients/co10", "Bearer nope", 401},
		{"POST", "/api/v1/vhosts/?origin=o1", "", 401},
		{"PUT", "/api/v1/streams/", "", 401},
		{"PATCH", "/api/v1/raw?origin=o2", "", 401},
		{"GET", "/api/v1?origin=o1", "", 401},
	} {
		w := serve(tc.method, tc.target, tc.auth)
		if w.Code != tc.status {
			t.Errorf("%s %s (%q): %d %s, want %d", tc.method, tc.target, tc.auth, w.Code, w.Body, tc.status)
			continue
		}
		if tc.status == 401 {
			if w.Header().Get("WWW-Authenticate") != `Bearer realm="srs-mesh"` || !strings.Contains(w.Body.String(), `"code":401`) {
				t.Errorf("%s %s: 401 without challenge or JSON: %v %s", tc.method, tc.target, w.Header(), w.Body)
			}
			if strings.Contains(w.Body.String(), "s3cret") || strings.Contains(w.Body.String(), "nope") {
				t.Errorf("%s %s: the answer names the token: %s", tc.method, tc.target, w.Body)
			}
		}
	}
	for _, o := range []*fakeSRS{o1, o2} {
		for _, l := range o.log() {
			if !strings.HasPrefix(l, "GET /api/v1/streams/") && !strings.HasPrefix(l, "GET /api/v1/clients/") && l != "GET /api/v1/summaries" {
				t.Fatalf("%s was asked %q by a request without the token", o.id, l)
			}
		}
	}

	// With the token, in either form.
	if w := serve("GET", "/api/v1/vhosts/?origin=o1&token=s3cret&x=1", ""); w.Code != 200 {
		t.Fatalf("?token=: %d %s", w.Code, w.Body)
	}
	if w := serve("GET", "/api/v1/vhosts/?origin=o2", "Bearer s3cret"); w.Code != 200 {
		t.Fatalf("bearer: %d %s", w.Code, w.Body)
	}
	if w := serve("DELETE", "/api/v1/clients/co10", "Bearer s3cret"); w.Code != 200 || !slices.Equal(o1.deleted, []string{"co10"}) {
		t.Fatalf("delete: %d %s, deleted %v", w.Code, w.Body, o1.deleted)
	}
	// ?token= never reaches the origin.
	for _, o := range []*fakeSRS{o1, o2} {
		for _, l := range o.log() {
			if strings.Contains(l, "token") || strings.Contains(l, "s3cret") {
				t.Fatalf("%s was sent the token: %q", o.id, l)
			}
		}
	}
	if l := o1.log(); !slices.Contains(l, "GET /api/v1/vhosts/?x=1") {
		t.Fatalf("o1 requests %v", l)
	}
}

// Without a token and without OpenWrites (an API port off loopback), every
// call that needs the token is a 403 with a JSON error that reaches no
// origin; the public reads still work.
func TestWritesClosedWithoutToken(t *testing.T) {
	testkit.CheckGoroutines(t)
	o1 := newFakeSRS(t, "o1", "a")
	s, _ := newClosedServer(t, Config{}, o1.info())
	for _, tc := range []struct {
		method, target, auth string
		status               int
	}{
		{"GET", "/api/v1/streams/", "", 200},
		{"GET", "/api/v1/summaries", "", 200},
		{"GET", "/api/v1/clients/co10", "", 200},
		{"OPTIONS", "/api/v1/raw?rpc=reload&origin=o1", "", 200},
		{"GET", "/api/v1/raw?rpc=reload&origin=o1", "", 403},
		{"POST", "/api/v1/raw?rpc=reload&origin=o1", "", 403},
		{"DELETE", "/api/v1/clients/co10", "", 403},
		{"DELETE", "/api/v1/streams/vid-o10", "Bearer anything", 403},
		{"DELETE", "/api/v1/clients/co10?origin=o1&token=x", "", 403},
		{"PUT", "/api/v1/vhosts/", "", 403},
		{"GET", "/api/v1/vhosts/?origin=o1", "", 403},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.target, w.Code, w.Body, tc.status)
			continue
		}
		if tc.status == 403 && (!strings.Contains(w.Body.String(), `"code":403`) || !strings.Contains(w.Body.String(), "token")) {
			t.Errorf("%s %s: 403 without a JSON reason: %s", tc.method, tc.target, w.Body)
		}
	}
	for _, l := range o1.log() {
		if !strings.HasPrefix(l, "GET /api/v1/streams/") && !strings.HasPrefix(l, "GET /api/v1/clients/") && l != "GET /api/v1/summaries" {
			t.Fatalf("o1 was asked %q by a refused call", l)
		}
	}
	if len(o1.deleted) != 0 {
		t.Fatalf("o1 kicked %v", o1.deleted)
	}
}

// Credentials go to the origin they are for, on fan-outs, searches and
// proxied calls, in place of whatever Authorization the client sent, which
// is never forwarded.
func TestOriginCredentials(t *testing.T) {
	testkit.CheckGoroutines(t)
	o1 := newFakeSRS(t, "o1", "a")
	o2 := newFakeSRS(t, "o2", "b")
	creds := map[string]string{"o1": "Bearer origin-one-secret"}
	_, hs := newTestServer(t, Config{Token: "mesh-token", Credentials: func(id string) string { return creds[id] }}, o1.info(), o2.info())
	send := func(method, path string) {
		t.Helper()
		req, _ := http.NewRequest(method, hs.URL+path, nil)
		req.Header.Set("Authorization", "Bearer mesh-token")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("%s %s: %d", method, path, res.StatusCode)
		}
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/summaries"},
		{"GET", "/api/v1/vhosts/?origin=o1"},
		{"GET", "/api/v1/vhosts/?origin=o2"},
		{"DELETE", "/api/v1/clients/co10"},
	} {
		send(c.method, c.path)
	}
	check := func(f *fakeSRS, want string) {
		t.Helper()
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.headers) == 0 {
			t.Fatalf("%s was not asked", f.id)
		}
		for i, h := range f.headers {
			if got := h.Get("Authorization"); got != want {
				t.Errorf("%s %q had Authorization %q, want %q", f.id, f.requests[i], got, want)
			}
		}
	}
	check(o1, "Bearer origin-one-secret")
	check(o2, "")
}
