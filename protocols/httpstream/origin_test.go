package httpstream

import (
	"fmt"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// startNginxStream starts an nginx-rtmp origin writing HLS and DASH and
// publishes stream live/s to it; it waits until both documents exist.
func startNginxStream(t *testing.T) *harness.Nginx {
	t.Helper()
	if testing.Short() {
		t.Skip("real origin test")
	}
	harness.Need(t, "ffmpeg")
	n := harness.StartNginx(t, harness.NginxOptions{HLS: true, DASH: true})
	harness.PublishRTMP(t, "rtmp://"+n.RTMPAddr+"/live/s")
	testkit.WaitFor(t, 30*time.Second, "HLS and DASH written by the origin", func() bool {
		for _, p := range []string{"/live/s.m3u8", "/live/s.mpd"} {
			resp, err := httpClient.Get("http://" + n.HTTPAddr + p)
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return false
			}
		}
		return true
	})
	return n
}

// HLS and DASH from a real nginx-rtmp origin play through the proxy, and
// every segment of a playlist served by node A can be fetched from node B.
func TestRealOriginHLSAndDASH(t *testing.T) {
	n := startNginxStream(t)
	_, a := proxyFor(t, n.HTTPAddr, nil)
	_, b := proxyFor(t, n.HTTPAddr, nil)

	t.Run("hls play", func(t *testing.T) {
		res := harness.PlayUntil(t, a.URL+"/live/s.m3u8", 2*time.Second, 10, 30*time.Second)
		t.Logf("HLS decoded %d frames", res.VideoFrames)
	})
	t.Run("dash play", func(t *testing.T) {
		res := harness.PlayUntil(t, a.URL+"/live/s.mpd", 2*time.Second, 10, 30*time.Second)
		t.Logf("DASH decoded %d frames", res.VideoFrames)
	})
	t.Run("hls segments on another node", func(t *testing.T) {
		resp, pl := get(t, a.URL+"/live/s.m3u8")
		if resp.StatusCode != 200 {
			t.Fatalf("playlist %d", resp.StatusCode)
		}
		uris := uriLines(pl)
		if len(uris) == 0 {
			t.Fatalf("no segments in\n%s", pl)
		}
		for _, u := range uris {
			if !strings.HasPrefix(u, hlsPrefix) || !strings.HasSuffix(u, ".ts") {
				t.Errorf("segment URI %q", u)
			}
			resp, body := get(t, b.URL+u)
			if resp.StatusCode != 200 || len(body) == 0 || body[0] != 0x47 {
				t.Errorf("GET %s on node B: %d, %d bytes", u, resp.StatusCode, len(body))
			}
		}
	})
	t.Run("dash segments on another node", func(t *testing.T) {
		resp, mpd := get(t, a.URL+"/live/s.mpd")
		if resp.StatusCode != 200 {
			t.Fatalf("mpd %d", resp.StatusCode)
		}
		bm := regexp.MustCompile(`<BaseURL>([^<]*)</BaseURL>`).FindStringSubmatch(mpd)
		if bm == nil {
			t.Fatalf("no BaseURL in\n%s", mpd)
		}
		base := mustURL(t, b.URL+"/live/s.mpd").ResolveReference(mustURL(t, bm[1]))
		// Resolve each representation's init section and its first segment.
		inits := regexp.MustCompile(`initialization="([^"]*)"`).FindAllStringSubmatch(mpd, -1)
		medias := regexp.MustCompile(`media="([^"]*)"`).FindAllStringSubmatch(mpd, -1)
		times := regexp.MustCompile(`<S t="(\d+)"`).FindAllStringSubmatch(mpd, -1)
		if len(inits) == 0 || len(medias) != len(inits) || len(times) == 0 {
			t.Fatalf("unexpected MPD\n%s", mpd)
		}
		var names []string
		for i := range inits {
			names = append(names, inits[i][1], strings.ReplaceAll(medias[i][1], "$Time$", lastTime(mpd, i)))
		}
		for _, name := range names {
			u := base.ResolveReference(&url.URL{Path: name})
			resp, body := get(t, u.String())
			if resp.StatusCode != 200 || len(body) < 8 {
				t.Errorf("GET %s on node B: %d, %d bytes", u, resp.StatusCode, len(body))
			}
		}
	})
}

// lastTime returns the t of the last <S> of the i-th SegmentTimeline.
func lastTime(mpd string, i int) string {
	tls := strings.Split(mpd, "<SegmentTimeline>")
	if i+1 >= len(tls) {
		return "0"
	}
	tl, _, _ := strings.Cut(tls[i+1], "</SegmentTimeline>")
	ts := regexp.MustCompile(`<S t="(\d+)"`).FindAllStringSubmatch(tl, -1)
	if len(ts) == 0 {
		return "0"
	}
	// The last segment may still be written; take the one before it.
	if len(ts) > 1 {
		return ts[len(ts)-2][1]
	}
	return ts[0][1]
}

// FFmpeg serving HTTP-FLV acts as the origin; FFmpeg reads it through the
// proxy with an auth query and decodes frames.
func TestRealOriginHTTPFLV(t *testing.T) {
	if testing.Short() {
		t.Skip("real origin test")
	}
	harness.Need(t, "ffmpeg")
	port := testkit.FreePort(t, false)
	originAddr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin"}
	args = append(args, harness.TestSourceArgs()...)
	args = append(args, harness.EncodeArgs()...)
	args = append(args, "-f", "flv", "-listen", "1", "http://"+originAddr+"/live/s.flv")
	// No TCP probe: FFmpeg would take it for its one client. Play retries
	// until the origin listens.
	origin := harness.Start(t, "ffmpeg", args...)

	s, err := New(Config{Router: staticRouter(originAddr), TokenSecret: []byte("k"), Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(s.Handler())
	defer proxy.Close()
	defer s.Close()
	// FFmpeg -listen 1 serves one client: one play, no retries.
	res := harness.PlayUntil(t, proxy.URL+"/live/s.flv?token=abc", 2*time.Second, 10, 20*time.Second, "-f", "flv")
	t.Logf("HTTP-FLV decoded %d frames", res.VideoFrames)
	origin.Kill()
}
