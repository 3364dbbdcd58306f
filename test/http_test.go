package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/httpstream"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// startHTTPStreamMesh starts two nginx-rtmp origins writing HLS and DASH and
// three nodes that know them, publishes live/s through node 1 and waits
// until node 2 serves the stream's playlist and MPD.
func startHTTPStreamMesh(t *testing.T) (*cluster, map[string]*harness.Nginx) {
	t.Helper()
	harness.Need(t, "ffmpeg", "nginx")
	o1 := harness.StartNginx(t, harness.NginxOptions{HLS: true, DASH: true})
	o2 := harness.StartNginx(t, harness.NginxOptions{HLS: true, DASH: true})
	c := startProtocolCluster(t, 3, nil, "--origin", originFlag("o1", o1), "--origin", originFlag("o2", o2))
	c.waitOriginsHealthy(t, 2)
	pub := harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/s"))
	testkit.WaitFor(t, 60*time.Second, "playlist and MPD served through node 2", func() bool {
		if pub.Exited() {
			t.Fatalf("publisher exited: %s", pub.Output())
		}
		for _, p := range []string{"live/s.m3u8", "live/s.mpd"} {
			resp, err := e2eHTTP.Get(c.nodes[1].HTTPURL(p))
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
		}
		return true
	})
	return c, map[string]*harness.Nginx{"o1": o1, "o2": o2}
}

// TestHLSAndDASHThroughMesh publishes over RTMP through node 1 and plays the
// origin's HLS through node 2 and its DASH through node 3.
func TestHLSAndDASHThroughMesh(t *testing.T) {
	c, _ := startHTTPStreamMesh(t)
	owner := c.waitAssigned(t, "__defaultVhost__/live/s")
	t.Logf("live/s assigned to %s", owner)

	res := harness.PlayUntil(t, c.nodes[1].HTTPURL("live/s.m3u8"), 2*time.Second, 10, 60*time.Second)
	t.Logf("HLS through n2 decoded %d frames", res.VideoFrames)
	res = harness.PlayUntil(t, c.nodes[2].HTTPURL("live/s.mpd"), 2*time.Second, 10, 60*time.Second)
	t.Logf("DASH through n3 decoded %d frames", res.VideoFrames)
}

