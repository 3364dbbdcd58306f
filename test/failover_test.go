package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestPublisherFailover: six FFmpeg publishers through three nodes, two
// nginx-rtmp origins writing HLS, and one FFmpeg HLS player through a node.
// The origin that holds the most streams is killed with SIGKILL. Every
// publisher keeps running, every stream moves to the other origin (its
// assignment, with epoch 1, on every node) and plays from there, the HLS
// player rides through with no stall longer than three target durations,
// and the nodes count one failover per moved stream. A publisher that then
// stops cleanly ends its session without a failover.
func TestPublisherFailover(t *testing.T) {
	harness.Need(t, "ffmpeg", "nginx")
	origins := map[string]*harness.Nginx{
		// 2 s segments: the HLS bound is three target durations, and a
		// new origin needs one segment's time before it has a playlist.
		"o1": harness.StartNginx(t, harness.NginxOptions{HLS: true, HLSFragment: 2 * time.Second}),
		"o2": harness.StartNginx(t, harness.NginxOptions{HLS: true, HLSFragment: 2 * time.Second}),
	}
	c := startProtocolCluster(t, 3, nil, "--origin", originFlag("o1", origins["o1"]), "--origin", originFlag("o2", origins["o2"]))
	c.waitOriginsHealthy(t, 2)

	const streams = 6
	pubs := make([]*harness.Proc, streams)
	keys := make([]string, streams)
	for i := range pubs {
		keys[i] = fmt.Sprintf("__defaultVhost__/live/f%d", i)
		pubs[i] = harness.PublishRTMP(t, c.nodes[i%3].RTMPURL(fmt.Sprintf("live/f%d?secret=s%d", i, i)))
	}
	owners := make([]string, streams)
	for i := range keys {
		owners[i] = c.waitAssigned(t, keys[i])
	}
	count := map[string]int{}
	for _, o := range owners {
		count[o]++
	}
	victim, other := "o1", "o2"
	if count["o2"] > count["o1"] {
		victim, other = "o2", "o1"
	}
	moved := count[victim]
	t.Logf("assignments %v: killing %s (%d streams)", owners, victim, moved)

	// One HLS player, through node 2, of a stream on the victim.
	watched := -1
	for i, o := range owners {
		if o == victim {
			watched = i
			break
		}
	}
	playlist := c.nodes[1].HTTPURL(fmt.Sprintf("live/f%d.m3u8", watched))
	waitOK(t, playlist, "the watched stream's playlist")
	player := harness.StartPlayer(t, playlist)
	testkit.WaitFor(t, 60*time.Second, "the HLS player decodes", func() bool {
		if player.Exited() {
			t.Fatalf("HLS player exited: %s", player.Output())
		}
		return player.Frames() > 50
	})
	target := targetDuration(t, playlist)

	// RTMP and HTTP-FLV players of every stream, on the nodes other than
	// the publisher's, and of the watched stream on every node; two of
	// them decode, the others demux every frame without decoding.
	type livePlayer struct {
		name string
		p    *harness.Player
	}
	var live []livePlayer
	for i := range keys {
		nodes := []int{(i + 1) % 3, (i + 2) % 3}
		if owners[i] == victim {
			nodes = append(nodes, i%3) // the publisher's node too
		}
		for _, j := range nodes {
			rtmp, flv := c.nodes[j].RTMPURL(fmt.Sprintf("live/f%d", i)), c.nodes[j].HTTPURL(fmt.Sprintf("live/f%d.flv", i))
			if i == watched && j == (i+1)%3 {
				live = append(live, livePlayer{"decoding RTMP " + rtmp, harness.StartPlayer(t, rtmp)},
					livePlayer{"decoding FLV " + flv, harness.StartPlayer(t, flv)})
				continue
			}
			if owners[i] == victim || j == (i+1)%3 {
				live = append(live, livePlayer{"RTMP " + rtmp, harness.StartCopyPlayer(t, rtmp)})
			}
			if owners[i] == victim || j == (i+2)%3 {
				live = append(live, livePlayer{"FLV " + flv, harness.StartCopyPlayer(t, flv)})
			}
		}
	}
	testkit.WaitFor(t, 60*time.Second, "every RTMP and FLV player gets frames", func() bool {
		for _, lp := range live {
			if lp.p.Exited() {
				t.Fatalf("%s exited: %s", lp.name, lp.p.Output())
			}
			if lp.p.Frames() < 25 {
				return false
			}
		}
		return true
	})
	liveFrames := make([]int, len(live))
	before := failoverCount(t, c, "ok")
	for i, p := range pubs {
		if p.Exited() {
			t.Fatalf("publisher %d exited before the kill: %s", i, p.Output())
		}
	}
	seqAtKill := mediaSeq(playlistHeader(c.nodes[1].HTTPURL(fmt.Sprintf("live/f%d.m3u8", watched))))
	framesAtKill := player.Frames()
	for i, lp := range live {
		liveFrames[i] = lp.p.Frames()
	}
	stallBefore := player.LongestStall()

	origins[victim].Kill()
	killed := time.Now()

	// Every stream moves to the other origin, on every node, with epoch 1.
	testkit.WaitFor(t, 20*time.Second, "every stream on "+other+" on every node", func() bool {
		for _, nd := range c.nodes {
			var st mesh.Status
			if nd.Status(&st) != nil {
				return false
			}
			for i, k := range keys {
				a, ok := assignmentOf(st, k)
				if !ok || a.Origin != other || (owners[i] == victim && a.Epoch != 1) {
					return false
				}
			}
		}
		return true
	})
	t.Logf("every assignment on %s %v after the kill", other, time.Since(killed).Round(10*time.Millisecond))
	// Every node's status lists the moves among its recent events.
	testkit.WaitFor(t, 10*time.Second, "the moves in every node's recent events", func() bool {
		for _, nd := range c.nodes {
			var st mesh.Status
			if nd.Status(&st) != nil {
				return false
			}
			moves := map[string]bool{}
			for _, e := range st.RecentEvents {
				if e.Kind == "stream_moved" && e.Origin == other {
					moves[e.Stream] = true
				}
			}
			for i, k := range keys {
				if owners[i] == victim && !moves[k] {
					return false
				}
			}
		}
		return true
	})
	testkit.WaitFor(t, 20*time.Second, "a failover counted per moved stream", func() bool {
		return failoverCount(t, c, "ok")-before >= float64(moved)
	})
	if n := failoverCount(t, c, "ok") - before; n != float64(moved) {
		t.Errorf("failovers counted: %v, want %d", n, moved)
	}
	resumes := failoverResumes(t, c)
	t.Logf("failovers: %d moved; slowest resume per node at most %v; logged: %v", moved, resumes, resumeLogs(c))
	for _, d := range resumes {
		if d > 3*time.Second {
			t.Errorf("a stream resumed %v after its origin died; the bound is 3 s", d)
		}
	}

	// Each stream plays from the new origin; every publisher still runs.
	for i := range keys {
		harness.PlayUntil(t, "rtmp://"+origins[other].RTMPAddr+fmt.Sprintf("/live/f%d", i), time.Second, 5, 30*time.Second)
	}
	for i, p := range pubs {
		if p.Exited() {
			t.Fatalf("publisher %d exited after the kill: %s", i, p.Output())
		}
	}

	// Every node renumbers the moved stream's playlist alike.
	testkit.WaitFor(t, 20*time.Second, "the same renumbered playlist header on every node", func() bool {
		var first string
		for _, nd := range c.nodes {
			h := playlistHeader(nd.HTTPURL(fmt.Sprintf("live/f%d.m3u8", watched)))
			if seq := mediaSeq(h); seq <= seqAtKill || seq > seqAtKill+1000 || !strings.HasSuffix(h, " #EXT-X-DISCONTINUITY") || (first != "" && h != first) {
				return false
			}
			first = h
		}
		t.Logf("playlist before the move: media sequence %d; after: %q", seqAtKill, first)
		return true
	})

	// The HLS player rode through.
	testkit.WaitFor(t, 30*time.Second, "the HLS player decodes after the move", func() bool {
		if player.Exited() {
			t.Fatalf("HLS player exited across the move: %s", player.Output())
		}
		return player.Frames() > framesAtKill+50
	})
	stall := player.LongestStall()
	t.Logf("HLS player: longest stall %v (before the kill %v), target duration %v", stall.Round(10*time.Millisecond),
		stallBefore.Round(10*time.Millisecond), target)
	if stall > 3*target {
		t.Errorf("HLS player stalled %v; the bound is 3 target durations (%v)", stall, 3*target)
	}

	// The RTMP and FLV players rode through: still connected, frames
	// again, and no gap longer than 5 s.
	testkit.WaitFor(t, 30*time.Second, "every RTMP and FLV player gets frames after the move", func() bool {
		for i, lp := range live {
			if lp.p.Exited() {
				t.Fatalf("%s exited across the move: %s", lp.name, lp.p.Output())
			}
			if lp.p.Frames() < liveFrames[i]+50 {
				return false
			}
		}
		return true
	})
	var worst time.Duration
	for _, lp := range live {
		stall := lp.p.LongestStall()
		worst = max(worst, stall)
		if stall > 5*time.Second {
			t.Errorf("%s: longest gap between frames %v; the bound is 5 s", lp.name, stall)
		}
	}
	t.Logf("%d RTMP and FLV players rode through; longest gap %v; re-attaches: %v", len(live), worst.Round(10*time.Millisecond),
		failoverCountKind(t, c, "play"))

	// A clean unpublish ends the session as before: no failover.
	after := failoverCount(t, c, "")
	pubs[0].Stop(5 * time.Second)
	testkit.WaitFor(t, 15*time.Second, "the unpublished session to end", func() bool {
		return publishers(t, c) == streams-1
	})
	if n := failoverCount(t, c, ""); n != after {
		t.Errorf("a clean unpublish counted %v failovers", n-after)
	}
	// ... and ends its RTMP and FLV players, with no re-attach.
	plays := failovers(t, c, "play", "")
	testkit.WaitFor(t, 20*time.Second, "the unpublished stream's players to end", func() bool {
		for _, lp := range live {
			if strings.HasSuffix(lp.name, "/live/f0") || strings.HasSuffix(lp.name, "/live/f0.flv") {
				if !lp.p.Exited() {
					return false
				}
			}
		}
		return true
	})
	if n := failovers(t, c, "play", ""); n != plays {
		t.Errorf("a clean unpublish counted %v player re-attaches", n-plays)
	}
}

