package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// writeBound is how soon after a leader dies or freezes a new stream must be
// writable through another node.
const writeBound = 3 * time.Second

// startLargeCluster starts n nodes named m01..mNN with --bootstrap-expect n
// (every node sees all others before the mesh forms, so all bootstrap with
// the same configuration), each joining the first three, plus extra flags.
func startLargeCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	c := &cluster{}
	for i := range n {
		c.nodes = append(c.nodes, harness.NewNode(t, binary, harness.NodeSpec{ID: fmt.Sprintf("m%02d", i+1)}))
	}
	for i, nd := range c.nodes {
		args := []string{"--bootstrap-expect", fmt.Sprint(n), "--log-level", "info"}
		for j := range min(3, n) {
			if j != i {
				args = append(args, "--join", c.nodes[j].GossipAddr)
			}
		}
		nd.Args = append(nd.Args, append(args, extra...)...)
	}
	harness.DumpOnFailure(t, c.nodes...)
	for _, nd := range c.nodes {
		nd.Start()
	}
	return c
}

// alive reports whether the node's process runs.
func alive(nd *harness.Node) bool { return nd.Proc() != nil && !nd.Proc().Exited() }

// byID returns the node with id.
func (c *cluster) byID(id string) *harness.Node {
	for _, nd := range c.nodes {
		if nd.ID == id {
			return nd
		}
	}
	return nil
}

// leaderStatus returns the status of the node every running node names as
// leader, when they agree and it answers.
func (c *cluster) leaderStatus() (mesh.Status, bool) {
	leader := ""
	for _, nd := range c.nodes {
		if !alive(nd) {
			continue
		}
		var st mesh.Status
		if nd.Status(&st) != nil || st.Leader == "" || (leader != "" && st.Leader != leader) {
			return mesh.Status{}, false
		}
		leader = st.Leader
	}
	l := c.byID(leader)
	if l == nil || !alive(l) {
		return mesh.Status{}, false
	}
	var st mesh.Status
	if l.Status(&st) != nil || st.Leader != leader || st.RaftState != "Leader" {
		return mesh.Status{}, false
	}
	return st, true
}

// someLeaderStatus returns the status of the leader the first answering
// running node names, when that leader answers as leader. Unlike
// leaderStatus it does not wait for every node to agree, so a slow node does
// not hide a working leader.
func (c *cluster) someLeaderStatus() (mesh.Status, bool) {
	for _, nd := range c.nodes {
		if !alive(nd) {
			continue
		}
		var st mesh.Status
		if nd.Status(&st) != nil || st.Leader == "" {
			continue
		}
		l := c.byID(st.Leader)
		if l == nil || !alive(l) {
			continue
		}
		var ls mesh.Status
		if l.Status(&ls) == nil && ls.RaftState == "Leader" {
			return ls, true
		}
	}
	return mesh.Status{}, false
}

// voterHealth counts the voters of a status document and those that are up:
// their process runs and gossip sees them alive.
func (c *cluster) voterHealth(st mesh.Status) (total, up int) {
	for _, m := range st.Members {
		if m.Voter {
			total++
			if nd := c.byID(m.ID); nd != nil && alive(nd) && m.GossipState == "alive" {
				up++
			}
		}
	}
	return total, up
}

// pickByRole returns the nodes of the first want members with role in st
// (see membersByRole); it fails the test when there are fewer, so that a
// short or empty status never aborts the package with an index panic.
func (c *cluster) pickByRole(t *testing.T, st mesh.Status, role string, want int) []*harness.Node {
	t.Helper()
	ids := c.membersByRole(st, role)
	if len(ids) < want {
		t.Fatalf("%d live %ss in the leader's status (%v), need %d; leader %q, %d members",
			len(ids), role, ids, want, st.Leader, len(st.Members))
	}
	out := make([]*harness.Node, 0, want)
	for _, id := range ids[:want] {
		out = append(out, c.byID(id)) // membersByRole lists only nodes byID knows
	}
	return out
}

