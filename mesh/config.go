package mesh

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/clusterport"
	"github.com/srs-mesh/srs-mesh/mesh/clustertls"
	"github.com/srs-mesh/srs-mesh/mesh/history"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Config configures one mesh node. Zero fields take the value from
// DefaultConfig, so a caller only sets what it wants to change. The package
// reads no flags or environment variables: cmd/srs-mesh fills this struct.
type Config struct {
	// NodeID is the stable identity of the node: its memberlist name and its
	// Raft server id. Required. A restarted node must keep its id.
	NodeID string
	// DataDir holds the Raft log (raft.db, raft-boltdb) and file snapshots.
	// It is created if absent. Required.
	DataDir string
	// BootstrapExpect is the number of nodes that must see each other in
	// gossip before the cluster is formed, and the voter count below which
	// dead nodes are never reaped. Default 1 (a single node bootstraps itself).
	BootstrapExpect int
	// RaftVoters is the most Raft voters the mesh keeps (odd, default 5).
	// Nodes beyond it join as non-voters: they replicate the log, route from
	// their own replica and forward writes like any follower, but take no
	// part in elections or commits. The leader keeps the voter set at this
	// size while enough healthy nodes exist (see reconcile).
	RaftVoters int
	// Zone names this node's failure domain (a Kubernetes topology zone, a
	// rack). It travels in gossip metadata; the leader spreads voters over
	// distinct zones when nodes advertise them. Empty: no zone.
	Zone string
	// Join lists gossip "host:port" addresses of peers. DNS names are allowed;
	// joining is retried in the background until at least one peer answers.
	Join []string
	// GossipAddr is the memberlist bind address (TCP and UDP). Default
	// 0.0.0.0:7946.
	GossipAddr netip.AddrPort
	// RaftAddr is the bind address of the cluster port, which carries Raft
	// and the node-to-node API. Default 0.0.0.0:7947.
	RaftAddr netip.AddrPort
	// TLS, when set, makes every connection of the cluster port mutual TLS
	// with certificates of one CA, and a joining member becomes a voter only
	// after the leader has seen its certificate name it. Nil: plain TCP, for
	// loopback clusters and explicitly insecure ones.
	TLS *clustertls.Config
	// AdvertiseAddr is the IP other nodes use to reach this node (for both
	// Raft and gossip); it must be a specific address. Default
	// (DefaultAdvertiseAddr): the Raft (else gossip) bind IP when it is
	// specific, else the first non-loopback interface IP, else 127.0.0.1.
	AdvertiseAddr netip.Addr
	// APIAddr is the advertised address of this node's system API, shown
	// in the status of the mesh. (Nodes reach each other on the cluster
	// port, RaftAddr.) Zero: none shown.
	APIAddr netip.AddrPort
	// StaticOrigins are registered by the leader whenever it gains leadership.
	StaticOrigins []stream.Origin

	// OriginTimeout bounds how long a dead origin may stay healthy: it is
	// marked unhealthy after two failed probes or after probes have failed
	// for OriginTimeout/2, whichever comes first. Default 4s.
	OriginTimeout time.Duration
	// ProbeInterval is how often the leader probes every origin. Default 1s.
	ProbeInterval time.Duration
	// HeartbeatTimeout is how long an origin that can only be judged by its
	// heartbeats (no TCP endpoint) stays healthy without one. SRS heartbeats
	// every 10 s. Default 30s.
	HeartbeatTimeout time.Duration
	// OriginTTL is how long a registered (not static) origin stays known
	// after its last heartbeat; the leader then removes it and its
	// assignments. Default 10m.
	OriginTTL time.Duration
	// MaxOrigins bounds the known origins: the registration of a new origin
	// beyond it is refused (static origins count toward it but are never
	// refused). Default 1000.
	MaxOrigins int
	// OriginAllow, when not empty, lists the networks every address of a
	// registered origin must fall in. Link-local, multicast and unspecified
	// addresses are refused whatever it says.
	OriginAllow []netip.Prefix
	// MaxPlayOnly bounds the assignments made for players of streams nobody
	// publishes (see RoutePlay). Default 1000.
	MaxPlayOnly int
	// PlayOnlyTTL is how long such an assignment stays once no node reports
	// it in use. Default 1m.
	PlayOnlyTTL time.Duration
	// PlayOnlyRate is how many such assignments per second one node writes
	// at most (bursts of twice as many); beyond it, plays are routed without
	// writing. Default 20.
	PlayOnlyRate int
	// PublishRate is how many new assignments per second one node writes at
	// most for publishers (bursts of twice as many; see PublishAccepted);
	// beyond it, an accepted publish runs without one until its stream's
	// next use. Default 20.
	PublishRate int
	// MaxAssignments bounds the assignments of the mesh: a new one beyond it
	// is not written (plays and publishes are routed without a write).
	// Default 100000.
	MaxAssignments int
	// ReapTimeout is how long a failed (not gracefully left) node stays a Raft
	// voter before the leader removes it. Default 30s.
	ReapTimeout time.Duration
	// AssignmentTTL is how long an assignment no node has reported using
	// survives before the leader deletes it. Default 10m.
	AssignmentTTL time.Duration
	// RTCSessionTTL is how long a WebRTC ICE session survives after it was
	// last seen: its offer answered, or its packets carried by a relay of
	// the mesh (see RTCTouchInterval); the leader deletes older ones. A
	// DELETE ends a session at once, so this only catches clients that
	// vanish without one. Default 24h.
	RTCSessionTTL time.Duration
	// MaxRTCSessions bounds the replicated ICE session table; it travels in
	// every session write, so replicas agree on it. A new session in a
	// full table evicts the session seen the longest ago that no relay
	// carried within RTCActiveWindow; with every session carried that
	// recently, the new one is refused (ErrRTCTableFull). At most, and by
	// default, state.MaxRTCSessions.
	MaxRTCSessions int
	// RTCActiveWindow protects the sessions relays carry: a session whose
	// packets a relay reported within this window is never evicted to make
	// room for a new one. It must be at least twice RTCTouchInterval.
	// Default 1m.
	RTCActiveWindow time.Duration
	// RTCTouchInterval is how often a node reports the ICE sessions its
	// relay carried packets for (TouchRTCSessions). Default 5s.
	RTCTouchInterval time.Duration
	// TouchInterval is how often a node reports the keys it used. Default 10s.
	TouchInterval time.Duration
	// RouteTimeout bounds Route when it has to write an assignment. Default 3s.
	RouteTimeout time.Duration
	// MoveInterval is the least time between two moves of one stream that
	// Reroute writes (state.MoveCmd.MinIntervalMs): a node's failed origin
	// leg moves a stream at once, but a stream whose legs keep failing
	// cannot make the mesh move it faster than this. Moves by the leader's
	// health verdicts are not limited. Default 5s.
	MoveInterval time.Duration
	// MoveTimeout bounds a planned, make-before-break move (drain with
	// move): one whose target has not received the stream by then is
	// cancelled, and the stream moves the way a failover moves it.
	// Default 5s.
	MoveTimeout time.Duration
	// StreamReplicas is how many live copies of a published stream the
	// mesh keeps on origins: 1 (the default) is the primary alone; 2 adds
	// a warm replica that the publisher's node feeds too and that takes
	// over, without a re-publish, when the primary fails. ReplicaRules
	// override it for the keys they match (the first match wins). At most
	// state.MaxReplicas+1.
	StreamReplicas int
	ReplicaRules   []ReplicaRule
	// HistoryInterval is how often the node samples its throughput, live
	// sessions and assignment writes into its history (GET
	// /mesh/v1/history), which keeps the last 180 samples, and each
	// stream's bit rates (GET /mesh/v1/streams). Default 5s.
	HistoryInterval time.Duration
	// Throughput, when set, returns the bytes the node's protocol servers
	// have read from and written to clients since they started (all
	// protocols together); the history samples it. Nil: zero.
	Throughput func() (in, out uint64)
	// Serving, when set, returns the node's cache and fan-out counters
	// for the history (see history.Counters: CacheRequests, CacheOrigin,
	// FanOutPlayers, FanOutUpstreams; the other fields are ignored). Nil:
	// zero.
	Serving func() history.Counters

	// GossipKey, when set, encrypts gossip (16, 24 or 32 bytes, AES).
	GossipKey []byte
	// Token, when set, is required on the write endpoints of the system API
	// (registration, drain, internal forwarding) as "Authorization: Bearer
	// <token>" or "?token=<token>"; registration also takes it as the last
	// path segment, /api/v1/srs/register/<token>, the only form an SRS
	// heartbeat can send.
	Token string

	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger

	// Timers of Raft and memberlist. The defaults suit a LAN: followers
	// notice a dead or frozen leader after 0.6 to 1.2 s without heartbeats
	// (Raft randomizes between one and two HeartbeatTimeouts) and elect a
	// new one within one more ElectionTimeout or so; a leader that cannot
	// reach a quorum steps down after LeaderLeaseTimeout. Memberlist keeps
	// its LAN profile (probe every second, 500 ms timeout, gossip every
	// 200 ms: each round is a wake-up of an otherwise idle process, so
	// a faster one costs every node CPU whether or not it has news).
	RaftHeartbeatTimeout   time.Duration // default 600ms
	RaftElectionTimeout    time.Duration // default 600ms
	RaftLeaderLeaseTimeout time.Duration // default 300ms
	RaftCommitTimeout      time.Duration // default 20ms
	GossipProbeInterval    time.Duration // default 1s
	GossipProbeTimeout     time.Duration // default 500ms
	GossipInterval         time.Duration // default 200ms
	// RaftNoSync skips fsync of the Raft log. Unsafe; for tests only.
	RaftNoSync bool

	// Protocol, when set, is the protocol version the node advertises in
	// gossip instead of state.ProtocolVersion (1 to that version): the
	// node then stands for an older build in the leader's feature gates.
	// For tests; 0 (the default) advertises this build's version.
	Protocol int
}

