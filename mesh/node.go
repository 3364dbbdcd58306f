// Package mesh owns the cluster side of srs-mesh. A Node joins gossip
// (hashicorp/memberlist, gossip.go) and runs a Raft node (hashicorp/raft)
// over the replicated state machine of package mesh/state (origins, stream
// assignments and WebRTC ICE sessions); it routes streams from its replica
// (route.go), writes through the leader (forward.go: forwarded from a
// follower), registers and drains origins (origins.go), reports the keys its
// sessions use (activity.go), runs the leader's loop (leader.go), keeps the
// versions of the command log apart during rolling upgrades (protocol.go:
// the feature gate on writes, halts, refused downgrades) and serves the
// system API and the node-to-node API (api.go). node.go holds its
// lifecycle: start, bootstrap, leave, close and status.
//
// The other jobs have rooms of their own, which a Node composes through
// their Configs: members (the view of the members from gossip's events),
// voters (the leader's reconcile of the Raft voter set), upkeep (the
// leader's writes of origin health and garbage collection), rtcsessions (the
// node's side of the WebRTC ICE session table), telemetry (events, history
// and the cluster-wide documents), clusterport (Raft and the internal API
// on one port, with mutual TLS) and leadership (the one owner of the
// leader's loop).
//
// A Node is self-contained: several run in one process in tests. It reads no
// flags or environment; cmd/srs-mesh builds its Config.
package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	"golang.org/x/time/rate"

	"github.com/srs-mesh/srs-mesh/mesh/activity"
	"github.com/srs-mesh/srs-mesh/mesh/clusterport"
	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/leadership"
	"github.com/srs-mesh/srs-mesh/mesh/liblog"
	"github.com/srs-mesh/srs-mesh/mesh/members"
	"github.com/srs-mesh/srs-mesh/mesh/peers"
	"github.com/srs-mesh/srs-mesh/mesh/rtcsessions"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/mesh/telemetry"
	"github.com/srs-mesh/srs-mesh/mesh/upkeep"
	"github.com/srs-mesh/srs-mesh/mesh/view"
	"github.com/srs-mesh/srs-mesh/mesh/voters"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/stream/bearer"
)