// membersByRole lists the ids of a status document's members with role
// ("leader", "voter", "nonvoter") whose process runs and that gossip sees
// alive.
func (c *cluster) membersByRole(st mesh.Status, role string) []string {
	var out []string
	for _, m := range st.Members {
		if nd := c.byID(m.ID); m.RaftRole == role && m.GossipState == "alive" && nd != nil && alive(nd) {
			out = append(out, m.ID)
		}
	}
	return out
}

// requestStream asks nd for a new stream's playlist, which makes nd write an
// assignment for it (through the leader); the answer itself does not
// matter.
func requestStream(nd *harness.Node, name string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, nd.HTTPURL("live/"+name+".m3u8"), nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}

// hasAssignment reports whether nd's replica holds an assignment of key.
func hasAssignment(nd *harness.Node, key string) bool {
	var st mesh.Status
	if nd.Status(&st) != nil {
		return false
	}
	_, ok := assignmentOf(st, key)
	return ok
}

// timeToWrite measures, from since, how long it takes until a new stream
// requested through nd is assigned in nd's replica: it requests a fresh
// stream every 100 ms and watches for any of them to be assigned. It gives
// up after limit.
func timeToWrite(t *testing.T, nd *harness.Node, prefix string, since time.Time, limit time.Duration) time.Duration {
	t.Helper()
	var keys []string
	deadline := since.Add(limit)
	for i := 0; time.Now().Before(deadline); i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		keys = append(keys, "__defaultVhost__/live/"+name)
		go requestStream(nd, name, 5*time.Second)
		stop := time.Now().Add(100 * time.Millisecond)
		for time.Now().Before(stop) {
			var st mesh.Status
			if nd.Status(&st) == nil {
				for _, k := range keys {
					if _, ok := assignmentOf(st, k); ok {
						return time.Since(since)
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Fatalf("no new stream was writable through %s within %v", nd.ID, limit)
	return 0
}

// waitAgree waits until every running node holds the same assignments.
func (c *cluster) waitAgree(t *testing.T, timeout time.Duration) int {
	t.Helper()
	var count int
	testkit.WaitFor(t, timeout, "every node holds the same assignments", func() bool {
		var want map[string]string
		for _, nd := range c.nodes {
			if !alive(nd) {
				continue
			}
			var st mesh.Status
			if nd.Status(&st) != nil {
				return false
			}
			got := map[string]string{}
			for _, a := range st.Assignments {
				got[a.Key] = a.Origin
			}
			if want == nil {
				want = got
			} else if !maps.Equal(want, got) {
				return false
			}
		}
		count = len(want)
		return want != nil
	})
	return count
}

// TestScale25 runs 25 srs-mesh processes in front of two nginx-rtmp origins:
// exactly 5 voters and 20 non-voters; a publish through a non-voter plays
// through another non-voter; with the leader killed, a new stream is
// writable through a non-voter within 3 s; the dead voter is replaced; with
// two more voters killed, 5 live voters are back within the reap timeout
// plus 10 s, and a leader with quorum is there throughout; every node ends
// with the same assignments.
func TestScale25(t *testing.T) {
	harness.Need(t, "ffmpeg", "nginx")
	const n, reap = 25, 4 * time.Second
	o1 := harness.StartNginx(t, harness.NginxOptions{})
	o2 := harness.StartNginx(t, harness.NginxOptions{})
	start := time.Now()
	c := startLargeCluster(t, n, "--reap-timeout", reap.String(),
		"--origin", originFlag("o1", o1), "--origin", originFlag("o2", o2))

	var st mesh.Status
	testkit.WaitFor(t, 60*time.Second, "25 members, 5 voters, 20 non-voters, on every node", func() bool {
		var ok bool
		if st, ok = c.leaderStatus(); !ok {
			return false
		}
		for _, nd := range c.nodes {
			var s mesh.Status
			if nd.Status(&s) != nil || len(s.Members) != n || s.Voters != 5 || s.NonVoters != n-5 {
				return false
			}
		}
		return true
	})
	t.Logf("25 nodes formed, with 5 voters, %v after start", time.Since(start).Round(10*time.Millisecond))
	if v := voters(st); v != 5 {
		t.Fatalf("%d voters", v)
	}
	c.waitOriginsHealthy(t, 2)

	nonvoters := c.pickByRole(t, st, "nonvoter", 3)
	pubNode, playNode, writer := nonvoters[0], nonvoters[2], nonvoters[1]
	pub := harness.PublishRTMP(t, pubNode.RTMPURL("live/scale"))
	res := harness.PlayUntil(t, playNode.RTMPURL("live/scale"), 2*time.Second, 10, 30*time.Second)
	t.Logf("published through non-voter %s, played %d frames through non-voter %s", pubNode.ID, res.VideoFrames, playNode.ID)
	c.waitAssigned(t, "__defaultVhost__/live/scale")

	// Kill the leader: a new stream is writable through a non-voter within
	// the bound.
	oldLeader := c.byID(st.Leader)
	if oldLeader == nil {
		t.Fatalf("the leader %q is not a node of the test", st.Leader)
	}
	oldLeader.Kill()
	killed := time.Now()
	d := timeToWrite(t, writer, "after-leader-kill", killed, 15*time.Second)
	t.Logf("leader %s killed: a new stream was writable through non-voter %s after %v", oldLeader.ID, writer.ID, d.Round(10*time.Millisecond))
	if d > writeBound {
		t.Errorf("a new stream took %v to be writable after the leader died; the bound is %v", d, writeBound)
	}
	// The dead voter is replaced by a non-voter.
	testkit.WaitFor(t, reap+20*time.Second, "5 live voters after the leader's death", func() bool {
		s, ok := c.leaderStatus()
		total, up := c.voterHealth(s)
		return ok && total == 5 && up == 5
	})
	t.Logf("5 live voters again %v after the leader was killed", time.Since(killed).Round(10*time.Millisecond))

	// Kill two more voters (not the leader). Quorum holds throughout, and
	// 5 live voters are back within the reap timeout plus 10 s.
	testkit.WaitFor(t, 20*time.Second, "the leader's status", func() bool {
		var ok bool
		st, ok = c.leaderStatus()
		return ok
	})
	var victims []string
	for _, nd := range c.pickByRole(t, st, "voter", 2) {
		victims = append(victims, nd.ID)
		nd.Kill()
	}
	killed = time.Now()
	lastLeader := time.Now()
	testkit.WaitFor(t, reap+10*time.Second, "5 live voters after two more voters died", func() bool {
		s, ok := c.someLeaderStatus()
		if ok {
			lastLeader = time.Now()
			if total, up := c.voterHealth(s); up < total/2+1 && s.Leader != "" {
				t.Errorf("quorum lost on the way: %d of %d voters alive", up, total)
			}
		} else if time.Since(lastLeader) > 3*time.Second {
			t.Errorf("no leader for %v after two voters died", time.Since(lastLeader).Round(10*time.Millisecond))
		}
		total, up := c.voterHealth(s)
		return ok && total == 5 && up == 5
	})
	t.Logf("killed voters %v: 5 live voters again after %v", victims, time.Since(killed).Round(10*time.Millisecond))

	// Still writable through a non-voter, and every node agrees.
	if d := timeToWrite(t, writer, "after-two-voters", time.Now(), 10*time.Second); d > writeBound {
		t.Errorf("writing through a non-voter took %v", d)
	}
	if pub.Exited() {
		t.Fatalf("publisher exited: %s", pub.Output())
	}
	count := c.waitAgree(t, 30*time.Second)
	t.Logf("all %d running nodes agree on %d assignments", n-3, count)
}

// signalGroup sends sig to the node's process group.
func signalGroup(t *testing.T, nd *harness.Node, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(-nd.Proc().Cmd.Process.Pid, sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, nd.ID, err)
	}
}

// TestFrozenLeader stops the leader of a 3-node mesh with SIGSTOP for 15 s
// (it keeps its connections open, as a hung process does): a new stream is
// writable through another node within 3 s; after SIGCONT the old leader
// rejoins as a follower and all nodes agree on every assignment.
func TestFrozenLeader(t *testing.T) {
	harness.Need(t, "nginx")
	o1 := harness.StartNginx(t, harness.NginxOptions{})
	o2 := harness.StartNginx(t, harness.NginxOptions{})
	c := startCluster(t, 3, "--origin", originFlag("o1", o1), "--origin", originFlag("o2", o2))
	c.waitOriginsHealthy(t, 2)
	var st mesh.Status
	testkit.WaitFor(t, 20*time.Second, "a leader", func() bool {
		var ok bool
		st, ok = c.leaderStatus()
		return ok
	})
	requestStream(c.nodes[0], "before-freeze", 5*time.Second)
	c.waitAssigned(t, "__defaultVhost__/live/before-freeze")

	frozen := c.byID(st.Leader)
	var writer *harness.Node
	for _, nd := range c.nodes {
		if nd != frozen {
			writer = nd
			break
		}
	}
	signalGroup(t, frozen, syscall.SIGSTOP)
	stopped := time.Now()
	resumed := false
	defer func() {
		if !resumed {
			signalGroup(t, frozen, syscall.SIGCONT)
		}
	}()
	d := timeToWrite(t, writer, "frozen", stopped, 14*time.Second)
	t.Logf("leader %s frozen: a new stream was writable through %s after %v", frozen.ID, writer.ID, d.Round(10*time.Millisecond))
	if d > writeBound {
		t.Errorf("a new stream took %v to be writable after the leader froze; the bound is %v", d, writeBound)
	}
	// More streams while the old leader stays frozen, through both others.
	for _, nd := range c.nodes {
		if nd != frozen {
			timeToWrite(t, nd, "while-frozen-"+nd.ID, time.Now(), 10*time.Second)
		}
	}
	if rest := 15*time.Second - time.Since(stopped); rest > 0 {
		time.Sleep(rest) // the scenario: frozen for 15 s
	}
	signalGroup(t, frozen, syscall.SIGCONT)
	resumed = true
	testkit.WaitFor(t, 20*time.Second, "one leader after the thaw", func() bool {
		s, ok := c.leaderStatus()
		return ok && s.Leader != ""
	})
	requestStream(frozen, "after-thaw", 5*time.Second)
	count := c.waitAgree(t, 20*time.Second)
	if !hasAssignment(frozen, "__defaultVhost__/live/after-thaw") {
		t.Fatalf("the thawed node holds no assignment of its own new stream")
	}
	t.Logf("after SIGCONT all 3 nodes agree on %d assignments", count)
}

// TestEveryOriginFull gives the only origin max_streams=1: the first
// publish takes it; a second RTMP publish is refused with an error
// onStatus naming the cause, and a new HTTP stream gets 503 with a JSON
// message.
func TestEveryOriginFull(t *testing.T) {
	harness.Need(t, "ffmpeg", "nginx")
	o1 := harness.StartNginx(t, harness.NginxOptions{})
	c := startCluster(t, 1, "--origin", originFlag("o1", o1)+",max_streams=1")
	c.waitOriginsHealthy(t, 1)
	nd := c.nodes[0]
	harness.PublishRTMP(t, nd.RTMPURL("live/first"))
	c.waitAssigned(t, "__defaultVhost__/live/first")
	testkit.WaitFor(t, 10*time.Second, "o1 full in the status", func() bool {
		o, ok := originOf(c.status(t, 0), "o1")
		return ok && o.Full && o.MaxStreams == 1 && o.Streams == 1
	})

	second := harness.PublishRTMP(t, nd.RTMPURL("live/second"))
	if err := second.Wait(20 * time.Second); err == nil {
		t.Fatal("a publish past max_streams succeeded")
	}
	if out := second.Output(); !strings.Contains(out, "max_streams") {
		t.Fatalf("FFmpeg did not see the refusal's reason:\n%s", out)
	}

	resp, body := httpGet(t, nd.HTTPURL("live/third.flv"))
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "max_streams") ||
		resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("HTTP past max_streams: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if _, ok := assignmentOf(c.status(t, 0), "__defaultVhost__/live/second"); ok {
		t.Fatal("a refused stream was assigned")
	}
}
