package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/streams"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// updateScreenshotEnv makes TestDashboardLiveMesh write docs/dashboard.png
// from its run.
const updateScreenshotEnv = "SRS_MESH_UPDATE_SCREENSHOT"

var (
	chartAttrs = regexp.MustCompile(`id="(chart-[a-z]+)" data-points="(\d+)" data-series="(\d+)"`)
	// A stream row: its name, its origin, then its ingest and egress.
	streamRow = regexp.MustCompile(`<code>(live/[a-z]+)</code></th><td>[^<]*(?:<span[^>]*>[^<]*</span>)?</td><td class="num"[^>]*>([0-9.]+ [kMGT]?bit/s)</td><td class="num"[^>]*>([0-9.]+ [kMGT]?bit/s)</td>`)
	ageCell   = regexp.MustCompile(`<td class="num" title="[0-9T:.Z-]+">\d+ (s|min)</td>`)
	chartUnit = regexp.MustCompile(`id="(chart-[a-z]+)"[^>]* data-unit="([^"]*)"`)
)

// dashboard renders node's dashboard in headless Chromium and returns the
// DOM once the page has polled a few times.
func dashboard(ctx context.Context, t *testing.T, bin string, node *harness.Node, extra ...string) string {
	t.Helper()
	args := append([]string{"--dump-dom", "--window-size=1440,1100"}, extra...)
	return string(harness.Chromium(ctx, t, bin, "http://"+node.SystemAPI+"/", args...))
}