// TestHLSSegmentsFromAnyNode fetches a playlist (and an MPD) from node 2
// and every segment it names from nodes 1 and 3 in turn: the rewritten
// URIs carry tokens that route on any node with no shared per-viewer state.
// A tampered token, and one signed with another mesh's secret, get 400; when
// they name a listener of the test's own, the node never connects to it.
func TestHLSSegmentsFromAnyNode(t *testing.T) {
	c, origins := startHTTPStreamMesh(t)
	owner := c.waitAssigned(t, "__defaultVhost__/live/s")
	others := []int{0, 2}

	// HLS: every segment URI from another node than the playlist's.
	var segs []string
	testkit.WaitFor(t, 30*time.Second, "playlist with at least two segments", func() bool {
		resp, body := httpGet(t, c.nodes[1].HTTPURL("live/s.m3u8"))
		segs = uriLines(string(body))
		return resp.StatusCode == http.StatusOK && len(segs) >= 2
	})
	for i, u := range segs {
		if !strings.HasPrefix(u, "/_hls/") || !strings.HasSuffix(u, ".ts") {
			t.Fatalf("segment URI %q is not a token URL", u)
		}
		nd := c.nodes[others[i%2]]
		resp, body := httpGet(t, "http://"+nd.HTTPAddr+u)
		if resp.StatusCode != http.StatusOK || len(body) == 0 || body[0] != 0x47 {
			t.Fatalf("GET %s through %s: %d, %d bytes", u, nd.ID, resp.StatusCode, len(body))
		}
	}
	t.Logf("%d HLS segments fetched through n1 and n3", len(segs))

	// DASH: the init sections and a media segment of every representation,
	// resolved against the rewritten BaseURL, from the other nodes.
	var mpd string
	var names []string
	testkit.WaitFor(t, 30*time.Second, "MPD with a BaseURL and segment timelines", func() bool {
		resp, body := httpGet(t, c.nodes[1].HTTPURL("live/s.mpd"))
		mpd = string(body)
		names = dashSegments(mpd)
		return resp.StatusCode == http.StatusOK && len(names) >= 2 && baseURL(mpd) != ""
	})
	if !strings.HasPrefix(baseURL(mpd), "/_dash/") {
		t.Fatalf("BaseURL %q is not a token URL", baseURL(mpd))
	}
	for i, name := range names {
		nd := c.nodes[others[i%2]]
		base, err := url.Parse("http://" + nd.HTTPAddr + "/live/s.mpd")
		if err != nil {
			t.Fatal(err)
		}
		u := base.ResolveReference(mustParse(t, baseURL(mpd))).ResolveReference(&url.URL{Path: name})
		resp, body := httpGet(t, u.String())
		if resp.StatusCode != http.StatusOK || len(body) < 8 {
			t.Fatalf("GET %s through %s: %d, %d bytes", u, nd.ID, resp.StatusCode, len(body))
		}
	}
	t.Logf("%d DASH init and media segments fetched through n1 and n3: %v", len(names), names)

	// Forged tokens. One is a real token with a byte of its signature
	// changed; the other is minted by a proxy with another secret, naming
	// the very origin and segment that a real token names.
	tok, name := splitTokenURL(t, segs[0], "/_hls/")
	tampered := tok[:len(tok)-2] + flip(tok[len(tok)-2]) + tok[len(tok)-1:]
	foreign := foreignSegmentURL(t, origins[owner].HTTPAddr)
	dtok, dname := splitTokenURL(t, baseURL(mpd)+names[0], "/_dash/")
	dtampered := dtok[:len(dtok)-2] + flip(dtok[len(dtok)-2]) + dtok[len(dtok)-1:]
	// The same forgeries naming a listener of the test's own.
	trip := testkit.NewTripwire(t)
	key := []byte("not the mesh's secret")
	tripHLS := mintSegmentToken(key, 1, trip.Addr(), "/live/"+name)
	tripDASH := mintSegmentToken(key, 2, trip.Addr(), "/live/")
	tripTampered := tripHLS[:len(tripHLS)-2] + flip(tripHLS[len(tripHLS)-2]) + tripHLS[len(tripHLS)-1:]
	for _, u := range []string{
		"/_hls/" + tampered + "/" + name,
		foreign,
		"/_dash/" + dtampered + "/" + dname,
		"/_hls/" + tripHLS + "/" + name,
		"/_hls/" + tripTampered + "/" + name,
		"/_dash/" + tripDASH + "/" + dname,
	} {
		resp, body := httpGet(t, "http://"+c.nodes[0].HTTPAddr+u)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("forged token %s: %d %s, want 400", u, resp.StatusCode, body)
		}
	}
	if got := trip.Connections(t); len(got) != 0 {
		t.Errorf("forged tokens made n1 connect to the origin they name: %v", got)
	}
}

// mintSegmentToken builds a segment token in the wire form httpstream
// documents (version 2, kind, the uvarint-prefixed origin and path, then
// HMAC-SHA256 under key truncated to 16 bytes). With any key but the
// mesh's, it is a forgery that is well formed in every other way.
func mintSegmentToken(key []byte, kind byte, origin, path string) string {
	b := []byte{2, kind}
	for _, field := range []string{origin, path} {
		n := uint64(len(field))
		for ; n >= 0x80; n >>= 7 { // uvarint
			b = append(b, byte(n)|0x80)
		}
		b = append(append(b, byte(n)), field...)
	}
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return base64.RawURLEncoding.EncodeToString(m.Sum(b)[:len(b)+16])
}

