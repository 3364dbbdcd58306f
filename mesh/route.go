package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
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
		return o, nil // a halted replica never answers here
	}
	if err := n.haltedErr(); err != nil {
		return stream.Origin{}, err
	}
	cmd := state.AssignCmd{Key: ks, NowMs: time.Now().UnixMilli(), MaxAssignments: n.cfg.MaxAssignments}
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
		n.assignedNow(ks, prev, res)
		return *res.Origin, nil
	case err == nil:
		return stream.Origin{}, fmt.Errorf("%w: empty assign result for %s", stream.ErrNoOrigin, ks)
	case ctx.Err() != nil:
		return stream.Origin{}, ctx.Err()
	case errors.Is(err, state.ErrPlayOnlyFull), errors.Is(err, state.ErrAssignmentsFull):
		return n.routeUnwritten(key, ks)
	case errors.Is(err, ErrNoLeader):
		return n.routeDegraded(key, ks)
	}
	return stream.Origin{}, err
}

// haltedErr is the error of every route on a halted replica: it never
// routes from a state that may differ from its peers'.
func (n *Node) haltedErr() error {
	if h, ok := n.fsm.Halted(); ok {
		return fmt.Errorf("%w: %s", ErrStateHalted, h.Reason)
	}
	return nil
}

// assignedNow records an assignment that an AssignCmd of this node wrote
// (res.Created): the count, and the move of a repaired one off prev.
func (n *Node) assignedNow(ks, prev string, res state.Result) {
	if !res.Created {
		return
	}
	n.tel.CountAssignment()
	if prev != "" && prev != res.Origin.ID {
		n.tel.Record(events.Moved(ks, prev, res.Origin.ID, "origin "+prev+" unhealthy"))
	}
}

// RoutePublish returns the origin a publisher of key publishes to, and
// writes nothing: the origin of key's assignment when it has one on a
// healthy origin (a local read), else the origin the mesh would assign key
// to now (stream.Select over this replica; without a leader, the degraded
// choice of Route). The caller asks that origin and
// calls PublishAccepted once it accepted the publish: a publish the origin
// refuses (its on_publish hook, a wrong token) leaves no replicated state.
func (n *Node) RoutePublish(ctx context.Context, key stream.Key) (stream.Origin, error) {
	if err := n.haltedErr(); err != nil {
		return stream.Origin{}, err
	}
	if err := key.Validate(); err != nil {
		return stream.Origin{}, err
	}
	ks := key.String()
	if o, ok := n.fsm.Route(ks); ok {
		return o, nil
	}
	if _, id := n.raft.LeaderWithID(); id == "" {
		// No quorum: the degraded choice every node makes alike.
		return n.routeDegraded(key, ks)
	}
	return n.selectNow(key, ks)
}

