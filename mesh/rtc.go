package mesh

import (
	"container/heap"
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
)

// MaxRTCSessions bounds the replicated session table. Putting a new session
// into a full table evicts the oldest one (smallest CreatedUnixMs, then
// smallest Ufrag), the same one on every replica. It is a constant, not a
// Config field, because replicas must agree on it.
const MaxRTCSessions = 100_000

// validateRTCSession checks a session before it is written and when it is
// applied: an invalid one is a malformed command.
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

func (f *fsm) applyPutRTCSession(c *putRTCSessionCmd) applyResult {
	s := c.Session
	if err := validateRTCSession(s); err != nil {
		return failResult(codeBadCommand, err)
	}
	if e, ok := f.rtc[s.Ufrag]; ok {
		e.s = s
		heap.Fix(&f.rtcAge, e.idx)
		return applyResult{}
	}
	for len(f.rtc) >= MaxRTCSessions {
		e := heap.Pop(&f.rtcAge).(*rtcEntry)
		delete(f.rtc, e.s.Ufrag)
	}
	e := &rtcEntry{s: s}
	f.rtc[s.Ufrag] = e
	heap.Push(&f.rtcAge, e)
	return applyResult{}
}

func (f *fsm) deleteRTCLocked(ufrag string) {
	if e, ok := f.rtc[ufrag]; ok {
		heap.Remove(&f.rtcAge, e.idx)
		delete(f.rtc, ufrag)
	}
}

func (f *fsm) applyDeleteRTCSession(c *deleteRTCSessionCmd) applyResult {
	f.deleteRTCLocked(c.Ufrag)
	return applyResult{}
}

func (f *fsm) applyExpireRTCSessions(c *expireRTCSessionsCmd) applyResult {
	for _, u := range c.Ufrags {
		if e, ok := f.rtc[u]; ok && e.s.CreatedUnixMs < c.CutoffMs {
			f.deleteRTCLocked(u)
		}
	}
	return applyResult{}
}

// rtcSession reads one session from the local replica.
func (f *fsm) rtcSession(ufrag string) (stream.RTCSession, bool) {
	f.mu.RLock()
	e, ok := f.rtc[ufrag]
	var s stream.RTCSession
	if ok {
		s = e.s
	}
	f.mu.RUnlock()
	return s, ok
}

// rtcSessionCount is the number of stored sessions.
func (f *fsm) rtcSessionCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.rtc)
}

// staleRTCSessions returns up to max ufrags of sessions created before
// cutoffMs, oldest first.
func (f *fsm) staleRTCSessions(cutoffMs int64, max int) []string {
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

// PutRTCSession stores a WebRTC ICE session in the replicated table,
// replacing any session with the same Ufrag. On a follower the write is
// forwarded to the leader. It is bounded by RouteTimeout (or ctx, if sooner)
// and returns once the session is committed and, normally, applied on this
// node too, so that LookupRTCSession here finds it at once. If this node's
// replica lags beyond the bound, PutRTCSession still returns nil: the session
// is committed, and this replica will have it as soon as it catches up.
func (n *Node) PutRTCSession(ctx context.Context, s stream.RTCSession) error {
	if err := validateRTCSession(s); err != nil {
		return err
	}
	return n.applyAndWait(ctx, cmdPutRTCSession, putRTCSessionCmd{Session: s})
}

// DeleteRTCSession removes a session from the replicated table; deleting an
// absent session is not an error. Bounds and read-your-write as PutRTCSession.
func (n *Node) DeleteRTCSession(ctx context.Context, ufrag string) error {
	if ufrag == "" || len(ufrag) > stream.MaxRTCUfragBytes {
		return nil // such a session cannot exist
	}
	return n.applyAndWait(ctx, cmdDeleteRTCSession, deleteRTCSessionCmd{Ufrag: ufrag})
}

// LookupRTCSession reads a session from this node's replica: a map read under
// a read lock, no network.
func (n *Node) LookupRTCSession(ufrag string) (stream.RTCSession, bool) {
	return n.fsm.rtcSession(ufrag)
}

// applyAndWait writes a command bounded by RouteTimeout and then waits, within
// the same bound, until this node's replica has applied it.
func (n *Node) applyAndWait(ctx context.Context, t cmdType, body any) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RouteTimeout)
	defer cancel()
	res, err := n.apply(ctx, t, body)
	if err != nil {
		return err
	}
	if err := n.fsm.waitApplied(ctx, res.Index); err != nil {
		n.log.Debug("write committed but not yet applied here", "cmd", t.String(), "index", res.Index)
	}
	return nil
}

// collectRTCSessions deletes sessions created more than RTCSessionTTL ago,
// by the leader's clock. The relay deletes the sessions it sees end; this
// catches the ones whose client vanished without a DELETE.
func (n *Node) collectRTCSessions(ctx context.Context) {
	cutoff := time.Now().Add(-n.cfg.RTCSessionTTL).UnixMilli()
	for ctx.Err() == nil {
		ufrags := n.fsm.staleRTCSessions(cutoff, 1000)
		if len(ufrags) == 0 {
			return
		}
		if _, err := n.applyLocal(ctx, cmdExpireRTCSessions, expireRTCSessionsCmd{Ufrags: ufrags, CutoffMs: cutoff}); err != nil {
			n.log.Warn("rtc session gc", "err", err)
			return
		}
		n.log.Debug("collected rtc sessions", "count", len(ufrags))
	}
}
