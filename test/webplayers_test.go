package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/webrtc/webrtctest"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// Web players must play for webRun after they start, and currentTime must
// advance by at least webMinAdvance without stalling for longer than
// webMaxStall.
const (
	webRun        = 22 * time.Second
	webLimit      = 75 * time.Second
	webMinAdvance = 15 * time.Second
	webMaxStall   = 5 * time.Second
)

// srsStyleOrigin serves an nginx-rtmp origin's HLS the way SRS does: the
// first request for "/live/<s>.m3u8" gets a master playlist pointing to
// "/live/<s>.m3u8?hls_ctx=<id>", and the media playlist then names every
// segment with "?hls_ctx=<id>". Other paths, DASH included, reach nginx
// unchanged, and "/live/<s>.flv" is a live FFmpeg FLV stream (flvOrigin).
type srsStyleOrigin struct {
	nginx *harness.Nginx
	flv   *flvOrigin
	proxy *httputil.ReverseProxy
}

var segmentLine = regexp.MustCompile(`(?m)^([^#\r\n][^\r\n]*\.ts)\r?$`)

func startSRSStyleOrigin(t *testing.T, n *harness.Nginx) string {
	t.Helper()
	target, _ := url.Parse("http://" + n.HTTPAddr)
	o := &srsStyleOrigin{nginx: n, flv: startFLVOrigin(t), proxy: httputil.NewSingleHostReverseProxy(target)}
	return newLoopbackServer(t, o)
}

func (o *srsStyleOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, ".flv"):
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/live/s.flv"
		o.flv.ServeHTTP(w, r2)
	case strings.HasSuffix(p, ".m3u8") && r.URL.Query().Get("hls_ctx") == "":
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		fmt.Fprintf(w, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=1\n%s?hls_ctx=%d\n", p, time.Now().UnixNano())
	case strings.HasSuffix(p, ".m3u8"):
		b, err := os.ReadFile(filepath.Join(o.nginx.Dir, "hls", filepath.Clean("/"+p)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		w.Write(segmentLine.ReplaceAll(b, []byte("$1?hls_ctx="+r.URL.Query().Get("hls_ctx"))))
	default:
		o.proxy.ServeHTTP(w, r)
	}
}

// TestWebPlayersThroughMesh plays live streams through the mesh in headless
// Chromium with the web players that sites use: hls.js against an
// nginx-rtmp origin and against an SRS-style origin (hls_ctx), dash.js, and
// mpegts.js for HTTP-FLV. Each plays through another node than the
// publisher's, from a page on another origin (so CORS must hold), for more
// than 20 s: hls.js reloads the playlist many times in that window and
// stops on the first segment whose URI changed.
func TestWebPlayersThroughMesh(t *testing.T) {
	harness.NeedWebPlayers(t)
	harness.Need(t, "ffmpeg", "nginx")
	plain := harness.StartNginx(t, harness.NginxOptions{HLS: true, DASH: true})
	behind := harness.StartNginx(t, harness.NginxOptions{HLS: true, DASH: true})
	srsStyle := startSRSStyleOrigin(t, behind)
	c := startProtocolCluster(t, 3, nil,
		"--origin", originFlag("plain", plain),
		"--origin", "id=srsstyle,ip=127.0.0.1,rtmp="+portOf(behind.RTMPAddr)+",http="+portOf(srsStyle))
	c.waitOriginsHealthy(t, 2)

	// Two streams; placement puts them on different origins (fewest
	// streams first).
	pubs := []*harness.Proc{harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/a"))}
	onA := c.waitAssigned(t, "__defaultVhost__/live/a")
	pubs = append(pubs, harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/b")))
	onB := c.waitAssigned(t, "__defaultVhost__/live/b")
	if onA == onB {
		t.Fatalf("both streams on %s", onA)
	}
	byOrigin := map[string]string{onA: "a", onB: "b"}
	nginxName, srsName := byOrigin["plain"], byOrigin["srsstyle"]
	testkit.WaitFor(t, 60*time.Second, "playlists and MPD served through the nodes", func() bool {
		for _, p := range pubs {
			if p.Exited() {
				t.Fatalf("publisher exited: %s", p.Output())
			}
		}
		for _, u := range []string{c.nodes[2].HTTPURL("live/" + nginxName + ".m3u8"), c.nodes[1].HTTPURL("live/" + srsName + ".m3u8"),
			c.nodes[1].HTTPURL("live/" + nginxName + ".mpd")} {
			resp, body := httpGet(t, u)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), ".") {
				return false
			}
		}
		return true
	})
	players := []harness.WebPlayer{
		{Name: "hls.js nginx-rtmp via n3", Kind: "hls", Src: c.nodes[2].HTTPURL("live/" + nginxName + ".m3u8")},
		{Name: "hls.js SRS-style via n2", Kind: "hls", Src: c.nodes[1].HTTPURL("live/" + srsName + ".m3u8")},
		{Name: "dash.js via n2", Kind: "dash", Src: c.nodes[1].HTTPURL("live/" + nginxName + ".mpd")},
		{Name: "mpegts.js via n3", Kind: "flv", Src: c.nodes[2].HTTPURL("live/" + srsName + ".flv")},
	}
	for _, r := range harness.PlayInBrowser(t, players, webRun, webLimit) {
		harness.CheckWebPlayback(t, r, webMinAdvance, webMaxStall)
	}
}

// Two playlist fetches about a second apart, from two different nodes,
// list the same URI for every media sequence number both list, and carry a
// Cache-Control that lets a CDN share them.
func TestPlaylistsIdenticalAcrossNodes(t *testing.T) {
	c, _ := startHTTPStreamMesh(t)
	first := map[int]string{}
	var cc string
	testkit.WaitFor(t, 30*time.Second, "a playlist with segments through n1", func() bool {
		resp, body := httpGet(t, c.nodes[0].HTTPURL("live/s.m3u8"))
		first, cc = bySequence(string(body)), resp.Header.Get("Cache-Control")
		return resp.StatusCode == http.StatusOK && len(first) >= 2
	})
	time.Sleep(time.Second) // the second fetch must come from a later moment
	resp, body := httpGet(t, c.nodes[2].HTTPURL("live/s.m3u8"))
	second := bySequence(string(body))
	shared := 0
	for seq, u := range second {
		if v, ok := first[seq]; ok {
			shared++
			if v != u {
				t.Errorf("media sequence %d: %q through n1, %q through n3", seq, v, u)
			}
		}
	}
	if shared == 0 {
		t.Fatalf("no media sequence number in both playlists:\n%v\n%v", first, second)
	}
	if cc != "public, max-age=1" || resp.Header.Get("Cache-Control") != cc || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("headers: Cache-Control %q and %q, Access-Control-Allow-Origin %q", cc, resp.Header.Get("Cache-Control"), resp.Header.Get("Access-Control-Allow-Origin"))
	}
	t.Logf("%d segments listed by both fetches carry the same URI", shared)
}

