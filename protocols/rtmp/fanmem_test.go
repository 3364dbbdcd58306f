package rtmp

import (
	"context"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestFanOutMemoryPerPlayer measures the heap and stacks one fan-out RTMP
// player holds (opt-in: SRS_MESH_FANOUT_MEM=<players>).
func TestFanOutMemoryPerPlayer(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SRS_MESH_FANOUT_MEM"))
	if n <= 0 {
		t.Skip("set SRS_MESH_FANOUT_MEM to a player count")
	}
	if addr := os.Getenv("FANOUT_MEM_PLAYERS_OF"); addr != "" {
		// The players, in a process of their own so that the proxy's
		// memory is measured alone: they play until stdin closes.
		ctx, cancel := context.WithCancel(context.Background())
		var got atomic.Int64
		for range n {
			go harness.ReadRTMP(ctx, "rtmp://"+addr+"/live/s", &got)
		}
		io.Copy(io.Discard, os.Stdin)
		cancel()
		return
	}
	if os.Getenv("FANOUT_MEM_PROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	o := startFakeOrigin(t, "")
	o.media = testMedia()[:3]
	s, addr := startProxy(t, Config{Router: routeTo(o.Addr), FanOut: true})
	var stacks uint64
	mem := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		stacks = ms.StackInuse - stacks
		return ms.HeapInuse + ms.StackInuse
	}
	// One player first, so the upstream and its cache are not counted.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got atomic.Int64
	var wg sync.WaitGroup
	start := func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			harness.ReadRTMP(ctx, "rtmp://"+addr+"/live/s", &got)
		}()
	}
	start()
	testkit.WaitFor(t, 5*time.Second, "one player", func() bool { return s.Hubs().Stats().Subscribers == 1 })
	before := mem()
	players := exec.Command(os.Args[0], "-test.run=^TestFanOutMemoryPerPlayer$")
	players.Env = append(os.Environ(), "FANOUT_MEM_PLAYERS_OF="+addr)
	stdin, err := players.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := players.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); players.Wait() }()
	testkit.WaitFor(t, 20*time.Second, "all players", func() bool { return s.Hubs().Stats().Subscribers == n+1 })
	time.Sleep(time.Second)
	after := mem()
	t.Logf("%d players: %.1f KiB of heap and stacks each (stacks %.1f KiB)", n, float64(after-before)/1024/float64(n), float64(stacks)/1024/float64(n))
	if f, err := os.Create("/tmp/fanmem.pprof"); err == nil {
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	cancel()
	wg.Wait()
	_ = chunk.TypeAudio
}
