package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// Attacks on the playlists of a stream that moved (issue 20, items 2 and
// 3): two nginx-rtmp origins, each behind an HTTP front the test owns that
// counts the playlist requests the origin gets, a 3-node mesh, one
// publisher, one legitimate HLS player, and a move by failover (the
// owner's nginx is killed, as in TestPublisherFailover).

// attackStream is the stream the attack tests publish.
const attackStream = "__defaultVhost__/live/atk"

// hlsFront is an origin's HTTP endpoint: it serves the HLS playlists its
// nginx-rtmp writes, as nginx does or (srs) as SRS does with hls_ctx on (a
// request without a session it opened gets a master playlist that opens
// one), proxies everything else to nginx, and records the URI of every
// playlist request.
type hlsFront struct {
	nginx *harness.Nginx
	srs   bool
	proxy *httputil.ReverseProxy
	addr  string
	srv   *http.Server

	mu       sync.Mutex
	uris     []string
	sessions map[string]bool
}

func startHLSFront(t *testing.T, n *harness.Nginx, srs bool) *hlsFront {
	t.Helper()
	target, _ := url.Parse("http://" + n.HTTPAddr)
	f := &hlsFront{nginx: n, srs: srs, proxy: httputil.NewSingleHostReverseProxy(target), sessions: map[string]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 128 << 10}
	go f.srv.Serve(ln)
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *hlsFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if !strings.HasSuffix(p, ".m3u8") {
		f.proxy.ServeHTTP(w, r)
		return
	}
	f.mu.Lock()
	f.uris = append(f.uris, r.URL.RequestURI())
	f.mu.Unlock()
	b, err := os.ReadFile(filepath.Join(f.nginx.Dir, "hls", filepath.Clean("/"+p)))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
	if !f.srs {
		w.Write(b)
		return
	}
	ctx := r.URL.Query().Get("hls_ctx")
	f.mu.Lock()
	known := f.sessions[ctx]
	if !known {
		ctx = fmt.Sprintf("c%s-%d", f.addr[strings.LastIndexByte(f.addr, ':')+1:], len(f.sessions))
		f.sessions[ctx] = true
	}
	f.mu.Unlock()
	if !known {
		fmt.Fprintf(w, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=1\n%s?hls_ctx=%s\n", p, ctx)
		return
	}
	w.Write(segmentLine.ReplaceAll(b, []byte("$1?hls_ctx="+ctx)))
}

// playlistURIs returns the URIs of the playlist requests f got.
func (f *hlsFront) playlistURIs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.uris...)
}

// moveAttack is a mesh with a stream on one of two origins and a
// legitimate HLS player of it.
type moveAttack struct {
	c              *cluster
	nginx          map[string]*harness.Nginx
	fronts         map[string]*hlsFront
	owner, other   string
	player         *harness.Player
	target         time.Duration
	framesAtMove   int
	stallBeforeMov time.Duration
}

// startMoveAttack starts the mesh, publishes attackStream through node 1
// and plays its playlist with FFmpeg through node 2, with query legit.
func startMoveAttack(t *testing.T, srs bool, legit string) *moveAttack {
	harness.Need(t, "ffmpeg", "nginx")
	m := &moveAttack{nginx: map[string]*harness.Nginx{}, fronts: map[string]*hlsFront{}}
	var flags []string
	for _, id := range []string{"o1", "o2"} {
		n := harness.StartNginx(t, harness.NginxOptions{HLS: true, HLSFragment: 2 * time.Second})
		f := startHLSFront(t, n, srs)
		m.nginx[id], m.fronts[id] = n, f
		port := func(a string) string { return a[strings.LastIndexByte(a, ':')+1:] }
		flags = append(flags, "--origin", fmt.Sprintf("id=%s,ip=127.0.0.1,rtmp=%s,http=%s", id, port(n.RTMPAddr), port(f.addr)))
	}
	m.c = startProtocolCluster(t, 3, nil, flags...)
	m.c.waitOriginsHealthy(t, 2)
	harness.PublishRTMP(t, m.c.nodes[0].RTMPURL("live/atk"))
	m.owner = m.c.waitAssigned(t, attackStream)
	m.other = map[string]string{"o1": "o2", "o2": "o1"}[m.owner]
	playlist := m.c.nodes[1].HTTPURL("live/atk.m3u8")
	if legit != "" {
		playlist += "?" + legit
	}
	waitOK(t, playlist, "the stream's playlist")
	m.player = harness.StartPlayer(t, playlist)
	testkit.WaitFor(t, 60*time.Second, "the HLS player decodes", func() bool {
		if m.player.Exited() {
			t.Fatalf("HLS player exited: %s", m.player.Output())
		}
		return m.player.Frames() > 50
	})
	m.target = targetDuration(t, playlist)
	return m
}

