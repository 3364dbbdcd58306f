package httpstream

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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

// BenchmarkHLSSegmentCache fetches a 3 MB segment with 4 concurrent clients
// straight from an httptest origin, through a node whose segment cache
// holds it, and through a node without the cache, in the same run, and
// reports the requests per second of each and the ratio of the cached node
// to the origin.
func BenchmarkHLSSegmentCache(b *testing.B) {
	const size, clients = 3_000_000, 4
	body := bytes.Repeat([]byte{0x47}, size)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/mp2t")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(body)
	}))
	defer origin.Close()
	originHost := strings.TrimPrefix(origin.URL, "http://")
	node := func(cacheBytes int64) (*Server, string) {
		s, err := New(Config{Router: staticRouter(originHost), TokenSecret: []byte("k"), Logger: quietLogger, CacheBytes: cacheBytes})
		if err != nil {
			b.Fatal(err)
		}
		ts := httptest.NewServer(s.Handler())
		b.Cleanup(func() { s.Close(); ts.Close() })
		tok, err := s.tokens.Encode(Token{Kind: TokenFile, Origin: originHost, Path: "/live/s-1.ts"})
		if err != nil {
			b.Fatal(err)
		}
		return s, ts.URL + hlsPrefix + tok + "/s-1.ts"
	}
	cachedNode, cachedURL := node(0)
	_, uncachedURL := node(-1)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * clients}}
	defer client.CloseIdleConnections()
	fetch := func(u string) {
		resp, err := client.Get(u)
		if err != nil {
			b.Error(err)
			return
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			b.Errorf("read %d bytes, %v", n, err)
		}
	}
	// round runs one request per client at once and returns how long the
	// slowest took.
	round := func(u string) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fetch(u)
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	fetch(cachedURL) // the one miss
	var direct, cached, uncached time.Duration
	rounds := 0
	for b.Loop() {
		direct += round(origin.URL + "/live/s-1.ts")
		cached += round(cachedURL)
		uncached += round(uncachedURL)
		rounds++
	}
	if st := cachedNode.Stats().Segments; st.Misses != 1 || st.Hits != uint64(rounds*clients) {
		b.Fatalf("cache stats %+v after %d rounds", st, rounds)
	}
	reqs := float64(rounds * clients)
	b.ReportMetric(reqs/direct.Seconds(), "direct-req/s")
	b.ReportMetric(reqs/cached.Seconds(), "cached-req/s")
	b.ReportMetric(reqs/uncached.Seconds(), "uncached-req/s")
	b.ReportMetric(direct.Seconds()/cached.Seconds(), "cached/direct")
}
