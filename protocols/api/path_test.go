package api

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// pathAttacks are escaped paths that must never reach an origin.
var pathAttacks = []string{
	"/api/v1/..%2f..%2fprivate.txt",
	"/api/v1/..%2F..%2Fprivate.txt",
	"/api/v1/%2e%2e/%2e%2e/private.txt",
	"/api/v1/%2E%2E/private.txt",
	"/api/v1/.%2e/private.txt",
	"/api/v1/%2e./private.txt",
	"/api/v1/%2e/streams/",
	"/api/v1/../../private.txt",
	"/api/v1/./streams/",
	"/api/v1/streams/..",
	"/api/v1/streams/.",
	"/api/v1/vhosts/%2f..%2fetc",
	"/api/v1/..%5c..%5cprivate.txt",
	"/api/v1/..%5C..%5Cprivate.txt",
	"/api/v1/..\\..\\private.txt",
	"/api/v1/streams/a%00b",
	"/api/v1/streams/%0d%0aX-Injected:%201",
	"/api/v1/streams/%7f",
	"/api/v1//streams/",
	"/api/v1/streams//x",
	"/api/v1//",
	"/api/v1/%252e%252e/private.txt",
	"/api/v1/%zz",
	"/api/v1/%2",
	"/api/v2/streams/",
	"/api/",
	"/",
	"",
	"/API/v1/streams/",
	"/api%2fv1/streams/",
	"/api/v1%2fstreams/",
	"//api/v1/streams/",
	"/other",
}

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" for a refused path
	}{
		{"/api/v1/", "/api/v1/"},
		{"/api/v1/streams", "/api/v1/streams"},
		{"/api/v1/streams/", "/api/v1/streams/"},
		{"/api/v1/streams/vid-j188221", "/api/v1/streams/vid-j188221"},
		{"/api/v1/clients/co10", "/api/v1/clients/co10"},
		{"/api/v1/vhosts/vid-1z14575/", "/api/v1/vhosts/vid-1z14575/"},
		{"/api/v1/raw", "/api/v1/raw"},
		{"/api/v1/clients/a%20b", "/api/v1/clients/a b"},
		{"/api/v1/streams/%41bc", "/api/v1/streams/Abc"},
		{"/api/v1/streams/...", "/api/v1/streams/..."},
		{"/api/v1/streams/..x", "/api/v1/streams/..x"},
		{"/api/v1/streams/a.b", "/api/v1/streams/a.b"},
		{"/api/v1", ""}, // apiRoot is checkPath's business
	} {
		got, err := cleanPath(tc.in)
		if tc.want == "" {
			if err == nil || !errors.Is(err, ErrBadPath) {
				t.Errorf("cleanPath(%q) = %q, %v; want ErrBadPath", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, p := range pathAttacks {
		if got, err := cleanPath(p); !errors.Is(err, ErrBadPath) {
			t.Errorf("cleanPath(%q) = %q, %v; want ErrBadPath", p, got, err)
		}
	}
}

// Through the handler, a bad path is a JSON 400 with CORS headers, with or
// without ?origin=, and no origin is asked anything.
func TestBadPathsNeverReachAnOrigin(t *testing.T) {
	o1 := newFakeSRS(t, "o1", "a")
	s, _ := newTestServer(t, Config{}, o1.info())
	for _, p := range pathAttacks {
		if _, err := url.ParseRequestURI(p); err != nil {
			continue // net/http answers 400 before any handler runs
		}
		for _, method := range []string{"GET", "DELETE", "POST", "OPTIONS"} {
			for _, q := range []string{"", "?origin=o1"} {
				w := httptest.NewRecorder()
				s.Handler().ServeHTTP(w, httptest.NewRequest(method, p+q, nil))
				var e apiError
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || w.Code != 400 || e.Code != 400 || e.Message == "" {
					t.Errorf("%s %s%s: %d %q", method, p, q, w.Code, w.Body)
				}
				if w.Header().Get("Access-Control-Allow-Origin") != "*" {
					t.Errorf("%s %s%s: no CORS headers", method, p, q)
				}
			}
		}
	}
	if l := o1.log(); len(l) != 0 {
		t.Fatalf("origin asked %v", l)
	}
	// The root of the API redirects to its trailing-slash form.
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/api/v1?origin=o1", nil))
	if w.Code/100 != 3 || w.Header().Get("Location") != "/api/v1/?origin=o1" {
		t.Fatalf("/api/v1: %d %v", w.Code, w.Header())
	}
}

func FuzzAPIPath(f *testing.F) {
	for _, p := range pathAttacks {
		f.Add(p)
	}
	for _, p := range []string{
		"/api/v1/", "/api/v1/streams", "/api/v1/streams/", "/api/v1/clients/co10",
		"/api/v1/vhosts/vid-1z14575/", "/api/v1/summaries", "/api/v1/clients/a%20b",
		"/api/v1/streams/...", "/api/v1/streams/%41bc",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := cleanPath(in)
		if err != nil {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("cleanPath(%q): %v is not ErrBadPath", in, err)
			}
			return
		}
		if !strings.HasPrefix(in, apiPrefix) || !strings.HasPrefix(got, apiPrefix) {
			t.Fatalf("cleanPath(%q) = %q: not below %s", in, got, apiPrefix)
		}
		// The clean path is the request's path decoded, and decoding it
		// again changes nothing.
		if dec, err := url.PathUnescape(in); err != nil || dec != got {
			t.Fatalf("cleanPath(%q) = %q, but it decodes to %q (%v)", in, got, dec, err)
		}
		if again, err := url.PathUnescape(got); err != nil || again != got {
			t.Fatalf("cleanPath(%q) = %q decodes again to %q (%v)", in, got, again, err)
		}
		segs := strings.Split(strings.TrimPrefix(got, apiPrefix), "/")
		for i, seg := range segs {
			if seg == "." || seg == ".." || (seg == "" && i != len(segs)-1) {
				t.Fatalf("cleanPath(%q) = %q has segment %q", in, got, seg)
			}
			if strings.ContainsFunc(seg, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
				t.Fatalf("cleanPath(%q) = %q has a control character or backslash", in, got)
			}
		}
		// The escaped form of the clean path, as it is sent to an origin,
		// is accepted again as the same path.
		esc := (&url.URL{Path: got}).EscapedPath()
		if again, err := cleanPath(esc); err != nil || again != got {
			t.Fatalf("cleanPath(%q) = %q, sent as %q, is read back as %q, %v", in, got, esc, again, err)
		}
	})
}
