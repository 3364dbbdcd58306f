// Package rtcsessions owns a node's side of the replicated WebRTC ICE
// session table (the table itself is state.FSM's): writes through the
// leader that read their own write, local lookups, the relay's reports of
// the sessions it carries and their flush to the table, and the leader's
// expiry of the sessions nobody carries.
//
// It writes through the functions of its Config (the node's write path) and
// knows nothing of the mesh root, Raft or gossip.
//
// Goroutines: Run, which flushes the relay's reports, runs on a goroutine
// the node starts and returns when its context ends; Collect runs on the
// leader loop's; every other method on the caller's, and Touch never blocks
// on the network.
package rtcsessions

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Replica is what the store reads of this node's replica (*state.FSM).
type Replica interface {
	RTCSession(ufrag string) (stream.RTCSession, bool)
	StaleRTCSessions(cutoffMs int64, max int) []string
	WaitApplied(ctx context.Context, index uint64) error
}

var _ Replica = (*state.FSM)(nil)

// Config is what a Store reads; every field but Log and Now is required.
type Config struct {
	Replica Replica
	// Apply writes a command through the leader (forwarded on a
	// follower), retrying until ctx ends.
	Apply func(context.Context, state.Command) (state.Result, error)
	// ApplyLocal writes a command on this node, the leader (Collect).
	ApplyLocal func(context.Context, state.Command) (state.Result, error)
	// MaxSessions bounds the table; it travels in each put.
	MaxSessions int
	// ActiveWindow protects from eviction the sessions a relay carried
	// within it.
	ActiveWindow time.Duration
	// TouchInterval is how often Run reports the sessions the relay
	// carried.
	TouchInterval time.Duration
	// SessionTTL is how long a session nobody carries lives (Collect).
	SessionTTL time.Duration
	// WriteTimeout bounds each write (the node's RouteTimeout).
	WriteTimeout time.Duration
	// Log is the node's logger (nil: slog.Default()).
	Log *slog.Logger
	// Now is the clock of activity stamps, eviction and expiry (nil:
	// time.Now).
	Now func() time.Time
}

// Store is a node's side of the session table. Its methods are safe for
// concurrent use.
type Store struct {
	cfg Config
	log *slog.Logger

	// active holds the ufrags of the sessions the relay reported carrying
	// since the last flush (Touch); at most maxPendingTouches.
	activeMu sync.Mutex
	active   map[string]struct{}
	// kick asks Run for a report now: a session the relay just started
	// carrying is not protected until reported.
	kick chan struct{}
}

// New returns a Store for cfg.
func New(cfg Config) *Store {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{cfg: cfg, log: cfg.Log, active: map[string]struct{}{}, kick: make(chan struct{}, 1)}
}

// Put stores a WebRTC ICE session in the replicated table, replacing any
// session with the same Ufrag. s.LastActiveUnixMs is ignored: only relays'
// reports (Touch) set it. On a follower the write is forwarded to the
// leader. It is bounded by WriteTimeout (or ctx, if sooner) and returns once
// the session is committed and, normally, applied on this node too, so that
// Lookup here finds it at once. If this node's replica lags beyond the
// bound, Put still returns nil: the session is committed, and this replica
// will have it as soon as it catches up.
//
// A full table (MaxSessions) evicts the session seen the longest ago among
// those no relay carried within ActiveWindow (by this node's clock); when
// there is none, Put fails with state.ErrRTCTableFull and the sessions in
// the table stay.
func (s *Store) Put(ctx context.Context, sess stream.RTCSession) error {
	sess.LastActiveUnixMs = 0
	c := state.PutRTCSessionCmd{Session: sess, MaxSessions: s.cfg.MaxSessions,
		ProtectSinceMs: s.cfg.Now().Add(-s.cfg.ActiveWindow).UnixMilli()}
	if err := c.Validate(); err != nil {
		return err
	}
	return s.applyAndWait(ctx, c)
}

// maxPendingTouches bounds the ufrags Touch records between two flushes;
// more are dropped until the next flush.
const maxPendingTouches = 1 << 16

// maxTouchBatch bounds the ufrags of one TouchRTCSessionsCmd, so that a
// command of the longest ufrags stays well within state.MaxCommandBytes.
const maxTouchBatch = 1000

