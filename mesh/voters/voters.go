// Package voters owns the leader's reconcile of the Raft voter set.
//
// At most Config.Voters members are Raft voters; every other member is a
// non-voter that replicates the log and routes from its replica. The leader
// keeps the set healthy in the manner of raft-autopilot: a voter that left or
// stayed failed past ReapTimeout is replaced by promoting a healthy, caught-up
// non-voter first and removing the old voter second, so that the number of
// live voters never drops during the swap; and when members advertise a zone,
// voters are spread over distinct zones.
//
// The package decides and makes Raft's configuration changes (through the
// Raft interface, which *raft.Raft satisfies); gossip's view comes from the
// node through Config. It writes no replicated state (no log command) and
// knows nothing of the mesh root. The decisions themselves (who to promote,
// demote or remove, whether removing keeps a quorum, who bootstraps as a
// voter) are pure functions of a membership, in plan.go.
//
// Goroutines: the package starts none. Reconcile and RemoveLeaving run on the
// caller's goroutine (the node's leader loop and its internal API);
// WatchHeartbeats runs on a goroutine the node starts and returns when its
// context ends.
package voters

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Raft is what the voter set uses of a Raft node: its configuration calls,
// its heartbeat observations and its progress. *raft.Raft satisfies it.
type Raft interface {
	GetConfiguration() raft.ConfigurationFuture
	AddVoter(id raft.ServerID, address raft.ServerAddress, prevIndex uint64, timeout time.Duration) raft.IndexFuture
	AddNonvoter(id raft.ServerID, address raft.ServerAddress, prevIndex uint64, timeout time.Duration) raft.IndexFuture
	DemoteVoter(id raft.ServerID, prevIndex uint64, timeout time.Duration) raft.IndexFuture
	RemoveServer(id raft.ServerID, prevIndex uint64, timeout time.Duration) raft.IndexFuture
	RegisterObserver(*raft.Observer)
	DeregisterObserver(*raft.Observer)
	Stats() map[string]string
	AppliedIndex() uint64
}

var _ Raft = (*raft.Raft)(nil)

// Member is a member as gossip shows it: its node id, its Raft (cluster)
// address and its zone ("" when none).
type Member struct {
	ID, Addr, Zone string
}

// Config is what a Set reads. Self, Voters, Raft, Alive, Left, RecentlyLeft
// and MarkLeft are required.
type Config struct {
	// Self is this node, the leader whenever it reconciles.
	Self Member
	// Voters is the most voters the set holds (--raft-voters).
	Voters int
	// Floor is the fewest voters failures may shrink the set to (see
	// Floor).
	Floor int
	// ReapTimeout is how long a member stays failed before it is replaced
	// or removed.
	ReapTimeout time.Duration
	Raft        Raft
	// Alive returns the members gossip sees alive (this node may be among
	// them), sorted by id.
	Alive func() []Member
	// Left reports whether gossip shows member id as having left
	// gracefully.
	Left func(id string) bool
	// RecentlyLeft reports whether id left gracefully lately and has not
	// rejoined gossip since: its leave may not have reached gossip here
	// yet, and it is not re-added.
	RecentlyLeft func(id string) bool
	// MarkLeft records that member id leaves gracefully (RemoveLeaving).
	MarkLeft func(id string)
	// Prove checks a member before it is added (nil: every member is
	// taken at gossip's word).
	Prove func(Member) error
	// Client asks members for their progress (the cluster port's client).
	Client *http.Client
	// Log is the node's logger (nil: slog.Default()).
	Log *slog.Logger
	// Now is the clock of reap timeouts (nil: time.Now).
	Now func() time.Time
}

// Floor is the fewest voters the leader lets failures shrink the set to:
// --bootstrap-expect, or --raft-voters when that is smaller.
func Floor(bootstrapExpect, raftVoters int) int { return min(bootstrapExpect, raftVoters) }

// Set reconciles the voter set. Its methods are safe for concurrent use.
type Set struct {
	cfg Config
	log *slog.Logger

	// down holds, while this node leads, since when Raft heartbeats to
	// each member have failed (WatchHeartbeats).
	downMu sync.Mutex
	down   map[string]time.Time
}

// New returns a Set for cfg.
func New(cfg Config) *Set {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Set{cfg: cfg, log: cfg.Log, down: map[string]time.Time{}}
}

// Count returns the number of voters in the latest configuration (0 when
// it cannot be read).
func (s *Set) Count() int {
	f := s.cfg.Raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			c++
		}
	}
	return c
}

// membership reads the Raft configuration and gossip's alive members, this
// node included. It also returns the alive members as Alive listed them.
func (s *Set) membership() (membership, []Member, error) {
	f := s.cfg.Raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return membership{}, nil, err
	}
	m := membership{servers: map[string]raft.Server{}, alive: map[string]Member{}}
	for _, srv := range f.Configuration().Servers {
		m.servers[string(srv.ID)] = srv
	}
	m.alive[s.cfg.Self.ID] = s.cfg.Self
	members := s.cfg.Alive()
	for _, meta := range members {
		m.alive[meta.ID] = meta
	}
	return m, members, nil
}

