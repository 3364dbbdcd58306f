// Package upkeep owns the leader's writes that keep the replicated state
// true to its configuration and to the world: the segment-token key and the
// static origins once leadership is gained, origin health from the probes
// of package health, the removal of registered origins whose heartbeats
// stopped, the collection of unused assignments, and the sources of the
// streams: planned moves off an evacuated origin and warm replicas.
//
// It writes on the leader through the functions of its Config and knows
// nothing of the mesh root, Raft or gossip. It starts no goroutine: every
// method runs on the caller's (the node's leader loop), which decides when.
package upkeep

import (
	"context"
	"crypto/rand"
	"log/slog"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/health"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Replica is what upkeep reads of this node's replica (*state.FSM).
type Replica interface {
	TokenKey() ([]byte, bool)
	Origin(id string) (stream.Origin, bool)
	Origins() []state.OriginState
	StaleKeys(cutoffMs int64, max int) []string
	StalePlayOnlyKeys(cutoffMs int64, max int) []string
	Contents() state.Contents
	Candidates() []stream.Candidate
}

var _ Replica = (*state.FSM)(nil)

// Config is what upkeep reads; Replica, ApplyLocal and Record are required.
type Config struct {
	Replica Replica
	// ApplyLocal writes a command on this node, the leader.
	ApplyLocal func(context.Context, state.Command) (state.Result, error)
	// Record adds an event to the node's event log.
	Record func(events.Event)
	// OriginTTL is how long a registered origin stays after its last
	// heartbeat.
	OriginTTL time.Duration
	// AssignmentTTL and PlayOnlyTTL are how long an assignment, and one
	// that only players use, stay unused.
	AssignmentTTL, PlayOnlyTTL time.Duration
	// Log is the node's logger (nil: slog.Default()).
	Log *slog.Logger
	// Now is the leader's clock (nil: time.Now).
	Now func() time.Time

	// Replicas, when not nil, says how many live copies a stream key
	// should have on origins (1: no warm replica); see Sources.
	Replicas func(key string) int
	// MoveTimeout bounds a planned move (default DefaultMoveTimeout);
	// MovesPerTick and MaxPlanned bound the writes of one Sources call and
	// the planned moves in progress (defaults DefaultMovesPerTick and
	// DefaultMaxPlanned).
	MoveTimeout              time.Duration
	MovesPerTick, MaxPlanned int
}

// Upkeep is the leader's upkeep. Its methods are safe for concurrent use.
type Upkeep struct {
	cfg Config
	log *slog.Logger
	// plans is the backoff of the streams of evacuated origins that no
	// origin could take (Sources), by key; it holds only keys that have an
	// assignment.
	plans map[string]planBackoff
}

// New returns the upkeep of cfg.
func New(cfg Config) *Upkeep {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Upkeep{cfg: cfg, log: cfg.Log}
}

// EnsureTokenKey writes a random segment-token key when the replica has
// none (the first leader of a mesh).
func (u *Upkeep) EnsureTokenKey(ctx context.Context) {
	if _, ok := u.cfg.Replica.TokenKey(); ok {
		return
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err == nil {
		if _, err := u.cfg.ApplyLocal(ctx, state.SetTokenKeyCmd{Key: key}); err != nil {
			u.log.Warn("set the segment-token key", "err", err)
		}
	}
}

// RegisterStatic registers the static origins (those of the node's
// configuration) that the replica lacks or has otherwise.
func (u *Upkeep) RegisterStatic(ctx context.Context, origins []stream.Origin) {
	for _, o := range origins {
		o.Static = true
		cur, known := u.cfg.Replica.Origin(o.ID)
		if known && cur == o {
			continue
		}
		if _, err := u.cfg.ApplyLocal(ctx, state.RegisterOriginCmd{Origin: o, NowMs: u.cfg.Now().UnixMilli()}); err != nil {
			u.log.Warn("register static origin", "origin", o.ID, "err", err)
		} else if !known {
			u.cfg.Record(events.Event{Kind: events.OriginAdded, Origin: o.ID, Detail: "static"})
		}
	}
}

// Probe runs one health round of the leader and writes the changes.
// Alongside health changes it replicates when healthy origins last answered
// a probe, every round in which that moved (one command per probe interval
// at most), so that every node shows the same "last seen alive".
func (u *Upkeep) Probe(ctx context.Context, hc *health.Checker) {
	origins := u.cfg.Replica.Origins()
	changes := hc.Round(ctx, origins)
	for _, c := range changes {
		u.log.Info("origin health", "origin", c.ID, "healthy", c.Healthy, "reason", c.Reason)
	}
	flips := changes
	changes = append(changes[:len(changes):len(changes)], hc.Refreshes(origins, changes)...)
	if len(changes) == 0 {
		return
	}
	if _, err := u.cfg.ApplyLocal(ctx, state.SetHealthCmd{Changes: changes, NowMs: u.cfg.Now().UnixMilli()}); err != nil {
		u.log.Warn("write origin health", "err", err)
		return
	}
	for _, c := range flips {
		e := events.Event{Kind: events.OriginUp, Origin: c.ID}
		if !c.Healthy {
			e.Kind, e.Detail = events.OriginDown, c.Reason
		}
		u.cfg.Record(e)
	}
}

// CollectOrigins removes registered origins whose heartbeats stopped
// OriginTTL ago, with their assignments. Static origins stay.
func (u *Upkeep) CollectOrigins(ctx context.Context) {
	cutoff := u.cfg.Now().Add(-u.cfg.OriginTTL).UnixMilli()
	for _, s := range u.cfg.Replica.Origins() {
		if s.Origin.Static || s.LastHeartbeatMs == 0 || s.LastHeartbeatMs > cutoff || ctx.Err() != nil {
			continue
		}
		if _, err := u.cfg.ApplyLocal(ctx, state.RemoveOriginCmd{ID: s.Origin.ID, StaleBeforeMs: cutoff}); err != nil {
			u.log.Warn("remove silent origin", "origin", s.Origin.ID, "err", err)
			continue
		}
		u.cfg.Record(events.Event{Kind: events.OriginRemoved, Origin: s.Origin.ID, Detail: "heartbeats stopped"})
		u.log.Info("removed an origin whose heartbeats stopped", "origin", s.Origin.ID,
			"last_heartbeat", time.UnixMilli(s.LastHeartbeatMs).UTC().Format(time.RFC3339), "ttl", u.cfg.OriginTTL)
	}
}

// CollectAssignments deletes the assignments that no node has used for
// AssignmentTTL (PlayOnlyTTL for those only players used), by the leader's
// clock.
func (u *Upkeep) CollectAssignments(ctx context.Context) {
	u.deleteStale(ctx, u.cfg.Now().Add(-u.cfg.PlayOnlyTTL).UnixMilli(), u.cfg.Replica.StalePlayOnlyKeys)
	u.deleteStale(ctx, u.cfg.Now().Add(-u.cfg.AssignmentTTL).UnixMilli(), u.cfg.Replica.StaleKeys)
}

// deleteStale deletes, in batches, the assignments stale lists as unused
// since cutoff.
func (u *Upkeep) deleteStale(ctx context.Context, cutoff int64, stale func(int64, int) []string) {
	for ctx.Err() == nil {
		keys := stale(cutoff, 1000)
		if len(keys) == 0 {
			return
		}
		if _, err := u.cfg.ApplyLocal(ctx, state.DeleteAssignmentsCmd{Keys: keys, CutoffMs: cutoff}); err != nil {
			u.log.Warn("assignment gc", "err", err)
			return
		}
		u.log.Debug("collected assignments", "count", len(keys))
	}
}
