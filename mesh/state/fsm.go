// Package state is the replicated state machine of the mesh: origins with
// their health, stream assignments and WebRTC ICE sessions; the typed
// commands that change it, with their encoding in the Raft log; and the
// snapshots that carry it between replicas.
//
// The package is the deterministic core of the mesh. It reads no clock, does
// no I/O besides a snapshot's reader and writer, and knows neither gossip nor
// Raft's transport: every time a command needs travels inside the command, so
// that the same log gives the same state on every replica. The mesh package
// writes the commands (through the Raft leader) and reads the state.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/srs-mesh/srs-mesh/stream"
)

// OriginState is an origin with its replicated health. Times are unix
// milliseconds taken from the commands.
type OriginState struct {
	Origin   stream.Origin `json:"origin"`
	Healthy  bool          `json:"healthy"`
	Draining bool          `json:"draining,omitempty"`
	// Evacuate: the origin is drained with its streams moved away
	// (SetDrainingCmd.Move).
	Evacuate        bool  `json:"evacuate,omitempty"`
	LastHeartbeatMs int64 `json:"last_heartbeat_ms,omitempty"`
	LastProbeMs     int64 `json:"last_probe_ms,omitempty"`
	// Reason says why the origin is unhealthy ("" when healthy).
	Reason string `json:"reason,omitempty"`
	// Load is the origin's last reported load (RegisterOriginCmd.Load),
	// the zero Load until it reports one.
	Load stream.Load `json:"load,omitzero"`
}

// candidate is the origin as the selection policy sees it.
func (s *OriginState) candidate(streams int) stream.Candidate {
	return stream.Candidate{ID: s.Origin.ID, Healthy: s.Healthy, Draining: s.Draining, Streams: streams,
		MaxStreams: s.Origin.MaxStreams, Weight: s.Origin.Weight, CPUPermille: s.Load.CPUPermille}
}

// Assignment is one stream key's origin: the origin id, when the assignment
// was created and when a node last reported the key in use (unix ms).
type Assignment struct {
	Origin     string `json:"origin"`
	CreatedMs  int64  `json:"created_ms"`
	LastUsedMs int64  `json:"last_used_ms"`
	// PlayOnly: only players have used the key so far (AssignCmd).
	PlayOnly bool `json:"play_only,omitempty"`
	// Epoch counts the times the assignment changed origin: a MoveCmd, or
	// an AssignCmd that repaired an assignment whose origin was unhealthy
	// or gone. It starts at 0 and only grows while the assignment lives;
	// nodes derive HLS media sequence numbers and DASH periods from it.
	Epoch uint64 `json:"epoch,omitempty"`
	// MovedMs is when the assignment last changed origin (0: never).
	MovedMs int64 `json:"moved_ms,omitempty"`
	// SeqBase is what nodes add to the HLS media sequence numbers of the
	// current origin's playlists (0 at epoch 0). Each change of origin
	// raises it by the most segments the previous origin can have written
	// since its own start (segmentsSince), so that the numbers never go
	// backwards when the new origin starts again from 0, and only by that
	// much, so that a player skips ahead a few segments, not billions.
	SeqBase uint64 `json:"seq_base,omitempty"`
	// MovedFrom is the origin the stream left at its last move ("" when it
	// never moved).
	MovedFrom string `json:"moved_from,omitempty"`
	// MoveKind is how the stream last changed origin: MovePlanned (a
	// make-before-break move), MoveFailover or MovePromoted ("" when it
	// never moved or moved before kinds were recorded).
	MoveKind string `json:"move_kind,omitempty"`
	// Replicas are the origins that hold a warm copy of the stream
	// (SetReplicasCmd), in the order they take over; never Origin, each at
	// most once, at most MaxReplicas.
	Replicas []string `json:"replicas,omitempty"`
	// Target is the origin of a planned move in progress (PlanMoveCmd), ""
	// when none; TargetMs is when it was planned.
	Target   string `json:"target,omitempty"`
	TargetMs int64  `json:"target_ms,omitempty"`
}

// minSegmentMs is the shortest HLS segment segmentsSince counts with: SRS
// and nginx-rtmp cut segments at key frames, at least half a second apart
// in any live encoder set-up.
const minSegmentMs = 500

// segmentsSince is the most segments an origin can have written between
// startMs and nowMs, plus one: what SeqBase grows by when the stream leaves
// that origin.
func segmentsSince(startMs, nowMs int64) uint64 {
	return uint64(max(nowMs-startMs, 0)/minSegmentMs) + 1
}