// protocol is the protocol version the node advertises.
func (c Config) protocol() int {
	if c.Protocol > 0 && c.Protocol < state.ProtocolVersion {
		return c.Protocol
	}
	return state.ProtocolVersion
}

// Defaults, also documented on the Config fields.
const (
	// MaxZoneLen bounds Config.Zone (it travels in gossip metadata, which
	// memberlist limits to 512 bytes).
	MaxZoneLen = 64

	DefaultGossipPort = 7946
	DefaultRaftPort   = 7947
)

// DefaultConfig returns the defaults of every optional field.
func DefaultConfig() Config {
	return Config{
		BootstrapExpect:        1,
		RaftVoters:             5,
		GossipAddr:             netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultGossipPort),
		RaftAddr:               netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultRaftPort),
		OriginTimeout:          4 * time.Second,
		ProbeInterval:          time.Second,
		HeartbeatTimeout:       30 * time.Second,
		OriginTTL:              10 * time.Minute,
		MaxPlayOnly:            1000,
		PlayOnlyTTL:            time.Minute,
		PlayOnlyRate:           20,
		PublishRate:            20,
		MaxAssignments:         100000,
		MaxOrigins:             1000,
		ReapTimeout:            30 * time.Second,
		AssignmentTTL:          10 * time.Minute,
		RTCSessionTTL:          24 * time.Hour,
		MaxRTCSessions:         state.MaxRTCSessions,
		RTCActiveWindow:        time.Minute,
		RTCTouchInterval:       5 * time.Second,
		TouchInterval:          10 * time.Second,
		RouteTimeout:           3 * time.Second,
		HistoryInterval:        5 * time.Second,
		MoveInterval:           5 * time.Second,
		MoveTimeout:            5 * time.Second,
		StreamReplicas:         1,
		RaftHeartbeatTimeout:   600 * time.Millisecond,
		RaftElectionTimeout:    600 * time.Millisecond,
		RaftLeaderLeaseTimeout: 300 * time.Millisecond,
		RaftCommitTimeout:      20 * time.Millisecond,
		GossipProbeInterval:    time.Second,
		GossipProbeTimeout:     500 * time.Millisecond,
		GossipInterval:         200 * time.Millisecond,
	}
}

