package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// Environment of TestFanOutCost.
const (
	benchFanOutEnv = "SRS_MESH_BENCH_FANOUT" // players per run, e.g. 200
	proxyGoEnv     = "SRS_MESH_PROXY_GO"     // a proxy-go binary (ossrs/srsx, cmd/proxy-go)
)

// TestFanOutCost is the side-by-side benchmark of docs/benchmarks.md, not a
// test: it runs only when SRS_MESH_BENCH_FANOUT names a player count and
// SRS_MESH_TEST_SRS an SRS binary (SRS_MESH_PROXY_GO adds proxy-go). One
// SRS origin holds a 4 Mbit/s stream; the same number of HTTP-FLV players,
// then RTMP players, read it through one srs-mesh node, through proxy-go
// and straight from SRS. For each it reports the serving process's CPU per
// GB delivered, its RSS growth per player, and the origin's connections
// for the stream.
func TestFanOutCost(t *testing.T) {
	players, _ := strconv.Atoi(os.Getenv(benchFanOutEnv))
	if players <= 0 {
		t.Skipf("set %s to a player count (and %s, %s) to run the fan-out benchmark", benchFanOutEnv, harness.SRSBinaryEnv, proxyGoEnv)
	}
	srs, nd := startBenchOrigin(t)
	port := func(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

	type target struct {
		name      string
		pid       int
		flv, rtmp string
		goMem     func() int64 // heap and stacks in use, when the process tells
	}
	targets := []target{{"srs-mesh", nd.Proc().Cmd.Process.Pid, nd.HTTPURL("live/bench.flv"), nd.RTMPURL("live/bench"),
		func() int64 { return goMemInUse("http://" + nd.SystemAPI + "/metrics") }}}
	if bin := os.Getenv(proxyGoEnv); bin != "" {
		rtmpPort, httpPort := testkit.FreePort(t, false), testkit.FreePort(t, false)
		env := append(os.Environ(),
			"PROXY_RTMP_SERVER="+strconv.Itoa(rtmpPort), "PROXY_HTTP_SERVER="+strconv.Itoa(httpPort),
			"PROXY_HTTP_API="+strconv.Itoa(testkit.FreePort(t, false)), "PROXY_SYSTEM_API="+strconv.Itoa(testkit.FreePort(t, false)),
			"PROXY_WEBRTC_SERVER="+strconv.Itoa(testkit.FreeUDPPort(t)), "PROXY_SRT_SERVER="+strconv.Itoa(testkit.FreeUDPPort(t)),
			"PROXY_LOAD_BALANCER_TYPE=memory", "PROXY_DEFAULT_BACKEND_ENABLED=on", "PROXY_DEFAULT_BACKEND_IP=127.0.0.1",
			"PROXY_DEFAULT_BACKEND_RTMP="+port(srs.RTMPAddr), "PROXY_DEFAULT_BACKEND_HTTP="+port(srs.HTTPAddr),
			"PROXY_DEFAULT_BACKEND_API="+port(srs.APIAddr), "PROXY_STATIC_FILES="+t.TempDir())
		p := harness.StartEnv(t, env, bin)
		testkit.WaitFor(t, 10*time.Second, "proxy-go listening", func() bool {
			nc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", rtmpPort), time.Second)
			if err == nil {
				nc.Close()
			}
			return err == nil
		})
		targets = append(targets, target{"proxy-go", p.Cmd.Process.Pid,
			fmt.Sprintf("http://127.0.0.1:%d/live/bench.flv", httpPort), fmt.Sprintf("rtmp://127.0.0.1:%d/live/bench", rtmpPort), nil})
	}
	targets = append(targets, target{"SRS direct", srs.Pid(), "http://" + srs.HTTPAddr + "/live/bench.flv", "rtmp://" + srs.RTMPAddr + "/live/bench", nil})

	const warm, measure = 5 * time.Second, 20 * time.Second
	var report strings.Builder
	fmt.Fprintf(&report, "\n%d players of one 4 Mbit/s stream, %v measured after %v:\n", players, measure, warm)
	fmt.Fprintf(&report, "| protocol | serving process | CPU s per GB delivered | RSS per player | Go heap+stacks per player | origin connections | delivered Mbit/s |\n|---|---|---|---|---|---|---|\n")
	for _, proto := range []string{"HTTP-FLV", "RTMP"} {
		for _, tg := range targets {
			url := tg.flv
			read := func(ctx context.Context, n *atomic.Int64) error {
				_, err := readFLVCounting(ctx, url, n)
				return err
			}
			if proto == "RTMP" {
				url = tg.rtmp
				read = func(ctx context.Context, n *atomic.Int64) error { return harness.ReadRTMP(ctx, url, n) }
			}
			rss0 := procRSS(tg.pid)
			var mem0 int64
			if tg.goMem != nil {
				mem0 = tg.goMem()
			}
			var bytes atomic.Int64
			var failed atomic.Int32
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for range players {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := read(ctx, &bytes); err != nil && ctx.Err() == nil {
						failed.Add(1)
					}
				}()
			}
			time.Sleep(warm)
			cpu1, b1, t1 := procCPU(tg.pid), bytes.Load(), time.Now()
			time.Sleep(measure / 2)
			conns := srsClients(t, srs.APIAddr, "bench") - 1 // less the publisher
			rss := procRSS(tg.pid)
			goMem := "-"
			if tg.goMem != nil {
				goMem = fmt.Sprintf("%.0f KiB", float64(tg.goMem()-mem0)/1024/float64(players))
			}
			time.Sleep(measure / 2)
			cpu2, b2, t2 := procCPU(tg.pid), bytes.Load(), time.Now()
			cancel()
			wg.Wait()
			gb := float64(b2-b1) / 1e9
			fmt.Fprintf(&report, "| %s | %s | %.2f | %.0f KiB | %s | %d | %.0f |\n", proto, tg.name, (cpu2-cpu1).Seconds()/gb,
				float64(rss-rss0)/1024/float64(players), goMem, conns, float64(b2-b1)*8/1e6/t2.Sub(t1).Seconds())
			if f := failed.Load(); f > 0 {
				fmt.Fprintf(&report, "  (%d of %d players failed)\n", f, players)
			}
			time.Sleep(3 * time.Second) // let the players' connections close
		}
	}
	t.Log(report.String())
}

