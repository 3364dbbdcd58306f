package e2e

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	pionwebrtc "github.com/pion/webrtc/v4"

	"github.com/srs-mesh/srs-mesh/protocols/webrtc/webrtctest"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// maxWHIPSwitchGap bounds the frame gap of RTMP and HTTP-FLV players when
// the active one of two WHIP encoders quits: maxEncoderSwitchGap, plus the
// test encoders' GOP (they cannot answer a PLI).
const maxWHIPSwitchGap = maxEncoderSwitchGap + 400*time.Millisecond

// whipEncoder is a WHIP publisher with real H.264 from FFmpeg (a key frame
// every gop frames of the lavfi source) and synthetic Opus.
type whipEncoder struct {
	pub      *webrtctest.Publisher
	ffmpeg   *harness.Proc
	location string
}

func startWHIPEncoder(t *testing.T, api *pionwebrtc.API, nd *harness.Node, app, name, source string, gop int) *whipEncoder {
	t.Helper()
	src, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	ff := harness.Start(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", source,
		"-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-tune", "zerolatency",
		"-pix_fmt", "yuv420p", "-g", strconv.Itoa(gop), "-bsf:v", "dump_extra", "-an",
		"-f", "rtp", "-payload_type", "102", "rtp://"+src.LocalAddr().String()+"?pkt_size=1200")
	pub, err := webrtctest.NewPublisher(api)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	loc := rtcSignal(t, pub.PC, "http://"+nd.APIAddr+"/rtc/v1/whip/?app="+app+"&stream="+name, nd, nd)
	pub.StartRTP(src)
	return &whipEncoder{pub: pub, ffmpeg: ff, location: loc}
}

// TestSRSBackupWHIP: two WHIP encoders publish one stream key through
// different nodes to real SRS origins; the origin refuses the second, which
// its node answers itself and holds as the stream's standby (listed in
// /mesh/v1/streams). When the active encoder quits (closes its session),
// the standby takes over through its node: the RTMP and HTTP-FLV players on
// every node keep their sessions and get media again, with no frame gap
// over maxEncoderSwitchGap and no frame twice (see checkWHIPSwitch).
// The first encoder, back through its node, is the standby; when the
// promoted one quits, it takes over the same way; a DELETE of its Location
// ends it. The encoders' H.264 comes from FFmpeg, which cannot answer the PLI the
// node sends at the switch; a key frame every 10 frames (0.4 s) stands in
// for an encoder that does, and the bound allows that one GOP more.
func TestSRSBackupWHIP(t *testing.T) {
	if os.Getenv(harness.SRSBinaryEnv) != "" && !harness.SRSHasFFmpegFit() {
		harness.Missing(t, "srs", "this SRS has no FFmpeg transcoder (--ffmpeg-fit=off), so it cannot bridge WebRTC to RTMP")
	}
	c, origins, _ := startSRSMeshWith(t)
	t.Cleanup(func() {
		if t.Failed() {
			for _, o := range origins {
				t.Logf("---- %s ----\n%s", o.ID, o.Logs())
			}
		}
	})
	const path, key = "live/wb1", "__defaultVhost__/live/wb1"
	api := rtcClientAPI(t)
	a := startWHIPEncoder(t, api, c.nodes[0], "live", "wb1", "testsrc=size=320x240:rate=25", 10)
	c.waitAssigned(t, key)
	w := watchEverywhere(t, c, path)
	w.waitFrames(50, "every player plays the first encoder")
	b := startWHIPEncoder(t, api, c.nodes[2], "live", "wb1", "testsrc2=size=320x240:rate=25", 10)
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

	// The active encoder quits: the standby takes over.
	a.pub.Close()
	a.ffmpeg.Kill()
	w.waitFrames(75, "every player plays the standby")
	checkWHIPSwitch(w, maxWHIPSwitchGap)
	if !strings.Contains(c.nodes[2].Logs(), "the WHIP standby publishes") {
		t.Errorf("node %s did not log the takeover", c.nodes[2].ID)
	}
	if st := b.pub.PC.ConnectionState(); st != pionwebrtc.PeerConnectionStateConnected {
		t.Errorf("the standby encoder's session is %v", st)
	}

	// The first encoder comes back, through its node: it is the standby.
	a2 := startWHIPEncoder(t, api, c.nodes[0], "live", "wb1", "testsrc=size=320x240:rate=25,negate", 10)
	waitStandby(t, c.nodes[0], 1)
	w.resetGaps()
	w.waitFrames(50, "every player keeps playing the second encoder")
	checkWHIPSwitch(w, maxEncoderSwitchGap)

	// The second encoder, promoted through its node, quits: the node ends
	// its session at the origin, and the returned encoder takes over.
	b.pub.Close()
	b.ffmpeg.Kill()
	w.waitFrames(75, "every player plays the first encoder again")
	checkWHIPSwitch(w, maxWHIPSwitchGap)
	if !strings.Contains(c.nodes[0].Logs(), "the WHIP standby publishes") {
		t.Errorf("node %s did not log the takeover", c.nodes[0].ID)
	}
	// The promoted standby's Location ends it through its node.
	rtcDelete(t, c.nodes[0], a2.location)
	testkit.WaitFor(t, 10*time.Second, "the promoted standby ended", func() bool {
		return strings.Contains(c.nodes[0].Logs(), "promoted standby publisher ended")
	})
}

// checkWHIPSwitch is switchWatch.check for a stream that SRS bridges from
// WebRTC to RTMP: its FLV timestamps step back by a few milliseconds now
// and then, with or without a switch (SRS times each frame from its RTP
// timestamp and the sender reports), so steps back are logged, not
// failed; gaps, repeated frames and players' errors fail.
func checkWHIPSwitch(w *switchWatch, bound time.Duration) {
	w.t.Helper()
	for _, p := range w.players {
		st := p.Stats()
		w.t.Logf("%s: %d frames, longest gap %v, %d repeated, %d backwards", p.URL, st.Frames, st.LongestGap.Round(time.Millisecond), st.Repeats, st.Backwards)
		if st.LongestGap > bound || st.Repeats > 0 || st.Err != nil {
			w.t.Errorf("%s: longest gap %v (bound %v, from %s), %d repeated frames, err %v",
				p.URL, st.LongestGap, bound, st.GapStart.Format("15:04:05.000"), st.Repeats, st.Err)
		}
	}
}
