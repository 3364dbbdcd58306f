package upkeep

import (
	"context"
	"errors"
	"slices"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Defaults of the leader's stream moves (Config).
const (
	// DefaultMoveTimeout is how long a planned move may take before the
	// leader falls back to a move with a break.
	DefaultMoveTimeout = 5e9
	// DefaultMovesPerTick bounds the moves and replica changes one call to
	// Sources writes.
	DefaultMovesPerTick = 4
	// DefaultMaxPlanned bounds the planned moves in progress in the mesh.
	DefaultMaxPlanned = 16
)

// Sources keeps the sources of every stream as the configuration wants
// them, writing at most Config.MovesPerTick commands per call:
//
//   - a planned move that did not complete within Config.MoveTimeout is
//     cancelled, and a stream that must leave its origin (evacuated or
//     unhealthy) is then moved the way a failover moves it (MoveCmd);
//   - streams of an evacuated origin (SetDrainingCmd.Move) get a planned
//     move, at most Config.MaxPlanned in progress at once;
//   - streams with fewer warm replicas than Config.Replicas wants get one
//     more on a healthy origin with room, and replicas on unhealthy or
//     drained origins are dropped.
//
// The leader calls it from its loop, about once a second.
func (u *Upkeep) Sources(ctx context.Context) {
	st := u.cfg.Replica.Contents()
	now := u.cfg.Now().UnixMilli()
	origins := make(map[string]state.OriginState, len(st.Origins))
	for _, o := range st.Origins {
		origins[o.Origin.ID] = o
	}
	budget := u.cfg.MovesPerTick
	if budget <= 0 {
		budget = DefaultMovesPerTick
	}
	maxPlanned := u.cfg.MaxPlanned
	if maxPlanned <= 0 {
		maxPlanned = DefaultMaxPlanned
	}
	timeout := u.cfg.MoveTimeout.Milliseconds()
	if timeout <= 0 {
		timeout = DefaultMoveTimeout / 1e6
	}
	planned := 0
	for _, a := range st.Assignments {
		if a.Target != "" {
			planned++
		}
	}
	write := func(c state.Command) (state.Result, error) {
		budget--
		return u.cfg.ApplyLocal(ctx, c)
	}
	for _, a := range st.Assignments {
		if budget <= 0 || ctx.Err() != nil {
			return
		}
		from := origins[a.Origin]
		leave := from.Evacuate || !from.Healthy
		switch {
		case a.Target != "" && !leave:
			// Undrained (or healthy again and not evacuated): the move is
			// no longer wanted.
			planned--
			write(state.CancelMoveCmd{Key: a.Key, To: a.Target})
		case a.Target != "" && now-a.TargetMs > timeout:
			planned--
			u.log.Warn("planned move did not complete in time; moving with a break", "stream", a.Key, "from", a.Origin, "to", a.Target)
			if _, err := write(state.CancelMoveCmd{Key: a.Key, To: a.Target}); err != nil || !leave {
				continue
			}
			if res, err := write(state.MoveCmd{Key: a.Key, From: a.Origin, NowMs: now}); err == nil && res.Origin != nil {
				e := events.Moved(a.Key, a.Origin, res.Origin.ID, "planned move timed out")
				e.MoveKind = state.MoveFailover
				u.cfg.Record(e)
			}
		case a.Target == "" && from.Evacuate && planned < maxPlanned:
			res, err := write(state.PlanMoveCmd{Key: a.Key, From: a.Origin, NowMs: now})
			switch {
			case err == nil:
				planned++
				u.log.Info("planned a move", "stream", a.Key, "from", a.Origin, "to", res.Origin.ID)
			case errors.Is(err, stream.ErrNoOrigin):
				u.log.Warn("no origin can take a stream of a drained origin", "stream", a.Key, "from", a.Origin, "err", err)
			}
		default:
			if reps, ok := u.wantReplicas(a, origins); ok {
				if _, err := write(state.SetReplicasCmd{Key: a.Key, Replicas: reps}); err == nil {
					u.log.Info("warm replicas", "stream", a.Key, "replicas", reps)
				}
			}
		}
	}
}

// wantReplicas returns the replicas a should have, and whether they differ
// from its own: the healthy ones it has on origins that take streams, and
// one more (the origin stream.Select picks among the others) when fewer
// than Config.Replicas wants. A stream only players use gets none.
func (u *Upkeep) wantReplicas(a state.KeyAssignment, origins map[string]state.OriginState) ([]string, bool) {
	want := 0
	if u.cfg.Replicas != nil && !a.PlayOnly {
		want = min(u.cfg.Replicas(a.Key)-1, state.MaxReplicas)
	}
	keep := make([]string, 0, len(a.Replicas)+1)
	for _, id := range a.Replicas {
		if o, ok := origins[id]; ok && o.Healthy && !o.Draining && len(keep) < want {
			keep = append(keep, id)
		}
	}
	if len(keep) < want {
		key, err := stream.ParseKey(a.Key)
		if err == nil {
			var cands []stream.Candidate
			for _, c := range u.cfg.Replica.Candidates() {
				if c.ID != a.Origin && c.ID != a.Target && !slices.Contains(keep, c.ID) {
					cands = append(cands, c)
				}
			}
			if id, err := stream.Select(key, cands); err == nil {
				keep = append(keep, id)
			}
		}
	}
	if slices.Equal(keep, a.Replicas) || len(keep) == 0 && len(a.Replicas) == 0 {
		return nil, false
	}
	return keep, true
}
