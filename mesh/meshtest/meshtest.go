// Package meshtest starts in-process srs-mesh clusters for tests: N real
// mesh.Nodes (Raft and memberlist on 127.0.0.1, distinct free ports, temp
// data dirs, millisecond timers), each with its system API served over HTTP.
package meshtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// FastConfig returns a config for node id with free loopback ports, dataDir,
// and timers shortened for tests (elections within about a second even on a
// loaded machine).
func FastConfig(t testing.TB, id, dataDir string) mesh.Config {
	cfg := mesh.DefaultConfig()
	cfg.NodeID = id
	cfg.DataDir = dataDir
	loopback := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	cfg.GossipAddr = netip.AddrPortFrom(loopback, uint16(testkit.FreePort(t, true)))
	cfg.RaftAddr = netip.AddrPortFrom(loopback, uint16(testkit.FreePort(t, true)))
	cfg.AdvertiseAddr = loopback
	cfg.RaftHeartbeatTimeout = 600 * time.Millisecond
	cfg.RaftElectionTimeout = 600 * time.Millisecond
	cfg.RaftLeaderLeaseTimeout = 300 * time.Millisecond
	cfg.RaftCommitTimeout = 5 * time.Millisecond
	cfg.GossipProbeInterval = 300 * time.Millisecond
	cfg.GossipInterval = 100 * time.Millisecond
	cfg.GossipProbeTimeout = 200 * time.Millisecond
	cfg.ProbeInterval = 200 * time.Millisecond
	cfg.OriginTimeout = time.Second
	cfg.TouchInterval = 500 * time.Millisecond
	cfg.ReapTimeout = 3 * time.Second
	cfg.RaftNoSync = true
	return cfg
}

// Options configures Start.
type Options struct {
	// N is the number of nodes (default 3); BootstrapExpect is N.
	N int
	// Token is set on every node.
	Token string
	// Logger receives every node's logs; nil discards them.
	Logger *slog.Logger
	// Tweak changes node i's config before it starts.
	Tweak func(i int, cfg *mesh.Config)
}

// Member is one node of a test cluster with its system API server.
type Member struct {
	Config mesh.Config
	// URL is the base URL of the node's system API, "http://127.0.0.1:port".
	URL string

	mu   sync.Mutex
	node *mesh.Node
	srv  *http.Server
	done chan struct{}
}

// Node returns the running node (nil after Kill).
func (m *Member) Node() *mesh.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.node
}

// Cluster is an in-process mesh.
type Cluster struct {
	t       testing.TB
	Members []*Member
}

