package state

// The replicated table of WebRTC ICE sessions, keyed by ufrag, bounded by
// MaxRTCSessions with a deterministic eviction order that spares the
// sessions relays carry.

import (
	"container/heap"
	"fmt"
	"sort"

	"github.com/srs-mesh/srs-mesh/stream"
)

// MaxRTCSessions bounds the replicated session table. A PutRTCSessionCmd may
// name a smaller bound (MaxSessions), never a larger one; a snapshot is cut
// to MaxRTCSessions when it is restored.
//
// Putting a new session into a full table evicts the session last seen the
// longest ago (see stream.RTCSession.LastSeenUnixMs; ties broken by the
// smaller Ufrag) among those the command does not protect, the same one on
// every replica; when every session is protected the put fails with
// ErrRTCTableFull. See PutRTCSessionCmd.
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

// rtcEntry is a stored session and its position in its heap: rtcIdle when
// no relay has reported it (LastActiveUnixMs 0), else rtcActive.
type rtcEntry struct {
	s   stream.RTCSession
	idx int
}

// active reports whether a relay has carried the session, which puts it in
// the FSM's rtcActive heap.
func (e *rtcEntry) active() bool { return e.s.LastActiveUnixMs > 0 }

// rtcOlder is the eviction order: last seen first (LastSeenUnixMs), then by
// ufrag, so that the order is total and the victim the same on every
// replica whatever the heaps' layout.
func rtcOlder(a, b *rtcEntry) bool {
	if ka, kb := a.s.LastSeenUnixMs(), b.s.LastSeenUnixMs(); ka != kb {
		return ka < kb
	}
	return a.s.Ufrag < b.s.Ufrag
}

// rtcHeap orders sessions by rtcOlder, the oldest on top.
type rtcHeap []*rtcEntry

func (h rtcHeap) Len() int           { return len(h) }
func (h rtcHeap) Less(i, j int) bool { return rtcOlder(h[i], h[j]) }
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

// rtcTable is the session table: the sessions by ufrag, and two heaps that
// find the eviction victim in O(log n). Sessions no relay has reported
// (idle) are never protected, so the oldest of them is a candidate; among
// the reported ones (active) the oldest is a candidate only when it is not
// protected, and if it is, every other active session is too (see
// rtcProtected). The victim is the older of the two candidates.
type rtcTable struct {
	m      map[string]*rtcEntry
	idle   rtcHeap
	active rtcHeap
}

func newRTCTable() rtcTable { return rtcTable{m: map[string]*rtcEntry{}} }

func (t *rtcTable) heapOf(e *rtcEntry) *rtcHeap {
	if e.active() {
		return &t.active
	}
	return &t.idle
}

// insert adds a session whose ufrag is not in the table.
func (t *rtcTable) insert(s stream.RTCSession) {
	e := &rtcEntry{s: s}
	t.m[s.Ufrag] = e
	heap.Push(t.heapOf(e), e)
}

// update replaces e's session with s, moving e to the heap s belongs in.
func (t *rtcTable) update(e *rtcEntry, s stream.RTCSession) {
	from := t.heapOf(e)
	e.s = s
	if to := t.heapOf(e); to != from {
		heap.Remove(from, e.idx)
		heap.Push(to, e)
		return
	}
	heap.Fix(from, e.idx)
}

func (t *rtcTable) remove(e *rtcEntry) {
	heap.Remove(t.heapOf(e), e.idx)
	delete(t.m, e.s.Ufrag)
}

// rtcProtected reports whether a session that a relay has carried is spared
// by a put that protects sessions seen at or after protectSinceMs (0: none
// is). It is protected when it was last seen (created or carried) at or
// after protectSinceMs; in particular every session carried at or after
// protectSinceMs is. Sessions no relay has carried are never protected:
// they are the offers an attacker can make in bulk.
func rtcProtected(e *rtcEntry, protectSinceMs int64) bool {
	return protectSinceMs > 0 && e.active() && e.s.LastSeenUnixMs() >= protectSinceMs
}

// victim is the session a put protecting sessions seen since protectSinceMs
// evicts, or nil when every session is protected.
func (t *rtcTable) victim(protectSinceMs int64) *rtcEntry {
	var v *rtcEntry
	if len(t.idle) > 0 {
		v = t.idle[0]
	}
	if len(t.active) > 0 {
		if a := t.active[0]; !rtcProtected(a, protectSinceMs) && (v == nil || rtcOlder(a, v)) {
			v = a
		}
	}
	return v
}

// oldest is the session last seen the longest ago, protected or not; nil
// for an empty table.
func (t *rtcTable) oldest() *rtcEntry { return t.victim(0) }

