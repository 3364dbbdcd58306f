package e2e

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	pionwebrtc "github.com/pion/webrtc/v4"

	"github.com/srs-mesh/srs-mesh/protocols/webrtc/webrtctest"
	"github.com/srs-mesh/srs-mesh/test/harness"
)

// whipEncoder is a WHIP publisher with real H.264 from FFmpeg (a key frame
// every gop frames at 25 fps) and synthetic Opus.
type whipEncoder struct {
	pub      *webrtctest.Publisher
	ffmpeg   *harness.Proc
	location string
}

func startWHIPEncoder(t *testing.T, api *pionwebrtc.API, nd *harness.Node, app, name, pattern string, gop int) *whipEncoder {
	t.Helper()
	src, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	ff := harness.Start(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", pattern+"=size=320x240:rate=25",
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
// its node answers itself and holds as the stream's standby. When the
// active encoder quits (closes its session), the standby takes over through
// its node: the RTMP and HTTP-FLV players on every node keep their
// sessions and get media again, with no frame gap over
// maxEncoderSwitchGap.
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
	a := startWHIPEncoder(t, api, c.nodes[0], "live", "wb1", "testsrc", 10)
	c.waitAssigned(t, key)
	w := watchEverywhere(t, c, path)
	w.waitFrames(50, "every player plays the first encoder")
	b := startWHIPEncoder(t, api, c.nodes[2], "live", "wb1", "testsrc2", 10)
	waitStandby(t, c.nodes[2], 1)
	w.waitFrames(25, "every player plays with a standby")
	w.resetGaps()

	// The active encoder quits: the standby takes over.
	a.pub.Close()
	a.ffmpeg.Kill()
	w.waitFrames(75, "every player plays the standby")
	w.check(maxEncoderSwitchGap)
	if !strings.Contains(c.nodes[2].Logs(), "the WHIP standby publishes") {
		t.Errorf("node %s did not log the takeover", c.nodes[2].ID)
	}
	if st := b.pub.PC.ConnectionState(); st != pionwebrtc.PeerConnectionStateConnected {
		t.Errorf("the standby encoder's session is %v", st)
	}
}
