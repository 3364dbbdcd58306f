// Package health is the leader's judgement of origin health. Each Round
// probes every origin that has a TCP endpoint (a connect, bounded in time),
// judges the others by the age of their last heartbeat, and returns the
// changes for the leader to write as one SetHealth command. It keeps the
// per-origin failure history between rounds; Rounds are made by one
// goroutine (the leader loop), LastOK may be read by any.
package health

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/state"
)

// Config are the timers of a Checker.
type Config struct {
	// ProbeTimeout bounds one TCP connect.
	ProbeTimeout time.Duration
	// OriginTimeout: an origin whose probes have failed for half of it (or
	// twice in a row) is unhealthy.
	OriginTimeout time.Duration
	// HeartbeatTimeout: an origin judged by heartbeats alone is unhealthy
	// once its last heartbeat is older.
	HeartbeatTimeout time.Duration
}

// Checker holds the probe history of the origins.
type Checker struct {
	cfg   Config
	track map[string]*track // owned by the Round caller
	// lastOK is the last successful probe per origin id (unix ms), for
	// readers on other goroutines.
	lastOK sync.Map
}

type track struct {
	fails        int
	failingSince time.Time
}

type result struct {
	ok  bool
	err error
	at  time.Time
}

// New returns a Checker with no history.
func New(cfg Config) *Checker {
	return &Checker{cfg: cfg, track: map[string]*track{}}
}

// LastOK returns the time of the last successful probe of origin id seen by
// this Checker.
func (c *Checker) LastOK(id string) (time.Time, bool) {
	v, ok := c.lastOK.Load(id)
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMilli(v.(int64)), true
}

// Round probes origins in parallel and returns the health changes against
// their replicated state. An origin becomes unhealthy after two consecutive
// failed probes or after failing for OriginTimeout/2, and healthy again on
// the first successful probe. Static origins without a TCP endpoint are left
// alone. It returns nothing when ctx ends first.
func (c *Checker) Round(ctx context.Context, origins []state.OriginState) []state.HealthChange {
	results := make([]result, len(origins))
	var wg sync.WaitGroup
	for i, s := range origins {
		ep := state.ProbeEndpoint(s.Origin)
		if ep == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: c.cfg.ProbeTimeout}
			conn, err := d.DialContext(ctx, "tcp", ep)
			if err == nil {
				conn.Close()
			}
			results[i] = result{ok: err == nil, err: err, at: time.Now()}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	now := time.Now()
	var changes []state.HealthChange
	seen := map[string]bool{}
	for i, s := range origins {
		id := s.Origin.ID
		seen[id] = true
		if state.ProbeEndpoint(s.Origin) == "" {
			if s.Origin.Static {
				continue
			}
			fresh := now.UnixMilli()-s.LastHeartbeatMs <= c.cfg.HeartbeatTimeout.Milliseconds()
			if fresh != s.Healthy {
				ch := state.HealthChange{ID: id, Healthy: fresh}
				if !fresh {
					ch.Reason = "no heartbeat for " + c.cfg.HeartbeatTimeout.String()
				}
				changes = append(changes, ch)
			}
			continue
		}
		r := results[i]
		t := c.track[id]
		if t == nil {
			t = &track{}
			c.track[id] = t
		}
		if r.ok {
			c.lastOK.Store(id, r.at.UnixMilli())
			t.fails, t.failingSince = 0, time.Time{}
			if !s.Healthy {
				changes = append(changes, state.HealthChange{ID: id, Healthy: true, ProbeMs: r.at.UnixMilli()})
			}
			continue
		}
		if t.fails == 0 {
			t.failingSince = r.at
		}
		t.fails++
		if s.Healthy && (t.fails >= 2 || r.at.Sub(t.failingSince) >= c.cfg.OriginTimeout/2) {
			// The change carries the last successful probe, so that every
			// node shows when the origin was last seen alive.
			var lastOK int64
			if at, ok := c.LastOK(id); ok {
				lastOK = at.UnixMilli()
			}
			changes = append(changes, state.HealthChange{ID: id, Healthy: false, ProbeMs: lastOK,
				Reason: fmt.Sprintf("probe %s failed %d times: %v", state.ProbeEndpoint(s.Origin), t.fails, r.err)})
		}
	}
	for id := range c.track {
		if !seen[id] {
			delete(c.track, id)
			c.lastOK.Delete(id)
		}
	}
	return changes
}

// Refreshes returns, for each healthy origin whose last successful probe
// (as this Checker saw it) is newer than the replicated one, a change that
// only records that probe time. Written every round, it keeps the
// replicated time within one probe interval of the leader's own, so that
// every node shows the same "last seen alive" for an origin (the
// replicated one). Origins in skip (those with a real change this round)
// are left out.
func (c *Checker) Refreshes(origins []state.OriginState, skip []state.HealthChange) []state.HealthChange {
	var out []state.HealthChange
	for _, s := range origins {
		if !s.Healthy || slices.ContainsFunc(skip, func(ch state.HealthChange) bool { return ch.ID == s.Origin.ID }) {
			continue
		}
		at, ok := c.LastOK(s.Origin.ID)
		if ok && at.UnixMilli() > s.LastProbeMs {
			out = append(out, state.HealthChange{ID: s.Origin.ID, Healthy: true, ProbeMs: at.UnixMilli()})
		}
	}
	return out
}