// TestDashboardLiveMesh renders the dashboard of a live 3-node mesh in
// headless Chromium while two streams flow through it, each published to one
// node and played from another: the charts have data, the stream table shows
// bit rates above zero and ages in human units, the page has no errors, and
// killing an origin adds an event within 5 s, and a node that stops
// answering is named on the page of another. With
// SRS_MESH_UPDATE_SCREENSHOT=1 it writes docs/dashboard.png from this run.
func TestDashboardLiveMesh(t *testing.T) {
	harness.Need(t, "ffmpeg")
	bin := harness.ChromiumBin(t)
	o1 := harness.StartNginx(t, harness.NginxOptions{})
	o2 := harness.StartNginx(t, harness.NginxOptions{})
	c := startZoned(t, []string{"zone-a", "zone-b", "zone-c"}, "--origin", originFlag("o1", o1), "--origin", originFlag("o2", o2),
		"--history-interval", "2s")
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]

	// Two streams, published to n1 and n2, played from n3 and n1.
	harness.PublishRTMP(t, n1.RTMPURL("live/alpha"))
	harness.PublishRTMP(t, n2.RTMPURL("live/bravo"))
	var st mesh.Status
	testkit.WaitFor(t, 30*time.Second, "both streams assigned", func() bool {
		st = c.status(t, 2)
		_, a := assignmentOf(st, "__defaultVhost__/live/alpha")
		_, b := assignmentOf(st, "__defaultVhost__/live/bravo")
		return a && b
	})
	pa := harness.StartPlayer(t, n3.RTMPURL("live/alpha"))
	pb := harness.StartPlayer(t, n1.RTMPURL("live/bravo"))
	testkit.WaitFor(t, 60*time.Second, "both players decoding", func() bool { return pa.Frames() > 25 && pb.Frames() > 25 })

	// Bit rates and samples arrive within a few sampling intervals.
	testkit.WaitFor(t, 30*time.Second, "bit rates of both streams", func() bool {
		var doc streams.Cluster
		if err := harness.GetJSON("http://"+n3.SystemAPI+"/mesh/v1/streams", &doc); err != nil {
			return false
		}
		ok := 0
		for _, s := range doc.Streams {
			if s.IngestBps > 0 && s.EgressBps > 0 {
				ok++
			}
		}
		return ok == 2
	})
	testkit.WaitFor(t, 30*time.Second, "samples with throughput on every node", func() bool {
		var h mesh.History
		if err := harness.GetJSON("http://"+n3.SystemAPI+"/mesh/v1/history", &h); err != nil || len(h.Nodes) != 3 {
			return false
		}
		for _, n := range h.Nodes {
			if last := n.Samples; !n.OK || len(last) < 3 || last[len(last)-1].InBps+last[len(last)-1].OutBps <= 0 {
				return false
			}
		}
		return true
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dom := dashboard(ctx, t, bin, n3)
	checkPage(t, dom)
	rows := streamRow.FindAllStringSubmatch(dom, -1)
	if len(rows) != 2 {
		t.Errorf("stream rows with bit rates: %v", rows)
	}
	for _, r := range rows {
		for _, rate := range r[2:] {
			if v, _ := strconv.ParseFloat(strings.Fields(rate)[0], 64); v <= 0 {
				t.Errorf("stream %s: bit rate %q", r[1], rate)
			}
		}
	}
	if n := len(ageCell.FindAllString(dom, -1)); n < 2 {
		t.Errorf("%d ages in human units, want one per stream", n)
	}
	// The players through other nodes than the publisher's share upstreams:
	// the streams table and the nodes table say so.
	for _, want := range []string{"1 ↑ · 1×", " on 1 ↑"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks the fan-out %q", want)
		}
	}
	for _, z := range []string{">zone-a<", ">zone-b<", ">zone-c<"} {
		if !strings.Contains(dom, z) {
			t.Errorf("the nodes table lacks %s", z)
		}
	}
	for _, raw := range []string{"created_unix_ms", "origin_healthy", "true</td>", strconv.FormatInt(st.GeneratedUnix/1e6, 10)} {
		if strings.Contains(dom, raw) {
			t.Errorf("the page shows a raw field: %q", raw)
		}
	}
	for id, c := range chartsOf(dom) {
		if c[0] < 2 || c[1] < 1 {
			t.Errorf("%s: %d points, %d series with data", id, c[0], c[1])
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
		return
	}

	if os.Getenv(updateScreenshotEnv) == "1" {
		// Let the charts gather a minute of history for the picture.
		testkit.WaitFor(t, 2*time.Minute, "a minute of history", func() bool {
			var h mesh.History
			if harness.GetJSON("http://"+n3.SystemAPI+"/mesh/v1/history", &h) != nil || len(h.Nodes) == 0 || len(h.Nodes[0].Samples) == 0 {
				return false
			}
			s := h.Nodes[0].Samples
			return s[len(s)-1].TimeUnixMs-s[0].TimeUnixMs >= time.Minute.Milliseconds()
		})
	}

	// An operator drains and undrains o2: both show in the timeline.
	for _, action := range []string{"drain", "undrain"} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+n2.SystemAPI+"/mesh/v1/origins/o2/"+action, nil)
		req.Header.Set("Authorization", "Bearer -")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s o2: %s", action, resp.Status)
		}
	}

	// Killing the origin of alpha adds an event within 5 s.
	a, _ := assignmentOf(c.status(t, 2), "__defaultVhost__/live/alpha")
	victim := map[string]*harness.Nginx{"o1": o1, "o2": o2}[a.Origin]
	killed := time.Now()
	victim.Kill()
	testkit.WaitFor(t, 5*time.Second, a.Origin+" down in /mesh/v1/events", func() bool {
		var ev mesh.Events
		if err := harness.GetJSON("http://"+n3.SystemAPI+"/mesh/v1/events", &ev); err != nil {
			return false
		}
		for _, e := range ev.Events {
			if e.Kind == events.OriginDown && e.Origin == a.Origin && e.TimeUnixMs >= killed.UnixMilli() {
				return true
			}
		}
		return false
	})
	t.Logf("origin %s down in the events %v after the kill", a.Origin, time.Since(killed).Round(time.Millisecond))
	dom = dashboard(ctx, t, bin, n3)
	checkPage(t, dom)
	for _, want := range []string{"Origin " + a.Origin + " went down", "Origin o2 drained", "Origin o2 undrained", "became leader", "joined"} {
		if !strings.Contains(dom, want) {
			t.Errorf("events timeline lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	if os.Getenv(updateScreenshotEnv) == "1" {
		shot := filepath.Join(t.TempDir(), "dashboard.png")
		harness.Chromium(ctx, t, bin, "http://"+n3.SystemAPI+"/", "--hide-scrollbars", "--window-size=1440,1100", "--screenshot="+shot)
		png, err := os.ReadFile(shot)
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(filepath.Join("..", "docs", "dashboard.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A node that stops answering: the page on another node says so and
	// still shows the rest.
	n2.Kill()
	testkit.WaitFor(t, 30*time.Second, "n3 sees n2 not answering", func() bool {
		var h mesh.History
		if err := harness.GetJSON("http://"+n3.SystemAPI+"/mesh/v1/history", &h); err != nil {
			return false
		}
		for _, n := range h.Nodes {
			if n.ID == "n2" {
				return !n.OK
			}
		}
		return false
	})
	dom = dashboard(ctx, t, bin, n3)
	if !strings.Contains(dom, "Not answering: n2 (") || !strings.Contains(dom, `data-errors="0"`) || !strings.Contains(dom, "live/bravo") {
		t.Errorf("page with n2 down:\n%s", dom)
	}
}

// TestDashboardPublisherLost: the publisher of a stream played through
// another node drops (its encoder is killed) and does not come back within
// --publish-grace: its own node records publisher_dropped, the player's
// node publisher_lost, and the
// dashboard of a third node shows it in its events, with the charts' axes
// in units per second.
func TestDashboardPublisherLost(t *testing.T) {
	harness.Need(t, "ffmpeg")
	bin := harness.ChromiumBin(t)
	o1 := harness.StartNginx(t, harness.NginxOptions{})
	c := startCluster(t, 3, "--origin", originFlag("o1", o1), "--publish-grace", "2s", "--history-interval", "2s")
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	const path, key = "live/drop", "__defaultVhost__/live/drop"
	pub := harness.PublishRTMP(t, n1.RTMPURL(path))
	c.waitAssigned(t, key)
	p := harness.StartPlayer(t, n2.RTMPURL(path))
	testkit.WaitFor(t, 60*time.Second, "the player decoding", func() bool { return p.Frames() > 25 })

	dropped := time.Now()
	pub.Kill()
	var lost, drop events.Event
	testkit.WaitFor(t, 30*time.Second, "publisher_lost and publisher_dropped in n3's /mesh/v1/events", func() bool {
		var ev mesh.Events
		if err := harness.GetJSON("http://"+n3.SystemAPI+"/mesh/v1/events", &ev); err != nil {
			return false
		}
		for _, e := range ev.Events {
			if e.Stream == key && e.TimeUnixMs >= dropped.UnixMilli() {
				switch e.Kind {
				case events.PublisherLost:
					lost = e
				case events.PublisherDropped:
					drop = e
				}
			}
		}
		return lost.Kind != "" && drop.Kind != ""
	})
	if drop.Node != n1.ID {
		t.Errorf("publisher_dropped recorded by %s, want the publisher's node %s", drop.Node, n1.ID)
	}
	t.Logf("publisher_dropped on %s %v after the drop: %s", drop.Node, time.UnixMilli(drop.TimeUnixMs).Sub(dropped).Round(time.Millisecond), drop.Detail)
	t.Logf("publisher_lost on %s %v after the drop: %s", lost.Node, time.UnixMilli(lost.TimeUnixMs).Sub(dropped).Round(time.Millisecond), lost.Detail)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dom := dashboard(ctx, t, bin, n3)
	checkPage(t, dom)
	for _, want := range []string{`data-kind="publisher_lost"`, "The publisher of live/drop was lost", "seen by " + lost.Node,
		`data-kind="publisher_dropped"`, "The publisher of live/drop dropped"} {
		if !strings.Contains(dom, want) {
			t.Errorf("events timeline lacks %q", want)
		}
	}
	units := map[string]string{}
	for _, m := range chartUnit.FindAllStringSubmatch(dom, -1) {
		units[m[1]] = m[2]
	}
	if u := units["chart-throughput"]; !strings.HasSuffix(u, "bit/s") || units["chart-assignments"] != "assignments/s" || units["chart-clients"] != "clients" {
		t.Errorf("chart units %v", units)
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}

// startZoned is startCluster with node i in zones[i].
func startZoned(t *testing.T, zones []string, extra ...string) *cluster {
	t.Helper()
	c := &cluster{}
	for i := range zones {
		c.nodes = append(c.nodes, harness.NewNode(t, binary, harness.NodeSpec{ID: fmt.Sprintf("n%d", i+1)}))
	}
	for i, nd := range c.nodes {
		args := []string{"--bootstrap-expect", fmt.Sprint(len(zones)), "--zone", zones[i]}
		for j, other := range c.nodes {
			if j != i {
				args = append(args, "--join", other.GossipAddr)
			}
		}
		nd.Args = append(nd.Args, append(args, extra...)...)
	}
	harness.DumpOnFailure(t, c.nodes...)
	for _, nd := range c.nodes {
		nd.Start()
	}
	c.waitFormed(t, len(zones), 30*time.Second)
	return c
}

// checkPage fails the test when the page reported its own errors (scripts,
// assets, the content security policy) or could not reach its node.
func checkPage(t *testing.T, dom string) {
	t.Helper()
	if !strings.Contains(dom, `data-errors="0"`) {
		m := regexp.MustCompile(`data-last-error="([^"]*)"`).FindStringSubmatch(dom)
		t.Errorf("the page reported errors: %v", m)
	}
	if strings.Contains(dom, "Cannot reach node") {
		t.Errorf("the page cannot reach its node")
	}
	if !strings.Contains(dom, "u-legend") {
		t.Errorf("uPlot drew no chart")
	}
}

// chartsOf returns each chart's points and series with data.
func chartsOf(dom string) map[string][2]int {
	out := map[string][2]int{}
	for _, m := range chartAttrs.FindAllStringSubmatch(dom, -1) {
		p, _ := strconv.Atoi(m[2])
		s, _ := strconv.Atoi(m[3])
		out[m[1]] = [2]int{p, s}
	}
	if len(out) != 3 {
		out["missing charts: "+fmt.Sprint(len(out))] = [2]int{}
	}
	return out
}