// Touch records that this node's relay carried packets of the sessions
// named by ufrags. Run reports them to the replicated table every
// TouchInterval, which protects them from eviction for ActiveWindow and
// from expiry for SessionTTL; a session no relay has reported yet is
// reported at once, so that a new session is unprotected for as short a
// time as possible. It never blocks on the network; the relay calls it
// periodically for the sessions active since its previous call. Ufrags that
// cannot name a session are ignored, and at most 65,536 are held between
// two reports.
func (s *Store) Touch(ufrags []string) {
	first := false
	s.activeMu.Lock()
	for _, u := range ufrags {
		if u == "" || len(u) > stream.MaxRTCUfragBytes || len(s.active) >= maxPendingTouches {
			continue
		}
		if _, pending := s.active[u]; pending {
			continue
		}
		s.active[u] = struct{}{}
		if sess, ok := s.cfg.Replica.RTCSession(u); ok && sess.LastActiveUnixMs == 0 {
			first = true
		}
	}
	s.activeMu.Unlock()
	if first {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// Run reports the sessions the relay carried every TouchInterval, or at
// once when the relay started carrying one that no relay had reported,
// until ctx ends.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.TouchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.flush(ctx)
		case <-s.kick:
			s.flush(ctx)
		}
	}
}

// flush writes the recorded sessions that this replica holds as
// TouchRTCSessionsCmd batches stamped now. A batch that fails is dropped:
// the relay reports a session again for as long as it carries it.
func (s *Store) flush(ctx context.Context) {
	s.activeMu.Lock()
	pending := s.active
	if len(pending) == 0 {
		s.activeMu.Unlock()
		return
	}
	s.active = map[string]struct{}{}
	s.activeMu.Unlock()
	ufrags := make([]string, 0, len(pending))
	for u := range pending {
		if _, ok := s.cfg.Replica.RTCSession(u); ok {
			ufrags = append(ufrags, u)
		}
	}
	now := s.cfg.Now().UnixMilli()
	for len(ufrags) > 0 {
		batch := ufrags[:min(len(ufrags), maxTouchBatch)]
		ufrags = ufrags[len(batch):]
		actx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
		_, err := s.cfg.Apply(actx, state.TouchRTCSessionsCmd{Ufrags: batch, NowMs: now})
		cancel()
		if err != nil {
			s.log.Debug("report rtc session activity", "sessions", len(batch), "err", err)
		}
	}
}

// Delete removes a session from the replicated table; deleting an absent
// session is not an error. Bounds and read-your-write as Put.
func (s *Store) Delete(ctx context.Context, ufrag string) error {
	if ufrag == "" || len(ufrag) > stream.MaxRTCUfragBytes {
		return nil // such a session cannot exist
	}
	return s.applyAndWait(ctx, state.DeleteRTCSessionCmd{Ufrag: ufrag})
}

// Lookup reads a session from this node's replica: a map read under a read
// lock, no network.
func (s *Store) Lookup(ufrag string) (stream.RTCSession, bool) {
	return s.cfg.Replica.RTCSession(ufrag)
}

// applyAndWait writes a command bounded by WriteTimeout and then waits,
// within the same bound, until this node's replica has applied it.
func (s *Store) applyAndWait(ctx context.Context, c state.Command) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	res, err := s.cfg.Apply(ctx, c)
	if err != nil {
		return err
	}
	if err := s.cfg.Replica.WaitApplied(ctx, res.Index); err != nil {
		s.log.Debug("write committed but not yet applied here", "cmd", c.Type().String(), "index", res.Index)
	}
	return nil
}

// Collect deletes, on the leader, the sessions last seen (created, or
// carried by a relay of the mesh) more than SessionTTL ago, by the leader's
// clock. A DELETE ends a session at once; this catches the ones whose
// client vanished without one. A session a relay still carries is reported
// every TouchInterval and never collected.
func (s *Store) Collect(ctx context.Context) {
	cutoff := s.cfg.Now().Add(-s.cfg.SessionTTL).UnixMilli()
	for ctx.Err() == nil {
		ufrags := s.cfg.Replica.StaleRTCSessions(cutoff, 1000)
		if len(ufrags) == 0 {
			return
		}
		if _, err := s.cfg.ApplyLocal(ctx, state.ExpireRTCSessionsCmd{Ufrags: ufrags, CutoffMs: cutoff}); err != nil {
			s.log.Warn("rtc session gc", "err", err)
			return
		}
		s.log.Debug("collected rtc sessions", "count", len(ufrags))
	}
}
