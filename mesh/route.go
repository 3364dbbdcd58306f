package mesh

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Route returns the origin that owns key. An existing assignment whose origin
// is healthy (draining origins keep their streams) is answered from the local
// replica without any network round trip. Otherwise an Assign command is
// written through the leader, bounded by Config.RouteTimeout; the choice is
// made inside the replicated apply, so concurrent first uses of a key on any
// nodes get the same origin.
//
// Without a reachable leader within the bound, Route degrades: it picks by
// rendezvous hash (stream.SelectByHash) among the origins this node believes
// healthy, so nodes with the same view agree, and nothing is written; the
// first Route after quorum returns creates the real assignment. The error
// wraps stream.ErrNoOrigin when no origin can take the stream, and is ctx's
// error when the caller gives up first.
func (n *Node) Route(ctx context.Context, key stream.Key) (stream.Origin, error) {
	return n.route(ctx, key, false)
}

// RoutePlay is Route for a player. When key has an assignment it is the
// same local read. When it has none (nobody publishes the stream through the
// mesh yet, or the player is anonymous noise) the write is bounded: at most
// Config.PlayOnlyRate play-only assignments per second from this node, and
// at most Config.MaxPlayOnly in the mesh, each gone Config.PlayOnlyTTL after
// its last use. Past either bound the player is routed without a write, to
// the origin the mesh would choose now (stream.Select over this replica),
// where a publisher arriving next lands as well.
func (n *Node) RoutePlay(ctx context.Context, key stream.Key) (stream.Origin, error) {
	return n.route(ctx, key, true)
}

// route is Route (play false) and RoutePlay (play true).
func (n *Node) route(ctx context.Context, key stream.Key, play bool) (stream.Origin, error) {
	if err := key.Validate(); err != nil {
		return stream.Origin{}, err
	}
	ks := key.String()
	n.act.Used(ks)
	if o, ok := n.fsm.Route(ks); ok {
		return o, nil
	}
	cmd := state.AssignCmd{Key: ks, NowMs: time.Now().UnixMilli()}
	if play {
		if !n.playLimit.Allow() {
			return n.routeUnwritten(key, ks)
		}
		cmd.PlayOnly, cmd.MaxPlayOnly = true, n.cfg.MaxPlayOnly
	}
	actx, cancel := context.WithTimeout(ctx, n.cfg.RouteTimeout)
	defer cancel()
	// An assignment whose origin is unhealthy is repaired by this assign:
	// the stream moves.
	prev := n.fsm.AssignedOrigin(ks)
	res, err := n.apply(actx, cmd)
	switch {
	case err == nil && res.Origin != nil:
		if res.Created {
			n.tel.CountAssignment()
			if prev != "" && prev != res.Origin.ID {
				n.tel.Record(events.Moved(ks, prev, res.Origin.ID, "origin "+prev+" unhealthy"))
			}
		}
		return *res.Origin, nil
	case err == nil:
		return stream.Origin{}, fmt.Errorf("%w: empty assign result for %s", stream.ErrNoOrigin, ks)
	case ctx.Err() != nil:
		return stream.Origin{}, ctx.Err()
	case errors.Is(err, state.ErrPlayOnlyFull):
		return n.routeUnwritten(key, ks)
	case errors.Is(err, ErrNoLeader):
		return n.routeDegraded(key, ks)
	}
	return stream.Origin{}, err
}