// move kills the owner (its nginx and its front) and waits until every
// node has the stream on the other origin with epoch 1.
func (m *moveAttack) move(t *testing.T) {
	m.framesAtMove, m.stallBeforeMov = m.player.Frames(), m.player.LongestStall()
	m.nginx[m.owner].Kill()
	m.fronts[m.owner].srv.Close()
	testkit.WaitFor(t, 20*time.Second, "the stream on "+m.other+" with epoch 1 on every node", func() bool {
		for _, nd := range m.c.nodes {
			var st mesh.Status
			if nd.Status(&st) != nil {
				return false
			}
			if a, ok := assignmentOf(st, attackStream); !ok || a.Origin != m.other || a.Epoch != 1 {
				return false
			}
		}
		return true
	})
}

// playerRodeThrough checks that the legitimate player decodes after the
// move and the attack, with no stall longer than four target durations.
func (m *moveAttack) playerRodeThrough(t *testing.T) {
	t.Helper()
	testkit.WaitFor(t, 60*time.Second, "the HLS player decodes after the move", func() bool {
		if m.player.Exited() {
			t.Fatalf("HLS player exited next to the attack: %s", m.player.Output())
		}
		return m.player.Frames() > m.framesAtMove+100
	})
	stall := m.player.LongestStall()
	t.Logf("legitimate HLS player: longest stall %v (before the move %v), target duration %v",
		stall.Round(10*time.Millisecond), m.stallBeforeMov.Round(10*time.Millisecond), m.target)
	if stall > 4*m.target {
		t.Errorf("HLS player stalled %v next to the attack; the bound is 4 target durations (%v)", stall, 4*m.target)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// TestAttackHeldRetriesAfterMove: just after a move, while the new origin
// has no playlist yet, three waves of 20 anonymous playlist requests with
// random queries, spread over the nodes, cost the new origin at most one
// request each plus each node's probes of the stream (maxHoldProbes, 32,
// per node), instead of one request every 250 ms per request (issue 20:
// 340 for 20). The legitimate player rides through.
func TestAttackHeldRetriesAfterMove(t *testing.T) {
	m := startMoveAttack(t, false, "player=legit")
	m.move(t)
	const waves, perWave = 3, 20
	statuses := map[int]int{}
	var mu sync.Mutex
	start := time.Now()
	for range waves {
		var wg sync.WaitGroup
		for i := range perWave {
			wg.Add(1)
			go func() {
				defer wg.Done()
				u := m.c.nodes[i%3].HTTPURL("live/atk.m3u8?junk=" + randomHex(8) + "&pad=" + randomHex(64))
				code := 0
				if resp, err := e2eHTTP.Get(u); err == nil {
					code = resp.StatusCode
					resp.Body.Close()
				}
				mu.Lock()
				statuses[code]++
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	sent := waves * perWave
	t.Logf("%d attack requests answered in %v: statuses %v", sent, time.Since(start).Round(10*time.Millisecond), statuses)
	m.playerRodeThrough(t)

	var junk, probes, legit, other int
	perQuery := map[string]int{}
	for _, u := range m.fronts[m.other].playlistURIs() {
		switch {
		case strings.Contains(u, "junk="):
			junk++
			perQuery[u]++
		case u == "/live/atk.m3u8":
			probes++
		case strings.Contains(u, "player=legit"):
			legit++
		default:
			other++
		}
	}
	const maxHoldProbes, nodes = 32, 3
	t.Logf("new origin's playlist GETs: %d for %d attack requests, %d probes, %d of the legitimate player, %d others",
		junk, sent, probes, legit, other)
	if junk > sent {
		t.Errorf("%d origin GETs with attack queries for %d attack requests: a query multiplied origin requests", junk, sent)
	}
	repeated, most := 0, 0
	for _, n := range perQuery {
		if n > 1 {
			repeated++
		}
		most = max(most, n)
	}
	if repeated > 0 {
		t.Errorf("%d attack queries reached the origin more than once (up to %d times)", repeated, most)
	}
	if probes > nodes*maxHoldProbes {
		t.Errorf("%d probes; the bound is %d per node and move (%d)", probes, maxHoldProbes, nodes*maxHoldProbes)
	}
}

// TestAttackMovedSessionPadding: after a move, 2,000 playlist reloads with
// a random SRS session id (hls_ctx) and a 60 KB query, the origin behaving
// as SRS does (a master playlist for a session it does not know). The map
// of moved sessions on the node keys each by its session id and a digest,
// so it stays small in bytes (issue 20: 2,000 such reloads grew a node's
// heap from 3 to 128 MiB); an oversized session id is not remembered. The
// legitimate player, whose SRS session the new origin does not know, rides
// through.
func TestAttackMovedSessionPadding(t *testing.T) {
	m := startMoveAttack(t, true, "")
	m.move(t)
	paddedReloads(t, m.c.nodes[2], func() int { return len(m.fronts[m.other].playlistURIs()) })
	m.playerRodeThrough(t)
}

// paddedReloads sends 2,000 playlist reloads of attackStream through nd,
// each with a random SRS session id and a 60 KB query (one in a hundred
// with an oversized session id), and checks nd's map of moved sessions and
// heap. originGETs, when not nil, counts the new origin's playlist
// requests, for the log.
func paddedReloads(t *testing.T, nd *harness.Node, originGETs func() int) {
	t.Helper()
	waitOK(t, nd.HTTPURL("live/atk.m3u8"), "the moved stream's playlist on the new origin")
	metricsURL := "http://" + nd.SystemAPI + "/metrics"
	heapBefore := goMemInUse(metricsURL)

	const reloads, workers = 2000, 8
	pad := strings.Repeat("p", 60<<10)
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < reloads; i += workers {
				id := randomHex(8)
				if i%100 == 0 {
					id = strings.Repeat("x", 4096) // oversized: not a session
				}
				code := 0
				if resp, err := e2eHTTP.Get(nd.HTTPURL("live/atk.m3u8?hls_ctx=" + id + "&pad=" + pad)); err == nil {
					code = resp.StatusCode
					resp.Body.Close()
				}
				mu.Lock()
				statuses[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	heapAfter := goMemInUse(metricsURL)
	fams := scrape(t, nd)
	value := func(name string) float64 {
		mt, ok := metric(fams, name, "table", "moved_session")
		if !ok {
			t.Fatalf("no %s{table=moved_session}", name)
		}
		return mt.GetGauge().GetValue()
	}
	entries, bytes := value("srs_mesh_http_table_entries"), value("srs_mesh_http_table_bytes")
	gets := -1
	if originGETs != nil {
		gets = originGETs()
	}
	t.Logf("%d padded reloads in %v: statuses %v; moved sessions: %.0f entries, %.0f bytes; node heap %.1f -> %.1f MiB; new origin's playlist GETs %d",
		reloads, time.Since(start).Round(10*time.Millisecond), statuses, entries, bytes,
		float64(heapBefore)/(1<<20), float64(heapAfter)/(1<<20), gets)
	if statuses[http.StatusOK] < reloads*9/10 {
		t.Errorf("only %d of %d reloads answered 200", statuses[http.StatusOK], reloads)
	}
	const maxEntries, maxBytes = 10000, 4 << 20
	if entries < reloads/2 || entries > maxEntries {
		t.Errorf("%.0f moved sessions for %d reloads with random session ids; want between %d and %d", entries, reloads, reloads/2, maxEntries)
	}
	if bytes > maxBytes || bytes > entries*512 {
		t.Errorf("moved sessions hold %.0f bytes for %.0f entries: over %d bytes, or over 512 bytes an entry", bytes, entries, maxBytes)
	}
	if grew := heapAfter - heapBefore; grew > 64<<20 {
		t.Errorf("the node's heap grew %.1f MiB under the padded reloads; the caches and maps together hold at most about 36 MiB", float64(grew)/(1<<20))
	}
	if entries > reloads-reloads/100 {
		t.Errorf("%.0f moved sessions: the %d oversized session ids were remembered", entries, reloads/100)
	}
}

// TestAttackMovedSessionPaddingSRS is TestAttackMovedSessionPadding against
// real SRS origins (SRS_MESH_TEST_SRS), which open an HLS session (hls_ctx)
// for every playlist request that names none they know: the stream moves
// when its SRS is killed, then 2,000 padded reloads with random session
// ids go through a node, next to a legitimate HLS player.
func TestAttackMovedSessionPaddingSRS(t *testing.T) {
	c, srs := startSRSMesh(t)
	harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/atk"))
	owner := c.waitAssigned(t, attackStream)
	var st mesh.Status
	if err := c.nodes[0].Status(&st); err != nil {
		t.Fatal(err)
	}
	var victim *harness.SRS
	for _, o := range st.Origins {
		for _, s := range srs {
			if o.ID == owner && o.RTMP == s.RTMPAddr {
				victim = s
			}
		}
	}
	if victim == nil {
		t.Fatalf("no SRS is %s", owner)
	}
	playlist := c.nodes[1].HTTPURL("live/atk.m3u8")
	waitOK(t, playlist, "the stream's playlist")
	player := harness.StartPlayer(t, playlist)
	testkit.WaitFor(t, 60*time.Second, "the HLS player decodes", func() bool {
		if player.Exited() {
			t.Fatalf("HLS player exited: %s", player.Output())
		}
		return player.Frames() > 50
	})
	target := targetDuration(t, playlist)
	m := &moveAttack{c: c, player: player, target: target, framesAtMove: player.Frames(), stallBeforeMov: player.LongestStall()}
	victim.Kill()
	testkit.WaitFor(t, 30*time.Second, "the stream moved with epoch 1 on every node", func() bool {
		for _, nd := range c.nodes {
			var st mesh.Status
			if nd.Status(&st) != nil {
				return false
			}
			if a, ok := assignmentOf(st, attackStream); !ok || a.Origin == owner || a.Epoch != 1 {
				return false
			}
		}
		return true
	})
	paddedReloads(t, c.nodes[2], nil)
	m.playerRodeThrough(t)
}
