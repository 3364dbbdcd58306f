package mesh_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/meshtest"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

var verboseLogs = flag.Bool("mesh.log", false, "print node logs")

func testLogger() *slog.Logger {
	if *verboseLogs {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return nil
}

const clusterTimeout = 15 * time.Second

// fakeOrigin is a TCP listener standing in for an origin's RTMP port: it
// accepts and closes connections, which is all the health probe needs.
type fakeOrigin struct {
	ln   net.Listener
	done chan struct{}
	o    stream.Origin
}

func startOrigin(t testing.TB, id string) *fakeOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeOrigin{ln: ln, done: make(chan struct{}),
		o: stream.Origin{ID: id, IP: "127.0.0.1", RTMP: ln.Addr().String(), Service: "svc", PID: "1"}}
	go func() {
		defer close(f.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(f.close)
	return f
}

func (f *fakeOrigin) close() {
	f.ln.Close()
	<-f.done
}

func startCluster(t testing.TB, n int, tweak func(int, *mesh.Config)) *meshtest.Cluster {
	t.Helper()
	c := meshtest.Start(t, meshtest.Options{N: n, Logger: testLogger(), Tweak: tweak})
	c.WaitLeader(clusterTimeout)
	c.WaitVoters(clusterTimeout, n)
	return c
}

func registerOrigins(t testing.TB, c *meshtest.Cluster, origins ...*fakeOrigin) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, o := range origins {
		if err := c.Node(i%len(c.Members)).RegisterOrigin(ctx, o.o); err != nil {
			t.Fatalf("register %s: %v", o.o.ID, err)
		}
	}
	c.WaitApplied(clusterTimeout)
}

func key(i int) stream.Key {
	return stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: fmt.Sprintf("s%d", i)}
}

func assignmentsOf(n *mesh.Node) map[string]string {
	out := map[string]string{}
	for _, a := range n.Status().Assignments {
		out[a.Key] = a.Origin
	}
	return out
}

func TestClusterForms(t *testing.T) {
	c := startCluster(t, 3, nil)
	for i := range c.Members {
		testkit.WaitFor(t, clusterTimeout, "every node to see 3 voters", func() bool {
			voters := 0
			for _, m := range c.Node(i).Status().Members {
				if m.Voter {
					voters++
				}
			}
			return voters == 3
		})
	}
	leaders := 0
	for i := range c.Members {
		st := c.Node(i).Status()
		if st.RaftState == "Leader" {
			leaders++
		}
		voters := 0
		for _, m := range st.Members {
			if m.Voter {
				voters++
			}
			if m.GossipState != "alive" || m.APIAddr == "" || m.RaftAddr == "" {
				t.Errorf("%s sees member %+v", st.NodeID, m)
			}
		}
		if voters != 3 || len(st.Members) != 3 {
			t.Errorf("%s: %d voters, %d members", st.NodeID, voters, len(st.Members))
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders", leaders)
	}
}

func TestConcurrentFirstUseAgrees(t *testing.T) {
	c := startCluster(t, 3, nil)
	registerOrigins(t, c, startOrigin(t, "o1"), startOrigin(t, "o2"), startOrigin(t, "o3"))

	const routes, keys = 200, 50
	got := make([]string, routes)
	errs := make([]error, routes)
	var wg sync.WaitGroup
	for i := range routes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			o, err := c.Node(i%3).Route(ctx, key(i%keys))
			got[i], errs[i] = o.ID, err
		}()
	}
	wg.Wait()
	chosen := map[string]string{}
	for i := range routes {
		if errs[i] != nil {
			t.Fatalf("route %d: %v", i, errs[i])
		}
		k := key(i % keys).String()
		if prev, ok := chosen[k]; ok && prev != got[i] {
			t.Fatalf("key %s routed to both %s and %s", k, prev, got[i])
		}
		chosen[k] = got[i]
	}
	c.WaitApplied(clusterTimeout)
	per := map[string]int{}
	for i := range c.Members {
		as := assignmentsOf(c.Node(i))
		if len(as) != keys {
			t.Fatalf("node%d has %d assignments, want %d", i, len(as), keys)
		}
		for k, o := range chosen {
			if as[k] != o {
				t.Fatalf("node%d: %s -> %s, routes said %s", i, k, as[k], o)
			}
		}
	}
	for _, o := range chosen {
		per[o]++
	}
	for id, n := range per {
		if n < keys/3-1 || n > keys/3+2 {
			t.Errorf("origin %s has %d streams, want balanced: %v", id, n, per)
		}
	}
	if st := c.Node(0).Status(); st.DegradedRoutes != 0 {
		t.Fatalf("degraded routes with a healthy cluster: %d", st.DegradedRoutes)
	}
}

