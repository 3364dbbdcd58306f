package harness

import (
	"testing"
	"time"
)

// TestNginxOrigin checks the harness itself: a generated stream published to
// an nginx-rtmp origin can be played back from it.
func TestNginxOrigin(t *testing.T) {
	n := StartNginx(t, NginxOptions{HLS: true, DASH: true})
	PublishRTMP(t, "rtmp://"+n.RTMPAddr+"/live/h")
	res := PlayUntil(t, "rtmp://"+n.RTMPAddr+"/live/h", 2*time.Second, 10, 20*time.Second)
	t.Logf("decoded %d frames", res.VideoFrames)
	res = PlayUntil(t, "http://"+n.HTTPAddr+"/live/h.m3u8", 2*time.Second, 10, 30*time.Second)
	t.Logf("hls decoded %d frames", res.VideoFrames)
}