// mediaSeq is the media sequence number in a playlistHeader, 0 if none.
func mediaSeq(h string) uint64 {
	for _, f := range strings.Fields(h) {
		if v, ok := strings.CutPrefix(f, "#EXT-X-MEDIA-SEQUENCE:"); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 0
}

// playlistHeader returns the sequence lines of a media playlist and whether
// its first segment starts a discontinuity, or "" when it cannot be had.
func playlistHeader(url string) string {
	resp, err := e2eHTTP.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"), strings.HasPrefix(l, "#EXT-X-DISCONTINUITY-SEQUENCE:"):
			out = append(out, l)
		case l == "#EXT-X-DISCONTINUITY" && len(out) == 2:
			out = append(out, l)
		}
	}
	return strings.Join(out, " ")
}

// targetDuration reads EXT-X-TARGETDURATION from a media playlist.
func targetDuration(t *testing.T, url string) time.Duration {
	t.Helper()
	resp, err := e2eHTTP.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	variant := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "#EXT-X-TARGETDURATION:"); ok {
			n, err := strconv.Atoi(v)
			if err == nil && n > 0 {
				return time.Duration(n) * time.Second
			}
		}
		if line != "" && !strings.HasPrefix(line, "#") && variant == "" {
			variant = line
		}
	}
	if variant != "" { // a master playlist (SRS's, with hls_ctx): its media playlist
		base, _ := neturl.Parse(url)
		if ref, err := base.Parse(variant); err == nil {
			return targetDuration(t, ref.String())
		}
	}
	t.Fatalf("no target duration in %s", url)
	return 0
}

