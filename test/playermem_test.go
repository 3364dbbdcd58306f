package e2e

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/loadclient"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// Environment of TestPlayerMemory.
const (
	benchPlayersEnv = "SRS_MESH_BENCH_PLAYERS" // players per protocol, e.g. 1000
	benchProtosEnv  = "SRS_MESH_BENCH_PROTOS"  // protocols to run: rtmp,flv (the default); hls too
	benchRateEnv    = "SRS_MESH_BENCH_BITRATE" // the stream's video bitrate, FFmpeg's notation: 4M (the default)
)

// TestPlayerMemory is the memory-per-player benchmark of docs/benchmarks.md,
// not a test: it runs only when SRS_MESH_BENCH_PLAYERS names a player count
// and SRS_MESH_TEST_SRS an SRS binary. One SRS origin holds a 4 Mbit/s
// stream (SRS_MESH_BENCH_BITRATE sets another video bitrate) and one
// srs-mesh node serves it. For each protocol, one player
// warms the node's shared upstream; then the load client
// (loadclient.Run, in this process) adds the players, and once they all
// play, the node's RSS and Go heap and stacks (its /metrics) are compared
// with those before: the difference over the players is the marginal cost
// of a player. CPU per GB is the node's user+system time over what the
// players received while all played.
func TestPlayerMemory(t *testing.T) {
	players, _ := strconv.Atoi(os.Getenv(benchPlayersEnv))
	if players <= 0 {
		t.Skipf("set %s to a player count (and %s) to run the memory-per-player benchmark", benchPlayersEnv, harness.SRSBinaryEnv)
	}
	protos := strings.Split(os.Getenv(benchProtosEnv), ",")
	if protos[0] == "" {
		protos = []string{"rtmp", "flv"}
	}
	var report strings.Builder
	fmt.Fprintf(&report, "\n%d players of one stream (video %s) through one node:\n", players, cmp.Or(os.Getenv(benchRateEnv), "4M"))
	fmt.Fprintf(&report, "| protocol | players playing | RSS per player | Go heap+stacks per player | node CPU s per GB | received Mbit/s | stalled players | failed |\n|---|---|---|---|---|---|---|---|\n")
	for _, proto := range protos {
		t.Run(proto, func(t *testing.T) { report.WriteString(measurePlayers(t, proto, players)) })
	}
	t.Log(report.String())
}

// measurePlayers runs TestPlayerMemory's measurement of one protocol, on a
// node of its own (a node's heap does not shrink at once after a run), and
// returns its row of the report.
func measurePlayers(t *testing.T, proto string, players int) string {
	bitrate := cmp.Or(os.Getenv(benchRateEnv), "4M")
	// The node's connection caps above the players, so that none is
	// refused: the caps are measured elsewhere.
	caps := strconv.Itoa(players + 100)
	_, nd := startBenchOriginWith(t, bitrate, "--max-rtmp-conns", caps, "--max-http-conns", caps)
	pid := nd.Proc().Cmd.Process.Pid
	goMem := func() int64 { return goMemInUse("http://" + nd.SystemAPI + "/metrics") }
	{
		url := nd.RTMPURL("live/bench")
		switch proto {
		case "flv":
			url = nd.HTTPURL("live/bench.flv")
		case "hls":
			url = nd.HTTPURL("live/bench.m3u8")
			testkit.WaitFor(t, 60*time.Second, "a segment in the playlist", func() bool { return lastSegment(url, "") != "" })
		}
		// A warm upstream: the cost of the stream is not a player's.
		warmCtx, warmStop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var warm atomic.Pointer[loadclient.Summary]
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, _ := loadclient.Run(warmCtx, loadclient.Config{URL: url, Players: 1, Progress: func(s loadclient.Summary) { warm.Store(&s) },
				ProgressEvery: 500 * time.Millisecond})
			warm.Store(&s)
		}()
		waitSummary(t, &warm, 30*time.Second, func(s *loadclient.Summary) bool { return s.Connected == 1 })
		time.Sleep(3 * time.Second) // the node settles; a sample, not a wait for a condition
		rss0, mem0 := procRSS(pid), goMem()

		ctx, stop := context.WithCancel(context.Background())
		var last atomic.Pointer[loadclient.Summary]
		var final loadclient.Summary
		wg.Add(1)
		go func() {
			defer wg.Done()
			final, _ = loadclient.Run(ctx, loadclient.Config{URL: url, Players: players, Rate: 500, StallGap: 2 * time.Second,
				Progress: func(s loadclient.Summary) { last.Store(&s) }, ProgressEvery: time.Second})
		}()
		waitSummary(t, &last, time.Duration(players/500+60)*time.Second, func(s *loadclient.Summary) bool {
			return s.Started == players && s.Connected+s.Failed == players
		})
		time.Sleep(10 * time.Second) // steady state: samples over time, not a wait for a condition
		cpu1, b1, t1 := procCPU(pid), last.Load().Bytes, time.Now()
		var rss, mem int64
		for range 3 {
			time.Sleep(3 * time.Second)
			rss, mem = max(rss, procRSS(pid)), max(mem, goMem())
		}
		time.Sleep(2 * time.Second)
		cpu2, s := procCPU(pid), last.Load()
		b2, t2 := s.Bytes, time.Now()
		stop()
		warmStop()
		wg.Wait()
		playing := final.Connected - final.Failed
		gb := float64(b2-b1) / 1e9
		t.Logf("%s:\n%s", proto, final.String())
		return fmt.Sprintf("| %s | %d | %.1f KiB | %.1f KiB | %.2f | %.0f | %d | %d |\n", proto, playing,
			float64(rss-rss0)/1024/float64(players), float64(mem-mem0)/1024/float64(players), (cpu2-cpu1).Seconds()/gb,
			float64(b2-b1)*8/1e6/t2.Sub(t1).Seconds(), final.Stalled, final.Failed)
	}
}

// waitSummary polls *p until ok says the run is where it should be.
func waitSummary(t *testing.T, p *atomic.Pointer[loadclient.Summary], timeout time.Duration, ok func(*loadclient.Summary) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if s := p.Load(); s != nil && ok(s) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s := p.Load(); s != nil {
		t.Fatalf("the players did not get there within %v:\n%s", timeout, s)
	}
	t.Fatalf("no report from the players within %v", timeout)
}
