package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/srs-mesh/srs-mesh/stream/httpjson"
)

// The voter set.
//
// At most Config.RaftVoters members are Raft voters; every other member is a
// non-voter that replicates the log and routes from its replica. The leader
// keeps the set healthy in the manner of raft-autopilot: a voter that left or
// stayed failed past ReapTimeout is replaced by promoting a healthy, caught-up
// non-voter first and removing the old voter second, so that the number of
// live voters never drops during the swap; and when members advertise a zone,
// voters are spread over distinct zones.

// pathInternalRaft answers a member's Raft progress (GET, cluster port).
const pathInternalRaft = "/mesh/v1/internal/raft"

// maxPromoteLag is how many log entries a non-voter may trail the leader's
// last index and still count as caught up.
const maxPromoteLag = 256

// raftProgress is the answer of pathInternalRaft.
type raftProgress struct {
	Term         uint64 `json:"term"`
	LastLogIndex uint64 `json:"last_log_index"`
	AppliedIndex uint64 `json:"applied_index"`
}

func (n *Node) handleInternalRaft(w http.ResponseWriter, r *http.Request) {
	st := n.raft.Stats()
	p := raftProgress{Term: parseStat(st["term"]), LastLogIndex: parseStat(st["last_log_index"]),
		AppliedIndex: n.raft.AppliedIndex()}
	httpjson.OK(w, p)
}

func parseStat(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

// caughtUp asks the member at its cluster address addr for its Raft progress
// and reports whether it follows this leader's term and trails its last log
// index by at most maxPromoteLag entries. It gives up after a second.
func (n *Node) caughtUp(ctx context.Context, addr string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+pathInternalRaft, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	var env struct {
		Data raftProgress `json:"data"`
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&env); err != nil {
		return false, err.Error()
	}
	st := n.raft.Stats()
	term, last := parseStat(st["term"]), parseStat(st["last_log_index"])
	switch {
	case env.Data.Term != term:
		return false, fmt.Sprintf("term %d, the leader's is %d", env.Data.Term, term)
	case env.Data.LastLogIndex+maxPromoteLag < last:
		return false, fmt.Sprintf("last log index %d, the leader's is %d", env.Data.LastLogIndex, last)
	}
	return true, ""
}

// heartbeatWatch records, while this node leads, since when the Raft
// heartbeats to each member fail (raft's FailedHeartbeatObservation carries
// the last successful contact), and forgets a member when they resume. A
// killed member is known here within a heartbeat, seconds before gossip's
// suspicion declares it dead; reconcile starts a dead member's reap timeout
// from the earlier of the two.
func (n *Node) heartbeatWatch() {
	defer n.wg.Done()
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	for {
		select {
		case <-n.ctx.Done():
			return
		case o := <-ch:
			n.downMu.Lock()
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				if _, ok := n.down[string(d.PeerID)]; !ok {
					since := d.LastContact
					if since.IsZero() {
						since = time.Now()
					}
					n.down[string(d.PeerID)] = since
				}
			case raft.ResumedHeartbeatObservation:
				delete(n.down, string(d.PeerID))
			}
			n.downMu.Unlock()
		}
	}
}

// unreachableSince reports since when this leader's heartbeats to id have
// failed, if they do.
func (n *Node) unreachableSince(id string) (time.Time, bool) {
	n.downMu.Lock()
	defer n.downMu.Unlock()
	t, ok := n.down[id]
	return t, ok
}

// forgetUnreachable clears what heartbeatWatch recorded, when this node
// stops leading (failures it saw then are stale by the next time it leads).
func (n *Node) forgetUnreachable() {
	n.downMu.Lock()
	clear(n.down)
	n.downMu.Unlock()
}

// voterFloor is the fewest voters the leader lets failures shrink the set
// to: --bootstrap-expect, or --raft-voters when that is smaller.
func (c *Config) voterFloor() int { return min(c.BootstrapExpect, c.RaftVoters) }