// maxPromoteTries bounds the candidates one promotion asks for progress.
const maxPromoteTries = 3

// promote makes the first caught-up candidate of order a voter and records
// it in m. It reports the promoted id, or "" when none could be promoted.
// A promotion never loses quorum: the candidate is alive and caught up, so
// the live voters stay a majority of the larger set.
func (s *Set) promote(ctx context.Context, m membership, order []string, why string) string {
	for i, id := range order {
		if i >= maxPromoteTries || ctx.Err() != nil {
			break
		}
		srv := m.servers[id]
		if live, total := m.liveVoters()+1, m.count(raft.Voter)+1; live < total/2+1 {
			s.log.Warn("not promoting: the live voters would not be a majority", "member", id, "live", live, "voters", total)
			return ""
		}
		if ok, lag := s.caughtUp(ctx, string(srv.Address)); !ok {
			s.log.Info("not promoting a non-voter that has not caught up", "member", id, "why", lag)
			continue
		}
		s.log.Info("promoting non-voter", "member", id, "zone", m.alive[id].Zone, "reason", why)
		if err := s.cfg.Raft.AddVoter(srv.ID, srv.Address, 0, 5*time.Second).Error(); err != nil {
			s.log.Warn("promote non-voter", "member", id, "err", err)
			return ""
		}
		srv.Suffrage = raft.Voter
		m.servers[id] = srv
		return id
	}
	return ""
}

// Reconcile makes the Raft configuration follow gossip membership:
//
//   - an alive member that is not in the configuration (or moved its Raft
//     address) is added: as a voter while there are fewer than Voters,
//     else as a non-voter;
//   - while there are fewer than Voters voters, caught-up non-voters are
//     promoted, those in a zone no voter covers first;
//   - a voter that left gracefully, or failed (dead, or unknown to gossip)
//     and stayed so for ReapTimeout (counted from when gossip stopped seeing
//     it alive, or from when Raft heartbeats to it began to fail, whichever
//     came first), is replaced: a caught-up non-voter is
//     promoted first, then the old voter is removed. Without a replacement
//     a failed voter is removed only while the voters that remain are at
//     least Floor (removing a dead voter from a minimal cluster would
//     lower its fault tolerance, not raise it), and a leaving one only when
//     removing it keeps a working quorum (removeSafe);
//   - a non-voter that left, or failed for ReapTimeout, is removed;
//   - while every voter is alive and there are more than Voters, one
//     voter per round is demoted (shrinkVoters);
//   - when every voter is alive, a non-voter whose zone no voter covers
//     takes the place of a voter whose zone has two (promoted first, the
//     other demoted second).
//
// reap records when each member was first seen failed; it is owned by the
// caller's leader loop, and a new one starts empty.
func (s *Set) Reconcile(ctx context.Context, reap map[string]time.Time) {
	if ctx.Err() != nil {
		return
	}
	m, members, err := s.membership()
	if err != nil {
		return
	}
	if !s.addMembers(members, m) {
		return
	}
	ids := make([]string, 0, len(m.servers))
	for id := range m.servers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		srv, ok := m.servers[id]
		if !ok || id == s.cfg.Self.ID {
			continue
		}
		if _, ok := m.alive[id]; ok {
			delete(reap, id)
			continue
		}
		left := s.cfg.Left(id)
		if !left {
			since, ok := reap[id]
			if !ok {
				since = s.cfg.Now()
				reap[id] = since
			}
			if down, ok := s.unreachableSince(id); ok && down.Before(since) {
				since = down
			}
			if s.cfg.Now().Sub(since) < s.cfg.ReapTimeout {
				continue
			}
		}
		why := "failed"
		if left {
			why = "left"
		}
		if srv.Suffrage != raft.Voter {
			s.remove(id, why, m.servers)
			delete(reap, id)
			continue
		}
		if m.count(raft.Voter) <= s.cfg.Voters {
			// Not when an earlier round promoted a replacement and
			// the removal failed: the set would only grow.
			s.promote(ctx, m, m.promotionOrder(id), "replaces "+id)
		}
		if left {
			if ok, _ := m.removeSafe(id, s.cfg.Floor); ok {
				s.remove(id, why, m.servers)
			}
			continue
		}
		if m.count(raft.Voter)-1 >= s.cfg.Floor {
			s.remove(id, why, m.servers)
			delete(reap, id)
		}
	}
	for m.count(raft.Voter) < s.cfg.Voters && ctx.Err() == nil {
		if s.promote(ctx, m, m.promotionOrder(""), "fewer voters than --raft-voters") == "" {
			break
		}
	}
	s.shrinkVoters(m)
	s.spreadZones(ctx, m)
}

