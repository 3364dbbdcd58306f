package voters

import (
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// mem builds a membership: voters and nonvoters are ids, zone maps an id to
// its zone, and dead lists the ids gossip does not see alive.
func mem(voters, nonvoters []string, zone map[string]string, dead ...string) membership {
	m := membership{servers: map[string]raft.Server{}, alive: map[string]Member{}}
	add := func(ids []string, s raft.ServerSuffrage) {
		for _, id := range ids {
			m.servers[id] = raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":7946"), Suffrage: s}
			if !slices.Contains(dead, id) {
				m.alive[id] = Member{ID: id, Addr: id + ":7946", Zone: zone[id]}
			}
		}
	}
	add(voters, raft.Voter)
	add(nonvoters, raft.Nonvoter)
	return m
}

func TestPromotionOrderUncoveredZonesFirst(t *testing.T) {
	zone := map[string]string{"v1": "a", "v2": "b", "n1": "a", "n2": "c", "n3": "", "n4": "b"}
	m := mem([]string{"v1", "v2"}, []string{"n1", "n2", "n3", "n4", "n5"}, zone, "n5")
	if got, want := m.promotionOrder(""), []string{"n2", "n1", "n3", "n4"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	// Leaving v2 out, zone b is uncovered too.
	if got, want := m.promotionOrder("v2"), []string{"n2", "n4", "n1", "n3"}; !slices.Equal(got, want) {
		t.Fatalf("order skipping v2 %v, want %v", got, want)
	}
}

func TestRemoveSafe(t *testing.T) {
	for _, tc := range []struct {
		name        string
		m           membership
		id          string
		floor       int
		ok          bool
		whyContains string
	}{
		{"non-voter", mem([]string{"a", "b", "c"}, []string{"d"}, nil), "d", 1, false, "not a voter"},
		{"unknown", mem([]string{"a", "b", "c"}, nil, nil), "x", 1, false, "not a voter"},
		{"last voter", mem([]string{"a"}, []string{"b"}, nil), "a", 1, false, "last voter"},
		{"below the floor", mem([]string{"a", "b", "c"}, nil, nil), "c", 3, false, "fewer than 3"},
		{"no live majority", mem([]string{"a", "b", "c", "d"}, nil, nil, "b", "c"), "a", 1, false, "only 1 of 3"},
		{"safe", mem([]string{"a", "b", "c", "d"}, nil, nil, "d"), "a", 3, true, ""},
		{"dead one goes", mem([]string{"a", "b", "c"}, nil, nil, "c"), "c", 2, true, ""},
	} {
		ok, why := tc.m.removeSafe(tc.id, tc.floor)
		if ok != tc.ok || !strings.Contains(why, tc.whyContains) {
			t.Errorf("%s: removeSafe(%s) = %v %q, want %v %q", tc.name, tc.id, ok, why, tc.ok, tc.whyContains)
		}
	}
}

func TestShrinkVictim(t *testing.T) {
	zone := map[string]string{"a": "z1", "b": "z1", "c": "z2", "d": "z2", "e": "z2"}
	m := mem([]string{"a", "b", "c", "d", "e"}, nil, zone)
	// The most crowded zone (z2), highest id, never self.
	if got := m.shrinkVictim("a", 3); got != "e" {
		t.Fatalf("victim %q, want e", got)
	}
	if got := m.shrinkVictim("e", 3); got != "d" {
		t.Fatalf("victim with e leading %q, want d", got)
	}
	if got := m.shrinkVictim("a", 5); got != "" {
		t.Fatalf("victim within the bound %q, want none", got)
	}
	// Not while a voter is dead.
	if got := mem([]string{"a", "b", "c", "d", "e"}, nil, zone, "b").shrinkVictim("a", 3); got != "" {
		t.Fatalf("victim with a dead voter %q, want none", got)
	}
}

func TestSpreadPlan(t *testing.T) {
	zone := map[string]string{"a": "z1", "b": "z1", "c": "z2", "d": "z3", "e": "z1"}
	m := mem([]string{"a", "b", "c"}, []string{"d", "e"}, zone)
	order, victim, crowded := m.spreadPlan("a")
	if !slices.Equal(order, []string{"d"}) || victim != "b" || crowded != "z1" {
		t.Fatalf("plan %v %q %q, want [d] b z1", order, victim, crowded)
	}
	// The leader is never the one demoted.
	if _, victim, _ := mem([]string{"a", "c"}, []string{"d"}, map[string]string{"a": "z1", "c": "z1", "d": "z2"}).spreadPlan("c"); victim != "a" {
		t.Fatalf("victim %q, want a", victim)
	}
	for name, m := range map[string]membership{
		"zones already spread":    mem([]string{"a", "c", "d"}, []string{"b"}, zone),
		"no uncovered non-voter":  mem([]string{"a", "b", "c"}, []string{"e"}, zone),
		"a voter is dead":         mem([]string{"a", "b", "c"}, []string{"d"}, zone, "c"),
		"only the leader crowded": mem([]string{"a", "c"}, []string{"d"}, map[string]string{"a": "z1", "c": "z2", "d": "z3"}),
	} {
		if order, victim, _ := m.spreadPlan("a"); victim != "" || order != nil {
			t.Errorf("%s: plan %v %q, want none", name, order, victim)
		}
	}
}

func TestBootstrap(t *testing.T) {
	for _, tc := range []struct {
		zones []string
		max   int
		want  []bool
	}{
		{[]string{"", "", "", ""}, 3, []bool{true, true, true, false}},
		{[]string{"a", "a", "b", "b", "c"}, 3, []bool{true, false, true, false, true}},
		{[]string{"a", "a", "a", "b"}, 3, []bool{true, true, false, true}},
		{[]string{"a", "b"}, 5, []bool{true, true}},
	} {
		if got := Bootstrap(tc.zones, tc.max); !slices.Equal(got, tc.want) {
			t.Errorf("Bootstrap(%v, %d) = %v, want %v", tc.zones, tc.max, got, tc.want)
		}
	}
}

func TestFollows(t *testing.T) {
	if ok, why := follows(Progress{Term: 3, LastLogIndex: 1000}, 3, 1000+maxPromoteLag); !ok {
		t.Fatalf("a member within the lag: %s", why)
	}
	if ok, why := follows(Progress{Term: 3, LastLogIndex: 1000}, 3, 1001+maxPromoteLag); ok || !strings.Contains(why, "last log index 1000") {
		t.Fatalf("a member past the lag: %v %q", ok, why)
	}
	if ok, why := follows(Progress{Term: 2, LastLogIndex: 1000}, 3, 1000); ok || !strings.Contains(why, "term 2") {
		t.Fatalf("a member of another term: %v %q", ok, why)
	}
}
