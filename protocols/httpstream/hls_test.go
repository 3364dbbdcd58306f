package httpstream

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// fakeSRS serves an SRS-like HLS and DASH origin: the first .m3u8 request
// gets a master playlist pointing to "?hls_ctx=", then a media playlist
// whose segments use relative, absolute-path and absolute URIs; the MPD
// follows SRS's layout. Files answer with "file <path>?<query>".
func fakeSRS(t *testing.T) *httptest.Server {
	t.Helper()
	var ts *httptest.Server
	ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case r.URL.Path == "/live/s.m3u8" && q.Get("hls_ctx") == "":
			w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
			w.Header().Set("Etag", `"origin"`)
			fmt.Fprintf(w, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=1\n/live/s.m3u8?hls_ctx=ctx1&%s\n", r.URL.RawQuery)
		case r.URL.Path == "/live/s.m3u8":
			w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
			w.Header().Set("X-Origin", "srs")
			fmt.Fprintf(w, "#EXTM3U\r\n#EXT-X-VERSION:7\r\n#EXT-X-MEDIA-SEQUENCE:1\r\n#EXT-X-TARGETDURATION:2\r\n"+
				"#EXT-X-MAP:URI=\"init.mp4\"\r\n#EXT-X-KEY:METHOD=AES-128,URI=\"s.key?hls_ctx=%[1]s\",IV=0x1\r\n"+
				"#EXTINF:2.0,\r\ns-1.m4s?hls_ctx=%[1]s\r\n#EXTINF:2.0,\r\n/live/s-2.ts?hls_ctx=%[1]s\r\n#EXTINF:2.0,\r\n%[2]s/live/s-3.ts\r\n",
				q.Get("hls_ctx"), ts.URL)
		case r.URL.Path == "/live/missing.m3u8":
			http.NotFound(w, r)
		case r.URL.Path == "/live/livestream.mpd":
			w.Header().Set("Content-Type", "application/dash+xml")
			io.WriteString(w, srsMPD)
		case strings.HasPrefix(r.URL.Path, "/live/"):
			if r.Header.Get("Range") != "" {
				w.Header().Set("Content-Range", "bytes 0-3/100")
				w.WriteHeader(http.StatusPartialContent)
			}
			fmt.Fprintf(w, "file %s?%s", r.URL.Path, r.URL.RawQuery)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(b)) {
		t.Errorf("%s: Content-Length %s, body %d bytes", u, cl, len(b))
	}
	return resp, string(b)
}

// uriLines returns the URI lines and URI="..." attributes of a playlist.
func uriLines(pl string) []string {
	var out []string
	attr := regexp.MustCompile(`URI="([^"]*)"`)
	for _, l := range strings.Split(strings.ReplaceAll(pl, "\r\n", "\n"), "\n") {
		switch {
		case l == "":
		case strings.HasPrefix(l, "#"):
			if m := attr.FindStringSubmatch(l); m != nil {
				out = append(out, m[1])
			}
		default:
			out = append(out, l)
		}
	}
	return out
}

