package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// minHeapGrowth is how much a node's heap may grow between collections
// at least, up to what Go's default (GOGC=100) would allow: with
// defaultGCPercent alone, a node with few players (a live heap of a few
// MiB) collects every second or two, and each collection wakes every
// processor of an otherwise idle process. A node with a live heap over
// 8 MiB (a few hundred players and up) is left at defaultGCPercent, so
// the memory per player at scale is not changed.
const minHeapGrowth = 4 << 20

// gcPacer sets the collector's target after each collection: percent of
// the live heap, raised so that the heap may grow by minGrowth, up to
// maxGCPercent (gcPercentFor). It runs on the runtime's finalizer
// goroutine after a collection (every other one when they come back to
// back: a sentinel made during marking survives one), with no timer of
// its own.
type gcPacer struct {
	percent   int
	minGrowth uint64
	mu        sync.Mutex // orders a collection's setting with stop's
	stopped   bool
	set       int // the target last set
	sample    []metrics.Sample
}

// startGCPacer starts pacing the collector (see gcPacer) and returns the
// function that stops it, leaving the target at percent.
func startGCPacer(percent int, minGrowth uint64) (stop func()) {
	p := &gcPacer{percent: percent, minGrowth: minGrowth, set: percent,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	debug.SetGCPercent(percent)
	p.arm()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.stopped {
			p.stopped = true
			debug.SetGCPercent(percent)
		}
	}
}

// sentinel is an object that the next collection finds unreachable: its
// finalizer runs once that collection is over.
type sentinel struct{ _ [64]byte } // not a tiny allocation, whose finalizer could wait for its neighbours

func (p *gcPacer) arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) { p.collected() })
}

// collected is called after each collection: it sets the next target
// from the live heap that collection found.
func (p *gcPacer) collected() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	metrics.Read(p.sample)
	if p.sample[0].Value.Kind() == metrics.KindUint64 {
		if want := gcPercentFor(p.sample[0].Value.Uint64(), p.percent, p.minGrowth); want != p.set {
			debug.SetGCPercent(want)
			p.set = want
		}
	}
	p.arm()
}

// gcPercentFor is the collector's target for a live heap of live bytes:
// percent, or more so that the heap may grow by minGrowth, at most
// maxGCPercent. It moves in steps of 10 so that a heap that
// wavers does not change it at every collection.
func gcPercentFor(live uint64, percent int, minGrowth uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	need := int((minGrowth*100 + live - 1) / live)
	if need <= percent {
		return percent
	}
	need = (need + 9) / 10 * 10
	return min(need, maxGCPercent)
}

// maxGCPercent bounds gcPercentFor at Go's default: a small heap gets no
// more room than GOGC=100 would give it. More would also raise the
// runtime's own least heap goal (4 MiB × GOGC/100), which a node with
// few players would grow into.
const maxGCPercent = 100