// moved records that a changes origin at nowMs: the epoch, the time, the
// origin it leaves and the sequence base of the next origin's playlists.
func (a *Assignment) moved(nowMs int64) {
	a.MovedFrom = a.Origin
	start := a.CreatedMs
	if a.MovedMs > 0 {
		start = a.MovedMs
	}
	a.SeqBase += segmentsSince(start, nowMs)
	a.Epoch++
	a.MovedMs = nowMs
}

// FSM is the replicated state of the mesh: origins, assignments and WebRTC
// ICE sessions. It implements raft.FSM. Apply is deterministic: no clock, no
// I/O, no map-order dependence; the same log gives the same state on every
// replica. Reads take a read lock and never touch the network. All methods
// are safe for concurrent use.
type FSM struct {
	mu          sync.RWMutex
	origins     map[string]*OriginState
	assignments map[string]*Assignment
	// streams counts assignments per origin id (the load Select balances).
	streams map[string]int
	// rtc holds the ICE sessions by ufrag, ordered for deterministic
	// eviction at the table's bound.
	rtc rtcTable
	// tokenKey signs segment tokens; nil until the leader sets one.
	tokenKey []byte
	// playOnly counts the assignments with PlayOnly set.
	playOnly int

	// moved lists the keys whose origin the command being applied changed;
	// Apply hands them to onMoved after it unlocks.
	moved   []string
	onMoved func(key string)
	// protocol is the mesh's recorded protocol version (SetProtocolCmd),
	// 0 until the leader records one.
	protocol int
	// halt is set when the replica meets a command it cannot apply; from
	// then on it applies nothing (see Halted). onHalt is told once.
	halt   *Halt
	onHalt func(Halt)
	// skipped counts the unknown optional commands skipped.
	skipped uint64

	// index is the Raft index of the last applied log entry; applied is
	// closed (and cleared) when it advances, for WaitApplied.
	index   uint64
	applied chan struct{}
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an empty state, as a fresh replica starts before it applies
// the log or restores a snapshot.
func NewFSM() *FSM {
	return &FSM{
		origins:     map[string]*OriginState{},
		assignments: map[string]*Assignment{},
		streams:     map[string]int{},
		rtc:         newRTCTable(),
	}
}

// Apply applies one committed log entry and returns its Result (for entries
// that are not commands, an empty one). A malformed or failing command changes
// nothing and returns a failed Result; Apply never panics on its input.
//
// A command of an unknown optional type is skipped (Skipped counts it). A
// command of an unknown required type, or a SetProtocolCmd above
// ProtocolVersion, halts the replica: Apply returns a failed Result
// (ErrHalted) for it and for every entry after it, changes nothing and
// no longer advances the applied index, and the function given to OnHalt
// is called once. A halt lasts until the process ends.
func (f *FSM) Apply(l *raft.Log) any {
	if h, ok := f.Halted(); ok {
		return failResult(codeHalted, fmt.Errorf("%s", h.Reason))
	}
	var res Result
	if l.Type == raft.LogCommand {
		res = f.applyCommand(l.Index, l.Data)
	}
	f.mu.Lock()
	if l.Index > f.index && f.halt == nil {
		f.index = l.Index
	}
	f.notifyLocked()
	moved, watch := f.moved, f.onMoved
	f.moved = f.moved[:0]
	f.mu.Unlock()
	if watch != nil {
		for _, k := range moved {
			watch(k)
		}
	}
	return res
}

// OnMoved sets fn to be called with a key each time an applied command
// changes the origin of the key's assignment (a move of any kind, a
// repair, a promoted replica), and for each key whose origin a restored
// snapshot changes or adds, in key order. fn runs on the goroutine that
// applies the log (or restores), after the state is updated, and must not
// block.
func (f *FSM) OnMoved(fn func(key string)) {
	f.mu.Lock()
	f.onMoved = fn
	f.mu.Unlock()
}

// OnHalt sets the function told (once, on Raft's apply goroutine, without
// the state's lock) when the replica halts. Call it before the replica
// applies anything; fn must not block.
func (f *FSM) OnHalt(fn func(Halt)) {
	f.mu.Lock()
	f.onHalt = fn
	f.mu.Unlock()
}

// Halted reports whether the replica halted, and why. A halted replica
// applies nothing and its routing reads (Route, AssignedOrigin, Origin,
// Healthy, Candidates, RTCSession, HasHTTPEndpoint) answer as if the state
// were empty, so that nothing is routed from a state that differs from its
// peers'.
func (f *FSM) Halted() (Halt, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.halt == nil {
		return Halt{}, false
	}
	return *f.halt, true
}

// Skipped is the number of unknown optional commands the replica skipped.
func (f *FSM) Skipped() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.skipped
}