// SRS's hls_ctx flow through node A, with every segment fetched from node
// B: the tokens carry all B needs.
func TestHLSTwoNodes(t *testing.T) {
	origin := fakeSRS(t)
	_, a := proxyFor(t, hostOf(origin), nil)
	_, b := proxyFor(t, hostOf(origin), nil)

	resp, master := get(t, a.URL+"/live/s.m3u8?token=abc")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.apple.mpegurl" || resp.Header.Get("Etag") != "" {
		t.Fatalf("master: %d %v\n%s", resp.StatusCode, resp.Header, master)
	}
	variants := uriLines(master)
	if len(variants) != 1 || variants[0] != "/live/s.m3u8?hls_ctx=ctx1&token=abc" {
		t.Fatalf("master variants %q", variants)
	}
	// The variant goes back through the stream URL (any node) with hls_ctx.
	resp, media := get(t, b.URL+variants[0])
	if resp.StatusCode != 200 || resp.Header.Get("X-Origin") != "srs" {
		t.Fatalf("media playlist: %d\n%s", resp.StatusCode, media)
	}
	if !strings.Contains(media, "\r\n#EXT-X-TARGETDURATION:2\r\n") {
		t.Errorf("CRLF or tags lost:\n%q", media)
	}
	uris := uriLines(media)
	want := []string{
		"file /live/init.mp4?token=abc",
		"file /live/s.key?hls_ctx=ctx1",
		"file /live/s-1.m4s?hls_ctx=ctx1",
		"file /live/s-2.ts?hls_ctx=ctx1",
		"file /live/s-3.ts?",
	}
	if len(uris) != len(want) {
		t.Fatalf("media URIs %q", uris)
	}
	for i, u := range uris {
		if !strings.HasPrefix(u, hlsPrefix) {
			t.Errorf("URI %q is not a token URL", u)
			continue
		}
		// The first URI has no query of its own; a player adds none, but
		// test that the client's query reaches the origin.
		if i == 0 {
			u += "?token=abc"
		}
		resp, body := get(t, b.URL+u)
		if resp.StatusCode != 200 || body != want[i] {
			t.Errorf("GET %s on node B: %d %q, want %q", u, resp.StatusCode, body, want[i])
		}
	}
	// Range requests pass through.
	req, _ := http.NewRequest("GET", b.URL+uris[2], nil)
	req.Header.Set("Range", "bytes=0-3")
	rr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rr.Body.Close()
	if rr.StatusCode != http.StatusPartialContent || rr.Header.Get("Content-Range") == "" {
		t.Errorf("range: %d %v", rr.StatusCode, rr.Header)
	}
	// HEAD on a playlist has the rewritten length and no body.
	hr, err := http.Head(a.URL + "/live/s.m3u8?token=abc")
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.ContentLength != int64(len(master)) {
		t.Errorf("HEAD Content-Length %d, want %d", hr.ContentLength, len(master))
	}
	// A missing playlist stays a 404.
	if resp, _ := get(t, a.URL+"/live/missing.m3u8"); resp.StatusCode != 404 {
		t.Errorf("missing playlist: %d", resp.StatusCode)
	}
	// A token URL with another file name is refused.
	tok, _, _ := strings.Cut(strings.TrimPrefix(uris[2], hlsPrefix), "/")
	if resp, _ := get(t, b.URL+hlsPrefix+tok+"/other.ts"); resp.StatusCode != 400 {
		t.Errorf("renamed token URL: %d", resp.StatusCode)
	}
}

