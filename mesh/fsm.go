package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/srs-mesh/srs-mesh/stream"
)

// originState is an origin with its replicated health.
type originState struct {
	Origin          stream.Origin `json:"origin"`
	Healthy         bool          `json:"healthy"`
	Draining        bool          `json:"draining,omitempty"`
	LastHeartbeatMs int64         `json:"last_heartbeat_ms,omitempty"`
	LastProbeMs     int64         `json:"last_probe_ms,omitempty"`
	Reason          string        `json:"reason,omitempty"`
}

// assignment is one stream key's origin.
type assignment struct {
	Origin     string `json:"origin"`
	CreatedMs  int64  `json:"created_ms"`
	LastUsedMs int64  `json:"last_used_ms"`
}

// fsm is the replicated state of the mesh: origins, assignments and WebRTC
// ICE sessions. It
// implements raft.FSM; its Apply is deterministic (no clock, no I/O), so every
// replica that applies the same log holds the same state. Reads take the
// read lock and never touch the network.
type fsm struct {
	mu          sync.RWMutex
	origins     map[string]*originState
	assignments map[string]*assignment
	// streams counts assignments per origin id (the load Select balances).
	streams map[string]int
	// rtc holds the ICE sessions by ufrag; rtcAge orders them by age for
	// deterministic eviction at MaxRTCSessions.
	rtc    map[string]*rtcEntry
	rtcAge rtcHeap

	// index is the Raft index of the last applied log entry; applied is
	// closed (and cleared) when it advances, for waitApplied.
	index   uint64
	applied chan struct{}
}

var _ raft.FSM = (*fsm)(nil)

func newFSM() *fsm {
	return &fsm{
		origins:     map[string]*originState{},
		assignments: map[string]*assignment{},
		streams:     map[string]int{},
		rtc:         map[string]*rtcEntry{},
	}
}

// Apply applies one committed log entry and returns an applyResult.
func (f *fsm) Apply(l *raft.Log) any {
	var res applyResult
	if l.Type == raft.LogCommand {
		res = f.applyCommand(l.Data)
	}
	f.mu.Lock()
	if l.Index > f.index {
		f.index = l.Index
	}
	f.notifyLocked()
	f.mu.Unlock()
	return res
}

// notifyLocked wakes the waiters of waitApplied. f.mu is held.
func (f *fsm) notifyLocked() {
	if f.applied != nil {
		close(f.applied)
		f.applied = nil
	}
}

// waitApplied waits until the replica has applied log index idx, or ctx is
// done.
func (f *fsm) waitApplied(ctx context.Context, idx uint64) error {
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
func (f *fsm) appliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.index
}