// PublishAccepted records that origin, which RoutePublish returned for
// key, accepted a publish of key, and returns the origin the stream is
// assigned to. With no assignment yet (or one on an unhealthy origin) it
// writes one, on origin when the mesh may place the stream there
// (state.AssignCmd.Prefer). The result is another origin only when the
// stream got an assignment elsewhere meanwhile (a client of another node
// was first): the caller then moves its publisher there.
//
// The writes are bounded like those of players: at most Config.PublishRate
// new assignments per second from this node, and Config.MaxAssignments in
// the mesh. Past either bound, or without a leader within RouteTimeout,
// nothing is written and origin is returned: the stream runs without an
// assignment until its next use writes one.
func (n *Node) PublishAccepted(ctx context.Context, key stream.Key, origin stream.Origin) (stream.Origin, error) {
	if err := n.haltedErr(); err != nil {
		return stream.Origin{}, err
	}
	if err := key.Validate(); err != nil {
		return stream.Origin{}, err
	}
	ks := key.String()
	n.act.Used(ks)
	if o, ok := n.fsm.Route(ks); ok {
		return o, nil
	}
	if !n.publishLimit.Allow() {
		n.unwritten.Add(1)
		return origin, nil
	}
	actx, cancel := context.WithTimeout(ctx, n.cfg.RouteTimeout)
	defer cancel()
	prev := n.fsm.AssignedOrigin(ks)
	res, err := n.apply(actx, state.AssignCmd{Key: ks, NowMs: time.Now().UnixMilli(), Prefer: origin.ID,
		MaxAssignments: n.cfg.MaxAssignments})
	switch {
	case err == nil && res.Origin != nil:
		n.assignedNow(ks, prev, res)
		return *res.Origin, nil
	case ctx.Err() != nil:
		return stream.Origin{}, ctx.Err()
	case errors.Is(err, ErrNoLeader):
		// Counted as degraded when RoutePublish found no leader; one
		// lost meanwhile leaves the stream for its next use.
	default:
		n.unwritten.Add(1)
	}
	if err != nil {
		n.log.Debug("publish accepted; stream left without an assignment", "stream", ks, "origin", origin.ID, "err", err)
	}
	return origin, nil
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
//
// On a halted replica (Halted) Route, RoutePlay, RoutePublish,
// PublishAccepted and Reroute fail with ErrStateHalted.
func (n *Node) Reroute(ctx context.Context, key stream.Key, failed stream.Origin) (stream.Origin, error) {
	if err := n.haltedErr(); err != nil {
		return stream.Origin{}, err
	}
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
	// Only the failure of an origin moves a stream: an origin the leader
	// holds healthy and that accepts a connection now stays, whatever
	// broke the caller's leg (a client can make an origin drop its own
	// session). The stream routes as usual.
	if !n.originFailing(ctx, failed.ID) {
		n.log.Info("origin still answers; stream not moved", "stream", ks, "origin", failed.ID)
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
			e := events.Moved(ks, failed.ID, res.Origin.ID, "its origin leg failed")
			if e.MoveKind = n.fsm.MoveKind(ks); e.MoveKind == state.MovePromoted {
				e.Kind, e.Detail = events.ReplicaPromoted, "from "+failed.ID+": a warm replica took over"
			}
			n.tel.Record(e)
		}
		return *res.Origin, nil
	case err == nil:
		return stream.Origin{}, fmt.Errorf("%w: empty move result for %s", stream.ErrNoOrigin, ks)
	case ctx.Err() != nil:
		return stream.Origin{}, ctx.Err()
	case errors.Is(err, state.ErrMoveTooSoon), errors.Is(err, ErrOriginAnswers),
		errors.Is(err, stream.ErrNoOrigin) && !errors.Is(err, stream.ErrOriginsFull):
		// Too soon, the leader found the origin alive, no other healthy
		// origin, or nothing assigned (a new stream): route as usual.
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
	return n.selectNow(key, ks)
}

// selectNow is the origin the mesh would assign key to now, from this
// replica.
func (n *Node) selectNow(key stream.Key, ks string) (stream.Origin, error) {
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

// originFailing reports whether origin id may be moved off: it is unknown,
// the leader's probes hold it unhealthy, or it does not accept a TCP
// connection on its probe endpoint (the leader's probe, from this node, at
// the address the replica holds) within the probe timeout. An origin
// without a TCP endpoint is judged by its health alone.
func (n *Node) originFailing(ctx context.Context, id string) bool {
	o, ok := n.fsm.Origin(id)
	if !ok || !n.fsm.Healthy(id) {
		return true
	}
	ep := state.ProbeEndpoint(o)
	if ep == "" {
		return false
	}
	d := net.Dialer{Timeout: n.cfg.probeTimeout()}
	nc, err := d.DialContext(ctx, "tcp", ep)
	if err != nil {
		return ctx.Err() == nil
	}
	nc.Close()
	return false
}

// Bounds of a node's moves (Reroute): a mass failure of origins moves at
// most this many streams a second from one node, after a burst; the
// others wait for the leader's probes, which move them in one pass.
const (
	moveRate  = 50
	moveBurst = 200
)
