package mesh

import (
	"context"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/health"
)

// leaderLoop runs the leader's duties while this node leads: it registers the
// static origins, reconciles Raft voters with gossip (package voters),
// probes origins and collects silent origins and unused assignments
// (package upkeep) and expired WebRTC sessions (package rtcsessions), and
// records the mesh's protocol once every member speaks it (protocol.go).
// ctx is cancelled when leadership is lost; leadershipLoop owns it and
// never runs two at once.
func (n *Node) leaderLoop(ctx context.Context) {
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
	n.upkeep.EnsureTokenKey(ctx)
	n.upkeep.RegisterStatic(ctx, n.cfg.StaticOrigins)
	hc := health.New(health.Config{ProbeTimeout: n.cfg.probeTimeout(), OriginTimeout: n.cfg.OriginTimeout,
		HeartbeatTimeout: n.cfg.HeartbeatTimeout})
	reap := map[string]time.Time{}
	n.voters.Reconcile(ctx, reap)

	probeT := time.NewTicker(n.cfg.ProbeInterval)
	defer probeT.Stop()
	reconcileT := time.NewTicker(time.Second)
	defer reconcileT.Stop()
	gcEvery := min(max(min(n.cfg.AssignmentTTL, n.cfg.RTCSessionTTL, n.cfg.OriginTTL, n.cfg.PlayOnlyTTL)/10, time.Second), time.Minute)
	gcT := time.NewTicker(gcEvery)
	defer gcT.Stop()
	n.upkeep.Probe(ctx, hc)
	for {
		select {
		case <-ctx.Done():
			return
		case <-probeT.C:
			n.upkeep.Probe(ctx, hc)
		case <-reconcileT.C:
			n.voters.Reconcile(ctx, reap)
			n.upkeep.Sources(ctx)
			n.recordProtocol(ctx)
		case <-n.reconcileKick:
			n.voters.Reconcile(ctx, reap)
		case <-gcT.C:
			n.upkeep.CollectOrigins(ctx)
			n.upkeep.CollectAssignments(ctx)
			n.rtc.Collect(ctx)
		}
	}
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