// Node is one member of the mesh. Its methods are safe for concurrent use.
type Node struct {
	cfg Config
	// guard checks the token on the system API and the internal API.
	guard bearer.Guard
	log   *slog.Logger

	fsm   *state.FSM
	raft  *raft.Raft
	trans *raft.NetworkTransport
	store *raftboltdb.BoltStore
	ml    *memberlist.Memberlist

	raftAdvertise string
	// startIndex is the last log index on disk when the node started.
	startIndex uint64
	hasState   atomic.Bool
	joined     atomic.Bool
	// leaving is set by StopReady: the node is shutting down and
	// /readyz fails from then on.
	leaving atomic.Bool
	// leavingMesh is set by Leave and gossiped in the node's metadata, so
	// that peers record a graceful leave rather than a failure.
	leavingMesh atomic.Bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	events        chan members.Event
	bootstrapKick chan struct{}
	reconcileKick chan struct{}

	// members is the node's view of the members, fed by gossip.
	members *members.View

	// voters reconciles the Raft voter set with gossip while this node
	// leads.
	voters *voters.Set
	// upkeep is the leader's writes of origin health and garbage
	// collection.
	upkeep *upkeep.Upkeep
	// rtc is this node's side of the replicated WebRTC ICE session table.
	rtc *rtcsessions.Store

	// port carries Raft and the internal API (internal), mutual TLS when
	// Config.TLS is set; client calls peers' internal APIs through it.
	port     *clusterport.Port
	internal *http.Server
	client   *http.Client
	act      *activity.Recorder
	// tel is the node's telemetry: its event log and history, and the
	// cluster-wide streams, events and history documents.
	tel *telemetry.Telemetry

	// pathTokenIgnored is set once the node has logged that it accepted a
	// token in a registration path while none is configured.
	pathTokenIgnored atomic.Bool

	degradedMu   sync.Mutex
	degradedKeys map[string]struct{}
	degraded     atomic.Uint64

	// playLimit bounds this node's play-only writes (RoutePlay); unwritten
	// counts the plays routed past it without a write.
	playLimit *rate.Limiter
	// publishLimit bounds this node's writes of publishers' new
	// assignments (PublishAccepted).
	publishLimit *rate.Limiter
	// moveLimit bounds this node's writes of moves (Reroute), whatever
	// number of publishers fail over at once.
	moveLimit *rate.Limiter
	unwritten atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, opens the Raft store in cfg.DataDir, starts the Raft
// transport and memberlist listeners and the node's background loops. It
// returns once the node is listening, not once a leader exists. A node with
// existing Raft state rejoins its cluster; a fresh one bootstraps as described
// on Config.BootstrapExpect or waits to be added by the leader.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:           cfg,
		log:           cfg.Logger.With("component", "mesh", "node", cfg.NodeID),
		fsm:           state.NewFSM(),
		events:        make(chan members.Event, 256),
		bootstrapKick: make(chan struct{}, 1),
		reconcileKick: make(chan struct{}, 1),
		degradedKeys:  map[string]struct{}{},
		act:           activity.New(),
		guard:         bearer.Guard{Token: cfg.Token},
		playLimit:     rate.NewLimiter(rate.Limit(cfg.PlayOnlyRate), 2*cfg.PlayOnlyRate),
		moveLimit:     rate.NewLimiter(moveRate, moveBurst),
		publishLimit:  rate.NewLimiter(rate.Limit(cfg.PublishRate), 2*cfg.PublishRate),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.fsm.OnHalt(n.onHalt)
	n.client = &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         n.dialCluster,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     30 * time.Second,
	}}
	n.tel = telemetry.New(telemetry.Config{
		NodeID:          cfg.NodeID,
		Peers:           n.askable,
		Asker:           peers.Asker{Client: n.client},
		Replica:         n.fsm,
		Activity:        n.act,
		HistoryInterval: cfg.HistoryInterval,
		Throughput:      cfg.Throughput,
		Serving:         cfg.Serving,
		Operator:        n.guard.Operator,
	})
	n.members = members.New(members.Config{Record: n.tel.Record, MaxZoneLen: MaxZoneLen, Log: n.log})
	n.rtc = rtcsessions.New(rtcsessions.Config{
		Replica: n.fsm, Apply: n.apply, ApplyLocal: n.applyLocal, MaxSessions: cfg.MaxRTCSessions,
		ActiveWindow: cfg.RTCActiveWindow, TouchInterval: cfg.RTCTouchInterval, SessionTTL: cfg.RTCSessionTTL,
		WriteTimeout: cfg.RouteTimeout, Log: n.log,
	})
	n.upkeep = upkeep.New(upkeep.Config{Replica: n.fsm, ApplyLocal: n.applyLocal, Record: n.tel.Record,
		OriginTTL: cfg.OriginTTL, AssignmentTTL: cfg.AssignmentTTL, PlayOnlyTTL: cfg.PlayOnlyTTL, Log: n.log,
		Replicas: n.cfg.replicas, MoveTimeout: cfg.MoveTimeout})
	if err := n.open(); err != nil {
		n.cancel()
		n.shutdown()
		return nil, err
	}
	n.start()
	return n, nil
}

