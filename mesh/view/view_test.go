package view

import (
	"encoding/json"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Build merges gossip and Raft members, takes a later probe time than the
// replica's, and never returns null lists.
func TestBuild(t *testing.T) {
	empty := Build(Input{NodeID: "n1"})
	b, _ := json.Marshal(empty)
	var doc map[string]any
	json.Unmarshal(b, &doc)
	for _, k := range []string{"members", "origins", "assignments"} {
		if _, ok := doc[k].([]any); !ok {
			t.Errorf("%s is %v, want a list", k, doc[k])
		}
	}

	st := Build(Input{
		NodeID: "n1", Leader: "n2", RaftStats: map[string]string{"term": "7", "applied_index": "42"},
		Peers:   []Peer{{ID: "n3", GossipAddr: "g3", RaftAddr: "r3", State: "alive"}, {ID: "n1", GossipAddr: "g1", RaftAddr: "r1", State: "alive"}},
		Servers: []raft.Server{{ID: "n1", Address: "r1", Suffrage: raft.Voter}, {ID: "n2", Address: "r2", Suffrage: raft.Voter}},
		Replica: state.Contents{
			Origins:     []state.OriginState{{Origin: stream.Origin{ID: "o1"}, Healthy: true, LastProbeMs: 5}},
			Assignments: []state.KeyAssignment{{Key: "v/a/b", Assignment: state.Assignment{Origin: "o1"}}},
		},
	})
	if st.Term != 7 || st.AppliedIndex != 42 || len(st.Members) != 3 {
		t.Fatalf("status %+v", st)
	}
	roles := map[string]string{}
	for _, m := range st.Members {
		roles[m.ID] = m.RaftRole
	}
	if st.Members[0].ID != "n1" || roles["n1"] != "voter" || roles["n2"] != "leader" || roles["n3"] != "none" {
		t.Errorf("members %+v", st.Members)
	}
	if o := st.Origins[0]; o.LastProbeUnixMs != 5 || o.Streams != 1 || !st.Assignments[0].OriginHealthy {
		t.Errorf("origin %+v, assignment %+v", o, st.Assignments[0])
	}
}

// Build counts voters and non-voters, shows zones from gossip, and each
// origin's capacity, fill and load.
func TestBuildVotersAndCapacity(t *testing.T) {
	st := Build(Input{
		NodeID: "n1", Leader: "n1",
		Peers: []Peer{{ID: "n1", State: "alive", Zone: "a"}, {ID: "n2", State: "alive", Zone: "b"}, {ID: "n3", State: "alive"}},
		Servers: []raft.Server{{ID: "n1", Suffrage: raft.Voter}, {ID: "n2", Suffrage: raft.Voter},
			{ID: "n3", Suffrage: raft.Nonvoter}},
		Replica: state.Contents{
			Origins: []state.OriginState{
				{Origin: stream.Origin{ID: "full", MaxStreams: 1}, Healthy: true, Load: stream.Load{CPUPermille: 420, Conns: 7}},
				{Origin: stream.Origin{ID: "room", MaxStreams: 5, Weight: 3}, Healthy: true},
			},
			Assignments: []state.KeyAssignment{{Key: "v/a/b", Assignment: state.Assignment{Origin: "full"}},
				{Key: "v/a/c", Assignment: state.Assignment{Origin: "room"}}},
		},
	})
	if st.Voters != 2 || st.NonVoters != 1 {
		t.Fatalf("voters %d, non-voters %d", st.Voters, st.NonVoters)
	}
	want := map[string][2]string{"n1": {"leader", "a"}, "n2": {"voter", "b"}, "n3": {"nonvoter", ""}}
	for _, m := range st.Members {
		if got := [2]string{m.RaftRole, m.Zone}; got != want[m.ID] {
			t.Errorf("member %s: role and zone %v, want %v", m.ID, got, want[m.ID])
		}
	}
	full, room := st.Origins[0], st.Origins[1]
	if !full.Full || full.MaxStreams != 1 || full.Weight != 1 || full.Load.CPUPermille != 420 || full.Load.Conns != 7 {
		t.Errorf("full origin %+v", full)
	}
	if room.Full || room.MaxStreams != 5 || room.Weight != 3 || room.Streams != 1 {
		t.Errorf("origin with room %+v", room)
	}
	b, _ := json.Marshal(st)
	var doc struct {
		Voters    *int `json:"voters"`
		NonVoters *int `json:"nonvoters"`
		Origins   []struct {
			Load struct {
				CPU *int `json:"cpu_permille"`
			} `json:"load"`
		} `json:"origins"`
	}
	if json.Unmarshal(b, &doc) != nil || doc.Voters == nil || doc.NonVoters == nil || doc.Origins[1].Load.CPU == nil {
		t.Errorf("JSON lacks voters, nonvoters or an origin's load: %s", b)
	}
}

// TestRecentEvents: the status lists the node's own events and the
// replicated moves of the last minutes that it did not record, oldest
// first and bounded.
func TestRecentEvents(t *testing.T) {
	now := int64(10_000_000)
	in := Input{NowMs: now, Events: []events.Event{
		{TimeUnixMs: now - 5000, Kind: events.OriginDown, Origin: "o1"},
		{TimeUnixMs: now - 4000, Kind: events.StreamMoved, Stream: "v/live/mine", Origin: "o2"},
	}}
	in.Replica.Assignments = []state.KeyAssignment{
		{Key: "v/live/mine", Assignment: state.Assignment{Origin: "o2", Epoch: 1, MovedMs: now - 4000, MovedFrom: "o1"}},
		{Key: "v/live/other", Assignment: state.Assignment{Origin: "o2", Epoch: 1, MovedMs: now - 4500, MovedFrom: "o1"}},
		{Key: "v/live/old", Assignment: state.Assignment{Origin: "o2", Epoch: 3, MovedMs: now - RecentMoves.Milliseconds() - 1, MovedFrom: "o1"}},
		{Key: "v/live/still", Assignment: state.Assignment{Origin: "o1"}},
	}
	got := Build(in).RecentEvents
	if len(got) != 3 || got[0].Kind != events.OriginDown || got[1].Stream != "v/live/other" || got[2].Stream != "v/live/mine" {
		t.Fatalf("recent events %+v", got)
	}
	if got[1].Origin != "o2" || got[1].Detail != "from o1 (epoch 1)" {
		t.Errorf("replicated move %+v", got[1])
	}
	for i := range 2 * MaxRecentEvents {
		in.Events = append(in.Events, events.Event{TimeUnixMs: now - 3000 + int64(i), Kind: events.Leader})
	}
	if n := len(Build(in).RecentEvents); n != MaxRecentEvents {
		t.Errorf("%d recent events, want %d", n, MaxRecentEvents)
	}
}
