package api

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

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

// While an origin is sent credentials, its reads are private at the
// origin, and so are the node's reads that ask origins: without the token
// they are 401s that reach no origin (no origin's answer, addresses or
// tcUrls, reaches the caller), and with it they work and the origin is
// sent its credentials. /api/v1/versions asks no origin and stays public.
func TestPrivateReadsNeedToken(t *testing.T) {
	testkit.CheckGoroutines(t)
	o1 := newFakeSRS(t, "o1", "a")
	o2 := newFakeSRS(t, "o2", "b")
	creds := map[string]string{"o1": "Basic YWRtaW46c2VjcmV0"}
	s, _ := newTestServer(t, Config{Token: "s3cret", Credentials: func(id string) string { return creds[id] }}, o1.info(), o2.info())
	serve := func(method, target, auth string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		return w
	}
	reads := []string{
		"/api/v1/clients", "/api/v1/clients/", "/api/v1/streams", "/api/v1/streams/",
		"/api/v1/summaries", "/api/v1/summaries/", "/api/v1/clients/co10", "/api/v1/streams/vid-o10",
		"/api/v1/clients/?start=0&count=5",
	}
	for _, p := range reads {
		for _, c := range []struct{ method, target, auth string }{
			{"GET", p, ""},
			{"HEAD", p, ""},
			{"GET", p, "Bearer nope"},
			{"GET", p, "Basic YWRtaW46c2VjcmV0"}, // the origin's own credentials are not the mesh's token
			{"GET", p + sep(p) + "token=nope", ""},
		} {
			w := serve(c.method, c.target, c.auth)
			if w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Bearer realm="srs-mesh"` {
				t.Errorf("%s %s (%q): %d %v, want 401 with a challenge", c.method, c.target, c.auth, w.Code, w.Header())
				continue
			}
			if c.method == "GET" && (!strings.Contains(w.Body.String(), `"code":401`) || strings.Contains(w.Body.String(), "127.0.0.1")) {
				t.Errorf("%s %s: %s", c.method, c.target, w.Body)
			}
		}
	}
	for _, o := range []*fakeSRS{o1, o2} {
		if l := o.log(); len(l) != 0 {
			t.Fatalf("%s was asked %v by callers without the token", o.id, l)
		}
	}
	if w := serve("GET", "/api/v1/versions", ""); w.Code != 200 {
		t.Fatalf("versions: %d %s", w.Code, w.Body)
	}

	// With the token, in either form, the reads work.
	for _, p := range reads {
		if w := serve("GET", p, "Bearer s3cret"); w.Code != 200 {
			t.Errorf("GET %s with the token: %d %s", p, w.Code, w.Body)
		}
	}
	w := serve("GET", "/api/v1/clients/?token=s3cret", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"co10"`) || !strings.Contains(w.Body.String(), `"co20"`) {
		t.Fatalf("clients with ?token=: %d %s", w.Code, w.Body)
	}
	if got := o1.lastHeader().Get("Authorization"); got != creds["o1"] {
		t.Fatalf("o1 was sent %q", got)
	}
}

// Without a token, the reads of origins with credentials follow the rule
// of writes: refused (403, a JSON reason) unless OpenWrites; reads of a
// mesh whose origins have no credentials stay public.
func TestPrivateReadsWithoutToken(t *testing.T) {
	testkit.CheckGoroutines(t)
	o1 := newFakeSRS(t, "o1", "a")
	withCreds := func(string) string { return "Bearer origin-secret" }
	for _, tc := range []struct {
		name   string
		cfg    Config
		status int
	}{
		{"closed, credentials", Config{Credentials: withCreds}, 403},
		{"open, credentials", Config{Credentials: withCreds, OpenWrites: true}, 200},
		{"closed, no credentials", Config{Credentials: func(string) string { return "" }}, 200},
		{"closed, nil credentials", Config{}, 200},
	} {
		s, _ := newClosedServer(t, tc.cfg, o1.info())
		for _, p := range []string{"/api/v1/clients/", "/api/v1/streams/", "/api/v1/summaries", "/api/v1/clients/co10"} {
			before := len(o1.log())
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, httptest.NewRequest("GET", p, nil))
			if w.Code != tc.status {
				t.Errorf("%s: GET %s: %d %s, want %d", tc.name, p, w.Code, w.Body, tc.status)
				continue
			}
			if tc.status == 403 {
				if !strings.Contains(w.Body.String(), `"code":403`) || !strings.Contains(w.Body.String(), "credentials") {
					t.Errorf("%s: GET %s: 403 without a JSON reason: %s", tc.name, p, w.Body)
				}
				if after := o1.log(); len(after) != before {
					t.Errorf("%s: GET %s reached the origin: %v", tc.name, p, after[before:])
				}
			}
		}
	}
}

