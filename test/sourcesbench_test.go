package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// benchSourcesEnv turns on TestSourcesFigures.
const benchSourcesEnv = "SRS_MESH_BENCH_SOURCES"

// TestSourcesFigures is the benchmark of docs/benchmarks.md for moves and
// warm replicas, not a test: it runs only when SRS_MESH_BENCH_SOURCES is
// set (and SRS_MESH_TEST_SRS names an SRS binary). Against two real SRS
// origins and three nodes, it reports the longest frame gap that RTMP and
// HTTP-FLV players on every node see, and the longest stall of an FFmpeg
// HLS player, when the primary origin is killed with one copy and with
// --stream-replicas 2, and for a drain --move; then a replica's cost on
// the publisher's node.
func TestSourcesFigures(t *testing.T) {
	if os.Getenv(benchSourcesEnv) == "" {
		t.Skipf("set %s=1 (and %s) to run the moves and replicas benchmark", benchSourcesEnv, harness.SRSBinaryEnv)
	}
	var report strings.Builder
	fmt.Fprintf(&report, "\n| event | copies | RTMP longest gap | HTTP-FLV longest gap | repeated frames | HLS longest stall |\n|---|---|---|---|---|---|\n")
	for _, tc := range []struct {
		name, copies, action string
	}{
		{"kill -9 of the primary", "1", "kill"},
		{"kill -9 of the primary", "2", "kill"},
		{"drain --move", "1", "drain"},
		{"drain --move", "2", "drain"},
	} {
		t.Run(tc.action+"-"+tc.copies, func(t *testing.T) {
			c, _, ids := startSRSMeshWith(t, "--stream-replicas", tc.copies)
			harness.PublishRTMPDistinct(t, c.nodes[0].RTMPURL("live/b1"))
			const key = "__defaultVhost__/live/b1"
			primary := c.waitAssigned(t, key)
			if tc.copies == "2" {
				testkit.WaitFor(t, 30*time.Second, "a warm replica", func() bool {
					var st mesh.Status
					if c.nodes[1].Status(&st) != nil {
						return false
					}
					a, ok := assignmentOf(st, key)
					return ok && len(a.Replicas) == 1
				})
			}
			w := watchEverywhere(t, c, "live/b1")
			playlist := c.nodes[1].HTTPURL("live/b1.m3u8")
			waitOK(t, playlist, "the playlist")
			hls := harness.StartPlayer(t, playlist)
			w.waitFrames(75, "every player plays")
			testkit.WaitFor(t, 60*time.Second, "the HLS player plays", func() bool { return hls.Frames() > 50 })
			// Give the replica a few GOPs, as a live stream's would have.
			time.Sleep(3 * time.Second)
			w.resetGaps()
			hlsBefore := hls.LongestStall()
			switch tc.action {
			case "kill":
				for s, id := range ids {
					if id == primary {
						s.Kill()
					}
				}
			case "drain":
				runCLI(t, "drain", primary, "--move", "--move-timeout", "60s", "--addr", c.nodes[2].SystemAPI)
			}
			testkit.WaitFor(t, 30*time.Second, "the stream leaves its origin", func() bool { return c.waitAssigned(t, key) != primary })
			w.waitFrames(100, "every player plays after")
			var rtmpGap, flvGap time.Duration
			repeats := 0
			for _, p := range w.players {
				st := p.Stats()
				repeats += st.Repeats
				if strings.HasPrefix(p.URL, "rtmp://") {
					rtmpGap = max(rtmpGap, st.LongestGap)
				} else {
					flvGap = max(flvGap, st.LongestGap)
				}
			}
			hlsStall := hls.LongestStall()
			if hlsStall <= hlsBefore {
				hlsStall = 0 // no longer than before the event
			}
			fmt.Fprintf(&report, "| %s | %s | %v | %v | %d | %v |\n", tc.name, tc.copies, rtmpGap.Round(10*time.Millisecond),
				flvGap.Round(10*time.Millisecond), repeats, hlsStall.Round(100*time.Millisecond))
		})
	}
	teeCost(t, &report)
	t.Log(report.String())
}

