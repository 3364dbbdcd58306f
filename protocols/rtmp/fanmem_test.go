package rtmp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// Environment of TestFanOutMemoryPerPlayer.
const (
	fanMemEnv        = "SRS_MESH_FANOUT_MEM"         // players to measure
	fanMemProfileEnv = "SRS_MESH_FANOUT_MEM_PROFILE" // a file for the heap profile, when wanted
	fanMemPlayersOf  = "FANOUT_MEM_PLAYERS_OF"       // set for the players' process: the proxy's address
)

// fanMemReady is the line the players' process prints once every player
// has received the stream's media.
const fanMemReady = "fanmem: every player received the media"

// fanMemMedia is what the origin of TestFanOutMemoryPerPlayer sends: the
// sequence headers and a keyframe, which every player gets on joining.
func fanMemMedia() (msgs []chunk.Message, bytes int64) {
	msgs = testMedia()[:3]
	for _, m := range msgs {
		bytes += int64(len(m.Payload))
	}
	return msgs, bytes
}

// TestFanOutMemoryPerPlayer measures the heap and stacks one fan-out RTMP
// player holds (opt-in: SRS_MESH_FANOUT_MEM=<players>), once every player
// has received the stream's media and while all are attached. With
// SRS_MESH_FANOUT_MEM_PROFILE=<file> it also writes a heap profile of every
// allocation there.
func TestFanOutMemoryPerPlayer(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(fanMemEnv))
	if n <= 0 {
		t.Skipf("set %s to a player count", fanMemEnv)
	}
	_, want := fanMemMedia()
	if addr := os.Getenv(fanMemPlayersOf); addr != "" {
		fanMemPlayers(t, addr, n, want)
		return
	}
	profile := os.Getenv(fanMemProfileEnv)
	if profile != "" {
		runtime.MemProfileRate = 1
	}
	o := startFakeOrigin(t, "")
	o.media, _ = fanMemMedia()
	fan := newFanOut(t, fanout.Config{})
	_, addr := startProxy(t, Config{Router: routeTo(o.Addr), FanOut: fan})
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
	wg.Add(1)
	go func() {
		defer wg.Done()
		harness.ReadRTMP(ctx, "rtmp://"+addr+"/live/s", &got)
	}()
	testkit.WaitFor(t, 10*time.Second, "the first player receives the media", func() bool {
		return fan.Stats().Subscribers == 1 && got.Load() >= want
	})
	before := mem()

	players := exec.Command(os.Args[0], "-test.run=^TestFanOutMemoryPerPlayer$")
	players.Env = append(os.Environ(), fanMemPlayersOf+"="+addr)
	stdin, err := players.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := players.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	players.Stderr = players.Stdout
	if err := players.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder // what the players' process printed
	ready := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "fanmem: ") {
				t.Log(sc.Text())
			}
			if sc.Text() == fanMemReady {
				close(ready)
			}
		}
	}()
	ended := false
	end := func() error {
		if ended {
			return nil
		}
		ended = true
		stdin.Close()
		<-scanned
		return players.Wait()
	}
	defer end()
	select {
	case <-ready:
	case <-scanned:
		end()
		t.Fatalf("the players' process ended before every player received the media:\n%s", out.String())
	case <-time.After(90 * time.Second): // the players' process gives up after 30s
		end()
		t.Fatalf("the players' process neither reported nor ended within 90s:\n%s", out.String())
	}
	testkit.WaitFor(t, 20*time.Second, "all players attached", func() bool { return fan.Stats().Subscribers == n+1 })
	after := mem()
	if subs := fan.Stats().Subscribers; subs != n+1 {
		t.Fatalf("%d players attached while measuring, want %d", subs, n+1)
	}
	t.Logf("%d players: %.1f KiB of heap and stacks each (stacks %.1f KiB)", n, float64(after-before)/1024/float64(n), float64(stacks)/1024/float64(n))
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("heap profile written to %s", profile)
	}
	if err := end(); err != nil {
		t.Fatalf("the players' process: %v\n%s", err, out.String())
	}
	cancel()
	wg.Wait()
}

// fanMemPlayers runs n players of rtmp://addr/live/s in this process, so
// that the proxy's memory is measured alone. It prints fanMemReady once
// each has received want bytes, and plays until stdin closes; it fails if
// a player had not received them by then.
func fanMemPlayers(t *testing.T, addr string, n int, want int64) {
	ctx, cancel := context.WithCancel(context.Background())
	got := make([]atomic.Int64, n)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			harness.ReadRTMP(ctx, "rtmp://"+addr+"/live/s", &got[i])
		}()
	}
	testkit.WaitFor(t, 30*time.Second, "every player receives the media", func() bool {
		for i := range got {
			if got[i].Load() < want {
				return false
			}
		}
		return true
	})
	least := got[0].Load()
	for i := range got {
		least = min(least, got[i].Load())
	}
	fmt.Printf("fanmem: %d players, each received at least %d bytes (media: %d)\n", n, least, want)
	fmt.Println(fanMemReady)
	io.Copy(io.Discard, os.Stdin)
	for i := range got {
		if b := got[i].Load(); b < want {
			t.Errorf("player %d received %d bytes, less than the %d of the media", i, b, want)
		}
	}
}
