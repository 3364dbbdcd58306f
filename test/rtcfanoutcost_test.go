package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pionwebrtc "github.com/pion/webrtc/v4"

	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// benchRTCEnv names the viewer count of TestWebRTCFanOutCost.
const benchRTCEnv = "SRS_MESH_BENCH_RTC"

// TestWebRTCFanOutCost is the WebRTC side-by-side benchmark of
// docs/benchmarks.md, not a test: it runs only when SRS_MESH_BENCH_RTC
// names a viewer count and SRS_MESH_TEST_SRS an SRS binary. One SRS origin
// holds a 1 Mbit/s H.264 and Opus stream (RTMP converted by rtmp_to_rtc);
// the same number of pion WHEP viewers, in this process, play it through
// one srs-mesh node (--rtc-fanout) and then straight from SRS. For each it
// reports the serving process's CPU per RTP packet delivered and per
// viewer-Mbit/s, its RSS growth per viewer, and the origin's WebRTC
// sessions of the stream.
func TestWebRTCFanOutCost(t *testing.T) {
	viewers, _ := strconv.Atoi(os.Getenv(benchRTCEnv))
	if viewers <= 0 {
		t.Skipf("set %s to a viewer count (and %s) to run the WebRTC fan-out benchmark", benchRTCEnv, harness.SRSBinaryEnv)
	}
	harness.Need(t, "ffmpeg")
	srs := harness.StartSRS(t, harness.SRSOptions{ID: "bench"})
	c := startProtocolCluster(t, 1, nil, "--rtc-offer-rate", "0", "--origin",
		fmt.Sprintf("id=srs,ip=127.0.0.1,rtmp=%s,http=%s,api=%s,rtc=%d", portOf(srs.RTMPAddr), portOf(srs.HTTPAddr), portOf(srs.APIAddr), srs.RTCPort))
	c.waitOriginsHealthy(t, 1)
	nd := c.nodes[0]
	src := filepath.Join(t.TempDir(), "1mbps.flv")
	enc := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "20",
		"-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-b:v", "1M", "-minrate", "1M", "-maxrate", "1M", "-bufsize", "1M",
		"-x264-params", "nal-hrd=cbr", "-g", "50", "-bf", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-f", "flv", src)
	if out, err := enc.CombinedOutput(); err != nil {
		t.Fatalf("encode: %v %s", err, out)
	}
	harness.Start(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", src,
		"-c", "copy", "-f", "flv", "rtmp://"+srs.RTMPAddr+"/live/rtcbench")
	testkit.WaitFor(t, 30*time.Second, "SRS has the stream", func() bool { return len(srsClientTypes(t, srs, "rtcbench")) > 0 })
	api := rtcClientAPI(t)

	type target struct {
		name, url string
		pid       int
	}
	const query = "/rtc/v1/whep/?app=live&stream=rtcbench"
	targets := []target{{"srs-mesh node", "http://" + nd.APIAddr + query, nd.Proc().Cmd.Process.Pid}, {"SRS direct", "http://" + srs.APIAddr + query, srs.Pid()}}
	const warm, measure = 8 * time.Second, 20 * time.Second
	var report strings.Builder
	fmt.Fprintf(&report, "\n%d WHEP viewers of one 1 Mbit/s stream, %v measured after %v:\n", viewers, measure, warm)
	fmt.Fprintf(&report, "| serving process | CPU µs per packet delivered | CPU ms per viewer-Mbit/s | RSS per viewer | origin WebRTC sessions | delivered packets/s | delivered Mbit/s | SRS CPU (all of it) |\n|---|---|---|---|---|---|---|---|\n")
	for _, tg := range targets {
		rss0 := procRSS(tg.pid)
		var players []*benchViewer
		for range viewers {
			players = append(players, startBenchViewer(t, api, tg.url))
		}
		time.Sleep(warm)
		var p1, b1 uint64
		for _, p := range players {
			p1, b1 = p1+p.packets.Load(), b1+p.bytes.Load()
		}
		cpu1, srsCPU1, t1 := procCPU(tg.pid), procCPU(srs.Pid()), time.Now()
		time.Sleep(measure / 2)
		rss := procRSS(tg.pid)
		sessions := 0
		for _, typ := range srsClientTypes(t, srs, "rtcbench") {
			if strings.HasPrefix(typ, "rtc") {
				sessions++
			}
		}
		time.Sleep(measure / 2)
		cpu2, srsCPU2, t2 := procCPU(tg.pid), procCPU(srs.Pid()), time.Now()
		var p2, b2 uint64
		live := 0
		for _, p := range players {
			p2, b2 = p2+p.packets.Load(), b2+p.bytes.Load()
			if p.packets.Load() > 0 {
				live++
			}
		}
		secs := t2.Sub(t1).Seconds()
		pkts, mbps := float64(p2-p1), float64(b2-b1)*8/1e6/secs
		cpu := (cpu2 - cpu1).Seconds()
		fmt.Fprintf(&report, "| %s | %.1f | %.1f | %.0f KiB | %d | %.0f | %.1f | %.1f s |\n", tg.name, cpu*1e6/pkts, cpu*1e3/(mbps*secs),
			float64(rss-rss0)/1024/float64(viewers), sessions, pkts/secs, mbps, (srsCPU2 - srsCPU1).Seconds())
		if live < viewers {
			fmt.Fprintf(&report, "  (%d of %d viewers received nothing)\n", viewers-live, viewers)
		}
		for _, p := range players {
			p.pc.Close()
		}
		time.Sleep(3 * time.Second) // let the sessions end
	}
	t.Log(report.String())
}

// benchViewer is a WHEP viewer that counts the RTP packets and bytes it
// receives.
type benchViewer struct {
	pc             *pionwebrtc.PeerConnection
	packets, bytes atomic.Uint64
}

func startBenchViewer(t *testing.T, api *pionwebrtc.API, url string) *benchViewer {
	t.Helper()
	pc, err := api.NewPeerConnection(pionwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	v := &benchViewer{pc: pc}
	t.Cleanup(func() { pc.Close() })
	for _, k := range []pionwebrtc.RTPCodecType{pionwebrtc.RTPCodecTypeVideo, pionwebrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, pionwebrtc.RTPTransceiverInit{Direction: pionwebrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *pionwebrtc.TrackRemote, _ *pionwebrtc.RTPReceiver) {
		go func() {
			buf := make([]byte, 1600)
			for {
				n, _, err := tr.Read(buf)
				if err != nil {
					return
				}
				v.packets.Add(1)
				v.bytes.Add(uint64(n))
			}
		}()
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pionwebrtc.GatheringCompletePromise(pc)
	pc.SetLocalDescription(offer)
	<-gathered
	resp, err := e2eHTTP.Post(url, "application/sdp", strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	if _, err := io.Copy(&body, resp.Body); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, body.String())
	}
	if err := pc.SetRemoteDescription(pionwebrtc.SessionDescription{Type: pionwebrtc.SDPTypeAnswer, SDP: body.String()}); err != nil {
		t.Fatal(err)
	}
	return v
}