// applyCommand decodes and applies one command.
func (f *fsm) applyCommand(data []byte) applyResult {
	_, body, err := decodeCommand(data)
	if err != nil {
		return failResult(codeBadCommand, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch c := body.(type) {
	case *registerOriginCmd:
		return f.applyRegister(c)
	case *removeOriginCmd:
		return f.applyRemove(c)
	case *setHealthCmd:
		return f.applySetHealth(c)
	case *setDrainingCmd:
		return f.applySetDraining(c)
	case *assignCmd:
		return f.applyAssign(c)
	case *touchCmd:
		return f.applyTouch(c)
	case *deleteAssignmentsCmd:
		return f.applyDelete(c)
	case *putRTCSessionCmd:
		return f.applyPutRTCSession(c)
	case *deleteRTCSessionCmd:
		return f.applyDeleteRTCSession(c)
	case *expireRTCSessionsCmd:
		return f.applyExpireRTCSessions(c)
	}
	return failResult(codeBadCommand, ErrBadCommand)
}

// hasTCPEndpoint reports whether the leader can probe the origin by TCP.
func hasTCPEndpoint(o stream.Origin) bool { return probeEndpoint(o) != "" }

// probeEndpoint is the endpoint the leader probes: RTMP, else HTTP, else API.
func probeEndpoint(o stream.Origin) string {
	for _, ep := range []string{o.RTMP, o.HTTP, o.API} {
		if ep != "" {
			return ep
		}
	}
	return ""
}

// applyRegister upserts an origin. A new origin starts healthy (the leader's
// probes correct that within seconds). A known origin keeps its health, which
// the probes own, except that a restart (new service or pid) or a heartbeat of
// an origin that cannot be probed marks it healthy. Draining survives.
func (f *fsm) applyRegister(c *registerOriginCmd) applyResult {
	o := c.Origin
	if o.ID == "" {
		return failResult(codeBadCommand, fmt.Errorf("%w: origin without id", ErrBadCommand))
	}
	s, ok := f.origins[o.ID]
	if !ok {
		s = &originState{Healthy: true}
		f.origins[o.ID] = s
	} else {
		restarted := (o.Service != "" && o.Service != s.Origin.Service) || (o.PID != "" && o.PID != s.Origin.PID)
		if restarted || (c.Heartbeat && !hasTCPEndpoint(o)) {
			s.Healthy, s.Reason = true, ""
		}
	}
	s.Origin = o
	if c.Heartbeat && c.NowMs > s.LastHeartbeatMs {
		s.LastHeartbeatMs = c.NowMs
	}
	out := o
	return applyResult{Origin: &out}
}

func (f *fsm) applyRemove(c *removeOriginCmd) applyResult {
	if _, ok := f.origins[c.ID]; !ok {
		return failResult(codeUnknownOrigin, fmt.Errorf("%w: %q", ErrUnknownOrigin, c.ID))
	}
	delete(f.origins, c.ID)
	for k, a := range f.assignments {
		if a.Origin == c.ID {
			delete(f.assignments, k)
		}
	}
	delete(f.streams, c.ID)
	return applyResult{}
}

func (f *fsm) applySetHealth(c *setHealthCmd) applyResult {
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
	return applyResult{}
}

func (f *fsm) applySetDraining(c *setDrainingCmd) applyResult {
	s, ok := f.origins[c.ID]
	if !ok {
		return failResult(codeUnknownOrigin, fmt.Errorf("%w: %q", ErrUnknownOrigin, c.ID))
	}
	s.Draining = c.Draining
	out := s.Origin
	return applyResult{Origin: &out}
}

// applyAssign returns the key's existing assignment when its origin is known
// and healthy (a draining origin keeps the streams it has), and otherwise
// picks an origin with stream.Select over the current origins and load.
func (f *fsm) applyAssign(c *assignCmd) applyResult {
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
			out := s.Origin
			return applyResult{Origin: &out}
		}
	}
	cands := make([]stream.Candidate, 0, len(f.origins))
	for id, s := range f.origins {
		cands = append(cands, stream.Candidate{ID: id, Healthy: s.Healthy, Draining: s.Draining, Streams: f.streams[id]})
	}
	id, err := stream.Select(key, cands)
	if err != nil {
		return failResult(codeNoOrigin, fmt.Errorf("%w for %s", err, c.Key))
	}
	if a != nil {
		f.decStreams(a.Origin)
	}
	f.assignments[c.Key] = &assignment{Origin: id, CreatedMs: c.NowMs, LastUsedMs: c.NowMs}
	f.streams[id]++
	out := f.origins[id].Origin
	return applyResult{Origin: &out, Created: true}
}

func (f *fsm) decStreams(id string) {
	if f.streams[id] <= 1 {
		delete(f.streams, id)
		return
	}
	f.streams[id]--
}

func (f *fsm) applyTouch(c *touchCmd) applyResult {
	for _, k := range c.Keys {
		if a := f.assignments[k]; a != nil && c.NowMs > a.LastUsedMs {
			a.LastUsedMs = c.NowMs
		}
	}
	return applyResult{}
}

func (f *fsm) applyDelete(c *deleteAssignmentsCmd) applyResult {
	for _, k := range c.Keys {
		if a := f.assignments[k]; a != nil && a.LastUsedMs < c.CutoffMs {
			delete(f.assignments, k)
			f.decStreams(a.Origin)
		}
	}
	return applyResult{}
}

