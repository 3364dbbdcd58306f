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

// Bounds of the leader's backoff for streams no origin can take now.
const (
	// planRetry is the pause before a plan that found no origin is tried
	// again; it doubles with each such failure in a row, up to
	// planRetryMax.
	planRetry    = 2e9
	planRetryMax = 60e9
)

// planBackoff is when a stream that found no origin may be planned again,
// and after how many failures in a row.
type planBackoff struct {
	atMs  int64
	fails int
}

// Sources keeps the sources of every stream as the configuration wants
// them, writing at most Config.MovesPerTick commands per call:
//
//   - first, a planned move that is no longer wanted (its origin is
//     neither evacuated nor unhealthy) is cancelled, and one that did not
//     complete within Config.MoveTimeout is cancelled and, when the stream
//     must leave its origin, moved the way a failover moves it (MoveCmd),
//     so that plans and replicas never starve these;
//   - then streams of an evacuated origin (SetDrainingCmd.Move) get a
//     planned move, at most Config.MaxPlanned in progress at once, onto a
//     healthy origin that is not draining; a stream that no origin can
//     take waits, per stream, a pause that doubles (planRetry, up to
//     planRetryMax) before it is tried again;
//   - streams with fewer warm replicas than Config.Replicas wants get one
//     more on a healthy origin with room, and replicas on unhealthy or
//     drained origins are dropped.
//
// The leader calls it from its loop, about once a second; it is not safe
// for concurrent use.
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
	live := make(map[string]bool, len(st.Assignments))
	for _, a := range st.Assignments {
		live[a.Key] = true
		if a.Target != "" {
			planned++
		}
	}
	// The backoff holds only streams that still exist.
	for k := range u.plans {
		if !live[k] {
			delete(u.plans, k)
		}
	}
	write := func(c state.Command) (state.Result, error) {
		budget--
		return u.cfg.ApplyLocal(ctx, c)
	}
	// ended: the planned moves this call cancelled (the copy's Target is
	// stale for them).
	ended := map[string]bool{}
	for _, a := range st.Assignments {
		if budget <= 0 || ctx.Err() != nil {
			return
		}
		from := origins[a.Origin]
		leave := from.Evacuate || !from.Healthy
		switch {
		case a.Target == "":
		case !leave:
			// Undrained (or healthy again and not evacuated): the move is
			// no longer wanted.
			planned--
			ended[a.Key] = true
			write(state.CancelMoveCmd{Key: a.Key, To: a.Target})
		case now-a.TargetMs > timeout:
			planned--
			ended[a.Key] = true
			u.log.Warn("planned move did not complete in time; moving with a break", "stream", a.Key, "from", a.Origin, "to", a.Target)
			if _, err := write(state.CancelMoveCmd{Key: a.Key, To: a.Target}); err != nil {
				continue
			}
			if res, err := write(state.MoveCmd{Key: a.Key, From: a.Origin, NowMs: now}); err == nil && res.Origin != nil {
				e := events.Moved(a.Key, a.Origin, res.Origin.ID, "planned move timed out")
				e.MoveKind = state.MoveFailover
				u.cfg.Record(e)
			}
		}
	}
	for _, a := range st.Assignments {
		if budget <= 0 || ctx.Err() != nil {
			return
		}
		if ended[a.Key] {
			continue
		}
		if a.Target == "" && origins[a.Origin].Evacuate && planned < maxPlanned && u.planDue(a.Key, now) {
			u.plan(a, origins, now, write, &planned)
			continue
		}
		if reps, ok := u.wantReplicas(a, origins); ok {
			if _, err := write(state.SetReplicasCmd{Key: a.Key, Replicas: reps}); err == nil {
				u.log.Info("warm replicas", "stream", a.Key, "replicas", reps)
			}
		}
	}
}

// planDue reports whether a plan of key may be tried now.
func (u *Upkeep) planDue(key string, nowMs int64) bool {
	b, ok := u.plans[key]
	return !ok || nowMs >= b.atMs
}

// plan starts a planned move of a off its evacuated origin, onto the
// target planTarget picks; a stream no origin can take backs off.
func (u *Upkeep) plan(a state.KeyAssignment, origins map[string]state.OriginState, nowMs int64,
	write func(state.Command) (state.Result, error), planned *int) {
	to, err := u.planTarget(a, origins)
	if err == nil {
		var res state.Result
		res, err = write(state.PlanMoveCmd{Key: a.Key, From: a.Origin, To: to, NowMs: nowMs})
		if err == nil {
			*planned++
			delete(u.plans, a.Key)
			u.log.Info("planned a move", "stream", a.Key, "from", a.Origin, "to", res.Origin.ID)
			return
		}
	}
	if u.plans == nil {
		u.plans = map[string]planBackoff{}
	}
	b := u.plans[a.Key]
	d := int64(planRetry)
	for i := 0; i < b.fails && d < planRetryMax; i++ {
		d *= 2
	}
	b.fails++
	b.atMs = nowMs + min(d, planRetryMax)/1e6
	u.plans[a.Key] = b
	if errors.Is(err, stream.ErrNoOrigin) || errors.Is(err, stream.ErrOriginsFull) {
		u.log.Warn("no origin can take a stream of a drained origin", "stream", a.Key, "from", a.Origin, "err", err)
	} else {
		u.log.Warn("could not plan a move", "stream", a.Key, "from", a.Origin, "err", err)
	}
}

// planTarget picks the origin a planned move of a fills: its first warm
// replica on a healthy origin that is not draining (it has the stream
// already), else the one stream.Select picks among the origins that hold
// no source of a. A draining origin is never picked: a move off one
// drained origin must not land on another.
func (u *Upkeep) planTarget(a state.KeyAssignment, origins map[string]state.OriginState) (string, error) {
	for _, id := range a.Replicas {
		if o, ok := origins[id]; ok && o.Healthy && !o.Draining {
			return id, nil
		}
	}
	key, err := stream.ParseKey(a.Key)
	if err != nil {
		return "", err
	}
	var cands []stream.Candidate
	for _, c := range u.cfg.Replica.Candidates() {
		if c.ID != a.Origin && !slices.Contains(a.Replicas, c.ID) {
			cands = append(cands, c)
		}
	}
	return stream.Select(key, cands)
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
		if o, ok := origins[id]; ok && o.Healthy && !o.Draining && id != a.Target && len(keep) < want {
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
