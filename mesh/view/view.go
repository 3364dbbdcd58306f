// Package view builds the status document of the mesh as one node sees it
// (GET /mesh/v1/status, `srs-mesh status --json`): the node's Raft state,
// the members merged from gossip and Raft, and the replicated origins and
// assignments. It is a stable, documented interface: fields are only ever
// added. Build is a pure function of its Input.
package view

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Status is the answer of GET /mesh/v1/status.
type Status struct {
	// NodeID is the node that answered.
	NodeID string `json:"node_id"`
	// Leader is the node id of the Raft leader as this node sees it ("" when
	// there is none).
	Leader       string   `json:"leader"`
	LeaderAddr   string   `json:"leader_addr,omitempty"`
	RaftState    string   `json:"raft_state"` // Leader, Follower, Candidate, Shutdown
	Term         uint64   `json:"term"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	LastLogIndex uint64   `json:"last_log_index"`
	Members      []Member `json:"members"`
	// Voters and NonVoters count the members of the latest Raft
	// configuration by suffrage.
	Voters        int          `json:"voters"`
	NonVoters     int          `json:"nonvoters"`
	Origins       []Origin     `json:"origins"`
	Assignments   []Assignment `json:"assignments"`
	GeneratedUnix int64        `json:"generated_unix_ms"`
	// RTCSessions is the number of replicated WebRTC ICE sessions.
	RTCSessions int `json:"rtc_sessions"`
	// DegradedRoutes counts routes this node answered without quorum by
	// rendezvous hash over the origins it believed healthy.
	DegradedRoutes uint64 `json:"degraded_routes"`
	// RecentEvents are the latest events this node recorded, joined with
	// the stream moves of the last RecentMoves that every replica knows
	// (so that any node shows a failover, whichever node made it), oldest
	// first, at most MaxRecentEvents. The whole cluster's timeline is GET
	// /mesh/v1/events.
	RecentEvents []events.Event `json:"recent_events"`
	// Protocol is the command protocol of this node and of the mesh: what
	// it can write now and what waits for members to upgrade.
	Protocol Protocol `json:"protocol"`
}

// Protocol is the versions of the replicated command log as one node sees
// them (see state.ProtocolVersion).
type Protocol struct {
	// Node is the protocol this node's build speaks.
	Node int `json:"node"`
	// Lowest is the lowest protocol among the members (alive members and
	// the servers of the Raft configuration): the leader writes only the
	// command types it introduced or earlier ones.
	Lowest int `json:"lowest"`
	// Mesh is the protocol recorded in the replicated state once every
	// member spoke it (0 before any record).
	Mesh int `json:"mesh"`
	// Waiting names the command types this build has that wait for every
	// member to reach their protocol (empty when none waits).
	Waiting []string `json:"waiting"`
	// Behind lists the members below this node's protocol, as "id:version".
	Behind []string `json:"behind,omitempty"`
	// Halted says why this node stopped applying the log ("" when it
	// applies it): it routes nothing until it runs a newer build.
	Halted string `json:"halted,omitempty"`
	// SkippedCommands counts the optional commands this node did not know
	// and skipped.
	SkippedCommands uint64 `json:"skipped_commands"`
}

// MaxRecentEvents bounds Status.RecentEvents.
const MaxRecentEvents = 20

// RecentMoves is how far back Status.RecentEvents lists replicated stream
// moves.
const RecentMoves = 15 * time.Minute

// Member is one node of the mesh, merged from gossip and Raft.
type Member struct {
	ID         string `json:"id"`
	GossipAddr string `json:"gossip_addr"`
	RaftAddr   string `json:"raft_addr"`
	APIAddr    string `json:"api_addr"`
	// GossipState is alive, suspect, dead or left ("" when only Raft knows it).
	GossipState string `json:"gossip_state"`
	// RaftRole is leader, voter, nonvoter or none.
	RaftRole string `json:"raft_role"`
	Voter    bool   `json:"voter"`
	// Zone is the failure domain the member advertises in gossip ("" when
	// none, or unknown to gossip).
	Zone string `json:"zone,omitempty"`
	// Protocol is the protocol version the member advertises in gossip (1
	// for builds before versions; 0 when gossip does not know it).
	Protocol int `json:"protocol,omitempty"`
}

// Origin is one origin with its replicated health and load.
type Origin struct {
	ID       string `json:"id"`
	IP       string `json:"ip"`
	RTMP     string `json:"rtmp,omitempty"`
	HTTP     string `json:"http,omitempty"`
	API      string `json:"api,omitempty"`
	SRT      string `json:"srt,omitempty"`
	RTC      string `json:"rtc,omitempty"`
	Static   bool   `json:"static"`
	Healthy  bool   `json:"healthy"`
	Draining bool   `json:"draining"`
	// Evacuating: drained with its streams moving away (drain --move).
	Evacuating bool   `json:"evacuating,omitempty"`
	Streams    int    `json:"streams"`
	Service    string `json:"service,omitempty"`
	PID        string `json:"pid,omitempty"`
	// LastHeartbeatUnixMs is the last registration heartbeat (0 for static
	// origins that never sent one).
	LastHeartbeatUnixMs int64 `json:"last_heartbeat_unix_ms"`
	// LastProbeUnixMs is the last successful health probe by the leader,
	// as replicated: every node shows the same time, within one probe
	// interval of the leader's last probe.
	LastProbeUnixMs int64 `json:"last_probe_unix_ms"`
	// HealthReason says why the origin is unhealthy ("" when healthy).
	HealthReason string `json:"health_reason,omitempty"`
	// MaxStreams is the origin's stream cap (0: none); Full is true when
	// Streams has reached it and the origin takes no new stream.
	MaxStreams int  `json:"max_streams"`
	Full       bool `json:"full"`
	// Weight is the origin's relative capacity (1 when not set).
	Weight int `json:"weight"`
	// Load is what the origin last reported in its heartbeat (zero when
	// it reports nothing): CPU use in thousandths, connections, network
	// rates.
	Load stream.Load `json:"load"`
}

// Assignment is one stream key and the origin that owns it.
type Assignment struct {
	Key            string `json:"key"`
	Origin         string `json:"origin"`
	CreatedUnixMs  int64  `json:"created_unix_ms"`
	LastUsedUnixMs int64  `json:"last_used_unix_ms"`
	OriginHealthy  bool   `json:"origin_healthy"`
	// Epoch counts the times the stream moved to another origin.
	Epoch uint64 `json:"epoch,omitempty"`
	// MovedUnixMs and MovedFrom are when the stream last moved and the
	// origin it left (absent when it never moved).
	MovedUnixMs int64  `json:"moved_unix_ms,omitempty"`
	MovedFrom   string `json:"moved_from,omitempty"`
	// MoveKind is how it last moved: planned, failover or
	// replica_promoted.
	MoveKind string `json:"move_kind,omitempty"`
	// Replicas are the origins holding a warm copy of the stream, and
	// Moving the origin a planned move is filling ("" when none): with
	// Origin, the stream's sources.
	Replicas []string `json:"replicas,omitempty"`
	Moving   string   `json:"moving,omitempty"`
}

// Peer is a member as gossip knows it.
type Peer struct {
	ID, GossipAddr, RaftAddr, APIAddr string
	// State is alive, suspect, dead or left.
	State string
	// Zone is the member's advertised failure domain.
	Zone string
	// Protocol is the member's advertised protocol version.
	Protocol int
}

// Input is what a node knows when it answers.
type Input struct {
	NodeID     string
	RaftState  string
	Leader     string
	LeaderAddr string
	// RaftStats is raft.Raft.Stats().
	RaftStats map[string]string
	// Servers is the latest Raft configuration (nil when unknown).
	Servers        []raft.Server
	Peers          []Peer
	Replica        state.Contents
	RTCSessions    int
	DegradedRoutes uint64
	NowMs          int64
	// Events are this node's latest events (events.Log.Recent), oldest
	// first.
	Events []events.Event
	// Protocol is shown as it is.
	Protocol Protocol
}

// Build assembles the document. Lists are never nil; members are sorted by
// id, origins and assignments come in the replica's order.
func Build(in Input) Status {
	st := Status{
		NodeID: in.NodeID, RaftState: in.RaftState, Leader: in.Leader, LeaderAddr: in.LeaderAddr,
		GeneratedUnix: in.NowMs, RTCSessions: in.RTCSessions, DegradedRoutes: in.DegradedRoutes,
		Term: parseUint(in.RaftStats["term"]), CommitIndex: parseUint(in.RaftStats["commit_index"]),
		AppliedIndex: parseUint(in.RaftStats["applied_index"]), LastLogIndex: parseUint(in.RaftStats["last_log_index"]),
		Members: []Member{}, Origins: []Origin{}, Assignments: []Assignment{}, Protocol: in.Protocol,
	}
	if st.Protocol.Waiting == nil {
		st.Protocol.Waiting = []string{}
	}
	members := map[string]*Member{}
	get := func(id string) *Member {
		m := members[id]
		if m == nil {
			m = &Member{ID: id, RaftRole: "none"}
			members[id] = m
		}
		return m
	}
	for _, p := range in.Peers {
		m := get(p.ID)
		m.GossipAddr, m.RaftAddr, m.APIAddr, m.GossipState, m.Zone = p.GossipAddr, p.RaftAddr, p.APIAddr, p.State, p.Zone
		m.Protocol = p.Protocol
	}
	for _, s := range in.Servers {
		m := get(string(s.ID))
		if m.RaftAddr == "" {
			m.RaftAddr = string(s.Address)
		}
		m.Voter = s.Suffrage == raft.Voter
		m.RaftRole = "nonvoter"
		if m.Voter {
			m.RaftRole = "voter"
			st.Voters++
		} else {
			st.NonVoters++
		}
		if string(s.ID) == in.Leader {
			m.RaftRole = "leader"
		}
	}
	for _, m := range members {
		st.Members = append(st.Members, *m)
	}
	slices.SortFunc(st.Members, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })

	streams := map[string]int{}
	healthy := map[string]bool{}
	for _, a := range in.Replica.Assignments {
		streams[a.Origin]++
		for _, id := range a.Replicas {
			streams[id]++
		}
		if a.Target != "" {
			streams[a.Target]++
		}
	}
	for _, s := range in.Replica.Origins {
		o := s.Origin
		healthy[o.ID] = s.Healthy
		st.Origins = append(st.Origins, Origin{
			ID: o.ID, IP: o.IP, RTMP: o.RTMP, HTTP: o.HTTP, API: o.API, SRT: o.SRT, RTC: o.RTC,
			Static: o.Static, Healthy: s.Healthy, Draining: s.Draining, Evacuating: s.Evacuate, Streams: streams[o.ID],
			Service: o.Service, PID: o.PID, LastHeartbeatUnixMs: s.LastHeartbeatMs, LastProbeUnixMs: s.LastProbeMs,
			HealthReason: s.Reason, MaxStreams: o.MaxStreams, Weight: max(o.Weight, 1), Load: s.Load,
			Full: o.MaxStreams > 0 && streams[o.ID] >= o.MaxStreams,
		})
	}
	for _, a := range in.Replica.Assignments {
		st.Assignments = append(st.Assignments, Assignment{
			Key: a.Key, Origin: a.Origin, CreatedUnixMs: a.CreatedMs, LastUsedUnixMs: a.LastUsedMs,
			OriginHealthy: healthy[a.Origin], Epoch: a.Epoch, MovedUnixMs: a.MovedMs, MovedFrom: a.MovedFrom,
			MoveKind: a.MoveKind, Replicas: a.Replicas, Moving: a.Target,
		})
	}
	st.RecentEvents = recentEvents(in)
	return st
}

// recentEvents joins the node's own events with the replicated moves of
// the last RecentMoves that the node did not record itself.
func recentEvents(in Input) []events.Event {
	out := append([]events.Event{}, in.Events...)
	own := map[string]bool{}
	for _, e := range in.Events {
		if e.Kind == events.StreamMoved || e.Kind == events.ReplicaPromoted {
			own[e.Stream] = true
		}
	}
	for _, a := range in.Replica.Assignments {
		if a.MovedMs == 0 || in.NowMs-a.MovedMs > RecentMoves.Milliseconds() || own[a.Key] {
			continue
		}
		e := events.Moved(a.Key, a.MovedFrom, a.Origin, "")
		e.TimeUnixMs, e.Detail = a.MovedMs, e.Detail+" (epoch "+strconv.FormatUint(a.Epoch, 10)+")"
		if e.MoveKind = a.MoveKind; a.MoveKind == state.MovePromoted {
			e.Kind = events.ReplicaPromoted
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(x, y events.Event) int { return cmp.Compare(x.TimeUnixMs, y.TimeUnixMs) })
	if len(out) > MaxRecentEvents {
		out = out[len(out)-MaxRecentEvents:]
	}
	return out
}

func parseUint(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}