// open creates the stores, transport, Raft and memberlist.
func (n *Node) open() error {
	cfg := n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("mesh: data dir: %w", err)
	}
	hlog := hclog.New(&hclog.LoggerOptions{
		Name:        "raft",
		Level:       hclog.Warn,
		Output:      &liblog.Writer{Log: n.log.With("lib", "raft")},
		DisableTime: true,
	})
	store, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(cfg.DataDir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second},
		NoSync:      cfg.RaftNoSync,
	})
	if err != nil {
		return fmt.Errorf("mesh: open raft store: %w", err)
	}
	n.store = store
	if err := checkLog(store); err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hlog)
	if err != nil {
		return fmt.Errorf("mesh: snapshot store: %w", err)
	}
	adv := net.TCPAddrFromAddrPort(netip.AddrPortFrom(cfg.AdvertiseAddr, cfg.RaftAddr.Port()))
	opts := clusterport.Options{Advertise: adv, Logger: n.log.With("component", "cluster-port")}
	if cfg.TLS != nil {
		opts.ServerTLS, opts.ClientTLS = cfg.TLS.Server(), cfg.TLS.Client()
	}
	port, err := clusterport.Listen(cfg.RaftAddr.String(), opts)
	if err != nil {
		return fmt.Errorf("mesh: cluster port on %s: %w", cfg.RaftAddr, err)
	}
	n.port = port
	n.internal = &http.Server{Handler: n.internalHandler(), ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.internal.Serve(port.HTTP())
	}()
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: port.Raft(), MaxPool: 3, Timeout: 5 * time.Second, Logger: hlog,
	})
	n.trans = trans
	n.raftAdvertise = string(trans.LocalAddr())

	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fmt.Errorf("mesh: read raft state: %w", err)
	}
	n.hasState.Store(existing)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.RaftHeartbeatTimeout
	rc.ElectionTimeout = cfg.RaftElectionTimeout
	rc.LeaderLeaseTimeout = cfg.RaftLeaderLeaseTimeout
	rc.CommitTimeout = cfg.RaftCommitTimeout
	rc.Logger = hlog
	// A node removed while partitioned must be able to come back when the
	// leader re-adds it, so removal does not shut Raft down.
	rc.ShutdownOnRemove = false
	if last, err := store.LastIndex(); err == nil {
		n.startIndex = last
	}
	r, err := raft.NewRaft(rc, n.fsm, store, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("mesh: start raft: %w", err)
	}
	n.raft = r
	// Raft restored the latest snapshot above: one of a newer mesh
	// protocol halted the replica.
	if h, ok := n.fsm.Halted(); ok {
		return fmt.Errorf("%w: %s", ErrDowngrade, h.Reason)
	}
	n.voters = voters.New(voters.Config{
		Self:   voters.Member{ID: cfg.NodeID, Addr: n.raftAdvertise, Zone: cfg.Zone},
		Voters: cfg.RaftVoters, Floor: voters.Floor(cfg.BootstrapExpect, cfg.RaftVoters), ReapTimeout: cfg.ReapTimeout,
		Raft: r, Alive: n.aliveVoterMembers, Left: n.members.HasLeft, RecentlyLeft: n.members.RecentlyLeft, MarkLeft: n.members.MarkLeft,
		Prove: func(m voters.Member) error { return n.proveMember(m.ID, m.Addr) }, Client: n.client, Log: n.log,
	})

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeID
	mc.BindAddr = cfg.GossipAddr.Addr().String()
	mc.BindPort = int(cfg.GossipAddr.Port())
	mc.AdvertiseAddr = cfg.AdvertiseAddr.String()
	mc.AdvertisePort = int(cfg.GossipAddr.Port())
	mc.ProbeInterval = cfg.GossipProbeInterval
	mc.ProbeTimeout = cfg.GossipProbeTimeout
	mc.GossipInterval = cfg.GossipInterval
	mc.PushPullInterval = 15 * time.Second
	mc.Delegate = gossipDelegate{n}
	mc.Events = gossipDelegate{n}
	mc.LogOutput = &liblog.Writer{Log: n.log.With("lib", "memberlist")}
	if len(cfg.GossipKey) > 0 {
		mc.SecretKey = cfg.GossipKey
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("mesh: gossip on %s: %w", cfg.GossipAddr, err)
	}
	n.ml = ml
	return nil
}

// dialCluster dials a member's internal API through the cluster port
// (mutual TLS when the mesh has it), within 2 s. It is the dialer of
// n.client, which is used only once open has set n.port.
func (n *Node) dialCluster(ctx context.Context, _, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return n.port.Dialer().Dial(ctx, addr, clusterport.ServiceHTTP)
}

// start runs the background loops; each is waited for in Close.
func (n *Node) start() {
	n.wg.Add(7)
	go func() {
		defer n.wg.Done()
		n.tel.Run(n.ctx)
	}()
	go func() {
		defer n.wg.Done()
		n.rtc.Run(n.ctx)
	}()
	go func() {
		defer n.wg.Done()
		n.voters.WatchHeartbeats(n.ctx)
	}()
	go n.gossipLoop()
	go n.leadershipLoop()
	go n.bootstrapLoop()
	go n.activityLoop()
	if len(n.cfg.Join) > 0 {
		n.wg.Add(1)
		go n.joinLoop()
	}
	n.log.Info("raft and gossip running", "raft", n.raftAdvertise, "gossip", n.cfg.GossipAddr, "api", n.cfg.APIAddr,
		"bootstrap_expect", n.cfg.BootstrapExpect, "existing_state", n.hasState.Load())
}

// sleep waits for d or until the node closes; it reports false on close.
func (n *Node) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-n.ctx.Done():
		return false
	}
}

