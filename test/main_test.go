// Package e2e holds srs-mesh's end-to-end tests: real srs-mesh processes on
// loopback addresses in front of real origins (nginx-rtmp, FFmpeg), driven by
// real clients (FFmpeg, ffprobe). Tests skip when a tool is missing, and fail
// instead in strict mode (harness.Strict: CI=true or SRS_MESH_E2E_STRICT=1).
package e2e

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// binary is the srs-mesh binary built once for all tests of the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "srs-mesh-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = harness.BuildSRSMesh(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	report := os.Getenv(harness.ReportEnv)
	var tally *harness.Tally
	if report != "" {
		// The outcome of each test is only printed in verbose mode; go test
		// still shows a passing package's output only with -v.
		flag.Parse()
		if err := flag.Set("test.v", "true"); err == nil {
			tally, err = harness.TallyStdout()
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}
	}
	code := m.Run()
	if tally != nil {
		tally.Close()
		text := tally.Report("end-to-end tests (" + harness.StrictNote() + ")")
		if err := os.WriteFile(report, []byte(text), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// cluster is a set of srs-mesh nodes that joined each other.
type cluster struct {
	nodes []*harness.Node
	// certs is the directory of the cluster's TLS files (clusterCerts),
	// when it has them.
	certs string
}

// startCluster starts n nodes with --bootstrap-expect n, each joining all
// others, plus the given extra flags, and waits until every node sees n
// members and a leader.
func startCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	c := &cluster{}
	for i := 0; i < n; i++ {
		c.nodes = append(c.nodes, harness.NewNode(t, binary, harness.NodeSpec{ID: fmt.Sprintf("n%d", i+1)}))
	}
	for i, nd := range c.nodes {
		args := []string{"--bootstrap-expect", fmt.Sprint(n)}
		for j, other := range c.nodes {
			if j != i {
				args = append(args, "--join", other.GossipAddr)
			}
		}
		nd.Args = append(nd.Args, append(args, extra...)...)
	}
	harness.DumpOnFailure(t, c.nodes...)
	for _, nd := range c.nodes {
		nd.Start()
	}
	c.waitFormed(t, n, 30*time.Second)
	return c
}

// waitFormed waits until every running node reports want members and the
// same leader.
func (c *cluster) waitFormed(t *testing.T, want int, timeout time.Duration) {
	t.Helper()
	testkit.WaitFor(t, timeout, fmt.Sprintf("%d nodes agree on a leader", want), func() bool {
		leader := ""
		for _, nd := range c.nodes {
			if nd.Proc() == nil || nd.Proc().Exited() {
				continue
			}
			var st mesh.Status
			if err := nd.Status(&st); err != nil || st.Leader == "" || len(st.Members) < want {
				return false
			}
			if leader != "" && st.Leader != leader {
				return false
			}
			leader = st.Leader
		}
		return leader != ""
	})
}

// status returns node i's status, failing the test on error.
func (c *cluster) status(t *testing.T, i int) mesh.Status {
	t.Helper()
	var st mesh.Status
	if err := c.nodes[i].Status(&st); err != nil {
		t.Fatalf("status of %s: %v", c.nodes[i].ID, err)
	}
	return st
}

// originFlag is the --origin value for an nginx-rtmp origin.
func originFlag(id string, o *harness.Nginx) string {
	rtmpPort := o.RTMPAddr[strings.LastIndexByte(o.RTMPAddr, ':')+1:]
	httpPort := o.HTTPAddr[strings.LastIndexByte(o.HTTPAddr, ':')+1:]
	return fmt.Sprintf("id=%s,ip=127.0.0.1,rtmp=%s,http=%s", id, rtmpPort, httpPort)
}

func assignmentOf(st mesh.Status, key string) (mesh.AssignmentStatus, bool) {
	for _, a := range st.Assignments {
		if a.Key == key {
			return a, true
		}
	}
	return mesh.AssignmentStatus{}, false
}

func originOf(st mesh.Status, id string) (mesh.OriginStatus, bool) {
	for _, o := range st.Origins {
		if o.ID == id {
			return o, true
		}
	}
	return mesh.OriginStatus{}, false
}