// benchHTTP is a client for players that read until they are stopped.
var benchHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1000, DisableCompression: true}}

// readFLVCounting reads an HTTP-FLV URL until ctx ends, adding what it
// reads to *n.
func readFLVCounting(ctx context.Context, url string, n *atomic.Int64) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := benchHTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s", resp.Status)
	}
	buf := make([]byte, 32<<10)
	var total int64
	for {
		k, err := resp.Body.Read(buf)
		total += int64(k)
		n.Add(int64(k))
		if err != nil {
			return total, err
		}
	}
}

// procCPU is a process's user plus system CPU time so far.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100
}

// procRSS is a process's resident set size in bytes.
func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// srsClients is the client count SRS's API reports for a stream.
func srsClients(t *testing.T, api, name string) int {
	var doc struct {
		Streams []struct {
			Name    string `json:"name"`
			Clients int    `json:"clients"`
		} `json:"streams"`
	}
	if err := harness.GetJSON("http://"+api+"/api/v1/streams/?count=100", &doc); err != nil {
		t.Logf("SRS API: %v", err)
		return -1
	}
	for _, s := range doc.Streams {
		if s.Name == name {
			return s.Clients
		}
	}
	return 0
}

// goMemInUse reads go_memstats_heap_inuse_bytes plus
// go_memstats_stack_inuse_bytes from a Prometheus endpoint.
func goMemInUse(url string) int64 {
	resp, err := benchHTTP.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var total int64
	for _, line := range strings.Split(string(b), "\n") {
		for _, m := range []string{"go_memstats_heap_inuse_bytes ", "go_memstats_stack_inuse_bytes "} {
			if v, ok := strings.CutPrefix(line, m); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				total += int64(f)
			}
		}
	}
	return total
}

