package e2e

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// The "deploy" scenarios: three processes on loopback that behave like the
// pods of statefulset/statefulset.yaml. Each has the pod's stable id
// (srs-mesh-0..2), its own data directory (the pod's volume) and the
// manifest's --bootstrap-expect 3, and joins all three peers (itself
// included), like the manifest's --join list.
//
// The manifest joins by the DNS names the headless Service gives the pods;
// this host has no DNS for them (Go's resolver does not map *.localhost to
// loopback either), so the test joins by 127.0.0.1:<port>. That the names in
// the manifest match the headless Service is checked by TestManifests.

var (
	// gossipKey is the cluster's shared --gossip-key, like the Secret's.
	gossipKey = base64.StdEncoding.EncodeToString([]byte("srs-mesh statefulset gossip key!"))
	// otherGossipKey is a valid key of the same length that is not the
	// cluster's.
	otherGossipKey = base64.StdEncoding.EncodeToString([]byte("a different key of 32 bytes.....")) // 32 bytes
)

// podIDs are the pod names of a StatefulSet "srs-mesh" with replicas pods.
func podIDs(replicas int) []string {
	ids := make([]string, replicas)
	for i := range ids {
		ids[i] = fmt.Sprintf("srs-mesh-%d", i)
	}
	return ids
}

// clusterCerts makes a cluster CA and a certificate for every id with
// `srs-mesh tls`, as the StatefulSet's init container does, and returns
// their directory: ca.pem, <id>.pem, <id>-key.pem.
func clusterCerts(t *testing.T, ids ...string) string {
	t.Helper()
	dir := t.TempDir()
	runCLI(t, "tls", "ca", "--out-dir", dir)
	for _, id := range ids {
		runCLI(t, "tls", "cert", "--node-id", id, "--host", "127.0.0.1", "--ca-cert", filepath.Join(dir, "ca.pem"),
			"--ca-key", filepath.Join(dir, "ca-key.pem"), "--out-dir", dir)
	}
	return dir
}

// tlsFlags are the --tls-* flags of node id with certificates in dir.
func tlsFlags(dir, id string) []string {
	return []string{"--tls-ca-file", filepath.Join(dir, "ca.pem"), "--tls-cert-file", filepath.Join(dir, id+".pem"),
		"--tls-key-file", filepath.Join(dir, id+"-key.pem")}
}

// startStatefulSet starts srs-mesh-0..2 with the manifest's flags (plus
// extra), mutual TLS with certificates made as the manifest's init
// container makes them included, and waits until they form a cluster.
func startStatefulSet(t *testing.T, extra ...string) *cluster {
	t.Helper()
	c := &cluster{}
	for _, id := range podIDs(3) {
		c.nodes = append(c.nodes, harness.NewNode(t, binary, harness.NodeSpec{ID: id}))
	}
	certs := clusterCerts(t, podIDs(3)...)
	c.certs = certs
	for _, nd := range c.nodes {
		args := []string{"--bootstrap-expect", "3", "--gossip-key", gossipKey, "--token", "statefulset-token",
			"--log-format", "json"}
		args = append(args, tlsFlags(certs, nd.ID)...)
		for _, peer := range c.nodes {
			args = append(args, "--join", peer.GossipAddr)
		}
		nd.Args = append(nd.Args, append(args, extra...)...)
	}
	harness.DumpOnFailure(t, c.nodes...)
	for _, nd := range c.nodes {
		nd.Start()
	}
	c.waitFormed(t, 3, 30*time.Second)
	c.waitVoters(t, 3, 30*time.Second)
	return c
}

// waitVoters waits until every running node sees exactly want voters, all
// alive in gossip, and the same leader among them.
func (c *cluster) waitVoters(t *testing.T, want int, timeout time.Duration) {
	t.Helper()
	testkit.WaitFor(t, timeout, fmt.Sprintf("%d alive voters and a leader on every running node", want), func() bool {
		return c.hasVoters(want)
	})
}

