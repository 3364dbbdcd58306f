package state

// The replicated table of WebRTC ICE sessions, keyed by ufrag, bounded by
// MaxRTCSessions with a deterministic eviction order.

import (
	"container/heap"
	"fmt"
	"sort"

	"github.com/srs-mesh/srs-mesh/stream"
)

// MaxRTCSessions bounds the replicated session table. Putting a new session
// into a full table evicts the oldest one (smallest CreatedUnixMs, then
// smallest Ufrag), the same one on every replica. It is a constant, not a
// setting, because replicas must agree on it.
const MaxRTCSessions = 100_000

// validateRTCSession checks a session before it is written, when it is
// applied and when it is restored: an invalid one (see
// stream.RTCSession.Validate) is a malformed command.
func validateRTCSession(s stream.RTCSession) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadCommand, err)
	}
	return nil
}

// rtcEntry is a stored session and its position in the age heap.
type rtcEntry struct {
	s   stream.RTCSession
	idx int
}

// rtcHeap orders sessions oldest first; ties are broken by ufrag, so the
// order is total and the eviction victim is the same on every replica
// whatever the heap's layout.
type rtcHeap []*rtcEntry

func (h rtcHeap) Len() int { return len(h) }
func (h rtcHeap) Less(i, j int) bool {
	if h[i].s.CreatedUnixMs != h[j].s.CreatedUnixMs {
		return h[i].s.CreatedUnixMs < h[j].s.CreatedUnixMs
	}
	return h[i].s.Ufrag < h[j].s.Ufrag
}
func (h rtcHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *rtcHeap) Push(x any) {
	e := x.(*rtcEntry)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *rtcHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.idx = -1
	return e
}

// buildRTCTable indexes restored sessions. Invalid or duplicate entries are
// dropped and the table is cut to MaxRTCSessions (oldest dropped first).
func buildRTCTable(sessions []stream.RTCSession) (map[string]*rtcEntry, rtcHeap) {
	m := make(map[string]*rtcEntry, len(sessions))
	h := make(rtcHeap, 0, len(sessions))
	for _, s := range sessions {
		if validateRTCSession(s) != nil {
			continue
		}
		if _, dup := m[s.Ufrag]; dup {
			continue
		}
		e := &rtcEntry{s: s, idx: len(h)}
		m[s.Ufrag] = e
		h = append(h, e)
	}
	heap.Init(&h)
	for h.Len() > MaxRTCSessions {
		e := heap.Pop(&h).(*rtcEntry)
		delete(m, e.s.Ufrag)
	}
	return m, h
}

func (f *FSM) applyPutRTCSession(c *PutRTCSessionCmd) Result {
	s := c.Session
	if err := validateRTCSession(s); err != nil {
		return failResult(codeBadCommand, err)
	}
	if e, ok := f.rtc[s.Ufrag]; ok {
		e.s = s
		heap.Fix(&f.rtcAge, e.idx)
		return Result{}
	}
	for len(f.rtc) >= MaxRTCSessions {
		e := heap.Pop(&f.rtcAge).(*rtcEntry)
		delete(f.rtc, e.s.Ufrag)
	}
	e := &rtcEntry{s: s}
	f.rtc[s.Ufrag] = e
	heap.Push(&f.rtcAge, e)
	return Result{}
}

func (f *FSM) deleteRTCLocked(ufrag string) {
	if e, ok := f.rtc[ufrag]; ok {
		heap.Remove(&f.rtcAge, e.idx)
		delete(f.rtc, ufrag)
	}
}

func (f *FSM) applyDeleteRTCSession(c *DeleteRTCSessionCmd) Result {
	f.deleteRTCLocked(c.Ufrag)
	return Result{}
}

func (f *FSM) applyExpireRTCSessions(c *ExpireRTCSessionsCmd) Result {
	for _, u := range c.Ufrags {
		if e, ok := f.rtc[u]; ok && e.s.CreatedUnixMs < c.CutoffMs {
			f.deleteRTCLocked(u)
		}
	}
	return Result{}
}

// RTCSession reads one session from this replica: a map read under the read
// lock.
func (f *FSM) RTCSession(ufrag string) (stream.RTCSession, bool) {
	f.mu.RLock()
	e, ok := f.rtc[ufrag]
	var s stream.RTCSession
	if ok {
		s = e.s
	}
	f.mu.RUnlock()
	return s, ok
}

// RTCSessionCount is the number of stored sessions.
func (f *FSM) RTCSessionCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.rtc)
}

// StaleRTCSessions returns up to max ufrags of sessions created before
// cutoffMs (unix ms), oldest first: the sessions an ExpireRTCSessionsCmd with
// that cutoff would delete.
func (f *FSM) StaleRTCSessions(cutoffMs int64, max int) []string {
	f.mu.RLock()
	var old []*rtcEntry
	for _, e := range f.rtc {
		if e.s.CreatedUnixMs < cutoffMs {
			old = append(old, e)
		}
	}
	sort.Slice(old, func(i, j int) bool { return rtcHeap(old).Less(i, j) })
	if len(old) > max {
		old = old[:max]
	}
	out := make([]string, len(old))
	for i, e := range old {
		out[i] = e.s.Ufrag
	}
	f.mu.RUnlock()
	return out
}