// startBenchOrigin starts an SRS origin publishing a 4 Mbit/s stream
// (live/bench, key frames every 2 s) and one srs-mesh node in front of it.
func startBenchOrigin(t *testing.T) (*harness.SRS, *harness.Node) {
	harness.Need(t, "ffmpeg")
	srs := harness.StartSRS(t, harness.SRSOptions{ID: "bench"})
	port := func(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
	c := startProtocolCluster(t, 1, nil, "--origin",
		fmt.Sprintf("id=srs,ip=127.0.0.1,rtmp=%s,http=%s,api=%s", port(srs.RTMPAddr), port(srs.HTTPAddr), port(srs.APIAddr)))
	c.waitOriginsHealthy(t, 1)
	nd := c.nodes[0]

	src := filepath.Join(t.TempDir(), "4mbps.flv")
	enc := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "20",
		"-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M", "-minrate", "4M", "-maxrate", "4M", "-bufsize", "2M",
		"-x264-params", "nal-hrd=cbr", "-g", "50", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-f", "flv", src)
	if out, err := enc.CombinedOutput(); err != nil {
		t.Fatalf("encode: %v %s", err, out)
	}
	harness.Start(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", src,
		"-c", "copy", "-f", "flv", "rtmp://"+srs.RTMPAddr+"/live/bench")
	harness.PlayUntil(t, "rtmp://"+srs.RTMPAddr+"/live/bench", time.Second, 10, 30*time.Second)

	return srs, nd
}

// TestSegmentRate is the HLS side of the fan-out benchmark (opt-in like
// TestFanOutCost, and it needs wrk): requests per second for one live
// segment, straight from SRS and through a node that caches it.
func TestSegmentRate(t *testing.T) {
	if n, _ := strconv.Atoi(os.Getenv(benchFanOutEnv)); n <= 0 {
		t.Skipf("set %s (and %s) to run the segment benchmark", benchFanOutEnv, harness.SRSBinaryEnv)
	}
	harness.Need(t, "wrk")
	srs, nd := startBenchOrigin(t)
	var direct, proxied string
	testkit.WaitFor(t, 60*time.Second, "a segment in the playlists", func() bool {
		direct = lastSegment("http://"+srs.HTTPAddr+"/live/bench.m3u8", "http://"+srs.HTTPAddr+"/live/")
		proxied = lastSegment(nd.HTTPURL("live/bench.m3u8"), nd.HTTPURL("live/"))
		return direct != "" && proxied != ""
	})
	size := segmentSize(t, direct)
	var report strings.Builder
	fmt.Fprintf(&report, "\none live HLS segment of %d KB, wrk -t2 -c16 -d10s:\n| path | requests/s |\n|---|---|\n", size>>10)
	for _, tc := range []struct{ name, url string }{{"SRS direct", direct}, {"through srs-mesh (cached)", proxied}} {
		segmentSize(t, tc.url) // warm the node's cache
		out, err := exec.Command("wrk", "-t2", "-c16", "-d10s", tc.url).CombinedOutput()
		if err != nil {
			t.Fatalf("wrk: %v %s", err, out)
		}
		rate := ""
		for _, line := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Requests/sec:"); ok {
				rate = strings.TrimSpace(v)
			}
		}
		fmt.Fprintf(&report, "| %s | %s |\n", tc.name, rate)
	}
	t.Log(report.String())
}

// lastSegment returns the URL of the last segment a media playlist lists
// (following a master playlist's first variant), or "".
func lastSegment(playlist, _ string) string {
	for range 2 {
		resp, err := benchHTTP.Get(playlist)
		if err != nil {
			return ""
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return ""
		}
		last := ""
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				last = line
			}
		}
		base, err := neturl.Parse(playlist)
		if last == "" || err != nil {
			return ""
		}
		ref, err := base.Parse(last)
		if err != nil {
			return ""
		}
		if !strings.Contains(string(b), "#EXT-X-STREAM-INF") {
			return ref.String()
		}
		playlist = ref.String() // a master playlist: its variant
	}
	return ""
}

// segmentSize GETs url and returns its size.
func segmentSize(t *testing.T, url string) int {
	resp, err := benchHTTP.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	return len(b)
}