func TestLeaderKilledNewLeaderAcceptsWrites(t *testing.T) {
	c := startCluster(t, 3, nil)
	registerOrigins(t, c, startOrigin(t, "o1"), startOrigin(t, "o2"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before, err := c.Node(0).Route(ctx, key(1))
	if err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(clusterTimeout)

	old := c.WaitLeader(clusterTimeout)
	killed := time.Now()
	c.Kill(old)
	survivor := (old + 1) % 3
	o, err := c.Node(survivor).Route(ctx, key(2))
	if err != nil {
		t.Fatalf("route on survivor after leader death: %v", err)
	}
	nl := c.WaitLeader(clusterTimeout)
	t.Logf("new leader node%d; first write %v after the kill", nl, time.Since(killed))
	if nl == old {
		t.Fatal("dead node still leader")
	}
	if st := c.Node(survivor).Status(); st.DegradedRoutes != 0 {
		t.Fatalf("write after failover was degraded, not replicated")
	}
	c.WaitApplied(clusterTimeout)
	for _, i := range c.Running() {
		as := assignmentsOf(c.Node(i))
		if as[key(2).String()] != o.ID || as[key(1).String()] != before.ID {
			t.Fatalf("node%d assignments after failover: %v", i, as)
		}
	}
}

func TestRestartedNodeKeepsStateAndRejoins(t *testing.T) {
	c := startCluster(t, 3, nil)
	registerOrigins(t, c, startOrigin(t, "o1"), startOrigin(t, "o2"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want := map[string]string{}
	for i := range 10 {
		o, err := c.Node(i%3).Route(ctx, key(i))
		if err != nil {
			t.Fatal(err)
		}
		want[key(i).String()] = o.ID
	}
	c.WaitApplied(clusterTimeout)
	victim := (c.WaitLeader(clusterTimeout) + 1) % 3
	c.Kill(victim)
	// A write while it is down reaches it after the restart.
	o, err := c.Node((victim+1)%3).Route(ctx, key(100))
	if err != nil {
		t.Fatal(err)
	}
	want[key(100).String()] = o.ID

	c.Restart(victim)
	n := c.Node(victim)
	testkit.WaitFor(t, clusterTimeout, "restarted node to catch up", func() bool {
		as := assignmentsOf(n)
		for k, o := range want {
			if as[k] != o {
				return false
			}
		}
		return true
	})
	c.WaitVoters(clusterTimeout, 3)
	for k, id := range want {
		ks, _ := stream.ParseKey(k)
		got, err := n.Route(ctx, ks)
		if err != nil || got.ID != id {
			t.Fatalf("route %s on restarted node = %v, %v; want %s", k, got.ID, err, id)
		}
	}
	if st := n.Status(); st.Leader == "" {
		t.Fatal("restarted node sees no leader")
	}
}

// A graceful leave removes the voter while the voters stay at or above
// BootstrapExpect (2 here).
func TestGracefulLeaveRemovesVoter(t *testing.T) {
	c := startCluster(t, 3, func(_ int, cfg *mesh.Config) { cfg.BootstrapExpect = 2 })
	l := c.WaitLeader(clusterTimeout)
	// The leader leaves: leadership moves and the voter is removed.
	if err := c.Leave(l); err != nil {
		t.Fatalf("leave: %v", err)
	}
	c.WaitVoters(clusterTimeout, 2)
	nl := c.WaitLeader(clusterTimeout)
	if nl == l {
		t.Fatal("left node still leader")
	}
	c.Restart(l)
	c.WaitVoters(clusterTimeout, 3)
}

func TestOriginHealthFailover(t *testing.T) {
	c := startCluster(t, 3, nil)
	a, b := startOrigin(t, "oa"), startOrigin(t, "ob")
	registerOrigins(t, c, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Find a key that lands on oa.
	var k stream.Key
	for i := 0; ; i++ {
		o, err := c.Node(i%3).Route(ctx, key(i))
		if err != nil {
			t.Fatal(err)
		}
		if o.ID == "oa" {
			k = key(i)
			break
		}
	}
	a.close()
	died := time.Now()
	leader := c.Node(c.WaitLeader(clusterTimeout))
	testkit.WaitFor(t, 5*time.Second, "oa to turn unhealthy", func() bool {
		for _, o := range leader.Status().Origins {
			if o.ID == "ob" && !o.Healthy {
				t.Fatalf("healthy origin ob flapped: %+v", o)
			}
			if o.ID == "oa" && !o.Healthy {
				return true
			}
		}
		return false
	})
	t.Logf("oa unhealthy %v after its listener closed", time.Since(died))
	c.WaitApplied(clusterTimeout)
	for i := range c.Members {
		o, err := c.Node(i).Route(ctx, k)
		if err != nil || o.ID != "ob" {
			t.Fatalf("node%d: existing key after oa died -> %v, %v", i, o.ID, err)
		}
		o, err = c.Node(i).Route(ctx, key(1000+i))
		if err != nil || o.ID != "ob" {
			t.Fatalf("node%d: new key after oa died -> %v, %v", i, o.ID, err)
		}
	}
	for _, o := range leader.Status().Origins {
		if o.ID == "ob" && !o.Healthy {
			t.Fatalf("ob unhealthy: %+v", o)
		}
	}
}

func TestNoQuorumDegradesWithinBound(t *testing.T) {
	c := startCluster(t, 3, func(i int, cfg *mesh.Config) { cfg.RouteTimeout = 700 * time.Millisecond })
	registerOrigins(t, c, startOrigin(t, "o1"), startOrigin(t, "o2"))
	ctx := context.Background()
	existing, err := c.Node(0).Route(ctx, key(1))
	if err != nil {
		t.Fatal(err)
	}
	c.WaitApplied(clusterTimeout)
	c.Kill(1)
	c.Kill(2)
	n := c.Node(0)
	// Existing streams keep routing from the local replica.
	if o, err := n.Route(ctx, key(1)); err != nil || o.ID != existing.ID {
		t.Fatalf("existing key without quorum: %v %v", o.ID, err)
	}
	// The caller allows far longer than RouteTimeout: a Route that waited
	// for the caller's deadline instead of its own bound fails with the
	// caller's error, whatever the machine's speed.
	callerCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	o, err := n.Route(callerCtx, key(2))
	if err != nil {
		t.Fatalf("new key without quorum: %v", err)
	}
	if callerCtx.Err() != nil {
		t.Fatalf("degraded route returned only when the caller gave up")
	}
	want, _ := stream.SelectByHash(key(2), []stream.Candidate{{ID: "o1", Healthy: true}, {ID: "o2", Healthy: true}})
	if o.ID != want {
		t.Fatalf("degraded choice %s, want rendezvous %s", o.ID, want)
	}
	if st := n.Status(); st.DegradedRoutes != 1 {
		t.Fatalf("degraded routes = %d", st.DegradedRoutes)
	}
	// Cancelled callers get their context's error, not a degraded answer.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := n.Route(cctx, key(3)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled route: %v", err)
	}
}

func TestNoOrigin(t *testing.T) {
	c := startCluster(t, 1, nil)
	_, err := c.Node(0).Route(context.Background(), key(1))
	if !errors.Is(err, stream.ErrNoOrigin) {
		t.Fatalf("route without origins: %v", err)
	}
	if _, err := c.Node(0).Route(context.Background(), stream.Key{App: "x"}); err == nil {
		t.Fatal("invalid key routed")
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	runtime.GC()
	base := runtime.NumGoroutine()
	func() {
		c := meshtest.Start(t, meshtest.Options{N: 3, Logger: testLogger()})
		c.WaitLeader(clusterTimeout)
		c.WaitVoters(clusterTimeout, 3)
		o := startOrigin(t, "o1")
		registerOrigins(t, c, o)
		for i := range 20 {
			if _, err := c.Node(i%3).Route(context.Background(), key(i)); err != nil {
				t.Fatal(err)
			}
		}
		end := c.Node(1).Track(key(1), "rtmp", stream.KindPlay)
		end()
		end()
		c.Close()
		o.close()
	}()
	if err := testkit.GoroutinesBack(base+2, 10*time.Second); err != nil {
		t.Fatalf("after close: %v", err)
	}
}

func TestEncryptedGossipForms(t *testing.T) {
	key := []byte("0123456789abcdef")
	c := startCluster(t, 3, func(i int, cfg *mesh.Config) { cfg.GossipKey = key })
	if l := c.WaitLeader(clusterTimeout); l < 0 || !c.Node(l).IsLeader() {
		t.Fatal("no leader with encrypted gossip")
	}
}

// Every node leaves at once (SIGTERM on all): no leave takes the voter set
// below BootstrapExpect, so any two of the three, restarted, elect a leader.
// A node restarted alone (no quorum) still routes the streams that were
// assigned, from the snapshot it wrote on leaving.
func TestFullStopRestartsWithAMajority(t *testing.T) {
	c := startCluster(t, 3, nil)
	registerOrigins(t, c, startOrigin(t, "o1"))
	want := map[string]string{}
	for i := range 5 {
		o, err := c.Node(i%3).Route(context.Background(), key(i))
		if err != nil {
			t.Fatal(err)
		}
		want[key(i).String()] = o.ID
	}
	c.WaitApplied(clusterTimeout)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Leave(i) // errors (no leader to ask, mid-way) are part of the scenario
		}()
	}
	wg.Wait()

	// One node alone: no quorum, but the assigned streams route, from the
	// state it restored (not by the degraded hash choice).
	c.Restart(2)
	if st := c.Node(2).Status(); len(st.Assignments) < len(want) {
		t.Fatalf("alone after the full stop, %d assignments restored, want %d", len(st.Assignments), len(want))
	}
	for k, id := range want {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		o, err := c.Node(2).Route(ctx, mustKey(t, k))
		cancel()
		if err != nil || o.ID != id {
			t.Fatalf("alone after the full stop, %s routes to %q (%v), want %s", k, o.ID, err, id)
		}
	}
	if st := c.Node(2).Status(); st.DegradedRoutes != 0 {
		t.Fatalf("%d routes took the degraded choice", st.DegradedRoutes)
	}
	// With a second node there is a majority and a leader.
	c.Restart(0)
	l := c.WaitLeader(clusterTimeout)
	if l < 0 {
		t.Fatal("no leader with two of three nodes back")
	}
	if _, err := c.Node(l).Route(context.Background(), key(99)); err != nil {
		t.Fatalf("a new stream after the restart: %v", err)
	}
}

func mustKey(t *testing.T, s string) stream.Key {
	t.Helper()
	k, err := stream.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// lastProbes returns the "last seen alive" (last successful probe, unix ms)
// of every origin in a node's status.
func lastProbes(st mesh.Status) map[string]int64 {
	out := map[string]int64{}
	for _, o := range st.Origins {
		out[o.ID] = o.LastProbeUnixMs
	}
	return out
}

// A follower shows the same "last seen alive" for an origin as the leader,
// within one probe round (its interval, and the little a probe and its
// replication take), while the origin answers and after it went
// down: every node shows the replicated time of the leader's last
// successful probe, which the leader writes every probe round in which it
// moved and with the change that marks an origin down.
func TestFollowerLastSeenMatchesLeader(t *testing.T) {
	c := startCluster(t, 3, nil)
	o1, o2 := startOrigin(t, "o1"), startOrigin(t, "o2")
	registerOrigins(t, c, o1, o2)
	leader := c.Leader()
	follower := (leader + 1) % 3
	interval := c.Members[leader].Config.ProbeInterval.Milliseconds()
	// A probe round takes its interval and the time of the probes and of
	// the write: consecutive probe times are an interval and a little more
	// apart, and a follower may not have applied the leader's latest yet.
	round := interval + interval/2
	testkit.WaitFor(t, clusterTimeout, "the follower shows a last probe of both origins", func() bool {
		p := lastProbes(c.Node(follower).Status())
		return p["o1"] > 0 && p["o2"] > 0
	})

	// Compare the two, a read of the follower between two of the leader,
	// while the leader's time moves on by 15 probe intervals.
	first := lastProbes(c.Node(leader).Status())["o1"]
	reads := 0
	testkit.WaitFor(t, clusterTimeout, "the leader's last probe moving on", func() bool {
		l1 := lastProbes(c.Node(leader).Status())
		f := lastProbes(c.Node(follower).Status())
		l2 := lastProbes(c.Node(leader).Status())
		reads++
		for _, id := range []string{"o1", "o2"} {
			lo, hi := min(l1[id], l2[id])-round, max(l1[id], l2[id])+round
			if f[id] < lo || f[id] > hi {
				t.Fatalf("read %d: %s last seen alive at %d on the follower, between %d and %d on the leader (probe interval %d ms)",
					reads, id, f[id], l1[id], l2[id], interval)
			}
		}
		return l2["o1"]-first >= 15*interval
	})

	// o1 stops answering: once the follower shows it down, its last seen
	// alive is the leader's, within one probe interval before it went.
	closed := time.Now().UnixMilli()
	o1.close()
	testkit.WaitFor(t, clusterTimeout, "the follower shows o1 down", func() bool {
		for _, o := range c.Node(follower).Status().Origins {
			if o.ID == "o1" && !o.Healthy {
				return true
			}
		}
		return false
	})
	testkit.WaitFor(t, clusterTimeout, "the leader shows o1 down", func() bool {
		for _, o := range c.Node(leader).Status().Origins {
			if o.ID == "o1" && !o.Healthy {
				return true
			}
		}
		return false
	})
	l, f := lastProbes(c.Node(leader).Status())["o1"], lastProbes(c.Node(follower).Status())["o1"]
	if f != l {
		t.Errorf("o1 down: last seen alive %d on the follower, %d on the leader", f, l)
	}
	if f > closed || f < closed-round {
		t.Errorf("o1 down: last seen alive %d ms before it stopped answering, want at most one probe round (%d ms)", closed-f, round)
	}
}

// TestRerouteMovesOnce: a follower that saw a stream's origin fail moves the
// stream at once, before any probe marks the origin unhealthy, once the
// origin no longer accepts connections (while it does, nothing moves); every node
// then routes it to the other origin with epoch 1, and the same observation
// by another node moves nothing more.
func TestRerouteMovesOnce(t *testing.T) {
	c := startCluster(t, 3, nil)
	a, b := startOrigin(t, "oa"), startOrigin(t, "ob")
	registerOrigins(t, c, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var k stream.Key
	var from stream.Origin
	for i := 0; ; i++ {
		o, err := c.Node(0).Route(ctx, key(i))
		if err != nil {
			t.Fatal(err)
		}
		if o.ID == "oa" {
			k, from = key(i), o
			break
		}
	}
	follower := (c.Leader() + 1) % 3
	// While oa answers, the follower's observation moves nothing.
	if o, err := c.Node(follower).Reroute(ctx, k, from); err != nil || o.ID != "oa" || c.Node(follower).Epoch(k) != 0 {
		t.Fatalf("reroute off a live origin: %v %v epoch %d", o.ID, err, c.Node(follower).Epoch(k))
	}
	a.close() // oa dies
	o, err := c.Node(follower).Reroute(ctx, k, from)
	if err != nil || o.ID != "ob" {
		t.Fatalf("reroute: %v %v", o.ID, err)
	}
	c.WaitApplied(clusterTimeout)
	for i := range c.Members {
		n := c.Node(i)
		if o, err := n.Route(ctx, k); err != nil || o.ID != "ob" || n.Epoch(k) != 1 {
			t.Fatalf("node%d: %v %v epoch %d", i, o.ID, err, n.Epoch(k))
		}
		if o, err := n.Reroute(ctx, k, from); err != nil || o.ID != "ob" {
			t.Fatalf("node%d: repeated reroute %v %v", i, o.ID, err)
		}
	}
	c.WaitApplied(clusterTimeout)
	for i := range c.Members {
		if e := c.Node(i).Epoch(k); e != 1 {
			t.Fatalf("node%d: epoch %d after repeated reroutes", i, e)
		}
	}
	// Within MoveInterval, ob's failure does not move the stream back: it
	// stays where it is while ob is healthy.
	if o, err := c.Node(follower).Reroute(ctx, k, o); err != nil || o.ID != "ob" {
		t.Fatalf("reroute too soon: %v %v", o.ID, err)
	}
}
