package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// publishSRTPattern starts FFmpeg publishing testsrc2 through filter as
// MPEG-TS over SRT to the SRT listener at addr, stream path.
func publishSRTPattern(t *testing.T, addr, path, filter string) *harness.Proc {
	t.Helper()
	harness.NeedFFmpegSRT(t)
	src := harness.TestSourceArgs()
	src[4] = "testsrc2=size=320x240:rate=25," + filter
	args := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, src...)
	args = append(args, harness.EncodeArgs()...)
	args = append(args, "-f", "mpegts", "srt://"+addr+"?streamid=#!::r="+path+",m=publish")
	return harness.Start(t, "ffmpeg", args...)
}

// TestSRSBackupEncoderSRT: two FFmpeg encoders publish one stream key over
// SRT through different nodes to real SRS origins; the second is held at
// its node as the standby. The active one is killed (SIGKILL: its SRT
// connection just goes silent), its node ends its publish after
// --publish-stall, and the standby takes over: the RTMP and HTTP-FLV
// players on every node keep their sessions and get frames again, with no
// frame twice and no timestamp going back. The killed encoder, started
// again, is held as the standby and never takes over the live stream;
// killing the second one (its publish now the node's), it takes over in
// turn, the same way.
func TestSRSBackupEncoderSRT(t *testing.T) {
	const stall = 500 * time.Millisecond
	// An SRT publisher gives no sign when it is killed: the gap is the
	// stall and the standby's try (its cached GOP starts the stream at
	// once).
	const srtSwitchGap = stall + time.Second
	c, _, _ := startSRSMeshWith(t, "--publish-stall", stall.String())
	harness.NeedFFmpegSRT(t)
	const path, key = "live/sb1", "__defaultVhost__/live/sb1"
	a := publishSRTPattern(t, c.nodes[0].SRTAddr, path, "null")
	c.waitAssigned(t, key)
	w := watchEverywhere(t, c, path)
	w.waitFrames(50, "every player plays the first encoder")
	b := publishSRTPattern(t, c.nodes[2].SRTAddr, path, "negate")
	waitStandby(t, c.nodes[2], 1)
	testkit.WaitFor(t, 30*time.Second, "the stream list shows the standby", func() bool {
		doc, err := meshStreams(c.nodes[1])
		if err != nil {
			return false
		}
		for _, s := range doc.Streams {
			if s.Key == key {
				return s.Standbys[c.nodes[2].ID] == 1
			}
		}
		return false
	})
	w.waitFrames(25, "every player plays with a standby")
	w.resetGaps()
	w.check(maxEncoderSwitchGap) // the standby disturbs nobody

	// Kill the active encoder: the standby takes over.
	a.Kill()
	w.waitFrames(75, "every player plays the standby")
	w.check(srtSwitchGap)
	if b.Exited() {
		t.Fatalf("the standby encoder exited: %s", b.Output())
	}
	if !strings.Contains(c.nodes[0].Logs(), "publisher stalled") {
		t.Errorf("node %s did not end the killed encoder's publish", c.nodes[0].ID)
	}
	if !strings.Contains(c.nodes[2].Logs(), "standby publisher takes over the stream") {
		t.Errorf("node %s did not log the takeover", c.nodes[2].ID)
	}

	// The first encoder comes back, through its node: it is the standby,
	// and the players keep playing the second one.
	w.resetGaps()
	a2 := publishSRTPattern(t, c.nodes[0].SRTAddr, path, "hflip")
	waitStandby(t, c.nodes[0], 1)
	w.waitFrames(50, "every player keeps playing the second encoder")
	w.check(maxEncoderSwitchGap)
	if a2.Exited() {
		t.Fatalf("the returned encoder exited: %s", a2.Output())
	}
	if n := strings.Count(c.nodes[0].Logs(), "standby publisher takes over the stream"); n != 0 {
		t.Errorf("the returned encoder took over a live stream (%d times)", n)
	}

	// Kill the second encoder, which took over through node 3's standby:
	// the returned one takes over in turn.
	b.Kill()
	w.waitFrames(75, "every player plays the first encoder again")
	w.check(srtSwitchGap)
	if a2.Exited() {
		t.Fatalf("the returned encoder exited: %s", a2.Output())
	}
	if !strings.Contains(c.nodes[0].Logs(), "standby publisher takes over the stream") {
		t.Errorf("node %s did not log the second takeover", c.nodes[0].ID)
	}
}
