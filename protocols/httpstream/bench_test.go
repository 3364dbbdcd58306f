package httpstream

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/srs-mesh/srs-mesh/stream"
)

// benchPlaylist is a live media playlist of ten segments, as SRS writes it.
func benchPlaylist() []byte {
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:100\n#EXT-X-TARGETDURATION:2\n")
	for i := 100; i < 110; i++ {
		fmt.Fprintf(&b, "#EXTINF:2.000, no desc\nlivestream-%d.ts?hls_ctx=0p7s84u1\n", i)
	}
	return []byte(b.String())
}

func BenchmarkRewritePlaylist(b *testing.B) {
	s := newTestServer(b, nil)
	src := benchPlaylist()
	base := mustURL(b, "http://127.0.0.1:8080/live/livestream.m3u8?hls_ctx=0p7s84u1")
	key := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "livestream"}
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		m := s.hlsMapper(s.tokens, "127.0.0.1:8080", "/live/livestream.m3u8", key)
		if _, err := rewritePlaylist(src, base, m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRewriteMPD(b *testing.B) {
	s := newTestServer(b, nil)
	src := []byte(nginxMPD)
	base := mustURL(b, "http://127.0.0.1:8080/live/s.mpd")
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rewriteMPD(src, base, s.dashMapper(s.tokens, "127.0.0.1:8080")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFLVProxy reads an 8 MiB FLV response straight from the origin and
// through the proxy in the same run, so the two throughputs compare.
func BenchmarkFLVProxy(b *testing.B) {
	const size = 8 << 20
	chunk := make([]byte, 32<<10)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/x-flv")
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer origin.Close()
	s, err := New(Config{Router: staticRouter(strings.TrimPrefix(origin.URL, "http://")), TokenSecret: []byte("k"), Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	proxy := httptest.NewServer(s.Handler())
	defer proxy.Close()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for _, c := range []struct{ name, url string }{
		{"direct", origin.URL + "/live/s.flv"},
		{"proxy", proxy.URL + "/live/s.flv"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Get(c.url)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != size {
					b.Fatalf("read %d bytes, %v", n, err)
				}
			}
		})
	}
}