// Reroute moves key off origin failed, which this node saw fail while it
// carried the stream (the origin leg of a publisher broke), and returns the
// origin the stream has now. It does not wait for the leader's probes: it
// writes a state.MoveCmd through the leader, bounded by ctx and RouteTimeout;
// the new origin is chosen inside the replicated apply, as for Route, among
// the healthy origins other than failed. When the assignment is already on
// another healthy origin (another node moved it first) that origin is
// returned without a write.
//
// Only the node's own observation may call it, never a client's word: a
// stream moves at most once per Config.MoveInterval this way (when it moved
// more recently, Reroute answers as Route does: the assignment's origin if
// it is healthy, or a repair if it is not). The error wraps
// stream.ErrNoOrigin when no other origin can take the stream.
func (n *Node) Reroute(ctx context.Context, key stream.Key, failed stream.Origin) (stream.Origin, error) {
	if err := key.Validate(); err != nil {
		return stream.Origin{}, err
	}
	ks := key.String()
	n.act.Used(ks)
	if o, ok := n.fsm.Route(ks); ok && o.ID != failed.ID {
		return o, nil
	}
	if failed.ID == "" {
		return n.route(ctx, key, false)
	}
	// Writes only when a move can happen: the stream is on the failed
	// origin, did not move within MoveInterval (a refused move is a log
	// entry too) and this node's moves are within their rate. Otherwise it
	// routes as usual: the leader's probes repair an assignment on an
	// unhealthy origin.
	_, _, movedMs := n.fsm.Moved(ks)
	recent := movedMs > 0 && time.Since(time.UnixMilli(movedMs)) < n.cfg.MoveInterval
	if _, ok := n.fsm.Route(ks); (ok && recent) || !n.moveLimit.Allow() {
		return n.route(ctx, key, false)
	}
	actx, cancel := context.WithTimeout(ctx, n.cfg.RouteTimeout)
	defer cancel()
	res, err := n.apply(actx, state.MoveCmd{Key: ks, From: failed.ID, NowMs: time.Now().UnixMilli(),
		MinIntervalMs: n.cfg.MoveInterval.Milliseconds()})
	switch {
	case err == nil && res.Origin != nil:
		if res.Created {
			n.log.Info("stream moved off a failed origin", "stream", ks, "from", failed.ID, "to", res.Origin.ID)
			n.tel.Record(events.Moved(ks, failed.ID, res.Origin.ID, "its origin leg failed"))
		}
		return *res.Origin, nil
	case err == nil:
		return stream.Origin{}, fmt.Errorf("%w: empty move result for %s", stream.ErrNoOrigin, ks)
	case ctx.Err() != nil:
		return stream.Origin{}, ctx.Err()
	case errors.Is(err, state.ErrMoveTooSoon), errors.Is(err, stream.ErrNoOrigin) && !errors.Is(err, stream.ErrOriginsFull):
		// Too soon, no other healthy origin, or nothing assigned (a new
		// stream): route as usual.
		return n.route(ctx, key, false)
	}
	return stream.Origin{}, err
}

// Epoch returns the epoch of key's assignment in this replica
// (state.Assignment.Epoch): how many times the stream changed origin. It is
// 0 for a key without an assignment. Every node answers the same once it has
// applied the same log.
func (n *Node) Epoch(key stream.Key) uint64 { return n.fsm.Epoch(key.String()) }

// OriginHealthy reports whether this replica holds origin id known and
// healthy (the leader's probes decide; a map read).
func (n *Node) OriginHealthy(id string) bool { return n.fsm.Healthy(id) }

// StreamEpoch returns key's epoch (see Epoch), the base of its HLS media
// sequence numbers (state.Assignment.SeqBase) and when the stream last
// moved (the zero time when it never did), from this replica.
func (n *Node) StreamEpoch(key stream.Key) (epoch, seqBase uint64, moved time.Time) {
	e, base, ms := n.fsm.Moved(key.String())
	if ms == 0 {
		return e, base, time.Time{}
	}
	return e, base, time.UnixMilli(ms)
}

// routeUnwritten picks the origin the mesh would assign key to now, from
// this replica, and writes nothing.
func (n *Node) routeUnwritten(key stream.Key, ks string) (stream.Origin, error) {
	n.unwritten.Add(1)
	id, err := stream.Select(key, n.fsm.Candidates())
	if err != nil {
		return stream.Origin{}, fmt.Errorf("%w for %s", err, ks)
	}
	o, ok := n.fsm.Origin(id)
	if !ok {
		return stream.Origin{}, fmt.Errorf("%w: %s", stream.ErrNoOrigin, ks)
	}
	return o, nil
}

func (n *Node) routeDegraded(key stream.Key, ks string) (stream.Origin, error) {
	id, err := stream.SelectByHash(key, n.fsm.Candidates())
	if err != nil {
		return stream.Origin{}, fmt.Errorf("%w: no leader, and no origin known healthy for %s", stream.ErrNoOrigin, ks)
	}
	o, ok := n.fsm.Origin(id)
	if !ok {
		return stream.Origin{}, fmt.Errorf("%w: %s", stream.ErrNoOrigin, ks)
	}
	n.degraded.Add(1)
	n.degradedMu.Lock()
	_, logged := n.degradedKeys[ks]
	if !logged {
		if len(n.degradedKeys) >= 10000 {
			clear(n.degradedKeys)
		}
		n.degradedKeys[ks] = struct{}{}
	}
	n.degradedMu.Unlock()
	if !logged {
		n.log.Warn("no leader: routing by hash without an assignment", "stream", ks, "origin", id)
	}
	return o, nil
}

// Bounds of a node's moves (Reroute): a mass failure of origins moves at
// most this many streams a second from one node, after a burst; the
// others wait for the leader's probes, which move them in one pass.
const (
	moveRate  = 50
	moveBurst = 200
)
