package harness

import (
	"encoding/binary"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// NeedFFmpegSRT skips the test unless FFmpeg and ffprobe exist and FFmpeg
// was built with the SRT protocol.
func NeedFFmpegSRT(t testing.TB) {
	t.Helper()
	Need(t, "ffmpeg", "ffprobe")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-protocols").Output()
	if err != nil {
		Missingf(t, "ffmpeg", "ffmpeg -protocols: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "srt" {
			return
		}
	}
	Missing(t, "ffmpeg", "this ffmpeg has no SRT protocol")
}

// srtInduction is an SRT (UDT version 4) induction handshake: the first
// packet a caller sends, which a listener answers without creating state.
func srtInduction() []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], 0x80000000) // control packet, type HANDSHAKE
	binary.BigEndian.PutUint32(b[16:], 4)         // version 4
	binary.BigEndian.PutUint16(b[22:], 2)         // UDT_DGRAM
	binary.BigEndian.PutUint32(b[24:], 0x1234)    // initial sequence number
	binary.BigEndian.PutUint32(b[28:], 1500)      // MTU
	binary.BigEndian.PutUint32(b[32:], 8192)      // flow window
	binary.BigEndian.PutUint32(b[36:], 1)         // handshake type INDUCTION
	binary.BigEndian.PutUint32(b[40:], 0x0badcafe)
	return b
}

// WaitSRTListener waits until an SRT listener answers an induction at addr.
// The induction leaves no state behind, so the listener still takes the
// next caller.
func WaitSRTListener(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	probe := srtInduction()
	buf := make([]byte, 1500)
	testkit.WaitFor(t, timeout, "SRT listener at "+addr, func() bool {
		c.Write(probe)
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				time.Sleep(100 * time.Millisecond) // refused: not bound yet
			}
			return false
		}
		return n >= 40 && buf[0]&0x80 != 0 && binary.BigEndian.Uint32(buf[36:40]) == 1
	})
}

// CountVideoFrames returns the number of video frames ffprobe decodes in
// the media file at path.
func CountVideoFrames(t testing.TB, path string) int {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v: %s", path, err, out)
	}
	// One number per stream (and, with some builds, per program).
	fields := strings.Fields(string(out))
	if len(fields) == 0 {
		t.Fatalf("ffprobe %s: no frame count", path)
	}
	n, err := strconv.Atoi(strings.TrimSuffix(fields[0], ","))
	if err != nil {
		t.Fatalf("ffprobe %s: %q", path, out)
	}
	return n
}