// Protocol is the mesh's recorded protocol version (SetProtocolCmd): every
// member spoke at least this version when the leader recorded it. It is 0
// before any record (a mesh of builds before versions existed).
func (f *FSM) Protocol() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.protocol
}

// haltLocked halts the replica with h unless it already is, and returns the
// function to tell (nil when there is none or it was told). f.mu is held.
func (f *FSM) haltLocked(h Halt) func(Halt) {
	if f.halt != nil {
		return nil
	}
	f.halt = &h
	return f.onHalt
}

// halted halts the replica (see Apply) and returns the failed Result.
func (f *FSM) halted(h Halt) Result {
	f.mu.Lock()
	fn := f.haltLocked(h)
	f.mu.Unlock()
	if fn != nil {
		fn(h)
	}
	return failResult(codeHalted, fmt.Errorf("%w: %s", ErrHalted, h.Reason))
}

// notifyLocked wakes the waiters of WaitApplied. f.mu is held.
func (f *FSM) notifyLocked() {
	if f.applied != nil {
		close(f.applied)
		f.applied = nil
	}
}

// WaitApplied waits until the replica has applied (or restored a snapshot
// at) log index idx, and returns nil, or until ctx is done, and returns
// ctx's error.
func (f *FSM) WaitApplied(ctx context.Context, idx uint64) error {
	for {
		f.mu.Lock()
		if f.index >= idx {
			f.mu.Unlock()
			return nil
		}
		if f.applied == nil {
			f.applied = make(chan struct{})
		}
		ch := f.applied
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// appliedIndex is the Raft index of the last applied entry.
func (f *FSM) appliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.index
}

// applyCommand decodes and applies the command at log index idx.
func (f *FSM) applyCommand(idx uint64, data []byte) Result {
	body, err := Decode(data)
	var unknown *UnknownCommandError
	switch {
	case errors.As(err, &unknown) && unknown.Type.Optional():
		f.mu.Lock()
		f.skipped++
		f.mu.Unlock()
		return Result{}
	case errors.As(err, &unknown):
		return f.halted(Halt{Index: idx, Type: unknown.Type, Reason: fmt.Sprintf(
			"log entry %d has required command type %d, unknown to this build (protocol %d): upgrade this node",
			idx, uint8(unknown.Type), ProtocolVersion)})
	case err != nil:
		return failResult(codeBadCommand, err)
	}
	if c, ok := body.(*SetProtocolCmd); ok && c.Version > ProtocolVersion {
		return f.halted(Halt{Index: idx, Type: CmdSetProtocol, Protocol: c.Version, Reason: fmt.Sprintf(
			"log entry %d records mesh protocol %d, above this build's %d: upgrade this node (a downgrade is not supported)",
			idx, c.Version, ProtocolVersion)})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch c := body.(type) {
	case *SetProtocolCmd:
		if c.Version < 1 {
			return failResult(codeBadCommand, fmt.Errorf("%w: protocol version %d", ErrBadCommand, c.Version))
		}
		f.protocol = max(f.protocol, c.Version)
		return Result{}
	case *RegisterOriginCmd:
		return f.applyRegister(c)
	case *RemoveOriginCmd:
		return f.applyRemove(c)
	case *SetHealthCmd:
		return f.applySetHealth(c)
	case *SetDrainingCmd:
		return f.applySetDraining(c)
	case *AssignCmd:
		return f.applyAssign(c)
	case *TouchCmd:
		return f.applyTouch(c)
	case *DeleteAssignmentsCmd:
		return f.applyDelete(c)
	case *PutRTCSessionCmd:
		return f.applyPutRTCSession(c)
	case *DeleteRTCSessionCmd:
		return f.applyDeleteRTCSession(c)
	case *ExpireRTCSessionsCmd:
		return f.applyExpireRTCSessions(c)
	case *TouchRTCSessionsCmd:
		return f.applyTouchRTCSessions(c)
	case *MoveCmd:
		return f.applyMove(c)
	case *PlanMoveCmd:
		return f.applyPlanMove(c)
	case *CompleteMoveCmd:
		return f.applyCompleteMove(c)
	case *CancelMoveCmd:
		return f.applyCancelMove(c)
	case *SetReplicasCmd:
		return f.applySetReplicas(c)
	case *SetTokenKeyCmd:
		if len(c.Key) < 16 || len(c.Key) > 64 {
			return failResult(codeBadCommand, fmt.Errorf("%w: a token key of %d bytes", ErrBadCommand, len(c.Key)))
		}
		if f.tokenKey == nil {
			f.tokenKey = append([]byte(nil), c.Key...)
		}
		return Result{}
	}
	return failResult(codeBadCommand, ErrBadCommand)
}

// hasTCPEndpoint reports whether the leader can probe the origin by TCP.
func hasTCPEndpoint(o stream.Origin) bool { return ProbeEndpoint(o) != "" }

// ProbeEndpoint is the endpoint the leader probes: RTMP, else HTTP, else API;
// "" for an origin that can only be judged by its heartbeats. Apply and the
// leader's probes must agree on it: a heartbeat heals an origin without one.
func ProbeEndpoint(o stream.Origin) string {
	for _, ep := range []string{o.RTMP, o.HTTP, o.API} {
		if ep != "" {
			return ep
		}
	}
	return ""
}

// applyRegister upserts an origin. A new origin starts healthy (the leader's
// probes correct that within seconds). A heartbeat that names no
// max_streams or weight (SRS's own never does) keeps the ones known. A known origin keeps its health, which
// the probes own, except that a restart (new service or pid) or a heartbeat of
// an origin that cannot be probed marks it healthy. Draining survives.
func (f *FSM) applyRegister(c *RegisterOriginCmd) Result {
	o := c.Origin
	if o.ID == "" {
		return failResult(codeBadCommand, fmt.Errorf("%w: origin without id", ErrBadCommand))
	}
	if err := o.CheckCapacity(); err != nil {
		return failResult(codeBadCommand, fmt.Errorf("%w: %v", ErrBadCommand, err))
	}
	if c.Load != nil && !c.Load.Valid() {
		return failResult(codeBadCommand, fmt.Errorf("%w: load out of bounds", ErrBadCommand))
	}
	s, ok := f.origins[o.ID]
	switch {
	case ok && s.Origin.Static && !o.Static:
		return failResult(codeRefused, fmt.Errorf("%w: %q is a static origin; heartbeats do not change it", ErrRegistrationRefused, o.ID))
	case ok && !o.Static && !c.Authenticated && !sameEndpoints(s.Origin, o):
		return failResult(codeRefused, fmt.Errorf("%w: the addresses of %q change only through a registration with the token", ErrRegistrationRefused, o.ID))
	case !ok && !o.Static && c.MaxOrigins > 0 && len(f.origins) >= c.MaxOrigins:
		return failResult(codeRefused, fmt.Errorf("%w: %d origins are registered, the most allowed", ErrRegistrationRefused, len(f.origins)))
	}
	if !ok {
		s = &OriginState{Healthy: true}
		f.origins[o.ID] = s
	} else {
		if !o.Static && o.MaxStreams == 0 {
			o.MaxStreams = s.Origin.MaxStreams
		}
		if !o.Static && o.Weight == 0 {
			o.Weight = s.Origin.Weight
		}
		restarted := (o.Service != "" && o.Service != s.Origin.Service) || (o.PID != "" && o.PID != s.Origin.PID)
		if restarted || (c.Heartbeat && !hasTCPEndpoint(o)) {
			s.Healthy, s.Reason = true, ""
		}
	}
	s.Origin = o
	if c.Heartbeat && c.NowMs > s.LastHeartbeatMs {
		s.LastHeartbeatMs = c.NowMs
	}
	if c.Load != nil {
		s.Load = nextLoad(s.Load, *c.Load)
	}
	out := o
	return Result{Origin: &out}
}

// nextLoad is the load an origin reported (next) with its network rates
// computed from the previous sample (prev): the byte counters' growth over
// the sample times' difference, in kbit/s. Without a usable previous sample
// (none, the same or an older time, counters that went back as after a
// restart) the rates are 0.
// maxKbps is the largest rate nextLoad reports: 1 Pbit/s.
const maxKbps = 1 << 40

func nextLoad(prev, next stream.Load) stream.Load {
	next.RecvKbps, next.SendKbps = 0, 0
	dt := next.SampleMs - prev.SampleMs
	if prev.SampleMs <= 0 || dt <= 0 || next.RecvBytes < prev.RecvBytes || next.SendBytes < prev.SendBytes {
		return next
	}
	rate := func(d int64) int64 {
		// bytes*8/ms is kbit/s; split the product to stay within int64,
		// and saturate: a counter may claim anything.
		if q := d / dt; q > maxKbps/8 {
			return maxKbps
		}
		return d/dt*8 + (d%dt)*8/dt
	}
	next.RecvKbps, next.SendKbps = rate(next.RecvBytes-prev.RecvBytes), rate(next.SendBytes-prev.SendBytes)
	return next
}

// sameEndpoints reports whether two records of an origin name the same
// addresses.
func sameEndpoints(a, b stream.Origin) bool {
	return a.IP == b.IP && a.RTMP == b.RTMP && a.HTTP == b.HTTP && a.API == b.API && a.SRT == b.SRT && a.RTC == b.RTC
}

func (f *FSM) applyRemove(c *RemoveOriginCmd) Result {
	s, ok := f.origins[c.ID]
	if !ok {
		return failResult(codeUnknownOrigin, fmt.Errorf("%w: %q", ErrUnknownOrigin, c.ID))
	}
	if c.StaleBeforeMs > 0 && s.LastHeartbeatMs >= c.StaleBeforeMs {
		return Result{}
	}
	delete(f.origins, c.ID)
	for k, a := range f.assignments {
		if a.Origin == c.ID {
			delete(f.assignments, k)
			for _, id := range a.holders()[1:] {
				f.decStreams(id)
			}
			if a.PlayOnly {
				f.playOnly--
			}
			continue
		}
		a.dropSource(c.ID)
	}
	delete(f.streams, c.ID)
	return Result{}
}

func (f *FSM) applySetHealth(c *SetHealthCmd) Result {
	for _, ch := range c.Changes {
		s, ok := f.origins[ch.ID]
		if !ok {
			continue // removed meanwhile
		}
		s.Healthy = ch.Healthy
		s.Reason = ch.Reason
		if ch.Healthy {
			s.Reason = ""
		}
		if ch.ProbeMs > s.LastProbeMs {
			s.LastProbeMs = ch.ProbeMs
		}
	}
	return Result{}
}

func (f *FSM) applySetDraining(c *SetDrainingCmd) Result {
	s, ok := f.origins[c.ID]
	if !ok {
		return failResult(codeUnknownOrigin, fmt.Errorf("%w: %q", ErrUnknownOrigin, c.ID))
	}
	s.Draining = c.Draining
	s.Evacuate = c.Draining && c.Move
	out := s.Origin
	return Result{Origin: &out}
}

// applyAssign returns the key's existing assignment when its origin is known
// and healthy (a draining origin keeps the streams it has), and otherwise
// picks an origin with stream.Select over the current origins and load.
func (f *FSM) applyAssign(c *AssignCmd) Result {
	key, err := stream.ParseKey(c.Key)
	if err != nil {
		return failResult(codeBadCommand, fmt.Errorf("%w: %v", ErrBadCommand, err))
	}
	a := f.assignments[c.Key]
	if a != nil {
		if s, ok := f.origins[a.Origin]; ok && s.Healthy {
			if c.NowMs > a.LastUsedMs {
				a.LastUsedMs = c.NowMs
			}
			if a.PlayOnly && !c.PlayOnly {
				a.PlayOnly = false
				f.playOnly--
			}
			out := s.Origin
			return Result{Origin: &out}
		}
	}
	if a != nil {
		// A warm replica takes over from an unhealthy primary.
		if id := f.healthyReplica(a, ""); id != "" {
			f.promote(a, id, c.NowMs)
			f.moved = append(f.moved, c.Key)
			if c.NowMs > a.LastUsedMs {
				a.LastUsedMs = c.NowMs
			}
			out := f.origins[id].Origin
			return Result{Origin: &out, Created: true}
		}
	}
	playOnly := c.PlayOnly && (a == nil || a.PlayOnly)
	if playOnly && a == nil && c.MaxPlayOnly > 0 && f.playOnly >= c.MaxPlayOnly {
		return failResult(codePlayOnlyFull, fmt.Errorf("%w: %d, the most allowed", ErrPlayOnlyFull, f.playOnly))
	}
	if a == nil && c.MaxAssignments > 0 && len(f.assignments) >= c.MaxAssignments {
		return failResult(codeAssignFull, fmt.Errorf("%w: %d, the most allowed", ErrAssignmentsFull, len(f.assignments)))
	}
	id, err := f.preferred(key, c.Prefer)
	if err != nil {
		cands := make([]stream.Candidate, 0, len(f.origins))
		for id, s := range f.origins {
			cands = append(cands, s.candidate(f.streams[id]))
		}
		id, err = stream.Select(key, cands)
	}
	if errors.Is(err, stream.ErrOriginsFull) {
		return failResult(codeOriginsFull, fmt.Errorf("no room for the new stream %s", c.Key))
	}
	if err != nil {
		return failResult(codeNoOrigin, fmt.Errorf("%w for %s", err, c.Key))
	}
	na := &Assignment{Origin: id, CreatedMs: c.NowMs, LastUsedMs: c.NowMs, PlayOnly: playOnly}
	if a != nil {
		for _, h := range a.holders() {
			f.decStreams(h)
		}
		if a.PlayOnly {
			f.playOnly--
		}
		na.Epoch, na.MovedMs, na.SeqBase, na.MovedFrom, na.MoveKind = a.Epoch, a.MovedMs, a.SeqBase, a.MovedFrom, a.MoveKind
		if a.Origin != id {
			prev := *a
			prev.moved(c.NowMs)
			na.Epoch, na.MovedMs, na.SeqBase, na.MovedFrom, na.MoveKind = prev.Epoch, prev.MovedMs, prev.SeqBase, prev.MovedFrom, MoveFailover
			f.moved = append(f.moved, c.Key)
		}
	}
	f.assignments[c.Key] = na
	if playOnly {
		f.playOnly++
	}
	f.streams[id]++
	out := f.origins[id].Origin
	return Result{Origin: &out, Created: true}
}

// preferred returns origin id when stream.Select could pick it for key
// (AssignCmd.Prefer), and an error otherwise (also for an empty id).
func (f *FSM) preferred(key stream.Key, id string) (string, error) {
	s, ok := f.origins[id]
	if id == "" || !ok {
		return "", stream.ErrNoOrigin
	}
	return stream.Select(key, []stream.Candidate{s.candidate(f.streams[id])})
}

// applyMove moves an assignment off an origin a node saw fail (MoveCmd).
func (f *FSM) applyMove(c *MoveCmd) Result {
	key, err := stream.ParseKey(c.Key)
	if err != nil {
		return failResult(codeBadCommand, fmt.Errorf("%w: %v", ErrBadCommand, err))
	}
	if c.From == "" {
		return failResult(codeBadCommand, fmt.Errorf("%w: move without the failed origin", ErrBadCommand))
	}
	a := f.assignments[c.Key]
	if a != nil && a.Origin != c.From {
		if s, ok := f.origins[a.Origin]; ok && s.Healthy {
			out := s.Origin
			return Result{Origin: &out}
		}
	}
	if a != nil && a.Origin == c.From && c.MinIntervalMs > 0 && a.MovedMs > 0 && c.NowMs-a.MovedMs < c.MinIntervalMs {
		return failResult(codeMoveTooSoon, fmt.Errorf("%w: %s moved %d ms ago", ErrMoveTooSoon, c.Key, c.NowMs-a.MovedMs))
	}
	if a == nil {
		// Nothing to move: a new stream is assigned with AssignCmd and its
		// bounds, never by a move.
		return failResult(codeNoOrigin, fmt.Errorf("%w: %s has no assignment to move", stream.ErrNoOrigin, c.Key))
	}
	if id := f.healthyReplica(a, c.From); id != "" {
		f.promote(a, id, c.NowMs)
		f.moved = append(f.moved, c.Key)
		if c.NowMs > a.LastUsedMs {
			a.LastUsedMs = c.NowMs
		}
		out := f.origins[id].Origin
		return Result{Origin: &out, Created: true}
	}
	cands := make([]stream.Candidate, 0, len(f.origins))
	for id, s := range f.origins {
		if id != c.From {
			cands = append(cands, s.candidate(f.streams[id]))
		}
	}
	id, err := stream.Select(key, cands)
	if errors.Is(err, stream.ErrOriginsFull) {
		return failResult(codeOriginsFull, fmt.Errorf("no room for %s on another origin", c.Key))
	}
	if err != nil {
		return failResult(codeNoOrigin, fmt.Errorf("%w for %s", err, c.Key))
	}
	f.decStreams(a.Origin)
	if a.Target != "" {
		f.decStreams(a.Target)
		a.Target, a.TargetMs = "", 0
	}
	if a.PlayOnly {
		a.PlayOnly = false
		f.playOnly--
	}
	a.moved(c.NowMs)
	a.MoveKind = MoveFailover
	a.Origin = id
	f.moved = append(f.moved, c.Key)
	if c.NowMs > a.LastUsedMs {
		a.LastUsedMs = c.NowMs
	}
	f.streams[id]++
	out := f.origins[id].Origin
	return Result{Origin: &out, Created: true}
}

// Epoch returns the epoch of key's assignment (Assignment.Epoch), 0 when it
// has none.
func (f *FSM) Epoch(key string) uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if a := f.assignments[key]; a != nil {
		return a.Epoch
	}
	return 0
}

// Moved returns the epoch of key's assignment, the sequence base of its
// HLS playlists (Assignment.SeqBase) and when it last changed origin (unix
// ms, 0 when never); zeros when key has no assignment.
func (f *FSM) Moved(key string) (epoch, seqBase uint64, movedMs int64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if a := f.assignments[key]; a != nil {
		return a.Epoch, a.SeqBase, a.MovedMs
	}
	return 0, 0, 0
}

func (f *FSM) decStreams(id string) {
	if f.streams[id] <= 1 {
		delete(f.streams, id)
		return
	}
	f.streams[id]--
}

func (f *FSM) applyTouch(c *TouchCmd) Result {
	for _, k := range c.Keys {
		if a := f.assignments[k]; a != nil && c.NowMs > a.LastUsedMs {
			a.LastUsedMs = c.NowMs
		}
	}
	return Result{}
}

func (f *FSM) applyDelete(c *DeleteAssignmentsCmd) Result {
	for _, k := range c.Keys {
		if a := f.assignments[k]; a != nil && a.LastUsedMs < c.CutoffMs {
			delete(f.assignments, k)
			for _, id := range a.holders() {
				f.decStreams(id)
			}
			if a.PlayOnly {
				f.playOnly--
			}
		}
	}
	return Result{}
}

// Route returns the origin of key's assignment when that origin is known and
// healthy (a draining origin keeps its streams); otherwise false, and the
// caller writes an AssignCmd.
func (f *FSM) Route(key string) (stream.Origin, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	a := f.assignments[key]
	if a == nil || f.halt != nil {
		return stream.Origin{}, false
	}
	s, ok := f.origins[a.Origin]
	if !ok || !s.Healthy {
		return stream.Origin{}, false
	}
	return s.Origin, true
}

// Healthy reports whether origin id is known and healthy.
func (f *FSM) Healthy(id string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.origins[id]
	return ok && s.Healthy && f.halt == nil
}

// Origin returns a known origin by id.
func (f *FSM) Origin(id string) (stream.Origin, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.origins[id]
	if !ok || f.halt != nil {
		return stream.Origin{}, false
	}
	return s.Origin, true
}

// AssignedOrigin returns the origin id a key is assigned to, healthy or
// not ("" if none).
func (f *FSM) AssignedOrigin(key string) string { return f.assignedOrigin(key) }

// assignedOrigin returns the origin id a key is assigned to ("" if none).
func (f *FSM) assignedOrigin(key string) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if a := f.assignments[key]; a != nil && f.halt == nil {
		return a.Origin
	}
	return ""
}