// Start starts an N-node cluster (every node joins the others by gossip and
// they bootstrap together) and registers its shutdown with t.Cleanup. It does not
// wait for a leader; see WaitLeader.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.N == 0 {
		opts.N = 3
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	root := t.TempDir()
	c := &Cluster{t: t}
	used := map[netip.AddrPort]bool{}
	for i := range opts.N {
		id := fmt.Sprintf("node%d", i)
		cfg := FastConfig(t, id, filepath.Join(root, id))
		for used[cfg.GossipAddr] || used[cfg.RaftAddr] || cfg.GossipAddr == cfg.RaftAddr {
			cfg = FastConfig(t, id, filepath.Join(root, id))
		}
		used[cfg.GossipAddr], used[cfg.RaftAddr] = true, true
		cfg.BootstrapExpect = opts.N
		cfg.Token = opts.Token
		cfg.Logger = logger
		c.Members = append(c.Members, &Member{Config: cfg})
	}
	// Every node knows every other node's gossip address, as a StatefulSet
	// would configure it, so any node can restart and rejoin.
	for i, m := range c.Members {
		for j, o := range c.Members {
			if i != j {
				m.Config.Join = append(m.Config.Join, o.Config.GossipAddr.String())
			}
		}
		if opts.Tweak != nil {
			opts.Tweak(i, &m.Config)
		}
	}
	t.Cleanup(c.Close)
	for i := range c.Members {
		err := c.startMember(i, "")
		// A port that was free when drawn may be taken by another test
		// process before the node binds it: draw again.
		for try := 0; err != nil && strings.Contains(err.Error(), "address already in use") && try < 5; try++ {
			c.redraw(i, used)
			err = c.startMember(i, "")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// redraw gives member i new gossip and Raft ports, and the other members'
// join lists its new gossip address.
func (c *Cluster) redraw(i int, used map[netip.AddrPort]bool) {
	m := c.Members[i]
	old := m.Config.GossipAddr.String()
	fresh := FastConfig(c.t, m.Config.NodeID, m.Config.DataDir)
	for used[fresh.GossipAddr] || used[fresh.RaftAddr] || fresh.GossipAddr == fresh.RaftAddr {
		fresh = FastConfig(c.t, m.Config.NodeID, m.Config.DataDir)
	}
	used[fresh.GossipAddr], used[fresh.RaftAddr] = true, true
	m.Config.GossipAddr, m.Config.RaftAddr = fresh.GossipAddr, fresh.RaftAddr
	for j, o := range c.Members {
		if j == i {
			continue
		}
		for k, addr := range o.Config.Join {
			if addr == old {
				o.Config.Join[k] = fresh.GossipAddr.String()
			}
		}
	}
}

// startMember starts node i's API listener (on apiAddr, or a new port) and
// the node itself.
func (c *Cluster) startMember(i int, apiAddr string) error {
	m := c.Members[i]
	if apiAddr == "" {
		apiAddr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for range 100 { // the old listener's port may take a moment to free
		if ln, err = net.Listen("tcp", apiAddr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	m.Config.APIAddr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	m.URL = "http://" + m.Config.APIAddr.String()
	n, err := mesh.New(m.Config)
	if err != nil {
		ln.Close()
		return fmt.Errorf("start %s: %w", m.Config.NodeID, err)
	}
	srv := &http.Server{Handler: n.Handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.t.Logf("%s: serve: %v", m.Config.NodeID, err)
		}
	}()
	m.mu.Lock()
	m.node, m.srv, m.done = n, srv, done
	m.mu.Unlock()
	return nil
}

// Node returns member i's node.
func (c *Cluster) Node(i int) *mesh.Node { return c.Members[i].Node() }

// Kill closes member i without leaving the mesh (a crash, as peers see it).
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	m := c.Members[i]
	m.mu.Lock()
	n, srv, done := m.node, m.srv, m.done
	m.node, m.srv = nil, nil
	m.mu.Unlock()
	if srv != nil {
		srv.Close()
		<-done
	}
	if n != nil {
		if err := n.Close(); err != nil {
			c.t.Logf("close %s: %v", m.Config.NodeID, err)
		}
	}
}

// Leave makes member i leave gracefully, then kills it.
func (c *Cluster) Leave(i int) error {
	n := c.Node(i)
	if n == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := n.Leave(ctx)
	c.Kill(i)
	return err
}

// Restart starts a killed member again with the same id, data dir and
// addresses.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if err := c.startMember(i, c.Members[i].Config.APIAddr.String()); err != nil {
		c.t.Fatal(err)
	}
}

// Running returns the indexes of running members.
func (c *Cluster) Running() []int {
	var out []int
	for i, m := range c.Members {
		if m.Node() != nil {
			out = append(out, i)
		}
	}
	return out
}

// Leader returns the index of the running member that is leader and is
// recognised as leader by every running member, or -1.
func (c *Cluster) Leader() int {
	leader := -1
	for _, i := range c.Running() {
		if c.Node(i).IsLeader() {
			leader = i
		}
	}
	if leader < 0 {
		return -1
	}
	id := c.Members[leader].Config.NodeID
	for _, i := range c.Running() {
		if c.Node(i).Status().Leader != id {
			return -1
		}
	}
	return leader
}

// WaitLeader waits until the running members agree on a leader and returns
// its index.
func (c *Cluster) WaitLeader(timeout time.Duration) int {
	c.t.Helper()
	leader := -1
	testkit.WaitFor(c.t, timeout, "a leader", func() bool {
		leader = c.Leader()
		return leader >= 0
	})
	return leader
}

// WaitVoters waits until the leader's configuration has exactly n voters
// and every running member has applied the leader's commit index.
func (c *Cluster) WaitVoters(timeout time.Duration, n int) {
	c.t.Helper()
	testkit.WaitFor(c.t, timeout, fmt.Sprintf("%d voters", n), func() bool {
		l := c.Leader()
		if l < 0 {
			return false
		}
		st := c.Node(l).Status()
		voters := 0
		for _, m := range st.Members {
			if m.Voter {
				voters++
			}
		}
		return voters == n
	})
}

// WaitApplied waits until every running member's replica holds the same
// origins (health, drain), assignments and number of WebRTC sessions as the
// leader's. Raft's applied
// index runs slightly ahead of the state machine, so tests compare state.
func (c *Cluster) WaitApplied(timeout time.Duration) {
	c.t.Helper()
	testkit.WaitFor(c.t, timeout, "replicas to converge", func() bool {
		l := c.Leader()
		if l < 0 {
			return false
		}
		want := replicaState(c.Node(l).Status())
		for _, i := range c.Running() {
			if replicaState(c.Node(i).Status()) != want {
				return false
			}
		}
		return true
	})
}

// replicaState renders the replicated part of a status.
func replicaState(st mesh.Status) string {
	var b strings.Builder
	for _, o := range st.Origins {
		fmt.Fprintf(&b, "o %s %v %v %d %s|", o.ID, o.Healthy, o.Draining, o.Streams, o.RTMP)
	}
	for _, a := range st.Assignments {
		fmt.Fprintf(&b, "a %s %s %d|", a.Key, a.Origin, a.LastUsedUnixMs)
	}
	fmt.Fprintf(&b, "r %d", st.RTCSessions)
	return b.String()
}

// Close kills every member. It is registered with t.Cleanup by Start.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for i := range c.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Kill(i)
		}()
	}
	wg.Wait()
}
