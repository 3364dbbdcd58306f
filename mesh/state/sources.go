package state

import (
	"errors"
	"fmt"
	"slices"

	"github.com/srs-mesh/srs-mesh/stream"
)

// The sources of a stream: its assignment's origin (the primary, which
// players follow), its warm replicas (origins the publisher's node feeds a
// copy of the stream, Assignment.Replicas) and the target of a planned
// move (Assignment.Target). Every origin that holds a source counts the
// stream in its load, so placement never overfills it.

// How an assignment last changed origin (Assignment.MoveKind).
const (
	// MovePlanned: a make-before-break move completed (CompleteMoveCmd).
	MovePlanned = "planned"
	// MoveFailover: the origin failed and the stream moved to another
	// origin that had no copy of it (MoveCmd, a repairing AssignCmd).
	MoveFailover = "failover"
	// MovePromoted: the origin failed and a warm replica, which held the
	// live stream already, took over.
	MovePromoted = "replica_promoted"
)

// MaxReplicas bounds the warm replicas of one stream.
const MaxReplicas = 3

// ErrMovePending is a PlanMoveCmd refused because the stream has a
// planned move in progress or is not on the origin the plan leaves.
var ErrMovePending = errors.New("mesh: the stream is not where the move expected it")

// PlanMoveCmd starts a make-before-break move of Key off From: the
// assignment gets a Target (To, or when To is empty, the origin
// stream.Select picks among the others, a healthy replica first) that
// counts the stream in its load while the publisher's node feeds it. The
// assignment's origin does not change until a CompleteMoveCmd. It fails
// with ErrMovePending when the assignment is not on From or already has a
// target, with ErrBadCommand for a malformed key and with
// stream.ErrNoOrigin (or a full-origins failure) when no other origin can
// take the stream.
type PlanMoveCmd struct {
	Key   string `json:"key"`
	From  string `json:"from"`
	To    string `json:"to,omitempty"`
	NowMs int64  `json:"now_ms"`
}

// CompleteMoveCmd ends a planned move: Target becomes the assignment's
// origin (a new epoch, MoveKind MovePlanned) and the old origin stops
// counting the stream. It applies only when To is the assignment's Target;
// otherwise (cancelled, superseded) it fails with ErrMovePending.
type CompleteMoveCmd struct {
	Key   string `json:"key"`
	To    string `json:"to"`
	NowMs int64  `json:"now_ms"`
}

// CancelMoveCmd drops a planned move to To that did not complete; nothing
// happens when the target is another or none.
type CancelMoveCmd struct {
	Key string `json:"key"`
	To  string `json:"to"`
}

// SetReplicasCmd replaces the warm replicas of Key's assignment. Every
// replica must be a known origin other than the assignment's origin and
// target, listed once, and at most MaxReplicas of them; otherwise it fails
// with ErrBadCommand. An assignment that is gone is no error (it ended
// meanwhile).
type SetReplicasCmd struct {
	Key      string   `json:"key"`
	Replicas []string `json:"replicas"`
}

// Type implements Command.
func (PlanMoveCmd) Type() CmdType { return CmdPlanMove }

// Type implements Command.
func (CompleteMoveCmd) Type() CmdType { return CmdCompleteMove }

// Type implements Command.
func (CancelMoveCmd) Type() CmdType { return CmdCancelMove }

// Type implements Command.
func (SetReplicasCmd) Type() CmdType { return CmdSetReplicas }

// holders are the origins that count a in their load: the origin, then
// the replicas, then the target.
func (a *Assignment) holders() []string {
	out := make([]string, 0, 2+len(a.Replicas))
	out = append(out, a.Origin)
	out = append(out, a.Replicas...)
	if a.Target != "" {
		out = append(out, a.Target)
	}
	return out
}

// holds reports whether origin id holds a source of a.
func (a *Assignment) holds(id string) bool {
	return a.Origin == id || a.Target == id || slices.Contains(a.Replicas, id)
}

// dropSource removes id from a's replicas and target (an origin that is
// gone). The caller adjusts the load counts.
func (a *Assignment) dropSource(id string) {
	a.Replicas = withoutOrigin(a.Replicas, id)
	if a.Target == id {
		a.Target, a.TargetMs = "", 0
	}
}

// healthyReplica is a's first healthy replica other than except, "" when
// none.
func (f *FSM) healthyReplica(a *Assignment, except string) string {
	for _, id := range a.Replicas {
		if s, ok := f.origins[id]; ok && s.Healthy && id != except {
			return id
		}
	}
	return ""
}

// promote makes replica id a's origin: the old origin stops counting the
// stream (the replica counted it already), the planned move, if any, is
// dropped.
func (f *FSM) promote(a *Assignment, id string, nowMs int64) {
	f.decStreams(a.Origin)
	if a.Target != "" {
		f.decStreams(a.Target)
		a.Target, a.TargetMs = "", 0
	}
	if a.PlayOnly {
		a.PlayOnly = false
		f.playOnly--
	}
	a.moved(nowMs)
	a.MoveKind = MovePromoted
	a.Origin = id
	a.dropSource(id)
}