// shrinkVoters demotes the voter shrinkVictim picks, if any.
func (s *Set) shrinkVoters(m membership) {
	victim := m.shrinkVictim(s.cfg.Self.ID, s.cfg.Voters)
	if victim == "" {
		return
	}
	s.log.Info("demoting voter", "member", victim, "reason", "more voters than --raft-voters", "voters", m.count(raft.Voter))
	s.demote(victim, m)
}

// demote makes voter id a non-voter, in the configuration and in m.
func (s *Set) demote(id string, m membership) {
	if err := s.cfg.Raft.DemoteVoter(raft.ServerID(id), 0, 5*time.Second).Error(); err != nil {
		s.log.Warn("demote voter", "member", id, "err", err)
		return
	}
	srv := m.servers[id]
	srv.Suffrage = raft.Nonvoter
	m.servers[id] = srv
}

// addMembers adds the alive members that the configuration lacks (or has
// at another address). It reports false when Raft refused a change, and the
// reconcile should stop until the next round.
func (s *Set) addMembers(members []Member, m membership) bool {
	for _, meta := range members {
		if meta.ID == s.cfg.Self.ID {
			continue
		}
		cur, known := m.servers[meta.ID]
		if known && string(cur.Address) == meta.Addr {
			continue
		}
		if s.cfg.RecentlyLeft(meta.ID) {
			continue // its gossip leave has not reached us yet
		}
		if s.cfg.Prove != nil {
			if err := s.cfg.Prove(meta); err != nil {
				s.log.Warn("not adding an unproven member", "member", meta.ID, "raft", meta.Addr, "err", err)
				continue
			}
		}
		voter := m.count(raft.Voter) < s.cfg.Voters
		if known {
			voter = cur.Suffrage == raft.Voter
		}
		id, addr := raft.ServerID(meta.ID), raft.ServerAddress(meta.Addr)
		var err error
		if voter {
			s.log.Info("adding voter", "member", meta.ID, "raft", meta.Addr, "zone", meta.Zone)
			err = s.cfg.Raft.AddVoter(id, addr, 0, 5*time.Second).Error()
		} else {
			s.log.Info("adding non-voter", "member", meta.ID, "raft", meta.Addr, "zone", meta.Zone)
			err = s.cfg.Raft.AddNonvoter(id, addr, 0, 5*time.Second).Error()
		}
		if err != nil {
			s.log.Warn("add member", "member", meta.ID, "voter", voter, "err", err)
			return false
		}
		suffrage := raft.Nonvoter
		if voter {
			suffrage = raft.Voter
		}
		m.servers[meta.ID] = raft.Server{ID: id, Address: addr, Suffrage: suffrage}
	}
	return true
}

// spreadZones carries out spreadPlan: the non-voter is promoted first, then
// the voter of the crowded zone is demoted.
func (s *Set) spreadZones(ctx context.Context, m membership) {
	if ctx.Err() != nil {
		return
	}
	order, victim, crowded := m.spreadPlan(s.cfg.Self.ID)
	if victim == "" {
		return
	}
	if s.promote(ctx, m, order, "spreads voters over zones") == "" {
		return
	}
	s.log.Info("demoting voter", "member", victim, "zone", crowded, "reason", "its zone has other voters")
	s.demote(victim, m)
}

// remove removes member id (voter or not) from the configuration and from
// servers.
func (s *Set) remove(id, why string, servers map[string]raft.Server) {
	s.log.Info("removing member from raft", "member", id, "voter", servers[id].Suffrage == raft.Voter, "reason", why)
	if err := s.cfg.Raft.RemoveServer(raft.ServerID(id), 0, 5*time.Second).Error(); err != nil {
		s.log.Warn("remove member", "member", id, "err", err)
		return
	}
	delete(servers, id)
}

// RemoveLeaving handles a graceful leave on the leader: a non-voter is
// removed at once; a voter is first replaced by a caught-up non-voter when
// one exists (within 5 s of ctx), then removed when removeSafe allows it.
// A member in the configuration is marked as leaving (Config.MarkLeft)
// first. It reports whether the member is no longer in the configuration;
// the error is the configuration's, when it cannot be read. The caller
// checks that this node leads.
func (s *Set) RemoveLeaving(ctx context.Context, id string) (bool, error) {
	m, _, err := s.membership()
	if err != nil {
		return false, err
	}
	srv, ok := m.servers[id]
	if !ok {
		return true, nil
	}
	delete(m.alive, id)
	s.cfg.MarkLeft(id)
	if srv.Suffrage != raft.Voter {
		s.remove(id, "leave", m.servers)
		_, still := m.servers[id]
		return !still, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s.promote(ctx, m, m.promotionOrder(id), "replaces "+id+", which leaves")
	if ok, why := m.removeSafe(id, s.cfg.Floor); !ok {
		s.log.Warn("refusing to remove leaving voter", "member", id, "reason", why)
		return false, nil
	}
	s.remove(id, "leave", m.servers)
	_, still := m.servers[id]
	return !still, nil
}
