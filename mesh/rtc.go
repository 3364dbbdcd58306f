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
// replacing any session with the same Ufrag. On a follower the write is
// forwarded to the leader. It is bounded by RouteTimeout (or ctx, if sooner)
// and returns once the session is committed and, normally, applied on this
// node too, so that LookupRTCSession here finds it at once. If this node's
// replica lags beyond the bound, PutRTCSession still returns nil: the session
// is committed, and this replica will have it as soon as it catches up.
func (n *Node) PutRTCSession(ctx context.Context, s stream.RTCSession) error {
	c := state.PutRTCSessionCmd{Session: s}
	if err := c.Validate(); err != nil {
		return err
	}
	return n.applyAndWait(ctx, c)
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

// collectRTCSessions deletes sessions created more than RTCSessionTTL ago,
// by the leader's clock. The relay deletes the sessions it sees end; this
// catches the ones whose client vanished without a DELETE.
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
