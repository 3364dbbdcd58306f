package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestSRTThroughMesh relays SRT through a 3-node mesh to origins made of
// FFmpeg SRT listeners. The mesh knows two UDP-only static origins: srt1,
// where the scenarios start FFmpeg listeners one after another on the same
// port, and srt2, where nothing listens. srt2 is drained until the last
// scenario, which drains srt1 instead so that a new stream lands on the dead
// origin while an existing one keeps streaming to srt1.
func TestSRTThroughMesh(t *testing.T) {
	harness.NeedFFmpegSRT(t)
	live := fmt.Sprintf("127.0.0.1:%d", harness.UniqueUDPPort(t))
	dead := fmt.Sprintf("127.0.0.1:%d", harness.UniqueUDPPort(t))
	port := func(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
	c := startProtocolCluster(t, 3, nil,
		"--origin", "id=srt1,ip=127.0.0.1,srt="+port(live),
		"--origin", "id=srt2,ip=127.0.0.1,srt="+port(dead))
	c.waitOriginsHealthy(t, 2)
	setDraining(t, c.nodes[1], "srt2", true)

	const secret = "&passphrase=srs-mesh-secret-1&pbkeylen=16"
	t.Run("publish", func(t *testing.T) { srtPublish(t, c, live, "s", "") })
	t.Run("play", func(t *testing.T) { srtPlay(t, c, live, "play", "") })
	t.Run("publish encrypted", func(t *testing.T) { srtPublish(t, c, live, "enc", secret) })
	t.Run("play encrypted", func(t *testing.T) { srtPlay(t, c, live, "encplay", secret) })

	// The SRT stream has the key every other protocol gives live/s, on
	// every node, as srs-mesh status --json shows it.
	for _, nd := range c.nodes {
		out, err := exec.Command(binary, "status", "--json", "--addr", nd.SystemAPI).Output()
		if err != nil {
			t.Fatalf("status --json via %s: %v", nd.ID, err)
		}
		var st mesh.Status
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		if a, ok := assignmentOf(st, "__defaultVhost__/live/s"); !ok || a.Origin != "srt1" {
			t.Fatalf("status via %s: assignment of __defaultVhost__/live/s is %+v (found %v), want srt1; all: %+v",
				nd.ID, a, ok, st.Assignments)
		}
	}

	t.Run("dead origin", func(t *testing.T) { srtDeadOrigin(t, c, live) })

	// UDP-only static origins cannot be probed; they stay healthy whether
	// anything listens or not.
	for _, id := range []string{"srt1", "srt2"} {
		if o, ok := originOf(c.status(t, 0), id); !ok || !o.Healthy {
			t.Errorf("origin %s: %+v, want a healthy static origin", id, o)
		}
	}
}

// srtPublish publishes live/<name> through node 1 for a few seconds to an
// FFmpeg listener recording to a file, and checks the recording decodes.
func srtPublish(t *testing.T, c *cluster, origin, name, query string) {
	out, rec := srtRecorder(t, origin, query)
	start := time.Now()
	pub := srtPublisher(t, "srt://"+c.nodes[0].SRTAddr+"?streamid=#!::r=live/"+name+",m=publish"+query, 4*time.Second)
	if err := pub.Wait(40 * time.Second); err != nil {
		t.Fatalf("publisher: %v: %s", err, pub.Output())
	}
	// The publisher's SHUTDOWN ends the origin's input, and FFmpeg exits.
	if err := rec.Wait(15 * time.Second); err != nil {
		rec.Stop(5 * time.Second)
	}
	n := harness.CountVideoFrames(t, out)
	t.Logf("published live/%s through n1 in %v; the origin recorded %d video frames", name,
		time.Since(start).Round(10*time.Millisecond), n)
	if n < 25 {
		t.Fatalf("origin recorded %d video frames, want >= 25: %s", n, rec.Output())
	}
	if owner := c.waitAssigned(t, "__defaultVhost__/live/"+name); owner != "srt1" {
		t.Fatalf("live/%s assigned to %s", name, owner)
	}
}

// srtPlay starts an FFmpeg listener that sends a stream to its caller and
// plays live/<name> from it through node 2.
func srtPlay(t *testing.T, c *cluster, origin, name, query string) {
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin"}
	args = append(args, harness.TestSourceArgs()...)
	args = append(args, harness.EncodeArgs()...)
	args = append(args, "-f", "mpegts", "srt://"+origin+"?mode=listener"+query)
	src := harness.Start(t, "ffmpeg", args...)
	harness.WaitSRTListener(t, origin, 20*time.Second)
	res := harness.PlayUntil(t, "srt://"+c.nodes[1].SRTAddr+"?streamid=#!::r=live/"+name+",m=request"+query,
		2*time.Second, 10, 60*time.Second)
	t.Logf("played live/%s through n2: %d frames", name, res.VideoFrames)
	src.Kill()
}

// srtDeadOrigin streams live/ok to srt1 through node 1, then makes srt2
// (where nothing listens) the only origin for new streams: a publisher of
// live/dead through node 1 is refused quickly, leaves no assignment, and
// live/ok keeps flowing through the same node meanwhile.
func srtDeadOrigin(t *testing.T, c *cluster, origin string) {
	out, rec := srtRecorder(t, origin, "")
	const okDur = 12 * time.Second
	ok := srtPublisher(t, "srt://"+c.nodes[0].SRTAddr+"?streamid=#!::r=live/ok,m=publish", okDur)
	testkit.WaitFor(t, 20*time.Second, "live/ok recorded by srt1", func() bool {
		fi, err := os.Stat(out)
		return err == nil && fi.Size() > 0
	})
	setDraining(t, c.nodes[1], "srt1", true)
	setDraining(t, c.nodes[1], "srt2", false)
	testkit.WaitFor(t, 10*time.Second, "drain states replicated to n1", func() bool {
		st := c.status(t, 0)
		o1, _ := originOf(st, "srt1")
		o2, _ := originOf(st, "srt2")
		return o1.Draining && !o2.Draining
	})

	const toOrigin = `srs_mesh_relayed_packets_total{direction="client_to_origin",proto="srt"}`
	before := nodeMetric(t, c.nodes[0], toOrigin)
	start := time.Now()
	deadPub := srtPublisher(t, "srt://"+c.nodes[0].SRTAddr+"?streamid=#!::r=live/dead,m=publish", 3*time.Second)
	if err := deadPub.Wait(30 * time.Second); err == nil {
		t.Fatalf("publisher to a dead origin succeeded: %s", deadPub.Output())
	}
	took := time.Since(start)
	during := nodeMetric(t, c.nodes[0], toOrigin)
	msg := strings.TrimSpace(deadPub.Output())
	msg = msg[strings.LastIndexByte(msg, '\n')+1:]
	t.Logf("dead origin: publisher refused after %v (%s); live/ok relayed %.0f packets to srt1 meanwhile",
		took.Round(time.Millisecond), msg, during-before)
	if took > 10*time.Second {
		t.Errorf("refusal took %v, want at most 10 s", took)
	}
	// A refusal that takes a while must not have held up the other stream;
	// a quick one leaves too short a window to count on a packet in it.
	if took > time.Second && during <= before {
		t.Errorf("live/ok stalled while the dead origin was tried for %v: %.0f -> %.0f packets", took, before, during)
	}
	// A publish no origin accepted leaves no assignment.
	for i := range c.nodes {
		if a, ok := assignmentOf(c.status(t, i), "__defaultVhost__/live/dead"); ok {
			t.Errorf("node %d assigned live/dead to %s although no origin accepted it", i+1, a.Origin)
		}
	}
	if n := nodeMetricSum(t, c.nodes[0], "srs_mesh_session_failures_total", `proto="srt"`); n == 0 {
		t.Errorf("no SRT session failure counted on n1")
	}
	testkit.WaitFor(t, 10*time.Second, "live/ok still relayed after the refusal", func() bool {
		return nodeMetric(t, c.nodes[0], toOrigin) > during
	})

	if err := ok.Wait(okDur + 30*time.Second); err != nil {
		t.Fatalf("live/ok publisher: %v: %s", err, ok.Output())
	}
	if err := rec.Wait(15 * time.Second); err != nil {
		rec.Stop(5 * time.Second)
	}
	// 12 s at 25 fps is 300 frames; the bound leaves room for a slow start.
	if n := harness.CountVideoFrames(t, out); n < 150 {
		t.Fatalf("srt1 recorded %d video frames of live/ok, want >= 150", n)
	} else {
		t.Logf("srt1 recorded %d video frames of live/ok", n)
	}
}

// srtRecorder starts FFmpeg as an SRT listener at addr that records what it
// receives to a TS file, and waits until it answers handshakes.
func srtRecorder(t *testing.T, addr, query string) (out string, p *harness.Proc) {
	t.Helper()
	out = filepath.Join(t.TempDir(), "origin.ts")
	p = harness.Start(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-i", "srt://"+addr+"?mode=listener"+query, "-c", "copy", "-f", "mpegts", out)
	harness.WaitSRTListener(t, addr, 20*time.Second)
	return out, p
}

// srtPublisher starts FFmpeg publishing a generated stream for d to url.
// FFmpeg 5.1 does not URL-decode streamid, so the URL carries it raw.
func srtPublisher(t *testing.T, url string, d time.Duration) *harness.Proc {
	t.Helper()
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin"}
	args = append(args, harness.TestSourceArgs()...)
	args = append(args, harness.EncodeArgs()...)
	args = append(args, "-t", strconv.FormatFloat(d.Seconds(), 'f', 1, 64), "-f", "mpegts", url)
	return harness.Start(t, "ffmpeg", args...)
}

// setDraining drains or undrains an origin through a node's system API.
func setDraining(t *testing.T, nd *harness.Node, id string, drain bool) {
	t.Helper()
	action := "undrain"
	if drain {
		action = "drain"
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+nd.SystemAPI+"/mesh/v1/origins/"+id+"/"+action, nil)
	req.Header.Set("Authorization", "Bearer -") // operator writes need the header, token or not
	resp, err := e2eHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s", action, id, resp.Status)
	}
}

// nodeMetric returns the value of one exposition line of a node's /metrics,
// named exactly (name and labels as Prometheus prints them), or 0.
func nodeMetric(t *testing.T, nd *harness.Node, series string) float64 {
	t.Helper()
	for _, l := range nodeMetricLines(t, nd) {
		if name, v, ok := strings.Cut(l, " "); ok && name == series {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// nodeMetricSum adds the values of every series of a metric whose labels
// contain label.
func nodeMetricSum(t *testing.T, nd *harness.Node, name, label string) float64 {
	t.Helper()
	var sum float64
	for _, l := range nodeMetricLines(t, nd) {
		series, v, ok := strings.Cut(l, " ")
		if ok && strings.HasPrefix(series, name+"{") && strings.Contains(series, label) {
			f, _ := strconv.ParseFloat(v, 64)
			sum += f
		}
	}
	return sum
}

func nodeMetricLines(t *testing.T, nd *harness.Node) []string {
	t.Helper()
	resp, err := e2eHTTP.Get("http://" + nd.SystemAPI + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}