func (c *cluster) hasVoters(want int) bool {
	leader := ""
	for _, nd := range c.nodes {
		if nd.Proc() == nil || nd.Proc().Exited() {
			continue
		}
		var st mesh.Status
		if nd.Status(&st) != nil || st.Leader == "" || (leader != "" && st.Leader != leader) {
			return false
		}
		leader = st.Leader
		n := 0
		for _, m := range st.Members {
			if m.Voter {
				if m.GossipState != "alive" {
					return false
				}
				n++
			}
		}
		if n != want {
			return false
		}
	}
	return leader != ""
}

// running reports whether a node's process is up.
func running(nd *harness.Node) bool { return nd.Proc() != nil && !nd.Proc().Exited() }

// ready reports whether a node answers /readyz with 200, which is when a
// Kubernetes Service sends it clients.
func ready(nd *harness.Node) bool {
	return running(nd) && httpStatus("http://"+nd.SystemAPI+"/readyz") == http.StatusOK
}

// lbClient is an RTMP client behind a load balancer: when its FFmpeg exits
// (its node went away), tick starts a new one through the next ready node,
// as a client reconnecting through a Kubernetes Service would.
type lbClient struct {
	t     *testing.T
	nodes []*harness.Node
	path  string
	play  bool

	next       int
	node       *harness.Node
	pub        *harness.Proc
	player     *harness.Player
	earlier    int // frames decoded by earlier players
	reconnects int
	via        []string
}

func newLBClient(t *testing.T, nodes []*harness.Node, path string, play bool, first int) *lbClient {
	c := &lbClient{t: t, nodes: nodes, path: path, play: play, next: first}
	c.tick()
	return c
}

func (c *lbClient) proc() *harness.Proc {
	if c.play {
		if c.player == nil {
			return nil
		}
		return c.player.Proc
	}
	return c.pub
}

// tick reconnects when the client's process has exited.
func (c *lbClient) tick() {
	c.t.Helper()
	if p := c.proc(); p != nil && !p.Exited() {
		return
	}
	for range c.nodes {
		nd := c.nodes[c.next%len(c.nodes)]
		c.next++
		if !ready(nd) {
			continue
		}
		if c.proc() != nil {
			c.reconnects++
		}
		if c.play {
			if c.player != nil {
				c.earlier += c.player.Frames()
			}
			c.player = harness.StartPlayer(c.t, nd.RTMPURL(c.path))
		} else {
			c.pub = harness.PublishRTMP(c.t, nd.RTMPURL(c.path))
		}
		c.node = nd
		c.via = append(c.via, nd.ID)
		return
	}
}

// frames is the number of frames played so far over all connections.
func (c *lbClient) frames() int {
	if c.player == nil {
		return c.earlier
	}
	return c.earlier + c.player.Frames()
}

// waitTicking is harness.WaitFor that keeps the clients connected while it
// waits.
func waitTicking(t *testing.T, timeout time.Duration, msg string, clients []*lbClient, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, timeout, msg, func() bool {
		for _, c := range clients {
			c.tick()
		}
		return cond()
	})
}

// assignments is a node's stream key -> origin table.
func assignments(t *testing.T, nd *harness.Node) map[string]string {
	t.Helper()
	var st mesh.Status
	if err := nd.Status(&st); err != nil {
		t.Fatalf("status of %s: %v", nd.ID, err)
	}
	out := map[string]string{}
	for _, a := range st.Assignments {
		out[a.Key] = a.Origin
	}
	return out
}

