package mesh

import (
	"context"
	"crypto/rand"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/health"
	"github.com/srs-mesh/srs-mesh/mesh/state"
)

// leaderLoop runs the leader's duties while this node leads: it registers the
// static origins, reconciles Raft voters with gossip, probes origins and
// collects unused assignments and expired WebRTC sessions. ctx is cancelled when leadership is lost.
func (n *Node) leaderLoop(ctx context.Context) {
	defer n.wg.Done()
	n.log.Info("gained leadership")
	defer n.log.Info("leader loop stopped")
	// Apply everything committed by the previous leader before acting on
	// the state.
	for {
		if err := n.raft.Barrier(5 * time.Second).Error(); err == nil {
			break
		} else if ctx.Err() != nil || !n.IsLeader() {
			return
		}
	}
	n.tel.Record(events.Event{Kind: events.Leader, Member: n.cfg.NodeID, Detail: "term " + n.raft.Stats()["term"]})
	if _, ok := n.fsm.TokenKey(); !ok {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err == nil {
			if _, err := n.applyLocal(ctx, state.SetTokenKeyCmd{Key: key}); err != nil {
				n.log.Warn("set the segment-token key", "err", err)
			}
		}
	}
	for _, o := range n.cfg.StaticOrigins {
		o.Static = true
		cur, known := n.fsm.Origin(o.ID)
		if known && cur == o {
			continue
		}
		if _, err := n.applyLocal(ctx, state.RegisterOriginCmd{Origin: o, NowMs: time.Now().UnixMilli()}); err != nil {
			n.log.Warn("register static origin", "origin", o.ID, "err", err)
		} else if !known {
			n.tel.Record(events.Event{Kind: events.OriginAdded, Origin: o.ID, Detail: "static"})
		}
	}
	hc := health.New(health.Config{ProbeTimeout: n.cfg.probeTimeout(), OriginTimeout: n.cfg.OriginTimeout,
		HeartbeatTimeout: n.cfg.HeartbeatTimeout})
	n.probes.Store(hc)
	reap := map[string]time.Time{}
	n.voters.Reconcile(ctx, reap)

	probeT := time.NewTicker(n.cfg.ProbeInterval)
	defer probeT.Stop()
	reconcileT := time.NewTicker(time.Second)
	defer reconcileT.Stop()
	gcEvery := min(max(min(n.cfg.AssignmentTTL, n.cfg.RTCSessionTTL, n.cfg.OriginTTL, n.cfg.PlayOnlyTTL)/10, time.Second), time.Minute)
	gcT := time.NewTicker(gcEvery)
	defer gcT.Stop()
	n.probeRound(ctx, hc)
	for {
		select {
		case <-ctx.Done():
			return
		case <-probeT.C:
			n.probeRound(ctx, hc)
		case <-reconcileT.C:
			n.voters.Reconcile(ctx, reap)
		case <-n.reconcileKick:
			n.voters.Reconcile(ctx, reap)
		case <-gcT.C:
			n.collectOrigins(ctx)
			n.collectGarbage(ctx)
			n.rtc.Collect(ctx)
		}
	}
}

// applyLocal applies a command on this (leader) node.
func (n *Node) applyLocal(ctx context.Context, c state.Command) (state.Result, error) {
	data, err := state.Encode(c)
	if err != nil {
		return state.Result{}, err
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		return state.Result{}, err
	}
	res, _ := f.Response().(state.Result)
	return res, resultErr(res)
}

// removeOnLeave handles a graceful leave request on the leader (see
// voters.Set.RemoveLeaving). It reports whether the member is no longer in
// the configuration.
func (n *Node) removeOnLeave(id string) (bool, error) {
	if !n.IsLeader() {
		return false, ErrNotLeader
	}
	return n.voters.RemoveLeaving(n.ctx, id)
}

// collectGarbage deletes assignments that no node has used for
// AssignmentTTL, by the leader's clock.
// collectOrigins removes registered origins whose heartbeats stopped
// OriginTTL ago, with their assignments. Static origins stay.
func (n *Node) collectOrigins(ctx context.Context) {
	cutoff := time.Now().Add(-n.cfg.OriginTTL).UnixMilli()
	for _, s := range n.fsm.Origins() {
		if s.Origin.Static || s.LastHeartbeatMs == 0 || s.LastHeartbeatMs > cutoff || ctx.Err() != nil {
			continue
		}
		if _, err := n.applyLocal(ctx, state.RemoveOriginCmd{ID: s.Origin.ID, StaleBeforeMs: cutoff}); err != nil {
			n.log.Warn("remove silent origin", "origin", s.Origin.ID, "err", err)
			continue
		}
		n.tel.Record(events.Event{Kind: events.OriginRemoved, Origin: s.Origin.ID, Detail: "heartbeats stopped"})
		n.log.Info("removed an origin whose heartbeats stopped", "origin", s.Origin.ID,
			"last_heartbeat", time.UnixMilli(s.LastHeartbeatMs).UTC().Format(time.RFC3339), "ttl", n.cfg.OriginTTL)
	}
}

func (n *Node) collectGarbage(ctx context.Context) {
	n.deleteStale(ctx, time.Now().Add(-n.cfg.PlayOnlyTTL).UnixMilli(), n.fsm.StalePlayOnlyKeys)
	n.deleteStale(ctx, time.Now().Add(-n.cfg.AssignmentTTL).UnixMilli(), n.fsm.StaleKeys)
}

// deleteStale deletes, in batches, the assignments stale lists as unused
// since cutoff.
func (n *Node) deleteStale(ctx context.Context, cutoff int64, stale func(int64, int) []string) {
	for ctx.Err() == nil {
		keys := stale(cutoff, 1000)
		if len(keys) == 0 {
			return
		}
		if _, err := n.applyLocal(ctx, state.DeleteAssignmentsCmd{Keys: keys, CutoffMs: cutoff}); err != nil {
			n.log.Warn("assignment gc", "err", err)
			return
		}
		n.log.Debug("collected assignments", "count", len(keys))
	}
}

// probeRound runs one health round of the leader and writes the changes.
// Alongside health changes it replicates, every health.ReplicateEvery, when
// healthy origins last answered a probe, so that followers show it too.
func (n *Node) probeRound(ctx context.Context, hc *health.Checker) {
	origins := n.fsm.Origins()
	changes := hc.Round(ctx, origins)
	for _, c := range changes {
		n.log.Info("origin health", "origin", c.ID, "healthy", c.Healthy, "reason", c.Reason)
	}
	flips := changes
	changes = append(changes[:len(changes):len(changes)], hc.Refreshes(origins, changes)...)
	if len(changes) == 0 {
		return
	}
	if _, err := n.applyLocal(ctx, state.SetHealthCmd{Changes: changes, NowMs: time.Now().UnixMilli()}); err != nil {
		n.log.Warn("write origin health", "err", err)
		return
	}
	for _, c := range flips {
		e := events.Event{Kind: events.OriginUp, Origin: c.ID}
		if !c.Healthy {
			e.Kind, e.Detail = events.OriginDown, c.Reason
		}
		n.tel.Record(e)
	}
}
