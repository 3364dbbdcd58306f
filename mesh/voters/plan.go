package voters

// The decisions of the voter set: pure functions of a membership.

import (
	"fmt"
	"slices"

	"github.com/hashicorp/raft"
)

// membership is the leader's view of the Raft configuration and of gossip
// during one reconcile.
type membership struct {
	servers map[string]raft.Server
	// alive holds the alive members, this node included.
	alive map[string]Member
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

// removeSafe reports whether removing voter id from the configuration keeps
// a working quorum: at least one voter remains, no fewer than floor, and the
// alive remaining voters are a majority of the new configuration.
func (m membership) removeSafe(id string, floor int) (bool, string) {
	if s, ok := m.servers[id]; !ok || s.Suffrage != raft.Voter {
		return false, "not a voter"
	}
	remaining, up := 0, 0
	for v, s := range m.servers {
		if v == id || s.Suffrage != raft.Voter {
			continue
		}
		remaining++
		if _, ok := m.alive[v]; ok {
			up++
		}
	}
	if remaining == 0 {
		return false, "last voter"
	}
	if remaining < floor {
		// A full stop (every node leaving at once) must leave a voter set
		// that any majority of the nodes can restart. Lower
		// --bootstrap-expect to shrink the mesh below it.
		return false, fmt.Sprintf("%d voters would stay, fewer than %d (--bootstrap-expect, at most --raft-voters)", remaining, floor)
	}
	if up < remaining/2+1 {
		return false, fmt.Sprintf("only %d of %d remaining voters are alive", up, remaining)
	}
	return true, ""
}

// shrinkVictim picks the voter to demote when there are more than max (a
// mesh that grew under a larger --raft-voters, or under a version that made
// every member a voter), and only while every voter is alive, so that the
// remaining voters all work: a voter other than self from the zone with the
// most voters, the highest id first. It returns "" when none is to go; one
// per reconcile round, so the set shrinks gradually.
func (m membership) shrinkVictim(self string, max int) string {
	if m.count(raft.Voter) <= max || m.liveVoters() != m.count(raft.Voter) {
		return ""
	}
	zones := m.voterZones("")
	var victim string
	for id, srv := range m.servers {
		if srv.Suffrage != raft.Voter || id == self {
			continue
		}
		zv, zb := zones[m.alive[id].Zone], zones[m.alive[victim].Zone]
		if victim == "" || zv > zb || (zv == zb && id > victim) {
			victim = id
		}
	}
	return victim
}

// spreadPlan decides whether one voter is swapped for a non-voter, which
// adds a zone to the voters: only while every voter is alive, the
// non-voter's zone is covered by no voter, and some zone (crowded) holds two
// voters or more. order lists the non-voters to try promoting; victim is the
// voter of the crowded zone to demote after a promotion (never self), ""
// when there is no swap. Each swap adds a zone, so swaps end.
func (m membership) spreadPlan(self string) (order []string, victim, crowded string) {
	if m.liveVoters() != m.count(raft.Voter) {
		return nil, "", ""
	}
	zones := m.voterZones("")
	most := 1
	for z, c := range zones {
		if c > most || (c == most && c > 1 && z < crowded) {
			crowded, most = z, c
		}
	}
	if crowded == "" {
		return nil, "", ""
	}
	for _, id := range m.promotionOrder("") {
		if z := m.alive[id].Zone; z != "" && zones[z] == 0 {
			order = append(order, id)
		}
	}
	if len(order) == 0 {
		return nil, "", ""
	}
	for id, srv := range m.servers {
		if srv.Suffrage == raft.Voter && id != self && m.alive[id].Zone == crowded && (victim == "" || id > victim) {
			victim = id
		}
	}
	if victim == "" {
		return nil, "", ""
	}
	return order, victim, crowded
}

// Bootstrap chooses which of the members that bootstrap a cluster (sorted
// by id; zones[i] is the zone of the i-th) start as voters: at most max, one
// per zone first (in id order), then the rest in id order. Members without
// a zone count as zones of their own. Every node that bootstraps computes
// the same answer from the same members.
func Bootstrap(zones []string, max int) []bool {
	out := make([]bool, len(zones))
	taken, seen := 0, map[string]bool{}
	for i, z := range zones {
		if taken < max && (z == "" || !seen[z]) {
			out[i], seen[z] = true, true
			taken++
		}
	}
	for i := range zones {
		if taken < max && !out[i] {
			out[i] = true
			taken++
		}
	}
	return out
}
