package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
)

// TestJoinByName forms a cluster whose --join lists host names rather than
// addresses ("localhost:PORT", resolved through the system resolver from
// /etc/hosts, so no query leaves the machine).
func TestJoinByName(t *testing.T) {
	var nodes []*harness.Node
	for i := 0; i < 3; i++ {
		nodes = append(nodes, harness.NewNode(t, binary, harness.NodeSpec{ID: fmt.Sprintf("named-%d", i)}))
	}
	for i, nd := range nodes {
		args := []string{"--bootstrap-expect", "3"}
		for j, other := range nodes {
			if j != i {
				port := other.GossipAddr[strings.LastIndexByte(other.GossipAddr, ':')+1:]
				args = append(args, "--join", "localhost:"+port)
			}
		}
		nd.Args = append(nd.Args, args...)
	}
	harness.DumpOnFailure(t, nodes...)
	for _, nd := range nodes {
		nd.Start()
	}
	c := &cluster{nodes: nodes}
	c.waitFormed(t, 3, 60*time.Second)
	var st mesh.Status
	if err := nodes[2].Status(&st); err != nil {
		t.Fatal(err)
	}
	voters := 0
	for _, m := range st.Members {
		if m.Voter {
			voters++
		}
	}
	if voters != 3 {
		t.Fatalf("%d voters: %+v", voters, st.Members)
	}
}
