package view

import (
	"encoding/json"
	"testing"

	"github.com/hashicorp/raft"

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
		LastProbe: func(string) (int64, bool) { return 9, true },
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
	if o := st.Origins[0]; o.LastProbeUnixMs != 9 || o.Streams != 1 || !st.Assignments[0].OriginHealthy {
		t.Errorf("origin %+v, assignment %+v", o, st.Assignments[0])
	}
}