// failoverCount sums srs_mesh_failovers_total of RTMP publishers over the
// nodes, for one result ("" for all).
func failoverCount(t *testing.T, c *cluster, result string) float64 {
	t.Helper()
	return failovers(t, c, "publish", result)
}

// failoverCountKind sums the successful failovers of a kind over the nodes.
func failoverCountKind(t *testing.T, c *cluster, kind string) float64 {
	t.Helper()
	return failovers(t, c, kind, "ok")
}

// failovers sums srs_mesh_failovers_total of RTMP sessions of a kind over
// the nodes, of one result or ("") all.
func failovers(t *testing.T, c *cluster, kind, result string) float64 {
	t.Helper()
	var n float64
	for _, nd := range c.nodes {
		f, ok := scrape(t, nd)["srs_mesh_failovers_total"]
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["proto"] == "rtmp" && l["kind"] == kind && (result == "" || l["result"] == result) {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// failoverResumes returns, per node that failed over a stream, the upper
// bound of the histogram bucket of its slowest resume.
func failoverResumes(t *testing.T, c *cluster) []time.Duration {
	t.Helper()
	var out []time.Duration
	for _, nd := range c.nodes {
		f, ok := scrape(t, nd)["srs_mesh_failover_resume_seconds"]
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			if h.GetSampleCount() == 0 {
				continue
			}
			slowest := time.Hour // in the +Inf bucket
			for _, b := range h.GetBucket() {
				if b.GetCumulativeCount() == h.GetSampleCount() {
					slowest = time.Duration(b.GetUpperBound() * float64(time.Second))
					break
				}
			}
			out = append(out, slowest)
		}
	}
	return out
}

// resumeLogs collects the time to resume of every failover the nodes
// logged.
func resumeLogs(c *cluster) []string {
	var out []string
	for _, nd := range c.nodes {
		for _, l := range strings.Split(nd.Logs(), "\n") {
			if !strings.Contains(l, "publisher failed over") {
				continue
			}
			for _, f := range strings.Fields(l) {
				if v, ok := strings.CutPrefix(f, "resume="); ok {
					out = append(out, v)
				}
			}
		}
	}
	return out
}

// publishers is the number of relaying RTMP publish sessions on all nodes.
func publishers(t *testing.T, c *cluster) int {
	t.Helper()
	n := 0
	for _, nd := range c.nodes {
		if v := value(scrape(t, nd), "srs_mesh_sessions", "proto", "rtmp", "kind", "publish"); v > 0 {
			n += int(v)
		}
	}
	return n
}

// TestSRSOriginFailover is the failover scenario against real SRS 7
// origins (opt-in, SRS_MESH_TEST_SRS): two SRS origins registered by their
// heartbeats behind three nodes, four streams published through the
// nodes, RTMP and HTTP-FLV players of each on the other nodes and an
// FFmpeg HLS player. The SRS that holds the most streams is killed: every
// publisher and player keeps running and gets frames again, within the
// bounds of the issue.
func TestSRSOriginFailover(t *testing.T) {
	c, srs := startSRSMesh(t)
	const streams = 4
	pubs := make([]*harness.Proc, streams)
	keys := make([]string, streams)
	for i := range pubs {
		keys[i] = fmt.Sprintf("__defaultVhost__/live/s%d", i)
		pubs[i] = harness.PublishRTMP(t, c.nodes[i%3].RTMPURL(fmt.Sprintf("live/s%d", i)))
	}
	owners := make([]string, streams)
	count := map[string]int{}
	for i := range keys {
		owners[i] = c.waitAssigned(t, keys[i])
		count[owners[i]]++
	}
	// The mesh knows an SRS by the id its heartbeat gives.
	var st mesh.Status
	if err := c.nodes[0].Status(&st); err != nil {
		t.Fatal(err)
	}
	ids := map[*harness.SRS]string{}
	for _, o := range st.Origins {
		for _, s := range srs {
			if o.RTMP == s.RTMPAddr {
				ids[s] = o.ID
			}
		}
	}
	victim := srs[0]
	if count[ids[srs[1]]] > count[ids[srs[0]]] {
		victim = srs[1]
	}
	watched := -1
	for i, o := range owners {
		if o == ids[victim] {
			watched = i
		}
	}
	type livePlayer struct {
		name string
		p    *harness.Player
	}
	var live []livePlayer
	for i := range keys {
		rtmp := c.nodes[(i+1)%3].RTMPURL(fmt.Sprintf("live/s%d", i))
		flv := c.nodes[(i+2)%3].HTTPURL(fmt.Sprintf("live/s%d.flv", i))
		live = append(live, livePlayer{"RTMP " + rtmp, harness.StartCopyPlayer(t, rtmp)}, livePlayer{"FLV " + flv, harness.StartCopyPlayer(t, flv)})
	}
	playlist := c.nodes[1].HTTPURL(fmt.Sprintf("live/s%d.m3u8", watched))
	waitOK(t, playlist, "the watched stream's playlist")
	hls := harness.StartPlayer(t, playlist)
	live = append(live, livePlayer{"HLS " + playlist, hls})
	testkit.WaitFor(t, 60*time.Second, "every player gets frames", func() bool {
		for _, lp := range live {
			if lp.p.Exited() {
				t.Fatalf("%s exited: %s", lp.name, lp.p.Output())
			}
			if lp.p.Frames() < 25 {
				return false
			}
		}
		return true
	})
	target := targetDuration(t, playlist)
	frames := make([]int, len(live))
	for i, lp := range live {
		frames[i] = lp.p.Frames()
	}
	t.Logf("assignments %v: killing %s (%d streams)", owners, ids[victim], count[ids[victim]])
	victim.Kill()
	killed := time.Now()
	testkit.WaitFor(t, 30*time.Second, "every player gets frames after the kill", func() bool {
		for i, lp := range live {
			if lp.p.Exited() {
				t.Fatalf("%s exited across the kill (%v): %s", lp.name, lp.p.Cmd.ProcessState, lp.p.Output())
			}
			if lp.p.Frames() < frames[i]+50 {
				return false
			}
		}
		return true
	})
	t.Logf("every player has frames again %v after the kill", time.Since(killed).Round(10*time.Millisecond))
	for _, lp := range live {
		bound := 5 * time.Second
		if lp.p == hls {
			bound = 3 * target
		}
		stall := lp.p.LongestStall()
		t.Logf("%s: longest gap %v", lp.name, stall.Round(10*time.Millisecond))
		if stall > bound {
			t.Errorf("%s: longest gap %v; the bound is %v", lp.name, stall, bound)
		}
	}
	for i, p := range pubs {
		if p.Exited() {
			t.Errorf("publisher %d exited: %s", i, p.Output())
		}
		if owners[i] == ids[victim] {
			if o := c.waitAssigned(t, keys[i]); o == ids[victim] {
				t.Errorf("%s is still on the dead origin", keys[i])
			}
		}
	}
}

// waitOK waits up to a minute for url to answer 200.
func waitOK(t *testing.T, url, what string) {
	t.Helper()
	testkit.WaitFor(t, 60*time.Second, what, func() bool {
		resp, err := e2eHTTP.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
