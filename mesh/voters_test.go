package mesh_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/meshtest"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// roles counts the leader's view of the voters and non-voters, and lists
// the voters that gossip does not see alive.
func roles(st mesh.Status) (voters, nonvoters int, deadVoters []string) {
	for _, m := range st.Members {
		switch {
		case m.Voter:
			voters++
			if m.GossipState != "alive" && m.ID != st.NodeID {
				deadVoters = append(deadVoters, m.ID)
			}
		case m.RaftRole == "nonvoter":
			nonvoters++
		}
	}
	return voters, nonvoters, deadVoters
}

// With RaftVoters 3, a 6-node mesh has 3 voters and 3 non-voters; a
// non-voter routes and writes; a voter that fails is replaced by a
// non-voter (promoted before the dead one is removed), and one that leaves
// gracefully is replaced too.
func TestBoundedVotersAndRepair(t *testing.T) {
	const n = 6
	c := meshtest.Start(t, meshtest.Options{N: n, Logger: testLogger(), Tweak: func(i int, cfg *mesh.Config) {
		cfg.RaftVoters = 3
		cfg.BootstrapExpect = 3
		cfg.ReapTimeout = 2 * time.Second
	}})
	leaderRoles := func(want func(v, nv int, dead []string) bool) {
		t.Helper()
		testkit.WaitFor(t, 30*time.Second, "voter set", func() bool {
			l := c.Leader()
			if l < 0 {
				return false
			}
			v, nv, dead := roles(c.Node(l).Status())
			return want(v, nv, dead)
		})
	}
	leaderRoles(func(v, nv int, dead []string) bool { return v == 3 && nv == n-3 && len(dead) == 0 })

	o := startOrigin(t, "o1")
	registerOrigins(t, c, o)
	l := c.WaitLeader(clusterTimeout)
	// A non-voter routes a new stream (its write is forwarded).
	nv := -1
	for _, m := range c.Node(l).Status().Members {
		if m.RaftRole == "nonvoter" {
			fmt.Sscanf(m.ID, "node%d", &nv)
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := c.Node(nv).Route(ctx, stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "nv"}); err != nil || got.ID != "o1" {
		t.Fatalf("route through a non-voter: %v, %v", got.ID, err)
	}

	// A voter that is not the leader fails: after the reap timeout a
	// non-voter takes its place and the voter count stays 3.
	victim := -1
	for _, m := range c.Node(l).Status().Members {
		if m.Voter && m.RaftRole != "leader" {
			fmt.Sscanf(m.ID, "node%d", &victim)
			break
		}
	}
	c.Kill(victim)
	leaderRoles(func(v, nv int, dead []string) bool { return v == 3 && nv == n-4 && len(dead) == 0 })

	// A voter leaves gracefully: it is replaced as well.
	l = c.WaitLeader(clusterTimeout)
	for _, m := range c.Node(l).Status().Members {
		if m.Voter && m.RaftRole != "leader" {
			fmt.Sscanf(m.ID, "node%d", &victim)
			break
		}
	}
	if err := c.Leave(victim); err != nil {
		t.Fatalf("leave: %v", err)
	}
	leaderRoles(func(v, nv int, dead []string) bool { return v == 3 && nv == n-5 && len(dead) == 0 })
	c.WaitApplied(clusterTimeout)
}

// Voters spread over zones: with two nodes per zone a, b and c, the three
// voters end in three distinct zones.
func TestVotersSpreadOverZones(t *testing.T) {
	zones := []string{"a", "a", "b", "b", "c", "c"}
	c := meshtest.Start(t, meshtest.Options{N: len(zones), Logger: testLogger(), Tweak: func(i int, cfg *mesh.Config) {
		cfg.RaftVoters = 3
		cfg.BootstrapExpect = 2
		cfg.Zone = zones[i]
	}})
	testkit.WaitFor(t, 30*time.Second, "three voters in three zones", func() bool {
		l := c.Leader()
		if l < 0 {
			return false
		}
		st := c.Node(l).Status()
		seen := map[string]bool{}
		v := 0
		for _, m := range st.Members {
			if m.Voter {
				v++
				seen[m.Zone] = true
			}
		}
		return v == 3 && len(seen) == 3
	})
}

// A mesh whose members were all voters (as under a larger --raft-voters)
// shrinks to RaftVoters voters once its leader runs with the bound.
func TestVotersShrinkToBound(t *testing.T) {
	const n = 5
	c := meshtest.Start(t, meshtest.Options{N: n, Logger: testLogger(), Tweak: func(i int, cfg *mesh.Config) {
		cfg.RaftVoters = 5
	}})
	c.WaitLeader(clusterTimeout)
	c.WaitVoters(clusterTimeout, n)
	// Restart every member with --raft-voters 3, one at a time.
	for i := range n {
		c.Kill(i)
		c.Members[i].Config.RaftVoters = 3
		c.Restart(i)
		c.WaitLeader(clusterTimeout)
	}
	testkit.WaitFor(t, 30*time.Second, "3 voters and 2 non-voters", func() bool {
		l := c.Leader()
		if l < 0 {
			return false
		}
		v, nv, dead := roles(c.Node(l).Status())
		return v == 3 && nv == 2 && len(dead) == 0
	})
}
