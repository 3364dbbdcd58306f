package leadership

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// follower runs Follow on its own goroutine with a fake leadership flag.
type follower struct {
	leader              atomic.Bool
	running, maxRunning atomic.Int32
	started, stopped    atomic.Int32
	wake                chan struct{}
	cancel              context.CancelFunc
	done                chan struct{}
}

func startFollower(t *testing.T, run func(f *follower, ctx context.Context), resync time.Duration) *follower {
	f := &follower{wake: make(chan struct{}, 1), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		defer close(f.done)
		Follow(ctx, f.wake, Config{
			IsLeader: f.leader.Load,
			Run: func(ctx context.Context) {
				n := f.running.Add(1)
				for m := f.maxRunning.Load(); n > m && !f.maxRunning.CompareAndSwap(m, n); m = f.maxRunning.Load() {
				}
				f.started.Add(1)
				defer f.running.Add(-1)
				run(f, ctx)
			},
			Stopped: func() { f.stopped.Add(1) },
			Resync:  resync,
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-f.done
	})
	return f
}

func (f *follower) set(leads bool) {
	f.leader.Store(leads)
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Rapid flaps of leadership, with loops that are slow to stop, never run
// two loops at once; the loop follows the final state, and Follow waits
// for the running loop when its context ends.
func TestFlapsNeverRunTwoLoops(t *testing.T) {
	f := startFollower(t, func(f *follower, ctx context.Context) {
		<-ctx.Done()
		// Slow to stop, as a leader loop in the middle of a write is.
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	}, time.Millisecond)
	for i := 0; i < 3000; i++ {
		f.set(rand.IntN(2) == 0)
		if i%100 == 0 {
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		}
	}
	f.set(true)
	testkit.WaitFor(t, 10*time.Second, "a loop to run as leader", func() bool { return f.running.Load() == 1 })
	f.set(false)
	testkit.WaitFor(t, 10*time.Second, "the loop to stop", func() bool { return f.running.Load() == 0 })
	f.set(true)
	testkit.WaitFor(t, 10*time.Second, "a loop to run again", func() bool { return f.running.Load() == 1 })
	f.cancel()
	<-f.done
	if n := f.running.Load(); n != 0 {
		t.Fatalf("%d loops still running after Follow returned", n)
	}
	if m := f.maxRunning.Load(); m != 1 {
		t.Fatalf("%d loops ran at once", m)
	}
	if f.started.Load() < 2 || f.stopped.Load() < 1 {
		t.Fatalf("started %d, stopped %d", f.started.Load(), f.stopped.Load())
	}
	t.Logf("%d loops started, %d stopped", f.started.Load(), f.stopped.Load())
}

// A loop that returns by itself while the node still leads is started
// again at the next wake-up, not in a busy loop.
func TestLoopThatReturnsWaitsForAWakeUp(t *testing.T) {
	f := startFollower(t, func(*follower, context.Context) {}, time.Hour)
	const wakes = 5
	for i := 0; i < wakes; i++ {
		f.set(true)
		testkit.WaitFor(t, 10*time.Second, "the wake-up read", func() bool { return len(f.wake) == 0 })
	}
	testkit.WaitFor(t, 10*time.Second, "a loop", func() bool { return f.started.Load() >= 1 && f.running.Load() == 0 })
	f.cancel()
	<-f.done
	// One loop per wake-up, and the first may start before its wake-up
	// is read: a busy loop would have started thousands.
	if n := f.started.Load(); n > wakes+1 {
		t.Fatalf("%d loops started for %d wake-ups", n, wakes)
	}
}