// teeStreams is how many 4 Mbit/s publishers teeCost runs at once.
const teeStreams = 6

// teeCost publishes teeStreams 4 Mbit/s streams through one node to two
// SRS, with one copy then two, and reports the node's CPU per GB it took
// from the publishers (its idle CPU, measured first, taken out) and the
// bytes it sent to origins per byte published; then the cost of the
// second copy alone: the extra CPU per extra GB sent.
func teeCost(t *testing.T, report *strings.Builder) {
	src := filepath.Join(t.TempDir(), "4mbps.flv")
	enc := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "20",
		"-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M", "-minrate", "4M", "-maxrate", "4M", "-bufsize", "2M",
		"-x264-params", "nal-hrd=cbr", "-g", "50", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-f", "flv", src)
	if out, err := enc.CombinedOutput(); err != nil {
		t.Fatalf("encode: %v %s", err, out)
	}
	fmt.Fprintf(report, "\n%d publishers of 4 Mbit/s through one node, 20 s:\n\n| copies | node CPU per GB published | bytes to origins per byte published |\n|---|---|---|\n", teeStreams)
	type run struct{ cpu, in, out float64 }
	runs := map[string]run{}
	for _, copies := range []string{"1", "2"} {
		t.Run("tee-"+copies, func(t *testing.T) {
			c, _, _ := startSRSMeshWith(t, "--stream-replicas", copies)
			nd := c.nodes[0]
			pid := nd.Proc().Cmd.Process.Pid
			idle0 := procCPU(pid)
			time.Sleep(10 * time.Second)
			idlePerSec := (procCPU(pid) - idle0).Seconds() / 10
			for i := range teeStreams {
				harness.Start(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", src,
					"-c", "copy", "-f", "flv", nd.RTMPURL(fmt.Sprintf("live/tee%d", i)))
			}
			want := map[string]int{"1": 0, "2": 1}[copies]
			testkit.WaitFor(t, 60*time.Second, "every stream's copies", func() bool {
				var st mesh.Status
				if nd.Status(&st) != nil {
					return false
				}
				for i := range teeStreams {
					a, ok := assignmentOf(st, fmt.Sprintf("__defaultVhost__/live/tee%d", i))
					if !ok || len(a.Replicas) != want {
						return false
					}
				}
				return true
			})
			time.Sleep(3 * time.Second) // the replicas' tees land
			fams := scrape(t, nd)
			in0 := value(fams, "srs_mesh_relayed_bytes_total", "proto", "rtmp", "direction", "client_to_origin")
			out0 := value(fams, "srs_mesh_origin_bytes_total", "proto", "rtmp", "direction", "to_origin")
			cpu0 := procCPU(pid)
			const window = 20 * time.Second
			time.Sleep(window)
			fams = scrape(t, nd)
			r := run{
				in:  value(fams, "srs_mesh_relayed_bytes_total", "proto", "rtmp", "direction", "client_to_origin") - in0,
				out: value(fams, "srs_mesh_origin_bytes_total", "proto", "rtmp", "direction", "to_origin") - out0,
				cpu: (procCPU(pid) - cpu0).Seconds() - idlePerSec*window.Seconds(),
			}
			runs[copies] = r
			fmt.Fprintf(report, "| %s | %.2f s | %.2f |\n", copies, r.cpu/(r.in/1e9), r.out/r.in)
		})
	}
	one, two := runs["1"], runs["2"]
	if extra := two.out - one.out*two.in/one.in; extra > 0 {
		fmt.Fprintf(report, "\nthe second copy: %.2f s of node CPU per extra GB sent to origins\n", (two.cpu-one.cpu*two.in/one.in)/(extra/1e9))
	}
}