func (f *FSM) applyPlanMove(c *PlanMoveCmd) Result {
	key, err := stream.ParseKey(c.Key)
	if err != nil {
		return failResult(codeBadCommand, fmt.Errorf("%w: %v", ErrBadCommand, err))
	}
	a := f.assignments[c.Key]
	if a == nil {
		return failResult(codeNoOrigin, fmt.Errorf("%w: %s has no assignment to move", stream.ErrNoOrigin, c.Key))
	}
	if a.Origin != c.From || a.Target != "" {
		return failResult(codeMovePending, fmt.Errorf("%w: %s is on %s (target %q), not on %s", ErrMovePending, c.Key, a.Origin, a.Target, c.From))
	}
	to := c.To
	if to == "" {
		to = f.healthyReplica(a, "")
	}
	if to == "" {
		cands := make([]stream.Candidate, 0, len(f.origins))
		for id, s := range f.origins {
			if !a.holds(id) {
				cands = append(cands, s.candidate(f.streams[id]))
			}
		}
		to, err = stream.Select(key, cands)
		if errors.Is(err, stream.ErrOriginsFull) {
			return failResult(codeOriginsFull, fmt.Errorf("no room for %s on another origin", c.Key))
		}
		if err != nil {
			return failResult(codeNoOrigin, fmt.Errorf("%w for %s", err, c.Key))
		}
	} else if s, ok := f.origins[to]; !ok || to == a.Origin {
		return failResult(codeBadCommand, fmt.Errorf("%w: move target %q", ErrBadCommand, to))
	} else if !s.Healthy {
		return failResult(codeNoOrigin, fmt.Errorf("%w: move target %s is unhealthy", stream.ErrNoOrigin, to))
	}
	a.Target, a.TargetMs = to, c.NowMs
	if slices.Contains(a.Replicas, to) {
		// A replica becomes the target: its count carries over, and an
		// origin is never both.
		a.Replicas = withoutOrigin(a.Replicas, to)
	} else {
		f.streams[to]++
	}
	out := f.origins[to].Origin
	return Result{Origin: &out, Created: true}
}

func (f *FSM) applyCompleteMove(c *CompleteMoveCmd) Result {
	a := f.assignments[c.Key]
	if a == nil || c.To == "" || a.Target != c.To {
		return failResult(codeMovePending, fmt.Errorf("%w: %s has no planned move to %s", ErrMovePending, c.Key, c.To))
	}
	s, ok := f.origins[c.To]
	if !ok {
		return failResult(codeUnknownOrigin, fmt.Errorf("%w: %q", ErrUnknownOrigin, c.To))
	}
	f.decStreams(a.Origin)
	a.moved(c.NowMs)
	a.MoveKind = MovePlanned
	a.Origin = c.To
	f.moved = append(f.moved, c.Key)
	a.dropSource(c.To)
	if a.PlayOnly {
		a.PlayOnly = false
		f.playOnly--
	}
	if c.NowMs > a.LastUsedMs {
		a.LastUsedMs = c.NowMs
	}
	out := s.Origin
	return Result{Origin: &out, Created: true}
}

func (f *FSM) applyCancelMove(c *CancelMoveCmd) Result {
	a := f.assignments[c.Key]
	if a == nil || c.To == "" || a.Target != c.To {
		return Result{}
	}
	f.decStreams(c.To)
	a.Target, a.TargetMs = "", 0
	return Result{}
}

func (f *FSM) applySetReplicas(c *SetReplicasCmd) Result {
	if len(c.Replicas) > MaxReplicas {
		return failResult(codeBadCommand, fmt.Errorf("%w: %d replicas, at most %d", ErrBadCommand, len(c.Replicas), MaxReplicas))
	}
	a := f.assignments[c.Key]
	if a == nil {
		return Result{}
	}
	for i, id := range c.Replicas {
		if _, ok := f.origins[id]; !ok || id == a.Origin || id == a.Target || slices.Contains(c.Replicas[:i], id) {
			return failResult(codeBadCommand, fmt.Errorf("%w: replica %q of %s", ErrBadCommand, id, c.Key))
		}
	}
	for _, id := range a.Replicas {
		f.decStreams(id)
	}
	a.Replicas = nil
	if len(c.Replicas) > 0 {
		a.Replicas = append([]string(nil), c.Replicas...)
	}
	for _, id := range a.Replicas {
		f.streams[id]++
	}
	return Result{}
}

// Sources returns key's sources in this replica: its assignment's origin
// (the primary), its replicas and the target of a planned move (ids, the
// target "" when none); ok is false when key has no assignment.
func (f *FSM) Sources(key string) (primary string, replicas []string, target string, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	a := f.assignments[key]
	if a == nil {
		return "", nil, "", false
	}
	return a.Origin, slices.Clone(a.Replicas), a.Target, true
}

// MoveKind is how key's assignment last changed origin
// (Assignment.MoveKind), "" when it has none or never moved.
func (f *FSM) MoveKind(key string) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if a := f.assignments[key]; a != nil {
		return a.MoveKind
	}
	return ""
}

// withoutOrigin returns a new list of the ids but id (nil when none is
// left): lists are never changed in place, since copies of the state
// (Contents, snapshots being written) may share them.
func withoutOrigin(ids []string, id string) []string {
	var out []string
	for _, r := range ids {
		if r != id {
			out = append(out, r)
		}
	}
	return out
}