// bootstrapLoop forms the cluster when this node is fresh: once
// BootstrapExpect alive members see each other and none of them already
// belongs to a cluster, the BootstrapExpect members with the lowest ids all
// bootstrap with the same sorted configuration. A node outside that set (or
// any node that sees a peer with state) waits for the leader to add it.
func (n *Node) bootstrapLoop() {
	defer n.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	said, saidAt := -1, time.Time{} // members last reported waiting, and when
	for !n.hasState.Load() {
		if n.raft.LastIndex() > 0 {
			n.markHasState()
			return
		}
		if len(n.cfg.Join) == 0 || n.joined.Load() {
			if n.tryBootstrap() {
				n.markHasState()
				return
			}
		}
		// Say that the node waits, and for how many, when the count
		// changes and every 10 s while it does not.
		if have := len(n.members.Alive()); have < n.cfg.BootstrapExpect && !n.hasState.Load() &&
			(have != said || time.Since(saidAt) >= 10*time.Second) {
			n.log.Info("waiting for nodes to form a new cluster", "have", have, "expect", n.cfg.BootstrapExpect)
			said, saidAt = have, time.Now()
		}
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.bootstrapKick:
		}
	}
}

func (n *Node) tryBootstrap() bool {
	alive := n.members.Alive()
	for _, m := range alive {
		if m.HasState && m.ID != n.cfg.NodeID {
			return false // an existing cluster will add us
		}
	}
	if len(alive) < n.cfg.BootstrapExpect {
		return false
	}
	alive = alive[:n.cfg.BootstrapExpect]
	zones := make([]string, len(alive))
	for i, m := range alive {
		zones[i] = m.Zone
	}
	isVoter := voters.Bootstrap(zones, n.cfg.RaftVoters)
	var conf raft.Configuration
	self := false
	for i, m := range alive {
		if err := n.proveMember(m.ID, m.Raft); err != nil {
			n.log.Warn("not bootstrapping with an unproven member", "member", m.ID, "raft", m.Raft, "err", err)
			return false
		}
		suffrage := raft.Nonvoter
		if isVoter[i] {
			suffrage = raft.Voter
		}
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: suffrage, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.Raft)})
		self = self || m.ID == n.cfg.NodeID
	}
	if !self {
		return false
	}
	if err := n.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		n.log.Error("bootstrap failed", "err", err)
		return false
	}
	n.log.Info("bootstrapped cluster", "members", len(conf.Servers), "voters", min(len(conf.Servers), n.cfg.RaftVoters))
	return true
}

func (n *Node) markHasState() {
	n.hasState.Store(true)
	if err := n.ml.UpdateNode(time.Second); err != nil {
		n.log.Debug("gossip metadata update", "err", err)
	}
}

// leadershipLoop runs the leader loop while this node leads (package
// leadership: one loop at a time, the next started only once the previous
// one returned). It follows Raft's observations of state and leader
// changes; the observer never blocks Raft, and a dropped observation is
// caught by the periodic resync.
func (n *Node) leadershipLoop() {
	defer n.wg.Done()
	obs := make(chan raft.Observation, 16)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.RaftState, raft.LeaderObservation:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(o)
	defer n.raft.DeregisterObserver(o)
	leadership.Follow(n.ctx, obs, leadership.Config{
		IsLeader: n.IsLeader,
		Run:      n.leaderLoop,
		Stopped:  n.voters.ForgetUnreachable,
		Resync:   time.Second,
	})
}

// Events is this node's event log. Code that moves a stream to another
// origin records it here (events.StreamMoved); see package events for who
// records every other kind. It is never nil.
func (n *Node) Events() *events.Log { return n.tel.Events() }

// Telemetry is the node's telemetry: the cluster-wide streams, events and
// history documents and this node's part of them.
func (n *Node) Telemetry() *telemetry.Telemetry { return n.tel }

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leave leaves the mesh gracefully: a leader first hands leadership to
// another voter, then the node announces its departure over gossip, and
// finally asks the leader to remove it from the Raft voters (the leader
// refuses if the remaining voters could not keep quorum, or would be fewer
// than BootstrapExpect). Last, it snapshots its state, so that a restart
// routes the assigned streams even without quorum. The node keeps running
// until Close; call Close after Leave.
func (n *Node) Leave(ctx context.Context) error {
	var errs []error
	if n.IsLeader() && n.voters.Count() > 1 {
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			errs = append(errs, fmt.Errorf("mesh: leadership transfer: %w", err))
		}
	}
	// Leave gossip first, so that the leader does not re-add the voter it
	// is about to remove.
	timeout := 2 * time.Second
	if d, ok := ctx.Deadline(); ok {
		if rem := time.Until(d); rem < timeout {
			timeout = max(rem/2, 100*time.Millisecond)
		}
	}
	// Tell the peers first that the leave is graceful (see members.Meta).
	n.leavingMesh.Store(true)
	if err := n.ml.UpdateNode(min(timeout, time.Second)); err != nil {
		n.log.Debug("gossip metadata update before leaving", "err", err)
	}
	if err := n.ml.Leave(timeout); err != nil {
		errs = append(errs, fmt.Errorf("mesh: gossip leave: %w", err))
	}
	if n.voters.Count() > 1 {
		if err := n.requestRemoval(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	// Write what this replica has applied into a snapshot, so that a
	// restart without quorum still routes every stream that was assigned:
	// Raft restores snapshots at start, but applies later log entries only
	// once a leader commits them.
	if err := n.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		n.log.Warn("snapshot on leave", "err", err)
	}
	return errors.Join(errs...)
}

