package sfu

import (
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
)

// flushBatch bounds the packets of one viewer a shard writes before it
// turns to the next viewer.
const flushBatch = 64

// shard writes the queued packets of a set of viewers from one goroutine,
// so that a packet fanned out to many viewers costs a wake-up per shard,
// not one per viewer. A Server runs one shard per CPU; each viewer is
// written by one shard, in its queue's order.
type shard struct {
	wake chan struct{} // capacity 1: work is queued
	mu   sync.Mutex    // guards changes of list
	list atomic.Pointer[[]*viewer]
}

func newShard() *shard {
	sh := &shard{wake: make(chan struct{}, 1)}
	empty := []*viewer{}
	sh.list.Store(&empty)
	return sh
}

// signal makes the shard look at its viewers' queues. It never blocks.
func (sh *shard) signal() {
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

func (sh *shard) add(v *viewer) {
	sh.mu.Lock()
	l := append(append([]*viewer(nil), *sh.list.Load()...), v)
	sh.list.Store(&l)
	sh.mu.Unlock()
}

func (sh *shard) remove(v *viewer) {
	sh.mu.Lock()
	old := *sh.list.Load()
	l := make([]*viewer, 0, len(old))
	for _, x := range old {
		if x != v {
			l = append(l, x)
		}
	}
	sh.list.Store(&l)
	sh.mu.Unlock()
}

// run writes queued packets until done is closed.
func (sh *shard) run(done <-chan struct{}, st *counters) {
	var pkt rtp.Packet
	for {
		select {
		case <-done:
			return
		case <-sh.wake:
		}
		for {
			n := 0
			for _, v := range *sh.list.Load() {
				n += v.flush(&pkt, st)
			}
			if n == 0 {
				break
			}
		}
	}
}

// flush writes up to flushBatch of the viewer's queued packets and returns
// how many it took from the queue.
func (v *viewer) flush(pkt *rtp.Packet, st *counters) int {
	for i := 0; i < flushBatch; i++ {
		select {
		case q := <-v.q:
			v.qbytes.Add(-int64(q.p.size))
			tr := v.tracks[q.kind]
			if tr == nil {
				continue
			}
			pkt.Header = q.p.hdr
			pkt.Header.SequenceNumber = q.seq
			pkt.Payload = q.p.payload
			if err := tr.WriteRTP(pkt); err != nil {
				continue
			}
			n := uint64(pkt.Header.MarshalSize() + len(pkt.Payload))
			v.out.Add(n)
			st.packetsOut.Add(1)
			st.bytesOut.Add(n)
		default:
			return i
		}
	}
	return flushBatch
}
