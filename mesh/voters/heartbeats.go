package voters

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// WatchHeartbeats records, while this node leads, since when the Raft
// heartbeats to each member fail (raft's FailedHeartbeatObservation carries
// the last successful contact), and forgets a member when they resume. A
// killed member is known here within a heartbeat, seconds before gossip's
// suspicion declares it dead; Reconcile starts a dead member's reap timeout
// from the earlier of the two. It runs until ctx ends, on the caller's
// goroutine.
func (s *Set) WatchHeartbeats(ctx context.Context) {
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	s.cfg.Raft.RegisterObserver(obs)
	defer s.cfg.Raft.DeregisterObserver(obs)
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-ch:
			s.downMu.Lock()
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				if _, ok := s.down[string(d.PeerID)]; !ok {
					since := d.LastContact
					if since.IsZero() {
						since = s.cfg.Now()
					}
					s.down[string(d.PeerID)] = since
				}
			case raft.ResumedHeartbeatObservation:
				delete(s.down, string(d.PeerID))
			}
			s.downMu.Unlock()
		}
	}
}

// unreachableSince reports since when this leader's heartbeats to id have
// failed, if they do.
func (s *Set) unreachableSince(id string) (time.Time, bool) {
	s.downMu.Lock()
	defer s.downMu.Unlock()
	t, ok := s.down[id]
	return t, ok
}

// ForgetUnreachable clears what WatchHeartbeats recorded; the node calls it
// when it stops leading (failures it saw then are stale by the next time it
// leads).
func (s *Set) ForgetUnreachable() {
	s.downMu.Lock()
	clear(s.down)
	s.downMu.Unlock()
}
