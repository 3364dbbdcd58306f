package mesh_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// A command type of a newer protocol waits until every member advertises
// it: the write fails with a typed error naming the member behind, status
// shows what waits, and once the last member runs the new build the leader
// records the mesh's protocol and the write goes through.
func TestFeatureGateWaitsForEveryMember(t *testing.T) {
	c := startCluster(t, 3, func(i int, cfg *mesh.Config) {
		if i == 2 {
			cfg.Protocol = 1 // node2 stands for the previous release
		}
	})
	testkit.WaitFor(t, clusterTimeout, "every node to see node2 on protocol 1", func() bool {
		for _, i := range c.Running() {
			p := c.Node(i).Status().Protocol
			if p.Lowest != 1 || !slices.Contains(p.Waiting, "set_protocol") || !slices.Contains(p.Behind, "node2:1") {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, i := range []int{0, 1, 2} {
		_, err := c.Node(i).ApplyCommand(ctx, state.SetProtocolCmd{Version: 2})
		var we *mesh.ProtocolWaitError
		if !errors.Is(err, mesh.ErrProtocolWaiting) || !errors.As(err, &we) || we.Need != 2 || we.Lowest != 1 {
			t.Fatalf("node%d: a protocol-2 write with node2 on 1: %v", i, err)
		}
		if !strings.Contains(err.Error(), "waiting for all nodes to reach protocol 2") {
			t.Errorf("error text: %v", err)
		}
	}
	// Protocol-1 writes go on.
	registerOrigins(t, c, startOrigin(t, "o1"))
	if _, err := c.Node(2).Route(ctx, key(1)); err != nil {
		t.Fatal(err)
	}
	if p := c.Node(0).Status().Protocol; p.Mesh != 0 {
		t.Fatalf("mesh protocol recorded as %d while node2 is behind", p.Mesh)
	}

	// Upgrade node2: same data dir, this build's protocol.
	c.Kill(2)
	c.Members[2].Config.Protocol = 0
	c.Restart(2)
	testkit.WaitFor(t, 2*clusterTimeout, "every node to record mesh protocol 2", func() bool {
		for _, i := range []int{0, 1, 2} {
			n := c.Node(i)
			if n == nil {
				return false
			}
			p := n.Status().Protocol
			if p.Mesh != 2 || p.Lowest != 2 || len(p.Waiting) != 0 || len(p.Behind) != 0 {
				return false
			}
		}
		return true
	})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	// set_protocol is the leader's own command (never forwarded).
	if _, err := c.Node(c.WaitLeader(clusterTimeout)).ApplyCommand(ctx2, state.SetProtocolCmd{Version: 2}); err != nil {
		t.Fatalf("a protocol-2 write once every node speaks it: %v", err)
	}
}

// An unknown required command halts every replica that meets it: each says
// so on /readyz and in status, and routes nothing; an unknown optional one
// is skipped. A node restarted on a data dir holding the unknown type
// refuses to start.
func TestUnknownRequiredCommandHaltsAndRefusesRestart(t *testing.T) {
	c := startCluster(t, 3, nil)
	registerOrigins(t, c, startOrigin(t, "o1"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Node(1).Route(ctx, key(1)); err != nil {
		t.Fatal(err)
	}
	l := c.WaitLeader(clusterTimeout)
	if err := c.Node(l).ApplyRaw([]byte{0xb0, '{', '}'}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, clusterTimeout, "every node to skip the optional command", func() bool {
		for _, i := range c.Running() {
			if c.Node(i).Status().Protocol.SkippedCommands != 1 {
				return false
			}
		}
		return true
	})
	for _, i := range c.Running() {
		if h := c.Node(i).Halted(); h != "" {
			t.Fatalf("node%d halted on an optional command: %s", i, h)
		}
	}

	if err := c.Node(l).ApplyRaw([]byte{0x7e, '{', '}'}); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, clusterTimeout, "every node to halt", func() bool {
		for _, i := range c.Running() {
			if c.Node(i).Halted() == "" {
				return false
			}
		}
		return true
	})
	for _, i := range c.Running() {
		n := c.Node(i)
		rec := httptest.NewRecorder()
		n.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != 503 || !strings.Contains(rec.Body.String(), "halted") {
			t.Errorf("node%d /readyz: %d %s", i, rec.Code, rec.Body)
		}
		if p := n.Status().Protocol; !strings.Contains(p.Halted, "126") {
			t.Errorf("node%d status: %+v", i, p)
		}
		for _, k := range []int{1, 2} {
			if _, err := n.Route(ctx, key(k)); !errors.Is(err, mesh.ErrStateHalted) {
				t.Errorf("node%d routes %s while halted: %v", i, key(k), err)
			}
		}
	}

	// The data dir now holds a type this build cannot apply.
	c.Kill(0)
	cfg := c.Members[0].Config
	n, err := mesh.New(cfg)
	if err == nil {
		n.Close()
		t.Fatal("a node started on a log holding an unknown required type")
	}
	if !errors.Is(err, mesh.ErrDowngrade) || !strings.Contains(err.Error(), "126") {
		t.Fatalf("start on a newer log: %v", err)
	}
}
