package mesh

import (
	"context"
	"errors"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Sources returns the origins that should hold a live copy of key now, as
// this replica sees them (a local read, no network): the primary (the
// assignment's origin, which players follow) and the others, healthy ones
// only: its warm replicas and the target of a planned move. ok is false
// when key has no assignment or its primary is unknown. The node that
// holds a publisher of key feeds every one of them.
func (n *Node) Sources(key stream.Key) (primary stream.Origin, others []stream.Origin, ok bool) {
	p, reps, target, ok := n.fsm.Sources(key.String())
	if !ok {
		return stream.Origin{}, nil, false
	}
	if primary, ok = n.fsm.Origin(p); !ok {
		return stream.Origin{}, nil, false
	}
	if target != "" {
		reps = append(reps, target)
	}
	for _, id := range reps {
		if o, ok := n.fsm.Origin(id); ok && n.fsm.Healthy(id) {
			others = append(others, o)
		}
	}
	return primary, others, true
}

// Moving returns the id of the origin a planned move of key is filling,
// "" when none (a local read).
func (n *Node) Moving(key stream.Key) string {
	_, _, target, _ := n.fsm.Sources(key.String())
	return target
}

// Landed tells the mesh that origin received key's stream from a
// keyframe on, fed by this node's publisher. When origin is the target
// of key's planned move, the move completes: origin becomes the stream's
// primary and every node's players switch to it. Otherwise (a warm
// replica being filled) nothing is written. Only a node that feeds origin
// itself calls it: the write is never a client's request.
func (n *Node) Landed(ctx context.Context, key stream.Key, origin stream.Origin) error {
	ks := key.String()
	from, _, target, ok := n.fsm.Sources(ks)
	if !ok || target != origin.ID {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RouteTimeout)
	defer cancel()
	_, err := n.apply(ctx, state.CompleteMoveCmd{Key: ks, To: origin.ID, NowMs: time.Now().UnixMilli()})
	if errors.Is(err, state.ErrMovePending) {
		return nil // completed or cancelled meanwhile
	}
	if err != nil {
		return err
	}
	n.log.Info("stream moved without a break", "stream", ks, "from", from, "to", origin.ID)
	e := events.Moved(ks, from, origin.ID, "planned move")
	e.MoveKind = state.MovePlanned
	n.tel.Record(e)
	return nil
}

// OnMoved makes fn be called with a stream key each time this node
// applies a change of the stream's origin (any move: planned, failover, a
// promoted replica), so that the node's players can follow at once. fn
// runs on the goroutine that applies the replicated log and must not
// block.
func (n *Node) OnMoved(fn func(key stream.Key)) {
	n.fsm.OnMoved(func(ks string) {
		if k, err := stream.ParseKey(ks); err == nil {
			fn(k)
		}
	})
}

// Evacuate drains an origin and moves its live streams away without a
// break (state.SetDrainingCmd.Move): the leader plans the moves, at a
// bounded rate, and each stream's publisher node feeds the new origin
// before players switch to it. It fails with ErrUnknownOrigin for an
// unknown id.
func (n *Node) Evacuate(ctx context.Context, originID string) error {
	// The moves need every member to read them: refuse the evacuation,
	// not only its moves, until they can.
	if err := n.gate(state.CmdPlanMove); err != nil {
		return err
	}
	ctx, cancel := n.writeContext(ctx)
	defer cancel()
	if _, err := n.apply(ctx, state.SetDrainingCmd{ID: originID, Draining: true, Move: true}); err != nil {
		return err
	}
	n.tel.Record(events.Event{Kind: events.OriginDrained, Origin: originID, Detail: "streams moving away"})
	return nil
}