// Candidates returns every origin as the selection policy sees it, in no
// particular order.
func (f *FSM) Candidates() []stream.Candidate {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.halt != nil {
		return nil
	}
	out := make([]stream.Candidate, 0, len(f.origins))
	for id, s := range f.origins {
		out = append(out, s.candidate(f.streams[id]))
	}
	return out
}

// Origins returns copies of all origins with their health, sorted by id.
func (f *FSM) Origins() []OriginState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]OriginState, 0, len(f.origins))
	for _, s := range f.origins {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Origin.ID < out[j].Origin.ID })
	return out
}

// StaleKeys returns up to max keys last used before cutoffMs (unix ms),
// sorted: the keys a DeleteAssignmentsCmd with that cutoff would delete.
func (f *FSM) StaleKeys(cutoffMs int64, max int) []string {
	return f.staleKeys(cutoffMs, max, false)
}

// StalePlayOnlyKeys is StaleKeys for play-only assignments alone.
func (f *FSM) StalePlayOnlyKeys(cutoffMs int64, max int) []string {
	return f.staleKeys(cutoffMs, max, true)
}

// PlayOnlyCount is the number of play-only assignments.
func (f *FSM) PlayOnlyCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.playOnly
}

func (f *FSM) staleKeys(cutoffMs int64, max int, playOnly bool) []string {
	f.mu.RLock()
	var out []string
	for k, a := range f.assignments {
		if a.LastUsedMs < cutoffMs && (!playOnly || a.PlayOnly) {
			out = append(out, k)
		}
	}
	f.mu.RUnlock()
	sort.Strings(out)
	if len(out) > max {
		out = out[:max]
	}
	return out
}