// Tokens from another mesh (another secret) or expired version 1 ones are
// refused, without a connection to the origin they name.
func TestHLSTokenRejected(t *testing.T) {
	origin := fakeSRS(t)
	sa, a := proxyFor(t, hostOf(origin), nil)
	_, media := get(t, a.URL+"/live/s.m3u8?hls_ctx=ctx1")
	seg := uriLines(media)[2]

	other, err := New(Config{Router: staticRouter(hostOf(origin)), TokenSecret: []byte("other-mesh")})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tokStr, name, _ := strings.Cut(strings.TrimPrefix(seg, hlsPrefix), "/")
	tok, err := sa.tokens.Decode(tokStr, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	expired := hlsPrefix + encodeV1(sa.tokens, tok, time.Now().Add(-time.Second)) + "/" + name
	// The same two, naming a listener of the test's own.
	trip := testkit.NewTripwire(t)
	tripTok := Token{Kind: TokenFile, Origin: trip.Addr(), Path: "/live/s-1.ts"}
	foreignTrip, err := sa.tokens.Encode(tripTok)
	if err != nil {
		t.Fatal(err)
	}
	expiredTrip := encodeV1(sa.tokens, tripTok, time.Now().Add(-time.Second))
	for _, c := range []struct {
		s      *Server
		url    string
		status int
	}{
		{other, seg, 400}, {sa, expired, 403},
		{other, hlsPrefix + foreignTrip + "/s-1.ts", 400}, {sa, hlsPrefix + expiredTrip + "/s-1.ts", 403},
	} {
		w := httptest.NewRecorder()
		c.s.Handler().ServeHTTP(w, httptest.NewRequest("GET", c.url, nil))
		if w.Code != c.status || !strings.Contains(w.Body.String(), `"code":`) {
			t.Errorf("%s: status %d body %q, want %d", c.url, w.Code, w.Body, c.status)
		}
	}
	if got := trip.Connections(t); len(got) != 0 {
		t.Errorf("refused tokens made the proxy connect to the origin they name: %v", got)
	}
}

// SRS's DASH layout: the MPD's relative BaseURL "livestream/" becomes a
// token directory, and segments resolved from the templates reach the
// origin's /live/livestream/ through any node.
func TestDASHSRSLayoutTwoNodes(t *testing.T) {
	origin := fakeSRS(t)
	_, a := proxyFor(t, hostOf(origin), nil)
	_, b := proxyFor(t, hostOf(origin), nil)
	resp, mpd := get(t, a.URL+"/live/livestream.mpd?auth=1")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/dash+xml" {
		t.Fatalf("mpd: %d %v", resp.StatusCode, resp.Header)
	}
	m := regexp.MustCompile(`<BaseURL>([^<]*)</BaseURL>`).FindAllStringSubmatch(mpd, -1)
	if len(m) != 1 || !strings.HasPrefix(m[0][1], dashPrefix) {
		t.Fatalf("BaseURLs %q in\n%s", m, mpd)
	}
	base, _ := url.Parse(b.URL + "/live/livestream.mpd")
	baseURL := base.ResolveReference(mustURL(t, m[0][1]))
	for _, name := range []string{"video-init.mp4", "video-0.m4s", "audio-init.mp4", "audio-9.m4s"} {
		u := baseURL.ResolveReference(mustURL(t, name+"?auth=1"))
		resp, body := get(t, u.String())
		if want := "file /live/livestream/" + name + "?auth=1"; resp.StatusCode != 200 || body != want {
			t.Errorf("GET %s: %d %q, want %q", u, resp.StatusCode, body, want)
		}
	}
	tok, _, _ := strings.Cut(strings.TrimPrefix(m[0][1], dashPrefix), "/")
	for _, rest := range []string{"../s.flv", "%2e%2e/s.flv", "a//b.m4s", ""} {
		if resp, _ := get(t, b.URL+dashPrefix+tok+"/"+rest); resp.StatusCode == 200 {
			t.Errorf("rest %q accepted", rest)
		}
	}
}

// A master playlist whose variants live at other paths: the variant is
// reached by token and rewritten in turn, relative to its own location.
func TestHLSVariantByToken(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".m3u8") {
			w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		}
		switch r.URL.Path {
		case "/live/s.m3u8":
			io.WriteString(w, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhi/index.m3u8\n")
		case "/live/hi/index.m3u8":
			io.WriteString(w, "#EXTM3U\n#EXTINF:2,\nseg-1.ts\n")
		default:
			fmt.Fprintf(w, "file %s", r.URL.Path)
		}
	}))
	defer origin.Close()
	_, a := proxyFor(t, hostOf(origin), nil)
	_, b := proxyFor(t, hostOf(origin), nil)
	_, master := get(t, a.URL+"/live/s.m3u8")
	v := uriLines(master)
	if len(v) != 1 || !strings.HasPrefix(v[0], hlsPrefix) || !strings.HasSuffix(v[0], "/index.m3u8") {
		t.Fatalf("variants %q", v)
	}
	resp, media := get(t, b.URL+v[0])
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.apple.mpegurl" {
		t.Fatalf("variant: %d %v", resp.StatusCode, resp.Header)
	}
	segs := uriLines(media)
	if len(segs) != 1 {
		t.Fatalf("segments %q", segs)
	}
	if resp, body := get(t, a.URL+segs[0]); resp.StatusCode != 200 || body != "file /live/hi/seg-1.ts" {
		t.Errorf("segment: %d %q", resp.StatusCode, body)
	}
}