// membership is the leader's view of the Raft configuration and of gossip
// during one reconcile.
type membership struct {
	servers map[string]raft.Server
	// alive holds the gossip metadata of the alive members, this node
	// included.
	alive map[string]nodeMeta
}

func (m membership) count(s raft.ServerSuffrage) int {
	c := 0
	for _, srv := range m.servers {
		if srv.Suffrage == s {
			c++
		}
	}
	return c
}

// liveVoters counts the voters gossip sees alive.
func (m membership) liveVoters() int {
	c := 0
	for id, srv := range m.servers {
		if _, ok := m.alive[id]; ok && srv.Suffrage == raft.Voter {
			c++
		}
	}
	return c
}

// voterZones counts the alive voters per non-empty zone, leaving out skip.
func (m membership) voterZones(skip string) map[string]int {
	z := map[string]int{}
	for id, srv := range m.servers {
		meta, ok := m.alive[id]
		if ok && id != skip && srv.Suffrage == raft.Voter && meta.Zone != "" {
			z[meta.Zone]++
		}
	}
	return z
}

// promotionOrder lists the alive non-voters in the order the leader tries to
// promote them: those whose zone no alive voter (other than skip) covers
// first, then the rest; each group by id.
func (m membership) promotionOrder(skip string) []string {
	zones := m.voterZones(skip)
	var fresh, rest []string
	for id, srv := range m.servers {
		meta, ok := m.alive[id]
		if !ok || srv.Suffrage == raft.Voter {
			continue
		}
		if meta.Zone != "" && zones[meta.Zone] == 0 {
			fresh = append(fresh, id)
		} else {
			rest = append(rest, id)
		}
	}
	slices.Sort(fresh)
	slices.Sort(rest)
	return append(fresh, rest...)
}

// maxPromoteTries bounds the candidates one promotion asks for progress.
const maxPromoteTries = 3

// promote makes the first caught-up candidate of order a voter and records
// it in m. It reports the promoted id, or "" when none could be promoted.
// A promotion never loses quorum: the candidate is alive and caught up, so
// the live voters stay a majority of the larger set.
func (n *Node) promote(ctx context.Context, m membership, order []string, why string) string {
	for i, id := range order {
		if i >= maxPromoteTries || ctx.Err() != nil {
			break
		}
		srv := m.servers[id]
		if live, total := m.liveVoters()+1, m.count(raft.Voter)+1; live < total/2+1 {
			n.log.Warn("not promoting: the live voters would not be a majority", "member", id, "live", live, "voters", total)
			return ""
		}
		if ok, lag := n.caughtUp(ctx, string(srv.Address)); !ok {
			n.log.Info("not promoting a non-voter that has not caught up", "member", id, "why", lag)
			continue
		}
		n.log.Info("promoting non-voter", "member", id, "zone", m.alive[id].Zone, "reason", why)
		if err := n.raft.AddVoter(srv.ID, srv.Address, 0, 5*time.Second).Error(); err != nil {
			n.log.Warn("promote non-voter", "member", id, "err", err)
			return ""
		}
		srv.Suffrage = raft.Voter
		m.servers[id] = srv
		return id
	}
	return ""
}