// Close stops the node without leaving the mesh (peers see it fail): it stops
// every loop, shuts Raft and memberlist down, closes the stores and waits for
// all goroutines. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		n.closeErr = n.shutdown()
		n.log.Info("node closed")
	})
	return n.closeErr
}

func (n *Node) shutdown() error {
	var errs []error
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.ml != nil {
		if err := n.ml.Shutdown(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.internal != nil {
		n.internal.Close()
	}
	if n.port != nil {
		n.port.Close()
	}
	n.wg.Wait()
	if n.trans != nil {
		// Close pooled outbound connections too: Close alone leaves them
		// open, and the peers' goroutines reading them would never return.
		n.trans.CloseStreams()
		if err := n.trans.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.client != nil {
		n.client.CloseIdleConnections()
	}
	return errors.Join(errs...)
}

// Status reports this node's view of the mesh (package view).
func (n *Node) Status() Status {
	addr, id := n.raft.LeaderWithID()
	in := view.Input{
		NodeID: n.cfg.NodeID, RaftState: n.raft.State().String(), Leader: string(id), LeaderAddr: string(addr),
		RaftStats: n.raft.Stats(), Replica: n.fsm.Contents(), RTCSessions: n.fsm.RTCSessionCount(),
		DegradedRoutes: n.degraded.Load(), NowMs: time.Now().UnixMilli(),
		Events: n.tel.Events().Recent(view.MaxRecentEvents), Protocol: n.protocolStatus(),
	}
	in.Replica.TokenKey = nil
	for id, p := range n.members.Snapshot() {
		in.Peers = append(in.Peers, view.Peer{ID: id, GossipAddr: p.GossipAddr, RaftAddr: p.Meta.Raft, APIAddr: p.Meta.API, State: p.State, Zone: p.Meta.Zone,
			Protocol: p.Meta.ProtocolVersion()})
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		in.Servers = f.Configuration().Servers
	}
	return view.Build(in)
}

// readyLag is how far the applied index may trail the commit index on a
// ready node (the FSM applies asynchronously after commit).
const readyLag = 1024

// ready reports whether the node knows a leader and has caught up: it has
// applied the log it found on disk at start and trails the commit index by
// less than readyLag entries.
// StopReady makes /readyz answer 503 from now on, so that load balancers
// stop sending new clients while the node drains its sessions and leaves.
// It is the one place readiness is lowered for a shutdown.
func (n *Node) StopReady() { n.leaving.Store(true) }

func (n *Node) ready() bool {
	if n.leaving.Load() {
		return false
	}
	if _, halted := n.fsm.Halted(); halted {
		return false
	}
	_, id := n.raft.LeaderWithID()
	applied := n.raft.AppliedIndex()
	return id != "" && applied > 0 && applied >= n.startIndex && n.raft.CommitIndex() < applied+readyLag
}

// Origin returns a known origin by id, as this node's replica has it.
func (n *Node) Origin(id string) (stream.Origin, bool) { return n.fsm.Origin(id) }

// proveMember checks, when the cluster port uses mutual TLS, that the node
// that claims in gossip to be member id holds a certificate of the cluster
// CA at its cluster address addr, and not another known member's
// (clusterport.Dialer.Prove). Without TLS there is nothing to prove with,
// and membership rests on the gossip key and the network
// (docs/security.md).
func (n *Node) proveMember(id, addr string) error {
	if n.cfg.TLS == nil || id == n.cfg.NodeID {
		return nil
	}
	known := map[string]bool{n.cfg.NodeID: true}
	for p := range n.members.Snapshot() {
		known[p] = true
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			known[string(s.ID)] = true
		}
	}
	ctx, cancel := context.WithTimeout(n.ctx, 3*time.Second)
	defer cancel()
	return n.port.Dialer().Prove(ctx, id, addr, func(name string) bool { return known[name] })
}
