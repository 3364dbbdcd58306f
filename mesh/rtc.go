package mesh

// The Node's side of the replicated WebRTC ICE session table (the table
// itself is state.FSM's): writes through the leader that read their own
// write, local lookups, and the leader's garbage collection.

import (
	"context"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// PutRTCSession stores a WebRTC ICE session in the replicated table,
// replacing any session with the same Ufrag. s.LastActiveUnixMs is ignored:
// only relays' reports (TouchRTCSessions) set it. On a follower the write is
// forwarded to the leader. It is bounded by RouteTimeout (or ctx, if sooner)
// and returns once the session is committed and, normally, applied on this
// node too, so that LookupRTCSession here finds it at once. If this node's
// replica lags beyond the bound, PutRTCSession still returns nil: the session
// is committed, and this replica will have it as soon as it catches up.
//
// A full table (Config.MaxRTCSessions) evicts the session seen the longest
// ago among those no relay carried within Config.RTCActiveWindow (by this
// node's clock); when there is none, PutRTCSession fails with
// ErrRTCTableFull and the sessions in the table stay.
func (n *Node) PutRTCSession(ctx context.Context, s stream.RTCSession) error {
	s.LastActiveUnixMs = 0
	c := state.PutRTCSessionCmd{Session: s, MaxSessions: n.cfg.MaxRTCSessions,
		ProtectSinceMs: time.Now().Add(-n.cfg.RTCActiveWindow).UnixMilli()}
	if err := c.Validate(); err != nil {
		return err
	}
	return n.applyAndWait(ctx, c)
}

// maxPendingRTCTouches bounds the ufrags TouchRTCSessions records between
// two flushes; more are dropped until the next flush.
const maxPendingRTCTouches = 1 << 16

// maxRTCTouchBatch bounds the ufrags of one TouchRTCSessionsCmd, so that a
// command of the longest ufrags stays well within state.MaxCommandBytes.
const maxRTCTouchBatch = 1000

// TouchRTCSessions records that this node's relay carried packets of the
// sessions named by ufrags. The node reports them to the replicated table
// every Config.RTCTouchInterval, which protects them from eviction for
// Config.RTCActiveWindow and from expiry for Config.RTCSessionTTL; a session
// no relay has reported yet is reported at once, so that a new session is
// unprotected for as short a time as possible. It never blocks on the
// network; the relay calls it periodically for the sessions active since its
// previous call. Ufrags that cannot name a session are ignored, and at most
// 65,536 are held between two reports.
func (n *Node) TouchRTCSessions(ufrags []string) {
	first := false
	n.rtcActiveMu.Lock()
	for _, u := range ufrags {
		if u == "" || len(u) > stream.MaxRTCUfragBytes || len(n.rtcActive) >= maxPendingRTCTouches {
			continue
		}
		if _, pending := n.rtcActive[u]; pending {
			continue
		}
		n.rtcActive[u] = struct{}{}
		if s, ok := n.fsm.RTCSession(u); ok && s.LastActiveUnixMs == 0 {
			first = true
		}
	}
	n.rtcActiveMu.Unlock()
	if first {
		select {
		case n.rtcKick <- struct{}{}:
		default:
		}
	}
}

// flushRTCActivity writes the recorded sessions that this replica holds as
// TouchRTCSessionsCmd batches stamped now. A batch that fails is dropped:
// the relay reports a session again for as long as it carries it.
func (n *Node) flushRTCActivity() {
	n.rtcActiveMu.Lock()
	pending := n.rtcActive
	if len(pending) == 0 {
		n.rtcActiveMu.Unlock()
		return
	}
	n.rtcActive = map[string]struct{}{}
	n.rtcActiveMu.Unlock()
	ufrags := make([]string, 0, len(pending))
	for u := range pending {
		if _, ok := n.fsm.RTCSession(u); ok {
			ufrags = append(ufrags, u)
		}
	}
	now := time.Now().UnixMilli()
	for len(ufrags) > 0 {
		batch := ufrags[:min(len(ufrags), maxRTCTouchBatch)]
		ufrags = ufrags[len(batch):]
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RouteTimeout)
		_, err := n.apply(ctx, state.TouchRTCSessionsCmd{Ufrags: batch, NowMs: now})
		cancel()
		if err != nil {
			n.log.Debug("report rtc session activity", "sessions", len(batch), "err", err)
		}
	}
}

// DeleteRTCSession removes a session from the replicated table; deleting an
// absent session is not an error. Bounds and read-your-write as PutRTCSession.
func (n *Node) DeleteRTCSession(ctx context.Context, ufrag string) error {
	if ufrag == "" || len(ufrag) > stream.MaxRTCUfragBytes {
		return nil // such a session cannot exist
	}
	return n.applyAndWait(ctx, state.DeleteRTCSessionCmd{Ufrag: ufrag})
}

// LookupRTCSession reads a session from this node's replica: a map read under
// a read lock, no network.
func (n *Node) LookupRTCSession(ufrag string) (stream.RTCSession, bool) {
	return n.fsm.RTCSession(ufrag)
}

// applyAndWait writes a command bounded by RouteTimeout and then waits, within
// the same bound, until this node's replica has applied it.
func (n *Node) applyAndWait(ctx context.Context, c state.Command) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RouteTimeout)
	defer cancel()
	res, err := n.apply(ctx, c)
	if err != nil {
		return err
	}
	if err := n.fsm.WaitApplied(ctx, res.Index); err != nil {
		n.log.Debug("write committed but not yet applied here", "cmd", c.Type().String(), "index", res.Index)
	}
	return nil
}

// collectRTCSessions deletes sessions last seen (created, or carried by a
// relay of the mesh) more than RTCSessionTTL ago, by the leader's clock. A
// DELETE ends a session at once; this catches the ones whose client vanished
// without one. A session a relay still carries is reported every
// RTCTouchInterval and never collected.
func (n *Node) collectRTCSessions(ctx context.Context) {
	cutoff := time.Now().Add(-n.cfg.RTCSessionTTL).UnixMilli()
	for ctx.Err() == nil {
		ufrags := n.fsm.StaleRTCSessions(cutoff, 1000)
		if len(ufrags) == 0 {
			return
		}
		if _, err := n.applyLocal(ctx, state.ExpireRTCSessionsCmd{Ufrags: ufrags, CutoffMs: cutoff}); err != nil {
			n.log.Warn("rtc session gc", "err", err)
			return
		}
		n.log.Debug("collected rtc sessions", "count", len(ufrags))
	}
}