// reconcile makes the Raft configuration follow gossip membership:
//
//   - an alive member that is not in the configuration (or moved its Raft
//     address) is added: as a voter while there are fewer than RaftVoters,
//     else as a non-voter;
//   - while there are fewer than RaftVoters voters, caught-up non-voters are
//     promoted, those in a zone no voter covers first;
//   - a voter that left gracefully, or failed (dead, or unknown to gossip)
//     and stayed so for ReapTimeout (counted from when gossip stopped seeing
//     it alive, or from when Raft heartbeats to it began to fail, whichever
//     came first), is replaced: a caught-up non-voter is
//     promoted first, then the old voter is removed. Without a replacement
//     a failed voter is removed only while the voters that remain are at
//     least voterFloor (removing a dead voter from a minimal cluster would
//     lower its fault tolerance, not raise it), and a leaving one only when
//     removeSafe allows it;
//   - a non-voter that left, or failed for ReapTimeout, is removed;
//   - while every voter is alive and there are more than RaftVoters, one
//     voter per round is demoted (shrinkVoters);
//   - when every voter is alive, a non-voter whose zone no voter covers
//     takes the place of a voter whose zone has two (promoted first, the
//     other demoted second).
//
// reap records when each member was first seen failed; it is owned by the
// leader loop.
func (n *Node) reconcile(ctx context.Context, reap map[string]time.Time) {
	if ctx.Err() != nil {
		return
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	m := membership{servers: map[string]raft.Server{}, alive: map[string]nodeMeta{}}
	for _, s := range f.Configuration().Servers {
		m.servers[string(s.ID)] = s
	}
	m.alive[n.cfg.NodeID] = nodeMeta{ID: n.cfg.NodeID, Raft: n.raftAdvertise, Zone: n.cfg.Zone}
	members := n.aliveMembers()
	for _, meta := range members {
		m.alive[meta.ID] = meta
	}
	if !n.addMembers(members, m) {
		return
	}
	peers := n.peerSnapshot()
	ids := make([]string, 0, len(m.servers))
	for id := range m.servers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		srv, ok := m.servers[id]
		if !ok || id == n.cfg.NodeID {
			continue
		}
		if _, ok := m.alive[id]; ok {
			delete(reap, id)
			continue
		}
		p, known := peers[id]
		left := known && p.state == gossipLeft
		if !left {
			since, ok := reap[id]
			if !ok {
				since = time.Now()
				reap[id] = since
			}
			if down, ok := n.unreachableSince(id); ok && down.Before(since) {
				since = down
			}
			if time.Since(since) < n.cfg.ReapTimeout {
				continue
			}
		}
		why := "failed"
		if left {
			why = "left"
		}
		if srv.Suffrage != raft.Voter {
			n.removeServer(id, why, m.servers)
			delete(reap, id)
			continue
		}
		if m.count(raft.Voter) <= n.cfg.RaftVoters {
			// Not when an earlier round promoted a replacement and
			// the removal failed: the set would only grow.
			n.promote(ctx, m, m.promotionOrder(id), "replaces "+id)
		}
		if left {
			if ok, _ := n.removeSafe(id, m.servers, m.aliveSet()); ok {
				n.removeServer(id, why, m.servers)
			}
			continue
		}
		if m.count(raft.Voter)-1 >= n.cfg.voterFloor() {
			n.removeServer(id, why, m.servers)
			delete(reap, id)
		}
	}
	for m.count(raft.Voter) < n.cfg.RaftVoters && ctx.Err() == nil {
		if n.promote(ctx, m, m.promotionOrder(""), "fewer voters than --raft-voters") == "" {
			break
		}
	}
	n.shrinkVoters(m)
	n.spreadZones(ctx, m)
}

// shrinkVoters demotes one voter to a non-voter when there are more than
// RaftVoters (a mesh that grew under a larger --raft-voters, or under a
// version that made every member a voter), and only while every voter is
// alive, so that the remaining voters all work. It picks a voter other
// than this leader from the zone with the most voters, the highest id
// first; one per reconcile round, so the set shrinks gradually.
func (n *Node) shrinkVoters(m membership) {
	if m.count(raft.Voter) <= n.cfg.RaftVoters || m.liveVoters() != m.count(raft.Voter) {
		return
	}
	zones := m.voterZones("")
	var victim string
	for id, srv := range m.servers {
		if srv.Suffrage != raft.Voter || id == n.cfg.NodeID {
			continue
		}
		zv, zb := zones[m.alive[id].Zone], zones[m.alive[victim].Zone]
		if victim == "" || zv > zb || (zv == zb && id > victim) {
			victim = id
		}
	}
	if victim == "" {
		return
	}
	n.log.Info("demoting voter", "member", victim, "reason", "more voters than --raft-voters", "voters", m.count(raft.Voter))
	if err := n.raft.DemoteVoter(raft.ServerID(victim), 0, 5*time.Second).Error(); err != nil {
		n.log.Warn("demote voter", "member", victim, "err", err)
		return
	}
	srv := m.servers[victim]
	srv.Suffrage = raft.Nonvoter
	m.servers[victim] = srv
}

