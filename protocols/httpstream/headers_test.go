package httpstream

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Two nodes of one mesh (same secret, different clocks) serve byte-identical
// playlists and MPDs, and a reload later gives the same bytes again: the
// segment URIs do not depend on the node or the time of the request.
func TestDocumentsIdenticalAcrossNodesAndReloads(t *testing.T) {
	origin := fakeSRS(t)
	var nodes []*httptest.Server
	for _, skew := range []time.Duration{0, 90 * time.Second, 48 * time.Hour} {
		s, err := New(Config{Router: staticRouter(hostOf(origin)), TokenSecret: []byte("mesh-secret"), Logger: quietLogger,
			Now: func() time.Time { return time.Now().Add(skew) }})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(s.Handler())
		t.Cleanup(func() { s.Close(); ts.Close() })
		nodes = append(nodes, ts)
	}
	for _, p := range []string{"/live/s.m3u8?hls_ctx=ctx1", "/live/livestream.mpd"} {
		_, first := get(t, nodes[0].URL+p)
		for i, n := range nodes {
			for reload := range 2 {
				if _, body := get(t, n.URL+p); body != first {
					t.Fatalf("%s from node %d (reload %d) differs:\n%s\nfirst:\n%s", p, i, reload, body, first)
				}
			}
		}
	}
	// A segment URI from one node's playlist is served by another.
	_, media := get(t, nodes[0].URL+"/live/s.m3u8?hls_ctx=ctx1")
	if resp, body := get(t, nodes[2].URL+uriLines(media)[2]); resp.StatusCode != 200 || !strings.HasPrefix(body, "file /live/s-1.m4s") {
		t.Fatalf("segment through another node: %d %q", resp.StatusCode, body)
	}
}

func TestCacheControl(t *testing.T) {
	origin := fakeSRS(t)
	_, ts := proxyFor(t, hostOf(origin), nil)
	_, master := get(t, ts.URL+"/live/s.m3u8")
	media := uriLines(master)[0]
	_, mediaBody := get(t, ts.URL+media)
	seg := uriLines(mediaBody)[2]
	for _, c := range []struct{ path, want string }{
		{"/live/s.m3u8", "no-cache"},                  // SRS's per-viewer master playlist
		{media, "public, max-age=1"},                  // half of #EXT-X-TARGETDURATION:2
		{seg, "public, max-age=30"},                   // DefaultSegmentMaxAge
		{"/live/livestream.mpd", "public, max-age=1"}, // dynamic MPD
		{"/live/missing.m3u8", "no-cache"},            // the origin's 404
		{"/live/bad name.m3u8", "no-cache"},           // the proxy's own error
	} {
		resp, _ := get(t, ts.URL+c.path)
		if got := resp.Header.Values("Cache-Control"); len(got) != 1 || got[0] != c.want {
			t.Errorf("%s: Cache-Control %q, want %q", c.path, got, c.want)
		}
	}
}

func TestPlaylistCacheControl(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\na.ts\n", "public, max-age=5"},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:1\n", "public, max-age=1"},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:0\n", "no-cache"},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:x\n", "no-cache"},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:99999999999\n", "no-cache"},
		{"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", "no-cache"},
	} {
		if got := playlistCacheControl([]byte(c.doc)); got != c.want {
			t.Errorf("%q: %q, want %q", c.doc, got, c.want)
		}
	}
	if got := mpdCacheControl([]byte(`<MPD type="static">`)); got != "public, max-age=60" {
		t.Errorf("static MPD: %q", got)
	}
}

// Every answer can be read by a page on another origin, and a preflight is
// answered for any stream URL. An origin's own policy is kept, not doubled.
func TestCORS(t *testing.T) {
	origin := fakeSRS(t)
	_, ts := proxyFor(t, hostOf(origin), nil)
	_, master := get(t, ts.URL+"/live/s.m3u8")
	_, media := get(t, ts.URL+uriLines(master)[0])
	for _, p := range []string{"/live/s.m3u8", uriLines(master)[0], uriLines(media)[2], "/live/livestream.mpd", "/live/missing.m3u8", "/nope", "/_hls/bad/x.ts"} {
		resp, _ := get(t, ts.URL+p)
		if got := resp.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "*" {
			t.Errorf("%s (%d): Access-Control-Allow-Origin %q", p, resp.StatusCode, got)
		}
		if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Content-Length") {
			t.Errorf("%s: Access-Control-Expose-Headers %q", p, resp.Header.Get("Access-Control-Expose-Headers"))
		}
	}

	req, _ := http.NewRequest(http.MethodOptions, ts.URL+"/live/s.flv", nil)
	req.Header.Set("Origin", "http://player.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "range")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "GET") || h.Get("Access-Control-Allow-Headers") != "range" {
		t.Errorf("preflight: %d %v", resp.StatusCode, h)
	}

	own := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "http://site.example")
		w.Write([]byte("x"))
	}))
	defer own.Close()
	_, ts2 := proxyFor(t, hostOf(own), nil)
	resp, _ = get(t, ts2.URL+"/live/s.flv")
	if got := resp.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "http://site.example" {
		t.Errorf("origin's own policy: %q", got)
	}
}

// The header and TTL choices read origin documents: any bytes give a sane
// answer and never panic.
func FuzzDocumentTTL(f *testing.F) {
	for _, seed := range []string{
		"#EXTM3U\n#EXT-X-TARGETDURATION:10\n", "#EXTM3U\n#EXT-X-TARGETDURATION:99999999999\n", "#EXT-X-TARGETDURATION:",
		`<MPD type="dynamic" minimumUpdatePeriod="PT4S">`, `<MPD minimumUpdatePeriod='P1DT2H3M4.5S'>`, `minimumUpdatePeriod="`, "",
	} {
		f.Add([]byte(seed))
	}
	s := &Server{}
	f.Fuzz(func(t *testing.T, doc []byte) {
		for _, cc := range []string{playlistCacheControl(doc), mpdCacheControl(doc)} {
			if cc != cacheNone && !strings.HasPrefix(cc, "public, max-age=") {
				t.Fatalf("Cache-Control %q", cc)
			}
		}
		for _, fm := range []docFormat{hlsFormat, dashFormat} {
			if ttl := s.documentTTL(doc, fm); ttl < 0 || ttl > maxDocumentTTL {
				t.Fatalf("TTL %v", ttl)
			}
		}
	})
}
