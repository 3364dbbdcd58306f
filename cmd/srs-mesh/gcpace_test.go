package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 100},
		{100 << 10, 100}, // a nearly empty heap: Go's default at most
		{1 * mib, 100},   // 4 MiB of room would be 400%
		{5 * mib, 80},    // 80%
		{6 * mib, 70},    // 66.7%, rounded up to a step of 10
		{8 * mib, 50},    // half of live is the 4 MiB
		{100 * mib, 50},  // a large heap keeps the percent
		{8*mib - 1, 60},  // just under: 50.00001% rounds up
	} {
		if got := gcPercentFor(tc.live, 50, 4*mib); got != tc.want {
			t.Errorf("gcPercentFor(%d) = %d, want %d", tc.live, got, tc.want)
		}
	}
}

// The pacer sets the target after a collection and leaves percent once
// stopped.
func TestGCPacer(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	stop := startGCPacer(50, 1<<30) // any heap here is far below 1 GiB of room
	testkit.WaitFor(t, 10*time.Second, "the pacer raises the target after a collection", func() bool {
		runtime.GC()
		return gcPercent() == maxGCPercent
	})
	stop()
	if cur := gcPercent(); cur != 50 {
		t.Errorf("after stop the target is %d, want 50", cur)
	}
}

// gcPercent reads the collector's target without setting it.
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