// TestStatefulSetRollingRestart restarts srs-mesh-2, -1, -0 in turn (the
// order of a StatefulSet rolling update), each with SIGTERM and a short
// drain, then again with the same id, data directory and addresses, while
// a stream is published and played through the mesh. The clients reconnect
// through ready nodes, the stream keeps its origin, and the cluster ends
// with three voters and a leader.
func TestStatefulSetRollingRestart(t *testing.T) {
	origins, flags := twoNginx(t)
	c := startStatefulSet(t, append(flags, "--drain-timeout", "3s")...)
	c.waitOriginsHealthy(t, 2)

	const key = "__defaultVhost__/live/rolling"
	pub := newLBClient(t, c.nodes, "live/rolling", false, 0)
	owner := c.waitAssigned(t, key)
	player := newLBClient(t, c.nodes, "live/rolling", true, 1)
	clients := []*lbClient{pub, player}
	waitTicking(t, 30*time.Second, "player decodes frames", clients, func() bool { return player.frames() >= 25 })
	// A second stream that nobody uses during the restarts must keep its
	// origin too.
	idle := harness.PublishRTMP(t, c.nodes[2].RTMPURL("live/idle"))
	c.waitAssigned(t, "__defaultVhost__/live/idle")
	idle.Kill()
	before := assignments(t, c.nodes[0])
	t.Logf("before: %v; publishing via %s, playing via %s", before, pub.node.ID, player.node.ID)

	for k := len(c.nodes) - 1; k >= 0; k-- {
		nd := c.nodes[k]
		start := time.Now()
		nd.Proc().Cmd.Process.Signal(syscall.SIGTERM)
		waitTicking(t, 30*time.Second, nd.ID+" exits after SIGTERM", clients, func() bool { return nd.Proc().Exited() })
		if err := nd.Proc().Wait(time.Second); err != nil {
			t.Fatalf("%s exited with %v", nd.ID, err)
		}
		stopped := time.Since(start)
		nd.Start()
		waitTicking(t, 60*time.Second, nd.ID+" back as a voter", clients, func() bool { return c.hasVoters(3) && ready(nd) })
		from := player.frames()
		waitTicking(t, 30*time.Second, "player plays on after "+nd.ID+" restarted", clients, func() bool {
			return player.frames() >= from+50
		})
		t.Logf("%s: stopped in %v, back in %v; %d frames played, publisher via %s, player via %s",
			nd.ID, stopped.Round(10*time.Millisecond), time.Since(start).Round(10*time.Millisecond),
			player.frames(), pub.node.ID, player.node.ID)
	}

	after := assignments(t, c.nodes[1])
	for k, v := range before {
		if after[k] != v {
			t.Errorf("assignment of %s changed from %s to %q over the rolling restart", k, v, after[k])
		}
	}
	if after[key] != owner {
		t.Errorf("%s on %s after the restart, was on %s", key, after[key], owner)
	}
	harness.PlayUntil(t, "rtmp://"+origins[owner].RTMPAddr+"/live/rolling", 2*time.Second, 5, 30*time.Second)
	c.waitVoters(t, 3, 10*time.Second)
	t.Logf("after: %v; publisher reconnected %d times (%s), player %d times (%s), %d frames played",
		after, pub.reconnects, strings.Join(pub.via, ","), player.reconnects, strings.Join(player.via, ","), player.frames())
}

// TestStatefulSetScaleDown scales from 3 to 2 replicas the way a StatefulSet
// does it, by terminating the highest ordinal: srs-mesh-2 drains, leaves
// gossip and exits 0. It stays a voter, because the voter set never drops
// below --bootstrap-expect 3 (a full stop must leave a set any majority can
// restart); the two others hold quorum, route old streams and assign new
// ones. (To run on fewer nodes for good, lower --bootstrap-expect.)
func TestStatefulSetScaleDown(t *testing.T) {
	_, flags := twoNginx(t)
	c := startStatefulSet(t, append(flags, "--drain-timeout", "3s")...)
	c.waitOriginsHealthy(t, 2)
	p0, p1, p2 := c.nodes[0], c.nodes[1], c.nodes[2]

	const old = "__defaultVhost__/live/before-scale"
	harness.PublishRTMP(t, p2.RTMPURL("live/before-scale"))
	owner := c.waitAssigned(t, old)

	if err := p2.Stop(30 * time.Second); err != nil {
		t.Fatalf("%s after SIGTERM: %v", p2.ID, err)
	}
	for _, nd := range []*harness.Node{p0, p1} {
		st := cliStatus(t, nd)
		if voters(st) != 3 {
			t.Fatalf("%s after the scale-down: %d voters, want 3 (never below --bootstrap-expect), members %+v", nd.ID, voters(st), st.Members)
		}
		if !ready(nd) {
			t.Fatalf("%s is not ready after the scale-down", nd.ID)
		}
	}
	st := c.status(t, 0)
	t.Logf("after the scale-down: leader %s, %d voters, %d members listed", st.Leader, voters(st), len(st.Members))

	// The publisher through srs-mesh-2 was cut; it reconnects through
	// srs-mesh-0 to the same origin.
	harness.PublishRTMP(t, p0.RTMPURL("live/before-scale"))
	harness.PlayUntil(t, p1.RTMPURL("live/before-scale"), 2*time.Second, 5, 30*time.Second)
	if a, _ := assignmentOf(c.status(t, 1), old); a.Origin != owner {
		t.Errorf("%s moved from %s to %s", old, owner, a.Origin)
	}
	harness.PublishRTMP(t, p1.RTMPURL("live/after-scale"))
	got := c.waitAssigned(t, "__defaultVhost__/live/after-scale")
	harness.PlayUntil(t, p0.RTMPURL("live/after-scale"), 2*time.Second, 5, 30*time.Second)
	t.Logf("new stream after the scale-down assigned to %s and playable through %s", got, p0.ID)
}