// buildRTCTable indexes restored sessions. Invalid or duplicate entries are
// dropped and the table is cut to MaxRTCSessions (the oldest dropped first).
func buildRTCTable(sessions []stream.RTCSession) rtcTable {
	t := rtcTable{m: make(map[string]*rtcEntry, len(sessions))}
	for _, s := range sessions {
		if validateRTCSession(s) != nil {
			continue
		}
		if _, dup := t.m[s.Ufrag]; dup {
			continue
		}
		e := &rtcEntry{s: s}
		t.m[s.Ufrag] = e
		h := t.heapOf(e)
		e.idx = len(*h)
		*h = append(*h, e)
	}
	heap.Init(&t.idle)
	heap.Init(&t.active)
	for len(t.m) > MaxRTCSessions {
		t.remove(t.oldest())
	}
	return t
}

// rtcCap is the table bound a put applies: c.MaxSessions when it is
// positive and below MaxRTCSessions, else MaxRTCSessions.
func (c *PutRTCSessionCmd) rtcCap() int {
	if c.MaxSessions > 0 && c.MaxSessions < MaxRTCSessions {
		return c.MaxSessions
	}
	return MaxRTCSessions
}

func (f *FSM) applyPutRTCSession(c *PutRTCSessionCmd) Result {
	s := c.Session
	if err := validateRTCSession(s); err != nil {
		return failResult(codeBadCommand, err)
	}
	if e, ok := f.rtc.m[s.Ufrag]; ok {
		// Activity never goes back: a replaced session keeps what relays
		// reported of the ufrag.
		s.LastActiveUnixMs = max(s.LastActiveUnixMs, e.s.LastActiveUnixMs)
		f.rtc.update(e, s)
		return Result{}
	}
	// A table above the bound (a command with a smaller MaxSessions than
	// earlier ones) shrinks as far as unprotected sessions allow; the put
	// fails, changing nothing, only when it cannot evict anything.
	evicted := 0
	for len(f.rtc.m) >= c.rtcCap() {
		v := f.rtc.victim(c.ProtectSinceMs)
		if v == nil {
			if evicted == 0 {
				return failResult(codeRTCTableFull, fmt.Errorf("%w: %d sessions, all active since %d", ErrRTCTableFull, len(f.rtc.m), c.ProtectSinceMs))
			}
			break
		}
		f.rtc.remove(v)
		evicted++
	}
	f.rtc.insert(s)
	return Result{}
}

func (f *FSM) deleteRTCLocked(ufrag string) {
	if e, ok := f.rtc.m[ufrag]; ok {
		f.rtc.remove(e)
	}
}

func (f *FSM) applyDeleteRTCSession(c *DeleteRTCSessionCmd) Result {
	f.deleteRTCLocked(c.Ufrag)
	return Result{}
}

func (f *FSM) applyTouchRTCSessions(c *TouchRTCSessionsCmd) Result {
	if c.NowMs <= 0 {
		return failResult(codeBadCommand, fmt.Errorf("%w: touch of rtc sessions at %d", ErrBadCommand, c.NowMs))
	}
	for _, u := range c.Ufrags {
		if e, ok := f.rtc.m[u]; ok && c.NowMs > e.s.LastActiveUnixMs {
			s := e.s
			s.LastActiveUnixMs = c.NowMs
			f.rtc.update(e, s)
		}
	}
	return Result{}
}

func (f *FSM) applyExpireRTCSessions(c *ExpireRTCSessionsCmd) Result {
	for _, u := range c.Ufrags {
		if e, ok := f.rtc.m[u]; ok && e.s.LastSeenUnixMs() < c.CutoffMs {
			f.rtc.remove(e)
		}
	}
	return Result{}
}

// RTCSession reads one session from this replica: a map read under the read
// lock.
func (f *FSM) RTCSession(ufrag string) (stream.RTCSession, bool) {
	f.mu.RLock()
	e, ok := f.rtc.m[ufrag]
	ok = ok && f.halt == nil // a halted replica routes nothing
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
	return len(f.rtc.m)
}

// StaleRTCSessions returns up to max ufrags of sessions last seen (created
// or carried by a relay, see stream.RTCSession.LastSeenUnixMs) before
// cutoffMs (unix ms), oldest first: the sessions an ExpireRTCSessionsCmd with
// that cutoff would delete.
func (f *FSM) StaleRTCSessions(cutoffMs int64, max int) []string {
	f.mu.RLock()
	var old []*rtcEntry
	for _, e := range f.rtc.m {
		if e.s.LastSeenUnixMs() < cutoffMs {
			old = append(old, e)
		}
	}
	sort.Slice(old, func(i, j int) bool { return rtcOlder(old[i], old[j]) })
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