// ErrConfig matches every configuration error of New and Validate
// (errors.Is); each is a *ConfigError naming the field.
var ErrConfig = errors.New("mesh: bad config")

// ConfigError is a bad field of a Config.
type ConfigError struct {
	// Field is the name of the Config field, e.g. "RaftVoters".
	Field string
	// Problem says what is wrong with it, as a phrase that follows the
	// field's name: "must be a positive odd number, got 4".
	Problem string
}

func (e *ConfigError) Error() string { return ErrConfig.Error() + ": " + e.Field + " " + e.Problem }

// Is makes a ConfigError match ErrConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

func badField(field, format string, args ...any) error {
	return &ConfigError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// probeTimeout is the TCP connect timeout of one health probe.
func (c *Config) probeTimeout() time.Duration {
	t := time.Second
	if q := c.OriginTimeout / 4; q < t {
		t = q
	}
	if t < 10*time.Millisecond {
		t = 10 * time.Millisecond
	}
	return t
}

// unhealthyBound is the worst-case time from an origin's death to the leader
// deciding it is unhealthy: the probe phase (one interval), then two failed
// probes, each lasting at most probeTimeout, or failing for OriginTimeout/2.
func (c *Config) unhealthyBound() time.Duration {
	step := c.ProbeInterval
	if pt := c.probeTimeout(); pt > step {
		step = pt
	}
	byCount := c.ProbeInterval + 2*step
	byTime := c.ProbeInterval + c.OriginTimeout/2 + step
	if byTime < byCount {
		return byTime
	}
	return byCount
}

// withDefaults fills the zero fields that have defaults (see
// DefaultConfig; AdvertiseAddr by DefaultAdvertiseAddr) and validates the
// result.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&c.BootstrapExpect, d.BootstrapExpect)
	setInt(&c.StreamReplicas, d.StreamReplicas)
	setInt(&c.RaftVoters, d.RaftVoters)
	setInt(&c.MaxOrigins, d.MaxOrigins)
	setInt(&c.MaxPlayOnly, d.MaxPlayOnly)
	setInt(&c.PlayOnlyRate, d.PlayOnlyRate)
	setInt(&c.PublishRate, d.PublishRate)
	setInt(&c.MaxAssignments, d.MaxAssignments)
	setInt(&c.MaxRTCSessions, d.MaxRTCSessions)
	if !c.GossipAddr.IsValid() {
		c.GossipAddr = d.GossipAddr
	}
	if !c.RaftAddr.IsValid() {
		c.RaftAddr = d.RaftAddr
	}
	for _, f := range c.durations(&d) {
		setDur(f.v, *f.def)
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	if c.RaftLeaderLeaseTimeout > c.RaftHeartbeatTimeout {
		c.RaftLeaderLeaseTimeout = c.RaftHeartbeatTimeout
	}
	if !c.AdvertiseAddr.IsValid() {
		c.AdvertiseAddr = DefaultAdvertiseAddr(c.RaftAddr, c.GossipAddr)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// durationField is a duration field of a Config (v) and the same field of
// another (def), named.
type durationField struct {
	name   string
	v, def *time.Duration
}

// durations lists the duration fields of c with the same fields of d.
func (c *Config) durations(d *Config) []durationField {
	return []durationField{
		{"OriginTimeout", &c.OriginTimeout, &d.OriginTimeout},
		{"ProbeInterval", &c.ProbeInterval, &d.ProbeInterval},
		{"HeartbeatTimeout", &c.HeartbeatTimeout, &d.HeartbeatTimeout},
		{"OriginTTL", &c.OriginTTL, &d.OriginTTL},
		{"PlayOnlyTTL", &c.PlayOnlyTTL, &d.PlayOnlyTTL},
		{"ReapTimeout", &c.ReapTimeout, &d.ReapTimeout},
		{"AssignmentTTL", &c.AssignmentTTL, &d.AssignmentTTL},
		{"RTCSessionTTL", &c.RTCSessionTTL, &d.RTCSessionTTL},
		{"RTCActiveWindow", &c.RTCActiveWindow, &d.RTCActiveWindow},
		{"RTCTouchInterval", &c.RTCTouchInterval, &d.RTCTouchInterval},
		{"TouchInterval", &c.TouchInterval, &d.TouchInterval},
		{"RouteTimeout", &c.RouteTimeout, &d.RouteTimeout},
		{"MoveInterval", &c.MoveInterval, &d.MoveInterval},
		{"MoveTimeout", &c.MoveTimeout, &d.MoveTimeout},
		{"HistoryInterval", &c.HistoryInterval, &d.HistoryInterval},
		{"RaftHeartbeatTimeout", &c.RaftHeartbeatTimeout, &d.RaftHeartbeatTimeout},
		{"RaftElectionTimeout", &c.RaftElectionTimeout, &d.RaftElectionTimeout},
		{"RaftLeaderLeaseTimeout", &c.RaftLeaderLeaseTimeout, &d.RaftLeaderLeaseTimeout},
		{"RaftCommitTimeout", &c.RaftCommitTimeout, &d.RaftCommitTimeout},
		{"GossipProbeInterval", &c.GossipProbeInterval, &d.GossipProbeInterval},
		{"GossipProbeTimeout", &c.GossipProbeTimeout, &d.GossipProbeTimeout},
		{"GossipInterval", &c.GossipInterval, &d.GossipInterval},
	}
}

// Validate reports the first field of c that New would refuse, as a
// *ConfigError. It checks c as it stands: New first fills the zero fields
// that have defaults, so a caller that validates before New starts from
// DefaultConfig, and a zero count or duration is an error here. A zero
// AdvertiseAddr or APIAddr is fine (derived, and not shown).
func (c Config) Validate() error {
	switch {
	case strings.TrimSpace(c.NodeID) == "":
		return badField("NodeID", "is required")
	case len(c.NodeID) > 128:
		return badField("NodeID", "must be at most 128 bytes, got %d", len(c.NodeID))
	case c.DataDir == "":
		return badField("DataDir", "is required")
	case c.BootstrapExpect < 1:
		return badField("BootstrapExpect", "must be at least 1, got %d", c.BootstrapExpect)
	case c.RaftVoters < 1 || c.RaftVoters%2 == 0:
		return badField("RaftVoters", "must be a positive odd number, got %d", c.RaftVoters)
	case len(c.Zone) > MaxZoneLen || strings.ContainsAny(c.Zone, " \t\r\n"):
		return badField("Zone", "must be at most %d bytes without spaces, got %q", MaxZoneLen, c.Zone)
	case c.MaxOrigins < 1:
		return badField("MaxOrigins", "must be at least 1, got %d", c.MaxOrigins)
	case c.MaxPlayOnly < 1:
		return badField("MaxPlayOnly", "must be at least 1, got %d", c.MaxPlayOnly)
	case c.PlayOnlyRate < 1:
		return badField("PlayOnlyRate", "must be at least 1, got %d", c.PlayOnlyRate)
	case c.MaxRTCSessions < 1 || c.MaxRTCSessions > state.MaxRTCSessions:
		return badField("MaxRTCSessions", "must be within 1..%d, got %d", state.MaxRTCSessions, c.MaxRTCSessions)
	case !c.GossipAddr.IsValid():
		return badField("GossipAddr", "is not set")
	case !c.RaftAddr.IsValid():
		return badField("RaftAddr", "is not set")
	case c.AdvertiseAddr.IsUnspecified():
		return badField("AdvertiseAddr", "must be a specific IP, got %v", c.AdvertiseAddr)
	}
	var d Config
	for _, f := range c.durations(&d) {
		if *f.v <= 0 {
			return badField(f.name, "must be positive, got %v", *f.v)
		}
	}
	if c.RTCActiveWindow < 2*c.RTCTouchInterval {
		return badField("RTCActiveWindow", "must be at least twice RTCTouchInterval (%v), got %v", c.RTCTouchInterval, c.RTCActiveWindow)
	}
	switch len(c.GossipKey) {
	case 0, 16, 24, 32:
	default:
		return badField("GossipKey", "must be 16, 24 or 32 bytes, got %d", len(c.GossipKey))
	}
	for _, o := range c.StaticOrigins {
		if o.ID == "" {
			return badField("StaticOrigins", "has an origin without id")
		}
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > state.MaxReplicas+1 {
		return badField("StreamReplicas", "must be within 1..%d, got %d", state.MaxReplicas+1, c.StreamReplicas)
	}
	for _, r := range c.ReplicaRules {
		if err := r.validate(); err != nil {
			return badField("ReplicaRules", "%v", err)
		}
	}
	return nil
}

// ReplicaRule sets the live copies (Config.StreamReplicas) of the streams
// whose "app/stream" matches Pattern (path.Match syntax: "live/*",
// "events/final").
type ReplicaRule struct {
	Pattern  string
	Replicas int
}

func (r ReplicaRule) validate() error {
	if _, err := path.Match(r.Pattern, ""); err != nil || r.Pattern == "" {
		return fmt.Errorf("pattern %q is not a valid pattern", r.Pattern)
	}
	if r.Replicas < 1 || r.Replicas > state.MaxReplicas+1 {
		return fmt.Errorf("pattern %q: copies must be within 1..%d, got %d", r.Pattern, state.MaxReplicas+1, r.Replicas)
	}
	return nil
}

// replicas is how many live copies key ("vhost/app/stream") should have.
func (c *Config) replicas(key string) int {
	_, appStream, _ := strings.Cut(key, "/")
	for _, r := range c.ReplicaRules {
		if ok, _ := path.Match(r.Pattern, appStream); ok {
			return r.Replicas
		}
	}
	return c.StreamReplicas
}

// DefaultAdvertiseAddr is clusterport.DefaultAdvertise: the address a node
// advertises when none is configured, for its Raft and gossip bind
// addresses (either may be zero).
func DefaultAdvertiseAddr(raftAddr, gossipAddr netip.AddrPort) netip.Addr {
	return clusterport.DefaultAdvertise(raftAddr, gossipAddr)
}