// aliveSet is the ids of m.alive.
func (m membership) aliveSet() map[string]bool {
	out := make(map[string]bool, len(m.alive))
	for id := range m.alive {
		out[id] = true
	}
	return out
}

// addMembers adds the alive members that the configuration lacks (or has
// at another address). It reports false when Raft refused a change, and the
// reconcile should stop until the next round.
func (n *Node) addMembers(members []nodeMeta, m membership) bool {
	for _, meta := range members {
		if meta.ID == n.cfg.NodeID {
			continue
		}
		s, known := m.servers[meta.ID]
		if known && string(s.Address) == meta.Raft {
			continue
		}
		if n.recentlyLeft(meta.ID) {
			continue // its gossip leave has not reached us yet
		}
		if err := n.proveMember(meta); err != nil {
			n.log.Warn("not adding an unproven member", "member", meta.ID, "raft", meta.Raft, "err", err)
			continue
		}
		voter := m.count(raft.Voter) < n.cfg.RaftVoters
		if known {
			voter = s.Suffrage == raft.Voter
		}
		id, addr := raft.ServerID(meta.ID), raft.ServerAddress(meta.Raft)
		var err error
		if voter {
			n.log.Info("adding voter", "member", meta.ID, "raft", meta.Raft, "zone", meta.Zone)
			err = n.raft.AddVoter(id, addr, 0, 5*time.Second).Error()
		} else {
			n.log.Info("adding non-voter", "member", meta.ID, "raft", meta.Raft, "zone", meta.Zone)
			err = n.raft.AddNonvoter(id, addr, 0, 5*time.Second).Error()
		}
		if err != nil {
			n.log.Warn("add member", "member", meta.ID, "voter", voter, "err", err)
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

// spreadZones swaps one voter for a non-voter when that adds a zone to the
// voters: only while every voter is alive, the non-voter's zone is covered
// by no voter, and some zone holds two voters or more; the non-voter is
// promoted first, then a voter of the most crowded zone (never this leader)
// is demoted. Each swap adds a zone, so swaps end.
func (n *Node) spreadZones(ctx context.Context, m membership) {
	if m.liveVoters() != m.count(raft.Voter) || ctx.Err() != nil {
		return
	}
	zones := m.voterZones("")
	crowded, most := "", 1
	for z, c := range zones {
		if c > most || (c == most && c > 1 && z < crowded) {
			crowded, most = z, c
		}
	}
	if crowded == "" {
		return
	}
	var order []string
	for _, id := range m.promotionOrder("") {
		if z := m.alive[id].Zone; z != "" && zones[z] == 0 {
			order = append(order, id)
		}
	}
	if len(order) == 0 {
		return
	}
	var demote string
	for id, srv := range m.servers {
		if srv.Suffrage == raft.Voter && id != n.cfg.NodeID && m.alive[id].Zone == crowded && (demote == "" || id > demote) {
			demote = id
		}
	}
	if demote == "" {
		return
	}
	if n.promote(ctx, m, order, "spreads voters over zones") == "" {
		return
	}
	n.log.Info("demoting voter", "member", demote, "zone", crowded, "reason", "its zone has other voters")
	if err := n.raft.DemoteVoter(raft.ServerID(demote), 0, 5*time.Second).Error(); err != nil {
		n.log.Warn("demote voter", "member", demote, "err", err)
		return
	}
	srv := m.servers[demote]
	srv.Suffrage = raft.Nonvoter
	m.servers[demote] = srv
}
