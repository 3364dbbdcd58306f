package httpstream

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/srs-mesh/srs-mesh/stream"
)

func TestDASHSegmentKey(t *testing.T) {
	dv := stream.DefaultVhost
	tests := []struct{ path, query, want string }{
		{"/live/s-init.m4v", "", dv + "/live/s"},
		{"/live/s-12000.m4a", "", dv + "/live/s"},
		{"/live/my-stream-12000.m4v", "", dv + "/live/my-stream"},
		{"/a/b/s-1.m4v", "vhost=v", "v/a/b/s"},
		{"/live/livestream/video-init.mp4", "", dv + "/live/livestream"},
		{"/live/livestream/audio-12.m4s", "", dv + "/live/livestream"},
		{"/live/-1.m4v", "", ""},
		{"/live/s.m4v", "", ""},
		{"/s/x.m4s", "", ""},
		{"/live/x.jpg", "", ""},
		{"/../x/y.m4s", "", ""},
	}
	for _, tt := range tests {
		k, ok := dashSegmentKey(tt.path, tt.query)
		if got := map[bool]string{true: k.String(), false: ""}[ok]; got != tt.want {
			t.Errorf("%s?%s: got %q, want %q", tt.path, tt.query, got, tt.want)
		}
	}
}

// Clients that ignore the inserted BaseURL still reach the stream's origin
// by the segment's own path.
func TestDASHPathFallback(t *testing.T) {
	origin := fakeSRS(t)
	_, proxy := proxyFor(t, hostOf(origin), nil)
	for _, c := range []struct{ url, want string }{
		{"/live/livestream/video-0.m4s?a=1", "file /live/livestream/video-0.m4s?a=1"},
		{"/live/s-init.m4v", "file /live/s-init.m4v?"},
	} {
		resp, body := get(t, proxy.URL+c.url)
		if resp.StatusCode != http.StatusOK || body != c.want {
			t.Errorf("GET %s: %d %q, want %q", c.url, resp.StatusCode, body, c.want)
		}
	}
	w := httptest.NewRecorder()
	newTestServer(t, nil).Handler().ServeHTTP(w, httptest.NewRequest("GET", "/live/s-1.m4v", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("no origin: %d", w.Code)
	}
}