// gossipKeyLog matches what memberlist says when a peer's gossip is
// encrypted with another key (or not encrypted).
var gossipKeyLog = regexp.MustCompile(`(?i)(no installed keys could decrypt|decrypt|encrypt)`)

// TestStatefulSetGossipKey starts a fourth pod with a different
// --gossip-key: it cannot join, the three others keep three members, and
// its log says why. Started again with the cluster's key (a scale-up to 4
// replicas), it joins and becomes a voter.
func TestStatefulSetGossipKey(t *testing.T) {
	c := startStatefulSet(t)
	nd := harness.NewNode(t, binary, harness.NodeSpec{ID: "srs-mesh-3"})
	harness.DumpOnFailure(t, nd)
	base := append([]string(nil), nd.Args...)
	runCLI(t, "tls", "cert", "--node-id", "srs-mesh-3", "--ca-cert", filepath.Join(c.certs, "ca.pem"),
		"--ca-key", filepath.Join(c.certs, "ca-key.pem"), "--out-dir", c.certs)
	join := append([]string{"--bootstrap-expect", "3", "--token", "statefulset-token", "--log-format", "json"},
		tlsFlags(c.certs, "srs-mesh-3")...)
	for _, peer := range c.nodes {
		join = append(join, "--join", peer.GossipAddr)
	}
	nd.Args = append(append(append([]string(nil), base...), join...), "--gossip-key", otherGossipKey)
	nd.Start()

	testkit.WaitFor(t, 30*time.Second, "srs-mesh-3 logs why it cannot join", func() bool {
		return gossipKeyLog.MatchString(nd.Logs())
	})
	for _, line := range strings.Split(nd.Logs(), "\n") {
		if gossipKeyLog.MatchString(line) {
			t.Logf("srs-mesh-3: %s", strings.TrimSpace(line))
			break
		}
	}
	for i := range c.nodes {
		st := c.status(t, i)
		if _, ok := memberOf(st, "srs-mesh-3"); ok || len(st.Members) != 3 || voters(st) != 3 {
			t.Fatalf("%s sees %d members (%d voters) with a wrong-key node around: %+v",
				c.nodes[i].ID, len(st.Members), voters(st), st.Members)
		}
	}
	var st mesh.Status
	if err := nd.Status(&st); err == nil && (len(st.Members) > 1 || st.Leader != "") {
		t.Fatalf("srs-mesh-3 with the wrong key sees %d members and leader %q", len(st.Members), st.Leader)
	}

	// The same pod with the right key (a scale-up) joins the cluster.
	if err := nd.Stop(15 * time.Second); err != nil {
		t.Fatalf("srs-mesh-3 stop: %v", err)
	}
	nd.Args = append(append(append([]string(nil), base...), join...), "--gossip-key", gossipKey)
	nd.Start()
	c.nodes = append(c.nodes, nd)
	c.waitVoters(t, 4, 60*time.Second)
	st = c.status(t, 0)
	t.Logf("with the right key srs-mesh-3 joined: %d members, %d voters, leader %s", len(st.Members), voters(st), st.Leader)
}