// Contents is the whole state as one value: the JSON form of a snapshot, and
// what the mesh's status reads. Slices are sorted (origins by id,
// assignments by key, sessions by ufrag), so that equal states serialize
// identically.
type Contents struct {
	Origins []OriginState `json:"origins"`
	// TokenKey is the segment-token key (SetTokenKeyCmd): a secret, never
	// to be shown.
	TokenKey    []byte          `json:"token_key,omitempty"`
	Assignments []KeyAssignment `json:"assignments"`
	// RTCSessions carry their ICE passwords (Pwd): never show them as they
	// are.
	RTCSessions []stream.RTCSession `json:"rtc_sessions,omitempty"`
	// Index is the last applied log index when the state was copied (raft
	// takes snapshots between applies, so it is the snapshot's index).
	Index uint64 `json:"index,omitempty"`
	// Protocol is the mesh's recorded protocol version (FSM.Protocol); a
	// build below it cannot restore the snapshot and halts.
	Protocol int `json:"protocol,omitempty"`
}

// KeyAssignment is an Assignment with its stream key, as listed in Contents.
type KeyAssignment struct {
	Key string `json:"key"`
	Assignment
}

// Contents copies the whole state under the read lock.
func (f *FSM) Contents() Contents {
	st := Contents{Origins: f.Origins()}
	f.mu.RLock()
	st.Assignments = make([]KeyAssignment, 0, len(f.assignments))
	for k, a := range f.assignments {
		ka := KeyAssignment{Key: k, Assignment: *a}
		ka.Replicas = slices.Clone(a.Replicas)
		st.Assignments = append(st.Assignments, ka)
	}
	if len(f.rtc.m) > 0 {
		st.RTCSessions = make([]stream.RTCSession, 0, len(f.rtc.m))
		for _, e := range f.rtc.m {
			st.RTCSessions = append(st.RTCSessions, e.s)
		}
	}
	st.Index = f.index
	st.TokenKey = f.tokenKey
	st.Protocol = f.protocol
	f.mu.RUnlock()
	sort.Slice(st.Assignments, func(i, j int) bool { return st.Assignments[i].Key < st.Assignments[j].Key })
	sort.Slice(st.RTCSessions, func(i, j int) bool { return st.RTCSessions[i].Ufrag < st.RTCSessions[j].Ufrag })
	return st
}

