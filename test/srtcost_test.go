package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// benchSRTEnv turns TestSRTCost on: the pace, as a multiple of the
// stream's 12 Mbit/s (4 publishes at about 48 Mbit/s).
const benchSRTEnv = "SRS_MESH_BENCH_SRT"

// TestSRTCost is the SRT side-by-side benchmark of docs/benchmarks.md, not
// a test: it runs only when SRS_MESH_BENCH_SRT names a pace and
// SRS_MESH_TEST_SRS an SRS binary (SRS_MESH_PROXY_GO adds proxy-go). One
// 20 s, 12 Mbit/s MPEG-TS file is published four times over with FFmpeg, read at the pace
// (-readrate), over SRT to one SRS 7 origin: straight, through one srs-mesh
// node and through proxy-go; then over RTMP through the node, for the
// node's cost per GB on RTMP. For each it reports the serving process's
// CPU per GB it carried, the rate the publisher achieved (FFmpeg exits
// with an error when the SRT connection fails) and the rate the node
// counted, and the node's own drops. (SRS's stream counters do not follow
// SRT input, so the origin's view is not reported.)
func TestSRTCost(t *testing.T) {
	pace, _ := strconv.ParseFloat(os.Getenv(benchSRTEnv), 64)
	if pace <= 0 {
		t.Skipf("set %s to a pace (e.g. 4) and %s (and %s) to run the SRT benchmark", benchSRTEnv, harness.SRSBinaryEnv, proxyGoEnv)
	}
	harness.NeedFFmpegSRT(t)
	srs := harness.StartSRS(t, harness.SRSOptions{ID: "srtbench"})
	port := func(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
	c := startProtocolCluster(t, 1, nil, "--origin",
		fmt.Sprintf("id=srs,ip=127.0.0.1,rtmp=%s,http=%s,api=%s,srt=%d", port(srs.RTMPAddr), port(srs.HTTPAddr), port(srs.APIAddr), srs.SRTPort))
	c.waitOriginsHealthy(t, 1)
	nd := c.nodes[0]

	src := filepath.Join(t.TempDir(), "12mbps.ts")
	enc := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "20",
		"-c:v", "libx264", "-preset", "ultrafast", "-b:v", "12M", "-minrate", "12M", "-maxrate", "12M", "-bufsize", "6M",
		"-x264-params", "nal-hrd=cbr", "-g", "50", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k",
		"-muxrate", "12800k", "-f", "mpegts", src)
	if out, err := enc.CombinedOutput(); err != nil {
		t.Fatalf("encode: %v %s", err, out)
	}
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}

	type target struct {
		name, proto, url string
		pid              int
		carried          func() float64 // bytes the serving process relayed so far
	}
	nodeBytes := func(proto string) func() float64 {
		return func() float64 {
			return nodeMetric(t, nd, fmt.Sprintf(`srs_mesh_relayed_bytes_total{direction="client_to_origin",proto="%s"}`, proto))
		}
	}
	srtURL := func(addr, name string) string {
		return "srt://" + addr + "?streamid=#!::r=live/" + name + ",m=publish"
	}
	targets := []target{
		{"SRS direct", "SRT", srtURL(fmt.Sprintf("127.0.0.1:%d", srs.SRTPort), "direct"), 0, nil},
		{"srs-mesh", "SRT", srtURL(nd.SRTAddr, "node"), nd.Proc().Cmd.Process.Pid, nodeBytes("srt")},
	}
	if bin := os.Getenv(proxyGoEnv); bin != "" {
		srtPort, rtmpPort := testkit.FreeUDPPort(t), testkit.FreePort(t, false)
		env := append(os.Environ(),
			"PROXY_RTMP_SERVER="+strconv.Itoa(rtmpPort), "PROXY_HTTP_SERVER="+strconv.Itoa(testkit.FreePort(t, false)),
			"PROXY_HTTP_API="+strconv.Itoa(testkit.FreePort(t, false)), "PROXY_SYSTEM_API="+strconv.Itoa(testkit.FreePort(t, false)),
			"PROXY_WEBRTC_SERVER="+strconv.Itoa(testkit.FreeUDPPort(t)), "PROXY_SRT_SERVER="+strconv.Itoa(srtPort),
			"PROXY_LOAD_BALANCER_TYPE=memory", "PROXY_DEFAULT_BACKEND_ENABLED=on", "PROXY_DEFAULT_BACKEND_IP=127.0.0.1",
			"PROXY_DEFAULT_BACKEND_RTMP="+port(srs.RTMPAddr), "PROXY_DEFAULT_BACKEND_HTTP="+port(srs.HTTPAddr),
			"PROXY_DEFAULT_BACKEND_API="+port(srs.APIAddr), "PROXY_DEFAULT_BACKEND_SRT="+strconv.Itoa(srs.SRTPort),
			"PROXY_STATIC_FILES="+t.TempDir())
		p := harness.StartEnv(t, env, bin)
		testkit.WaitFor(t, 10*time.Second, "proxy-go listening", func() bool {
			nc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", rtmpPort), time.Second)
			if err == nil {
				nc.Close()
			}
			return err == nil
		})
		// proxy-go counts nothing: it carried what the publisher sent.
		targets = append(targets, target{"proxy-go", "SRT", srtURL(fmt.Sprintf("127.0.0.1:%d", srtPort), "proxygo"), p.Cmd.Process.Pid, nil})
	}
	targets = append(targets, target{"srs-mesh", "RTMP", nd.RTMPURL("live/rtmp"), nd.Proc().Cmd.Process.Pid, nodeBytes("rtmp")})

	var report strings.Builder
	const loops = 4 // 80 s of media per publish
	fmt.Fprintf(&report, "\none %.1f MB, 20 s, 12 Mbit/s MPEG-TS file published %d times over at %gx (-readrate):\n", float64(fi.Size())/1e6, loops, pace)
	fmt.Fprintf(&report, "| protocol | serving process | CPU s per GB | publisher Mbit/s | carried Mbit/s |\n|---|---|---|---|---|\n")
	for _, tg := range targets {
		format := "mpegts"
		if tg.proto == "RTMP" {
			format = "flv"
		}
		var cpu0 time.Duration
		var carried0 float64
		if tg.pid != 0 {
			cpu0 = procCPU(tg.pid)
		}
		if tg.carried != nil {
			carried0 = tg.carried()
		}
		start := time.Now()
		pub := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-readrate", strconv.FormatFloat(pace, 'f', -1, 64),
			"-stream_loop", strconv.Itoa(loops-1), "-i", src, "-c", "copy", "-f", format, tg.url)
		var out strings.Builder
		pub.Stdout, pub.Stderr = &out, &out
		if err := pub.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- pub.Wait() }()
		err := <-done
		elapsed := time.Since(start)
		if err != nil {
			fmt.Fprintf(&report, "| %s | %s | publish failed: %v %s |\n", tg.proto, tg.name, err, strings.TrimSpace(out.String()))
			continue
		}
		sent := float64(fi.Size()) * loops
		cost, carriedRate := "-", "-"
		bytes := sent
		if tg.carried != nil {
			bytes = tg.carried() - carried0
			carriedRate = fmt.Sprintf("%.1f", bytes*8/1e6/elapsed.Seconds())
		}
		if tg.pid != 0 {
			cost = fmt.Sprintf("%.2f", (procCPU(tg.pid)-cpu0).Seconds()/(bytes/1e9))
		}
		fmt.Fprintf(&report, "| %s | %s | %s | %.1f | %s |\n", tg.proto, tg.name, cost,
			sent*8/1e6/elapsed.Seconds(), carriedRate)
		time.Sleep(2 * time.Second) // let SRS drop the stream
	}
	fmt.Fprintf(&report, "node drops: send_error %.0f, overflow %.0f, no_session %.0f (srt)\n",
		nodeMetric(t, nd, `srs_mesh_dropped_packets_total{proto="srt",reason="send_error"}`),
		nodeMetric(t, nd, `srs_mesh_dropped_packets_total{proto="srt",reason="overflow"}`),
		nodeMetric(t, nd, `srs_mesh_dropped_packets_total{proto="srt",reason="no_session"}`))
	t.Log(report.String())
}
