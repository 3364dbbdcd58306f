package httpstream

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
)

// testMapper maps URLs on origin:8080 to "/M<request URI>" so that tests can
// see exactly what was resolved.
func testMapper(u *url.URL) (string, bool) {
	if !onOrigin(u, "origin:8080") {
		return "", false
	}
	return "/M" + u.RequestURI(), true
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestRewritePlaylist(t *testing.T) {
	tests := []struct {
		name, base, in, want string
	}{
		{
			name: "media ts",
			base: "http://origin:8080/live/s.m3u8",
			in:   "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:12\n#EXTINF:2.000,\ns-12.ts\n#EXTINF:2.000,\ns-13.ts\n",
			want: "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:12\n#EXTINF:2.000,\n/M/live/s-12.ts\n#EXTINF:2.000,\n/M/live/s-13.ts\n",
		},
		{
			name: "fmp4 with map",
			base: "http://origin:8080/live/s.m3u8",
			in:   "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-MAP:URI=\"init.mp4\",BYTERANGE=\"720@0\"\n#EXTINF:2.0,\nseg-1.m4s\n",
			want: "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-MAP:URI=\"/M/live/init.mp4\",BYTERANGE=\"720@0\"\n#EXTINF:2.0,\n/M/live/seg-1.m4s\n",
		},
		{
			name: "key uri and key with other host",
			base: "http://origin:8080/live/s.m3u8",
			in:   "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"s.key?k=1\",IV=0x1\n#EXTINF:2,\ns-1.ts\n#EXT-X-KEY:METHOD=AES-128,URI=\"https://keys.example.com/k\"\n#EXT-X-KEY:METHOD=SAMPLE-AES,KEYFORMAT=\"com.apple.streamingkeydelivery\",URI=\"skd://x\"\n#EXT-X-KEY:METHOD=NONE\n",
			want: "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"/M/live/s.key?k=1\",IV=0x1\n#EXTINF:2,\n/M/live/s-1.ts\n#EXT-X-KEY:METHOD=AES-128,URI=\"https://keys.example.com/k\"\n#EXT-X-KEY:METHOD=SAMPLE-AES,KEYFORMAT=\"com.apple.streamingkeydelivery\",URI=\"skd://x\"\n#EXT-X-KEY:METHOD=NONE\n",
		},
		{
			name: "attribute named like URI inside another value",
			base: "http://origin:8080/live/s.m3u8",
			in:   "#EXTM3U\n#EXT-X-KEY:KEYFORMAT=\"URI=x.key,y\",METHOD=AES-128,XURI=\"a\",URI=\"k.key\"\n",
			want: "#EXTM3U\n#EXT-X-KEY:KEYFORMAT=\"URI=x.key,y\",METHOD=AES-128,XURI=\"a\",URI=\"/M/live/k.key\"\n",
		},
		{
			name: "master with variants and renditions",
			base: "http://origin:8080/live/s.m3u8",
			in:   "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/en.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"a\"\ns_hi.m3u8\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=80000,URI=\"iframe.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=300000\nlow/index.m3u8\n",
			want: "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"/M/live/audio/en.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"a\"\n/M/live/s_hi.m3u8\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=80000,URI=\"/M/live/iframe.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=300000\n/M/live/low/index.m3u8\n",
		},
		{
			name: "srs hls_ctx master",
			base: "http://origin:8080/live/livestream.m3u8?token=abc",
			in:   "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=1\n/live/livestream.m3u8?hls_ctx=0p7s84u1&token=abc\n",
			want: "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=1\n/M/live/livestream.m3u8?hls_ctx=0p7s84u1&token=abc\n",
		},
		{
			name: "srs hls_ctx media playlist",
			base: "http://origin:8080/live/livestream.m3u8?hls_ctx=0p7s84u1",
			in:   "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-TARGETDURATION:10\n#EXT-X-DISCONTINUITY\n#EXTINF:10.007, no desc\nlivestream-7.ts?hls_ctx=0p7s84u1\n",
			want: "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-TARGETDURATION:10\n#EXT-X-DISCONTINUITY\n#EXTINF:10.007, no desc\n/M/live/livestream-7.ts?hls_ctx=0p7s84u1\n",
		},
		{
			name: "absolute urls and paths",
			base: "http://origin:8080/live/s.m3u8",
			in:   "#EXTM3U\n#EXTINF:2,\nhttp://origin:8080/live/s-1.ts\n#EXTINF:2,\nHTTP://ORIGIN:8080/live/s-2.ts\n#EXTINF:2,\n/other/s-3.ts\n#EXTINF:2,\nhttp://cdn.example.com/live/s-4.ts\n#EXTINF:2,\n//origin:8080/live/s-5.ts\n#EXTINF:2,\n../up/s-6.ts\n",
			want: "#EXTM3U\n#EXTINF:2,\n/M/live/s-1.ts\n#EXTINF:2,\n/M/live/s-2.ts\n#EXTINF:2,\n/M/other/s-3.ts\n#EXTINF:2,\nhttp://cdn.example.com/live/s-4.ts\n#EXTINF:2,\n/M/live/s-5.ts\n#EXTINF:2,\n/M/up/s-6.ts\n",
		},
		{
			name: "comments blank lines and whitespace preserved",
			base: "http://origin:8080/live/s.m3u8",
			in:   "\xef\xbb\xbf#EXTM3U\n\n# a comment with URI=\"x.ts\"\n#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z\n  \n#EXTINF:2,\n  s-1.ts  \n#EXT-X-ENDLIST",
			want: "\xef\xbb\xbf#EXTM3U\n\n# a comment with URI=\"x.ts\"\n#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z\n  \n#EXTINF:2,\n/M/live/s-1.ts\n#EXT-X-ENDLIST",
		},
		{
			name: "crlf",
			base: "http://origin:8080/live/s.m3u8",
			in:   "#EXTM3U\r\n#EXT-X-MAP:URI=\"init.mp4\"\r\n#EXTINF:2,\r\ns-1.m4s\r\n\r\n",
			want: "#EXTM3U\r\n#EXT-X-MAP:URI=\"/M/live/init.mp4\"\r\n#EXTINF:2,\r\n/M/live/s-1.m4s\r\n\r\n",
		},
		{
			name: "ll-hls parts and hints",
			base: "http://origin:8080/live/s.m3u8",
			in:   "#EXTM3U\n#EXT-X-PART:DURATION=0.5,URI=\"p1.m4s\",INDEPENDENT=YES\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p2.m4s\"\n#EXT-X-RENDITION-REPORT:URI=\"../lo/s.m3u8\",LAST-MSN=1\n",
			want: "#EXTM3U\n#EXT-X-PART:DURATION=0.5,URI=\"/M/live/p1.m4s\",INDEPENDENT=YES\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"/M/live/p2.m4s\"\n#EXT-X-RENDITION-REPORT:URI=\"/M/lo/s.m3u8\",LAST-MSN=1\n",
		},
		{
			name: "unparsable uri left alone",
			base: "http://origin:8080/live/s.m3u8",
			in:   "#EXTM3U\n#EXTINF:2,\nbad%zz.ts\n#EXTINF:2,\ndata:text/plain,hi\n",
			want: "#EXTM3U\n#EXTINF:2,\nbad%zz.ts\n#EXTINF:2,\ndata:text/plain,hi\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rewritePlaylist([]byte(tt.in), mustURL(t, tt.base), testMapper)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestRewritePlaylistRejects(t *testing.T) {
	base := mustURL(t, "http://origin:8080/live/s.m3u8")
	for _, in := range []string{"", "<html>", "#EXTINF:2,\ns.ts\n"} {
		if _, err := rewritePlaylist([]byte(in), base, testMapper); !errors.Is(err, ErrNotPlaylist) {
			t.Errorf("%q: err = %v, want ErrNotPlaylist", in, err)
		}
	}
	big := []byte("#EXTM3U\n" + strings.Repeat("#\n", MaxPlaylistSize/2))
	if _, err := rewritePlaylist(big, base, testMapper); !errors.Is(err, ErrPlaylistTooLarge) {
		t.Errorf("big: err = %v", err)
	}
}

// The mapper the server uses: tokens for segments, the stream URL for the
// playlist's own path (SRS's hls_ctx), nothing for other hosts.
func TestHLSMapper(t *testing.T) {
	s := newTestServer(t, nil)
	key := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "livestream"}
	vkey := stream.Key{Vhost: "v1", App: "live", Stream: "livestream"}
	base := mustURL(t, "http://127.0.0.1:8080/live/livestream.m3u8")
	in := "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlivestream.m3u8?hls_ctx=abc\n#EXT-X-STREAM-INF:BANDWIDTH=2\nother.m3u8\n#EXTINF:2,\nlivestream-1.ts?hls_ctx=abc\n#EXTINF:2,\nhttp://cdn/x.ts\n"

	got, err := rewritePlaylist([]byte(in), base, s.hlsMapper(s.tokens, "127.0.0.1:8080", "/live/livestream.m3u8", key))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(got), "\n")
	if lines[2] != "/live/livestream.m3u8?hls_ctx=abc" {
		t.Errorf("hls_ctx variant = %q", lines[2])
	}
	for _, c := range []struct {
		line          int
		path, name, q string
	}{{4, "/live/other.m3u8", "other.m3u8", ""}, {6, "/live/livestream-1.ts", "livestream-1.ts", "hls_ctx=abc"}} {
		u := mustURL(t, lines[c.line])
		tokStr, name, _ := strings.Cut(strings.TrimPrefix(u.Path, hlsPrefix), "/")
		tok, err := s.tokens.Decode(tokStr, s.now())
		if err != nil || tok.Origin != "127.0.0.1:8080" || tok.Path != c.path || tok.Kind != TokenFile || name != c.name || u.RawQuery != c.q {
			t.Errorf("line %q: token %+v %v, name %q", lines[c.line], tok, err, name)
		}
	}
	if lines[8] != "http://cdn/x.ts" {
		t.Errorf("foreign host rewritten: %q", lines[8])
	}

	got, _ = rewritePlaylist([]byte(in), base, s.hlsMapper(s.tokens, "127.0.0.1:8080", "/live/livestream.m3u8", vkey))
	if l := strings.Split(string(got), "\n")[2]; l != "/live/livestream.m3u8?hls_ctx=abc&vhost=v1" {
		t.Errorf("vhost variant = %q", l)
	}
}

func FuzzRewritePlaylist(f *testing.F) {
	f.Add("#EXTM3U\n#EXTINF:2,\ns-1.ts\n")
	f.Add("#EXTM3U\r\n#EXT-X-MAP:URI=\"init.mp4\"\r\n#EXTINF:2,\r\ns-1.m4s\r\n")
	f.Add("#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k.key\",IV=0x1\n")
	f.Add("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n/live/livestream.m3u8?hls_ctx=x\n")
	f.Add("#EXTM3U\n#EXT-X-MEDIA:URI=\"a\nb\"\nhttp://origin:8080/../x.ts\n#EXT-X-KEY:URI=\"")
	s := newTestServer(f, nil)
	base, _ := url.Parse("http://127.0.0.1:8080/live/s.m3u8?hls_ctx=1")
	key := stream.Key{Vhost: "v", App: "live", Stream: "s"}
	f.Fuzz(func(t *testing.T, in string) {
		m := s.hlsMapper(s.tokens, "127.0.0.1:8080", "/live/s.m3u8", key)
		out, err := rewritePlaylist([]byte(in), base, m)
		if err != nil {
			return
		}
		// Line structure is preserved: same number of line ends.
		if strings.Count(string(out), "\n") != strings.Count(in, "\n") {
			t.Fatalf("line count changed:\n%q\n%q", in, out)
		}
		// Every token issued decodes and names a clean path on the origin.
		for _, line := range strings.Split(string(out), "\n") {
			i := strings.Index(line, hlsPrefix)
			if i < 0 {
				continue
			}
			rest := line[i+len(hlsPrefix):]
			tokStr, _, _ := strings.Cut(rest, "/")
			if strings.Contains(in, hlsPrefix) {
				continue // the input itself may carry look-alikes
			}
			tok, err := s.tokens.Decode(tokStr, s.now())
			if err != nil || tok.Origin != "127.0.0.1:8080" {
				t.Fatalf("line %q: token %+v, %v", line, tok, err)
			}
		}
		// A second pass over the output accepts it.
		if _, err := rewritePlaylist(out, base, m); err != nil {
			t.Fatalf("output not accepted again: %v", err)
		}
	})
}

// newTestServer returns a Server with a fixed clock and the given router (a
// router that fails when nil). It is closed at the end of the test.
func newTestServer(t testing.TB, r stream.Router) *Server {
	t.Helper()
	if r == nil {
		r = routerFunc(func(stream.Key) (stream.Origin, error) { return stream.Origin{}, stream.ErrNoOrigin })
	}
	s, err := New(Config{Router: r, TokenSecret: []byte("test-secret"), Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