// Only callers who may make the calls that need the token read why an
// origin could not be reached (the transport's error names its internal
// address); anyone else reads that it is unreachable.
func TestUnreachableOriginDetailForOperatorsOnly(t *testing.T) {
	testkit.CheckGoroutines(t)
	good := newFakeSRS(t, "good", "a")
	dead := deadOrigin(t, "dead")
	addr := dead.Origin.API
	s, _ := newClosedServer(t, Config{Token: "s3cret", PerOriginTimeout: 2 * time.Second}, good.info(), dead)
	serve := func(target, auth string) string {
		r := httptest.NewRequest("GET", target, nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		if w.Code != 200 && w.Code != 404 {
			t.Fatalf("GET %s: %d %s", target, w.Code, w.Body)
		}
		return w.Body.String()
	}
	for _, p := range []string{"/api/v1/clients/", "/api/v1/streams/", "/api/v1/summaries", "/api/v1/clients/nope", "/api/v1/streams/nope"} {
		anon := serve(p, "")
		if strings.Contains(anon, addr) || strings.Contains(anon, "refused") || !strings.Contains(anon, "unreachable") {
			t.Errorf("anonymous GET %s: %s", p, anon)
		}
		if op := serve(p, "Bearer s3cret"); !strings.Contains(op, addr) {
			t.Errorf("operator GET %s does not say why: %s", p, op)
		}
	}
	// Without a token, OpenWrites decides who is an operator.
	for _, open := range []bool{false, true} {
		s, _ := newClosedServer(t, Config{OpenWrites: open}, good.info(), dead)
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/clients/", nil))
		if got := strings.Contains(w.Body.String(), addr); got != open {
			t.Errorf("OpenWrites %v: the answer names the address: %v: %s", open, got, w.Body)
		}
	}
}

// The default client reaches origins directly, never through a proxy the
// environment names, which would be handed their credentials.
func TestDefaultClientHasNoProxy(t *testing.T) {
	s, err := New(Config{Origins: fakeOrigins{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tr, ok := s.client.Transport.(*http.Transport)
	if !ok || tr.Proxy != nil {
		t.Fatalf("transport %T with a proxy function", s.client.Transport)
	}
}

// sep is the separator before one more query parameter of target.
func sep(target string) string {
	if strings.Contains(target, "?") {
		return "&"
	}
	return "?"
}

// On the wire, however a request line spells its method, path or
// ?origin=, a node without a token and with closed writes sends its origin
// nothing but the GETs of reads; with credentials for the origin, nothing
// at all.
func TestWritesClosedOnTheWire(t *testing.T) {
	testkit.CheckGoroutines(t)
	lines := []string{
		"POST /api/v1/raw?rpc=reload&origin=o1",
		"GET /api/v1/raw?rpc=reload&origin=o1",
		"GET /api/v1/raw?rpc=reload&%6frigin=o1",
		"GET /api/v1/raw?rpc=reload&origin=o1&origin=o2",
		"GET /api/v1/raw?rpc=reload;origin=o1",
		"GET /api/v1/raw?rpc=reload&Origin=o1",
		"get /api/v1/raw?rpc=reload&origin=o1",
		"HEAD /api/v1/raw?rpc=reload&origin=o1",
		"OPTIONS /api/v1/raw?rpc=reload&origin=o1",
		"DELETE /api/v1/clients/co10",
		"delete /api/v1/clients/co10",
		"PURGE /api/v1/clients/co10",
		"GET /api/v1/clients/co10?x=1",
		"GET //api/v1/raw?rpc=reload&origin=o1",
		"GET /api/v1//raw?rpc=reload",
		"GET /api/v1/raw/?rpc=reload",
		"GET /api/v1/raw.?rpc=reload",
		"GET /api/v1/streams/raw%3Frpc=reload",
		"GET /api/v1/streams/..%2f..%2fraw",
		"GET /api/v1/clients/%2e%2e",
		"GET http://x/api/v1/raw?rpc=reload&origin=o1",
		"GET /api/v1/clients/x%3Borigin=o1",
	}
	for _, creds := range []bool{false, true} {
		o1 := newFakeSRS(t, "o1", "s")
		cfg := Config{}
		if creds {
			cfg.Credentials = func(string) string { return "Bearer origin-secret" }
		}
		_, hs := newClosedServer(t, cfg, o1.info())
		for _, line := range lines {
			c, err := net.Dial("tcp", hs.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "%s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", line)
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			c.Close()
			if creds && res.StatusCode == 200 && !strings.HasPrefix(line, "OPTIONS ") {
				t.Errorf("credentials, %s: 200", line)
			}
		}
		for _, l := range o1.log() {
			if creds || !strings.HasPrefix(l, "GET /api/v1/clients/") && !strings.HasPrefix(l, "GET /api/v1/streams/") || strings.Contains(l, "raw?") {
				t.Errorf("credentials %v: the origin was asked %q", creds, l)
			}
		}
		if len(o1.deleted) != 0 {
			t.Errorf("credentials %v: the origin kicked %v", creds, o1.deleted)
		}
	}
}