// HasHTTPEndpoint reports whether hostport is the HTTP endpoint of a known
// origin. It copies nothing: segment requests ask it on every fetch.
func (f *FSM) HasHTTPEndpoint(hostport string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.halt != nil {
		return false
	}
	for _, s := range f.origins {
		if s.Origin.HTTP != "" && s.Origin.HTTP == hostport {
			return true
		}
	}
	return false
}

// TokenKey returns the mesh's segment-token key, or false before the leader
// has set one. The slice must not be modified.
func (f *FSM) TokenKey() ([]byte, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.tokenKey, f.tokenKey != nil
}

// Snapshot copies the state under the lock; Persist writes it outside. A
// halted replica refuses (ErrHalted): Raft would record its frozen state at
// an index past entries it never applied and drop them from the log, which
// a newer build restarted on the same data must still apply.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if h, ok := f.Halted(); ok {
		return nil, fmt.Errorf("%w: %s", ErrHalted, h.Reason)
	}
	return &fsmSnapshot{st: f.Contents()}, nil
}

// Restore replaces the whole state with a snapshot's, as written by Snapshot
// or by older versions (fields they lack decode empty). A snapshot of a mesh
// whose protocol is above ProtocolVersion may hold state this build cannot
// read: it is not restored and the replica halts (see Apply). Invalid or duplicate
// RTC sessions are dropped, the session table is cut to MaxRTCSessions (the
// sessions last seen the longest ago dropped first) and its eviction order
// is rebuilt from the sessions' times.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var st Contents
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return fmt.Errorf("mesh: restore snapshot: %w", err)
	}
	if st.Protocol > ProtocolVersion {
		f.halted(Halt{Index: st.Index, Protocol: st.Protocol, Reason: fmt.Sprintf(
			"snapshot at index %d is of mesh protocol %d, above this build's %d: upgrade this node (a downgrade is not supported)",
			st.Index, st.Protocol, ProtocolVersion)})
		return nil
	}
	origins := make(map[string]*OriginState, len(st.Origins))
	for i := range st.Origins {
		s := st.Origins[i]
		origins[s.Origin.ID] = &s
	}
	assignments := make(map[string]*Assignment, len(st.Assignments))
	streams := map[string]int{}
	playOnly := 0
	for _, ka := range st.Assignments {
		a := ka.Assignment
		assignments[ka.Key] = &a
		for _, id := range a.holders() {
			streams[id]++
		}
		if a.PlayOnly {
			playOnly++
		}
	}
	rtc := buildRTCTable(st.RTCSessions)
	f.mu.Lock()
	// The keys whose origin the restore changes (or that it adds) go to
	// onMoved, in key order, as the commands the snapshot stands for
	// would have told it.
	var moved []string
	for k, a := range assignments {
		if old := f.assignments[k]; old == nil || old.Origin != a.Origin {
			moved = append(moved, k)
		}
	}
	slices.Sort(moved)
	watch := f.onMoved
	f.origins, f.assignments, f.streams, f.playOnly = origins, assignments, streams, playOnly
	f.rtc = rtc
	f.tokenKey = st.TokenKey
	f.protocol = st.Protocol
	if st.Index > f.index {
		f.index = st.Index
	}
	f.notifyLocked()
	f.mu.Unlock()
	if watch != nil {
		for _, k := range moved {
			watch(k)
		}
	}
	return nil
}

// fsmSnapshot is a copy of the state taken by Snapshot; Persist writes it as
// JSON.
type fsmSnapshot struct{ st Contents }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.st); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