// route returns the origin of an existing assignment whose origin is healthy.
func (f *fsm) route(key string) (stream.Origin, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	a := f.assignments[key]
	if a == nil {
		return stream.Origin{}, false
	}
	s, ok := f.origins[a.Origin]
	if !ok || !s.Healthy {
		return stream.Origin{}, false
	}
	return s.Origin, true
}

// origin returns a known origin.
func (f *fsm) origin(id string) (stream.Origin, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.origins[id]
	if !ok {
		return stream.Origin{}, false
	}
	return s.Origin, true
}

// assignedOrigin returns the origin id a key is assigned to ("" if none).
func (f *fsm) assignedOrigin(key string) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if a := f.assignments[key]; a != nil {
		return a.Origin
	}
	return ""
}

// candidates returns every origin as the selection policy sees it.
func (f *fsm) candidates() []stream.Candidate {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]stream.Candidate, 0, len(f.origins))
	for id, s := range f.origins {
		out = append(out, stream.Candidate{ID: id, Healthy: s.Healthy, Draining: s.Draining, Streams: f.streams[id]})
	}
	return out
}

// originStates returns copies of all origins, sorted by id.
func (f *fsm) originStates() []originState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]originState, 0, len(f.origins))
	for _, s := range f.origins {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Origin.ID < out[j].Origin.ID })
	return out
}

// staleKeys returns up to max keys last used before cutoffMs, sorted.
func (f *fsm) staleKeys(cutoffMs int64, max int) []string {
	f.mu.RLock()
	var out []string
	for k, a := range f.assignments {
		if a.LastUsedMs < cutoffMs {
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

// fsmState is the serialized form of the FSM, in snapshots and tests. Slices
// are sorted so that equal states serialize identically.
type fsmState struct {
	Origins     []originState       `json:"origins"`
	Assignments []keyAssignment     `json:"assignments"`
	RTCSessions []stream.RTCSession `json:"rtc_sessions,omitempty"`
	// Index is the last applied log index when the state was copied (raft
	// takes snapshots between applies, so it is the snapshot's index).
	Index uint64 `json:"index,omitempty"`
}

type keyAssignment struct {
	Key string `json:"key"`
	assignment
}

// state copies the whole state under the read lock.
func (f *fsm) state() fsmState {
	st := fsmState{Origins: f.originStates()}
	f.mu.RLock()
	st.Assignments = make([]keyAssignment, 0, len(f.assignments))
	for k, a := range f.assignments {
		st.Assignments = append(st.Assignments, keyAssignment{Key: k, assignment: *a})
	}
	if len(f.rtc) > 0 {
		st.RTCSessions = make([]stream.RTCSession, 0, len(f.rtc))
		for _, e := range f.rtc {
			st.RTCSessions = append(st.RTCSessions, e.s)
		}
	}
	st.Index = f.index
	f.mu.RUnlock()
	sort.Slice(st.Assignments, func(i, j int) bool { return st.Assignments[i].Key < st.Assignments[j].Key })
	sort.Slice(st.RTCSessions, func(i, j int) bool { return st.RTCSessions[i].Ufrag < st.RTCSessions[j].Ufrag })
	return st
}

// Snapshot copies the state under the lock; Persist writes it outside.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{st: f.state()}, nil
}

// Restore replaces the whole state with a snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var st fsmState
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return fmt.Errorf("mesh: restore snapshot: %w", err)
	}
	origins := make(map[string]*originState, len(st.Origins))
	for i := range st.Origins {
		s := st.Origins[i]
		origins[s.Origin.ID] = &s
	}
	assignments := make(map[string]*assignment, len(st.Assignments))
	streams := map[string]int{}
	for _, ka := range st.Assignments {
		a := ka.assignment
		assignments[ka.Key] = &a
		streams[a.Origin]++
	}
	rtc, age := buildRTCTable(st.RTCSessions)
	f.mu.Lock()
	f.origins, f.assignments, f.streams = origins, assignments, streams
	f.rtc, f.rtcAge = rtc, age
	if st.Index > f.index {
		f.index = st.Index
	}
	f.notifyLocked()
	f.mu.Unlock()
	return nil
}

type fsmSnapshot struct{ st fsmState }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.st); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
