package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// publishPattern starts FFmpeg publishing testsrc2 through filter (every
// frame distinct, and distinct from another filter's) to url.
func publishPattern(t *testing.T, url, filter string) *harness.Proc {
	t.Helper()
	harness.Need(t, "ffmpeg")
	src := harness.TestSourceArgs()
	src[4] = "testsrc2=size=320x240:rate=25," + filter
	args := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, src...)
	args = append(args, harness.EncodeArgs()...)
	args = append(args, "-f", "flv", url)
	return harness.Start(t, "ffmpeg", args...)
}

// TestSRSPublishGrace: a lone publisher killed and started again, through
// another node, within --publish-grace finds its players there: the RTMP
// and HTTP-FLV players on every node keep their sessions and get the new
// publish with timestamps that never go back and no frame twice, and an
// FFmpeg HLS player keeps playing.
func TestSRSPublishGrace(t *testing.T) {
	c, _, _ := startSRSMeshWith(t, "--publish-grace", "10s")
	const path, key = "live/g1", "__defaultVhost__/live/g1"
	pub := publishPattern(t, c.nodes[0].RTMPURL(path), "null")
	c.waitAssigned(t, key)
	w := watchEverywhere(t, c, path)
	playlist := c.nodes[1].HTTPURL(path + ".m3u8")
	waitOK(t, playlist, "the playlist")
	hls := harness.StartCopyPlayer(t, playlist)
	w.waitFrames(50, "every player plays")
	testkit.WaitFor(t, 60*time.Second, "the HLS player plays", func() bool {
		if hls.Exited() {
			t.Fatalf("HLS player exited: %s", hls.Output())
		}
		return hls.Frames() > 50
	})
	w.resetGaps()

	pub.Kill()
	// The players wait, connected, for two seconds without media.
	testkit.WaitFor(t, 30*time.Second, "every player has waited 2s", func() bool {
		for _, p := range w.players {
			if st := p.Stats(); st.Err != nil {
				t.Fatalf("%s ended during the grace: %v", p.URL, st.Err)
			} else if st.LongestGap < 2*time.Second {
				return false
			}
		}
		return true
	})
	back := time.Now()
	pub2 := publishPattern(t, c.nodes[2].RTMPURL(path), "negate")
	w.waitFrames(50, "every player plays the new publish")
	t.Logf("players resumed within %v of the new publish", time.Since(back).Round(time.Millisecond))
	for _, p := range w.players {
		st := p.Stats()
		t.Logf("%s: %d frames, longest gap %v, %d repeated, %d backwards", p.URL, st.Frames, st.LongestGap.Round(time.Millisecond), st.Repeats, st.Backwards)
		if st.Err != nil || st.Repeats > 0 || st.Backwards > 0 || st.LongestGap > 10*time.Second {
			t.Errorf("%s: err %v, %d repeated, %d back, longest gap %v", p.URL, st.Err, st.Repeats, st.Backwards, st.LongestGap)
		}
	}
	base := hls.Frames()
	testkit.WaitFor(t, 60*time.Second, "the HLS player plays the new publish", func() bool {
		if hls.Exited() {
			t.Fatalf("HLS player exited: %s", hls.Output())
		}
		return hls.Frames() > base+50
	})
	t.Logf("HLS player: longest stall %v", hls.LongestStall().Round(time.Millisecond))
	if pub2.Exited() {
		t.Errorf("the new publisher exited: %s", pub2.Output())
	}
}

// TestNginxPublishGrace: nginx-rtmp ends its plays when the publisher
// stops (unlike SRS, which keeps them open): the nodes' shared upstreams
// then wait out the publisher grace, playing the stream again, and a
// publisher that comes back through another node within it finds the
// RTMP and HTTP-FLV players on every node still there, on the same
// sessions, timestamps never going back and no frame twice.
func TestNginxPublishGrace(t *testing.T) {
	_, flags := twoNginx(t)
	c := startCluster(t, 3, append(flags, "--publish-grace", "10s")...)
	c.waitOriginsHealthy(t, 2)
	const path, key = "live/g2", "__defaultVhost__/live/g2"
	pub := publishPattern(t, c.nodes[0].RTMPURL(path), "null")
	c.waitAssigned(t, key)
	w := watchEverywhere(t, c, path)
	w.waitFrames(50, "every player plays")
	w.resetGaps()
	pub.Kill()
	testkit.WaitFor(t, 30*time.Second, "every player has waited 2s", func() bool {
		for _, p := range w.players {
			if st := p.Stats(); st.Err != nil {
				t.Fatalf("%s ended during the grace: %v", p.URL, st.Err)
			} else if st.LongestGap < 2*time.Second {
				return false
			}
		}
		return true
	})
	publishPattern(t, c.nodes[2].RTMPURL(path), "negate")
	w.waitFrames(50, "every player plays the new publish")
	w.check(10 * time.Second)
	for _, nd := range c.nodes {
		if strings.Contains(nd.Logs(), "players resumed: the stream was published again within the grace") {
			return
		}
	}
	t.Error("no node logged players resumed within the grace")
}
