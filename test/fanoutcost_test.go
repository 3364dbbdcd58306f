package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
			time.Sleep(measure / 2)
			cpu2, b2, t2 := procCPU(tg.pid), bytes.Load(), time.Now()
			// Scraped once the CPU is read: the scrape's own cost is not
			// the serving's (proxy-go is not scraped).
			goMem := "-"
			if tg.goMem != nil {
				goMem = fmt.Sprintf("%.0f KiB", float64(tg.goMem()-mem0)/1024/float64(players))
			}
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
	return startBenchOriginWith(t, "4M")
}

// startBenchOriginWith is startBenchOrigin with the video at bitrate
// (FFmpeg's notation: 4M, 400k) and nodeArgs added to the node's flags.
func startBenchOriginWith(t *testing.T, bitrate string, nodeArgs ...string) (*harness.SRS, *harness.Node) {
	harness.Need(t, "ffmpeg")
	srs := harness.StartSRS(t, harness.SRSOptions{ID: "bench"})
	port := func(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
	c := startProtocolCluster(t, 1, nil, append([]string{"--origin",
		fmt.Sprintf("id=srs,ip=127.0.0.1,rtmp=%s,http=%s,api=%s", port(srs.RTMPAddr), port(srs.HTTPAddr), port(srs.APIAddr))}, nodeArgs...)...)
	c.waitOriginsHealthy(t, 1)
	nd := c.nodes[0]

	src := filepath.Join(t.TempDir(), "bench.flv")
	enc := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "20",
		"-c:v", "libx264", "-preset", "ultrafast", "-b:v", bitrate, "-minrate", bitrate, "-maxrate", bitrate, "-bufsize", bitrate,
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
	var report strings.Builder
	fmt.Fprintf(&report, "\nthe newest live HLS segment, wrk -t2 -c16 -d10s:\n| path | segment KB | requests/s |\n|---|---|---|\n")
	for _, tc := range []struct{ name, playlist string }{
		{"SRS direct", "http://" + srs.HTTPAddr + "/live/bench.m3u8"},
		{"through srs-mesh (cached)", nd.HTTPURL("live/bench.m3u8")},
	} {
		// The newest segment, so that it outlives the run in the playlist.
		var url string
		testkit.WaitFor(t, 60*time.Second, "a segment in the playlist", func() bool {
			url = lastSegment(tc.playlist, "")
			return url != ""
		})
		size := segmentSize(t, url) // and warms the node's cache
		out, err := exec.Command("wrk", "-t2", "-c16", "-d10s", url).CombinedOutput()
		if err != nil {
			t.Fatalf("wrk: %v %s", err, out)
		}
		res, err := parseWrk(string(out))
		if err == nil {
			err = res.check(size)
		}
		if err != nil {
			t.Fatalf("%s: %v; no rate is reported:\n%s", tc.name, err, out)
		}
		fmt.Fprintf(&report, "| %s | %d | %s |\n", tc.name, size>>10, res.rate)
	}
	t.Log(report.String())
}

// wrkResult is what wrk printed about a run.
type wrkResult struct {
	requests  int64
	readBytes float64
	rate      string // Requests/sec, as printed
	// non2xx counts the answers that were neither 2xx nor 3xx (wrk prints
	// them only when there are any); socketErrors is wrk's "Socket
	// errors" line, printed only when there are any.
	non2xx       int64
	socketErrors string
}

// wrkSummary matches "  123 requests in 10.00s, 1.23GB read".
var wrkSummary = regexp.MustCompile(`(?m)^\s*(\d+) requests in \S+, ([\d.]+)(B|KB|MB|GB|TB) read\s*$`)

// parseWrk reads wrk's output.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkSummary.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("wrk printed no request summary")
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	r.readBytes, _ = strconv.ParseFloat(m[2], 64)
	r.readBytes *= map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[m[3]]
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "Requests/sec:"); ok {
			r.rate = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "Non-2xx or 3xx responses:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk's line %q", line)
			}
			r.non2xx = n
		}
		if strings.HasPrefix(line, "Socket errors:") {
			r.socketErrors = line
		}
	}
	if r.rate == "" {
		return r, errors.New("wrk printed no Requests/sec")
	}
	return r, nil
}

// check fails a run that a rate would misrepresent: one with errors, with
// answers other than 2xx and 3xx, with no request, or whose answers carried
// less than 90% of the bytes of a segment of size bytes each (wrk counts
// 3xx as good).
func (r wrkResult) check(size int) error {
	switch {
	case r.non2xx > 0:
		return fmt.Errorf("%d of %d answers were not 2xx or 3xx", r.non2xx, r.requests)
	case r.socketErrors != "":
		return fmt.Errorf("wrk: %s", r.socketErrors)
	case r.requests == 0:
		return errors.New("no request completed")
	case r.readBytes < 0.9*float64(r.requests)*float64(size):
		return fmt.Errorf("%d answers carried %.0f bytes, less than %d bytes each", r.requests, r.readBytes, size)
	}
	return nil
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

// TestWrkCheck: the segment benchmark reports a rate only for a run whose
// every answer was a whole segment (wrk's output as wrk 4.1 prints it).
func TestWrkCheck(t *testing.T) {
	const head = "Running 10s test @ http://127.0.0.1:1/live/s-1.ts\n  2 threads and 16 connections\n" +
		"  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.58ms    1.50ms  19.12ms   91.33%\n" +
		"    Req/Sec     1.38k   321.25     1.76k    70.00%\n"
	const tail = "Requests/sec:   1367.73\nTransfer/sec:    694.64MB\n"
	const size = 500 << 10 // bytes per segment
	for _, tc := range []struct {
		name, out string
		ok        bool
	}{
		{"clean", head + "  2745 requests in 2.01s, 1.32GB read\n" + tail, true},
		{"non-2xx", head + "  2745 requests in 2.01s, 1.32GB read\n  Non-2xx or 3xx responses: 3\n" + tail, false},
		{"socket errors", head + "  2745 requests in 2.01s, 1.32GB read\n  Socket errors: connect 0, read 2, write 0, timeout 0\n" + tail, false},
		{"short answers", head + "  2745 requests in 2.01s, 1.36MB read\n" + tail, false},
		{"no request", head + "  0 requests in 2.01s, 0.00B read\n" + tail, false},
		{"no rate", head + "  2745 requests in 2.01s, 1.32GB read\n", false},
		{"no summary", "unable to connect to 127.0.0.1:1 Connection refused\n", false},
	} {
		r, err := parseWrk(tc.out)
		if err == nil {
			err = r.check(size)
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: %+v, %v; want ok=%v", tc.name, r, err, tc.ok)
		}
	}
}