// uriLines returns a playlist's URI lines.
func uriLines(pl string) []string {
	var out []string
	for _, l := range strings.Split(pl, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

var (
	baseURLRE = regexp.MustCompile(`<BaseURL>([^<]*)</BaseURL>`)
	initRE    = regexp.MustCompile(`initialization="([^"]*)"`)
	mediaRE   = regexp.MustCompile(`media="([^"]*)"`)
	segTimeRE = regexp.MustCompile(`<S t="(\d+)"`)
)

func baseURL(mpd string) string {
	if m := baseURLRE.FindStringSubmatch(mpd); m != nil {
		return m[1]
	}
	return ""
}

// dashSegments returns, for every representation of an nginx-rtmp MPD, its
// initialization name and the name of a finished media segment (the one
// before the last of its timeline, which may still be written).
func dashSegments(mpd string) []string {
	timelines := strings.Split(mpd, "<SegmentTimeline>")
	inits := initRE.FindAllStringSubmatch(mpd, -1)
	medias := mediaRE.FindAllStringSubmatch(mpd, -1)
	if len(inits) == 0 || len(medias) != len(inits) || len(timelines) != len(inits)+1 {
		return nil
	}
	var out []string
	for i := range inits {
		tl, _, _ := strings.Cut(timelines[i+1], "</SegmentTimeline>")
		ts := segTimeRE.FindAllStringSubmatch(tl, -1)
		if len(ts) < 2 {
			return nil
		}
		out = append(out, inits[i][1], strings.ReplaceAll(medias[i][1], "$Time$", ts[len(ts)-2][1]))
	}
	return out
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// splitTokenURL splits "<prefix><token>/<rest>" into token and rest.
func splitTokenURL(t *testing.T, u, prefix string) (tok, rest string) {
	t.Helper()
	tok, rest, ok := strings.Cut(strings.TrimPrefix(u, prefix), "/")
	if !strings.HasPrefix(u, prefix) || !ok || len(tok) < 4 {
		t.Fatalf("%q is not a %s token URL", u, prefix)
	}
	return tok, rest
}

// flip returns another character of the base64url alphabet than c.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// routeTo is a Router that sends every stream to one HTTP origin.
type routeTo string

func (r routeTo) Route(context.Context, stream.Key) (stream.Origin, error) {
	return stream.Origin{ID: "foreign", HTTP: string(r)}, nil
}

func (r routeTo) RoutePlay(ctx context.Context, key stream.Key) (stream.Origin, error) {
	return r.Route(ctx, key)
}

// foreignSegmentURL returns the first segment URL of live/s.m3u8 from
// origin as rewritten by a proxy whose token secret is not the mesh's.
func foreignSegmentURL(t *testing.T, origin string) string {
	t.Helper()
	s, err := httpstream.New(httpstream.Config{Router: routeTo(origin), TokenSecret: []byte("not the mesh's secret")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	resp, body := httpGet(t, "http://"+ln.Addr().String()+"/live/s.m3u8")
	segs := uriLines(string(body))
	if resp.StatusCode != http.StatusOK || len(segs) == 0 {
		t.Fatalf("foreign proxy playlist: %d\n%s", resp.StatusCode, body)
	}
	return segs[0]
}

// flvOrigin is a live HTTP-FLV origin: every GET of /live/s.flv gets its
// own FFmpeg encoder writing FLV into the response as it encodes. It records
// what each viewer asked for.
//
// It stands in for "ffmpeg -f flv -listen 1 http://...", which serves
// exactly one TCP connection: the leader's health probe (a TCP connect to
// the HTTP port of an origin with no RTMP port, every second) is taken for
// that client and FFmpeg exits, and "-listen 2" (multi-client) does not
// serve clients from the ffmpeg command line. The bytes the viewer decodes
// are still FFmpeg's, streamed live.
type flvOrigin struct {
	addr string

	mu       sync.Mutex
	requests []*http.Request // clones, without bodies
	conns    int             // TCP connections accepted, requests or not
}

func startFLVOrigin(t *testing.T) *flvOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &flvOrigin{addr: ln.Addr().String()}
	srv := &http.Server{Handler: o, ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				o.mu.Lock()
				o.conns++
				o.mu.Unlock()
			}
		}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return o
}

func (o *flvOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.requests = append(o.requests, r.Clone(context.Background()))
	o.mu.Unlock()
	if r.URL.Path != "/live/s.flv" {
		http.NotFound(w, r)
		return
	}
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin"}
	args = append(args, harness.TestSourceArgs()...)
	args = append(args, harness.EncodeArgs()...)
	args = append(args, "-f", "flv", "pipe:1")
	cmd := exec.CommandContext(r.Context(), "ffmpeg", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.StdoutPipe()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err := cmd.Start(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer cmd.Wait()
	w.Header().Set("Content-Type", "video/x-flv")
	w.Header().Set("X-Origin", "flv1")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	buf := make([]byte, 16<<10)
	for {
		n, err := out.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil || rc.Flush() != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// seen returns the requests and TCP connections the origin has had.
func (o *flvOrigin) seen() ([]*http.Request, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*http.Request(nil), o.requests...), o.conns
}

// TestHTTPFLVThroughMesh plays a live HTTP-FLV stream of an HTTP-only origin
// through the mesh: FFmpeg decodes it through node 2, and the viewer's query
// string and allowed headers reach the origin while the origin's headers
// reach the viewer.
func TestHTTPFLVThroughMesh(t *testing.T) {
	harness.Need(t, "ffmpeg")
	o := startFLVOrigin(t)
	port := o.addr[strings.LastIndexByte(o.addr, ':')+1:]
	c := startProtocolCluster(t, 3, nil, "--origin", "id=flv1,ip=127.0.0.1,http="+port)
	c.waitOriginsHealthy(t, 1)

	res := harness.PlayUntil(t, c.nodes[1].HTTPURL("live/s.flv?token=abc"), 2*time.Second, 10, 60*time.Second, "-f", "flv")
	t.Logf("HTTP-FLV through n2 decoded %d frames", res.VideoFrames)
	if owner := c.waitAssigned(t, "__defaultVhost__/live/s"); owner != "flv1" {
		t.Fatalf("live/s assigned to %s", owner)
	}

	// The query and the viewer's User-Agent reach the origin.
	reqs, _ := o.seen()
	var got *http.Request
	for _, r := range reqs {
		if r.URL.Path == "/live/s.flv" {
			got = r
		}
	}
	if got == nil {
		t.Fatalf("the origin saw no request for /live/s.flv: %d requests", len(reqs))
	}
	if got.URL.RawQuery != "token=abc" {
		t.Errorf("origin got query %q, want token=abc", got.URL.RawQuery)
	}
	if ua := got.Header.Get("User-Agent"); !strings.HasPrefix(ua, "Lavf") {
		t.Errorf("origin got User-Agent %q, want FFmpeg's", ua)
	}
	if got.Header.Get("X-Forwarded-For") == "" {
		t.Errorf("origin got no X-Forwarded-For: %v", got.Header)
	}

	// Through node 3 with a plain client: the origin's headers and the FLV
	// signature come back, the query (with characters that need escaping)
	// arrives byte for byte, an allowed header (Referer) arrives, a header
	// off the allow-list does not, and X-Real-IP names the real peer, not
	// the one the client claims.
	const query = "token=a%2Fb%3D&sign=x+y&n=1"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.nodes[2].HTTPURL("live/s.flv?"+query), nil)
	req.Header.Set("X-Viewer", "e2e")
	req.Header.Set("Referer", "http://player.example/e2e")
	req.Header.Set("X-Real-IP", "6.6.6.6")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	resp, err := e2eHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 3)
	_, err = io.ReadFull(resp.Body, head)
	resp.Body.Close()
	cancel()
	if err != nil || string(head) != "FLV" {
		t.Fatalf("body starts %q (%v), want FLV", head, err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "video/x-flv" || resp.Header.Get("X-Origin") != "flv1" {
		t.Fatalf("through n3: %d, Content-Type %q, X-Origin %q", resp.StatusCode, ct, resp.Header.Get("X-Origin"))
	}
	reqs, conns := o.seen()
	last := reqs[len(reqs)-1]
	if last.URL.RawQuery != query {
		t.Errorf("origin got query %q, want %q", last.URL.RawQuery, query)
	}
	if ref := last.Header.Get("Referer"); ref != "http://player.example/e2e" {
		t.Errorf("origin got Referer %q, want the viewer's", ref)
	}
	if v := last.Header.Values("X-Viewer"); len(v) != 0 {
		t.Errorf("origin got X-Viewer %q: not on the allow-list", v)
	}
	if ip, xff := last.Header.Get("X-Real-Ip"), last.Header.Get("X-Forwarded-For"); ip != "127.0.0.1" || xff != "127.0.0.1" {
		t.Errorf("origin got X-Real-IP %q X-Forwarded-For %q, want the peer 127.0.0.1", ip, xff)
	}
	t.Logf("the origin accepted %d TCP connections for %d requests (the rest are the leader's health probes)", conns, len(reqs))
}
