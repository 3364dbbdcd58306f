package dashboard

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestServesAssets(t *testing.T) {
	h := Handler()
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", `<script src="app.js"`},
		{"/index.html", "text/html; charset=utf-8", "<table id=\"nodes\">"},
		{"/app.js", "text/javascript; charset=utf-8", "mesh/v1/status"},
		{"/style.css", "text/css; charset=utf-8", ".table-wrap"},
		{"/uPlot.iife.min.js", "text/javascript; charset=utf-8", "uPlot"},
		{"/uPlot.min.css", "text/css; charset=utf-8", ".uplot"},
		{"/uPlot.LICENSE.txt", "text/plain; charset=utf-8", "MIT"},
	} {
		res, body := get(t, h, http.MethodGet, tc.path)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", tc.path, res.StatusCode)
		}
		if got := res.Header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("%s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		if !strings.Contains(body, tc.contains) {
			t.Errorf("%s: no %q", tc.path, tc.contains)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s: CSP %q", tc.path, csp)
		}
	}
	if res, body := get(t, h, http.MethodHead, "/"); res.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", res.StatusCode, body)
	}
}

func TestErrors(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/nope.js", "/static/app.js", "/../dashboard.go", "/a/b"} {
		res, body := get(t, h, http.MethodGet, p)
		if res.StatusCode != 404 || !strings.Contains(body, `"code":404`) {
			t.Errorf("%s: %d %s", p, res.StatusCode, body)
		}
	}
	res, body := get(t, h, http.MethodPost, "/")
	if res.StatusCode != 405 || res.Header.Get("Allow") == "" || !strings.Contains(body, `"code":405`) {
		t.Errorf("POST: %d %v %s", res.StatusCode, res.Header, body)
	}
}

// vendored are the embedded files of uPlot, as published.
var vendored = map[string]bool{"uPlot.iife.min.js": true, "uPlot.min.css": true, "uPlot.LICENSE.txt": true}

// The page must work without Internet access and leak nothing to third
// parties: no embedded file may name another host.
func TestNoExternalURLs(t *testing.T) {
	url := regexp.MustCompile(`(?i)(https?:)?//([a-z0-9.-]+\.[a-z]{2,}|[a-z0-9-]+:[0-9]+)`)
	n := 0
	err := fs.WalkDir(static, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		if vendored[path.Base(p)] {
			// uPlot's first line is its banner: name, home and version.
			if _, rest, ok := strings.Cut(string(b), "\n"); ok && strings.HasPrefix(string(b), "/*! https://github.com/leeoniya/uPlot") {
				b = []byte(rest)
			}
		}
		if m := regexp.MustCompile(`(?i)https?://`).FindString(string(b)); m != "" {
			t.Errorf("%s references %q", p, m)
		}
		for _, line := range strings.Split(string(b), "\n") {
			trimmed := strings.TrimSpace(line)
			if strings.HasPrefix(trimmed, "//") || strings.HasPrefix(trimmed, "/*") {
				continue // a comment, not a reference
			}
			if m := url.FindString(line); m != "" {
				t.Errorf("%s references another host: %q", p, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Fatalf("%d embedded files, want 6", n)
	}
}