// bySequence maps each media sequence number of a media playlist to its
// segment URI.
func bySequence(pl string) map[int]string {
	out := map[int]string{}
	seq := -1
	for _, l := range strings.Split(strings.ReplaceAll(pl, "\r\n", "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"):
			fmt.Sscanf(strings.TrimPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"), "%d", &seq)
		case l == "" || strings.HasPrefix(l, "#"):
		case seq >= 0:
			out[seq] = l
			seq++
		}
	}
	return out
}

func portOf(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// newLoopbackServer serves h on a free loopback port until the test ends
// and returns its "127.0.0.1:port".
func newLoopbackServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestWebPlayersSRSOrigins plays a stream held by a real SRS origin with
// hls.js, dash.js and mpegts.js through nodes other than the publisher's,
// and the same players directly from the origin for comparison (logged:
// dash.js cannot synchronise its clock with SRS directly, since SRS's MPD
// names no UTCTiming source and its Date header is not exposed to other
// origins). It runs when SRS_MESH_TEST_SRS names an SRS binary.
func TestWebPlayersSRSOrigins(t *testing.T) {
	harness.NeedWebPlayers(t)
	c, _ := startSRSMesh(t)
	pub := harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/web"))
	owner := c.waitAssigned(t, "__defaultVhost__/live/web")
	var originHTTP string
	for _, o := range c.status(t, 0).Origins {
		if o.ID == owner {
			originHTTP = o.HTTP
		}
	}
	if originHTTP == "" {
		t.Fatalf("live/web assigned to unknown origin %q", owner)
	}
	testkit.WaitFor(t, 60*time.Second, "playlist and MPD through the nodes", func() bool {
		if pub.Exited() {
			t.Fatalf("publisher exited: %s", pub.Output())
		}
		for _, u := range []string{c.nodes[2].HTTPURL("live/web.m3u8"), c.nodes[1].HTTPURL("live/web.mpd")} {
			if resp, _ := httpGet(t, u); resp.StatusCode != http.StatusOK {
				return false
			}
		}
		return true
	})
	direct := "http://" + originHTTP + "/live/web"
	players := []harness.WebPlayer{
		{Name: "hls.js via n3", Kind: "hls", Src: c.nodes[2].HTTPURL("live/web.m3u8")},
		{Name: "dash.js via n2", Kind: "dash", Src: c.nodes[1].HTTPURL("live/web.mpd")},
		{Name: "mpegts.js via n2", Kind: "flv", Src: c.nodes[1].HTTPURL("live/web.flv")},
		{Name: "WHEP via n3", Kind: "whep", Src: "http://" + c.nodes[2].APIAddr + "/rtc/v1/whep/?app=live&stream=web"},
		{Name: "hls.js direct", Kind: "hls", Src: direct + ".m3u8"},
		{Name: "dash.js direct", Kind: "dash", Src: direct + ".mpd"},
		{Name: "mpegts.js direct", Kind: "flv", Src: direct + ".flv"},
	}
	for _, r := range harness.PlayInBrowser(t, players, webRun, webLimit) {
		if strings.HasSuffix(r.Name, "direct") {
			t.Logf("%s: currentTime +%.1fs, %d frames, fatal %q", r.Name, r.Advance().Seconds(), r.Frames(), r.Fatal)
			continue
		}
		harness.CheckWebPlayback(t, r, webMinAdvance, webMaxStall)
	}
}

// TestWHEPFromBrowser plays a WebRTC stream in headless Chromium with the
// browser's own RTCPeerConnection over WHEP through a node, from a page on
// another origin: the POST needs a CORS preflight, the Location header must
// be readable, and the DELETE at the end is cross-origin too. The stream is
// real H.264 from FFmpeg, published over WHIP through another node into a
// pion origin that behaves like SRS.
func TestWHEPFromBrowser(t *testing.T) {
	harness.NeedWebPlayers(t)
	harness.Need(t, "ffmpeg")
	origin, err := webrtctest.Start(webrtctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { origin.Close() })
	c := startProtocolCluster(t, 3, nil,
		"--origin", "id=rtc1,ip=127.0.0.1,api="+portOf(origin.API)+",rtc="+portOf(origin.RTC))
	c.waitOriginsHealthy(t, 1)

	src, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	harness.Start(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
		"-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-tune", "zerolatency",
		"-pix_fmt", "yuv420p", "-g", "25", "-bsf:v", "dump_extra", "-an",
		"-f", "rtp", "-payload_type", "102", "rtp://"+src.LocalAddr().String()+"?pkt_size=1200")
	api := rtcClientAPI(t)
	pub, err := webrtctest.NewPublisher(api)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	rtcSignal(t, pub.PC, "http://"+c.nodes[0].APIAddr+"/rtc/v1/whip/?app=live&stream=web", c.nodes[0], c.nodes[0])
	pub.StartRTP(src)
	testkit.WaitFor(t, 20*time.Second, "origin receives the published stream", func() bool {
		return origin.Tracks("live", "web") == 2 && origin.PublishedPackets() > 50
	})

	baseline := origin.Sessions()
	players := []harness.WebPlayer{{Name: "WHEP via n2", Kind: "whep", Src: "http://" + c.nodes[1].APIAddr + "/rtc/v1/whep/?app=live&stream=web"}}
	r := harness.PlayInBrowser(t, players, webRun, webLimit)[0]
	harness.CheckWebPlayback(t, r, webMinAdvance, webMaxStall)
	if r.Location == "" || !strings.Contains(strings.Join(r.Events, " "), "DELETE 200") {
		t.Errorf("WHEP session: Location %q, events %q", r.Location, r.Events)
	}
	testkit.WaitFor(t, 10*time.Second, "the browser's session ended on the origin", func() bool {
		return origin.Sessions() == baseline
	})
}
