package mesh

// Origins' registrations and heartbeats, and drains, through the leader.

import (
	"context"
	"fmt"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// RegisterOrigin upserts an origin as a heartbeat (it refreshes the last
// heartbeat time). On a follower the write is forwarded to the leader; it is
// bounded by ctx, or by RouteTimeout when ctx has no deadline.
//
// Every address must be one the mesh may dial (see Config.OriginAllow), and
// the rules of state.RegisterOriginCmd apply: the registration counts as
// authenticated when the mesh has a token, since callers (the system API)
// checked it. Refusals wrap ErrRegistrationRefused.
func (n *Node) RegisterOrigin(ctx context.Context, o stream.Origin) error {
	return n.Heartbeat(ctx, o, nil)
}

// Heartbeat is RegisterOrigin with the load the origin reported (nil: none;
// its last known load stays). The load is replicated inside the command, and
// new streams are placed from it (see state.AssignCmd).
func (n *Node) Heartbeat(ctx context.Context, o stream.Origin, load *stream.Load) error {
	if o.ID == "" {
		return fmt.Errorf("%w: origin without id", stream.ErrRegistration)
	}
	if err := n.dialable(o); err != nil {
		return err
	}
	ctx, cancel := n.writeContext(ctx)
	defer cancel()
	_, known := n.fsm.Origin(o.ID)
	_, err := n.apply(ctx, state.RegisterOriginCmd{Origin: o, Load: load, Heartbeat: true, Authenticated: n.cfg.Token != "",
		MaxOrigins: n.cfg.MaxOrigins, NowMs: time.Now().UnixMilli()})
	if err == nil && !known {
		n.tel.Record(events.Event{Kind: events.OriginAdded, Origin: o.ID, Detail: "registered"})
	}
	return err
}

// dialable checks the addresses of a registered origin against
// stream.CheckDialable and Config.OriginAllow.
func (n *Node) dialable(o stream.Origin) error {
	if err := stream.CheckDialable(o, n.cfg.OriginAllow); err != nil {
		return fmt.Errorf("%w: %v", ErrRegistrationRefused, err)
	}
	return nil
}

// SetDraining drains (no new streams; existing ones stay) or undrains an
// origin. It fails with ErrUnknownOrigin for an unknown id.
func (n *Node) SetDraining(ctx context.Context, originID string, draining bool) error {
	ctx, cancel := n.writeContext(ctx)
	defer cancel()
	if _, err := n.apply(ctx, state.SetDrainingCmd{ID: originID, Draining: draining}); err != nil {
		return err
	}
	kind := events.OriginDrained
	if !draining {
		kind = events.OriginUndrained
	}
	n.tel.Record(events.Event{Kind: kind, Origin: originID})
	return nil
}
