package mesh

// The JSON documents of the cluster API on the system API port. They are a
// stable, documented interface: `srs-mesh status --json` prints Status as is,
// and fields are only ever added.

// Status is the answer of GET /mesh/v1/status.
type Status struct {
	// NodeID is the node that answered.
	NodeID string `json:"node_id"`
	// Leader is the node id of the Raft leader as this node sees it ("" when
	// there is none).
	Leader        string             `json:"leader"`
	LeaderAddr    string             `json:"leader_addr,omitempty"`
	RaftState     string             `json:"raft_state"` // Leader, Follower, Candidate, Shutdown
	Term          uint64             `json:"term"`
	CommitIndex   uint64             `json:"commit_index"`
	AppliedIndex  uint64             `json:"applied_index"`
	LastLogIndex  uint64             `json:"last_log_index"`
	Members       []MemberStatus     `json:"members"`
	Origins       []OriginStatus     `json:"origins"`
	Assignments   []AssignmentStatus `json:"assignments"`
	GeneratedUnix int64              `json:"generated_unix_ms"`
	// RTCSessions is the number of replicated WebRTC ICE sessions.
	RTCSessions int `json:"rtc_sessions"`
	// DegradedRoutes counts routes this node answered without quorum by
	// rendezvous hash over the origins it believed healthy.
	DegradedRoutes uint64 `json:"degraded_routes"`
}

// MemberStatus is one node of the mesh, merged from gossip and Raft.
type MemberStatus struct {
	ID         string `json:"id"`
	GossipAddr string `json:"gossip_addr"`
	RaftAddr   string `json:"raft_addr"`
	APIAddr    string `json:"api_addr"`
	// GossipState is alive, suspect, dead or left ("" when only Raft knows it).
	GossipState string `json:"gossip_state"`
	// RaftRole is leader, voter, nonvoter or none.
	RaftRole string `json:"raft_role"`
	Voter    bool   `json:"voter"`
}

// OriginStatus is one origin with its replicated health and load.
type OriginStatus struct {
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
	Streams  int    `json:"streams"`
	Service  string `json:"service,omitempty"`
	PID      string `json:"pid,omitempty"`
	// LastHeartbeatUnixMs is the last registration heartbeat (0 for static
	// origins that never sent one).
	LastHeartbeatUnixMs int64 `json:"last_heartbeat_unix_ms"`
	// LastProbeUnixMs is the last successful health probe by the leader.
	LastProbeUnixMs int64 `json:"last_probe_unix_ms"`
	// HealthReason says why the origin is unhealthy ("" when healthy).
	HealthReason string `json:"health_reason,omitempty"`
}

// AssignmentStatus is one stream key and the origin that owns it.
type AssignmentStatus struct {
	Key            string `json:"key"`
	Origin         string `json:"origin"`
	CreatedUnixMs  int64  `json:"created_unix_ms"`
	LastUsedUnixMs int64  `json:"last_used_unix_ms"`
	OriginHealthy  bool   `json:"origin_healthy"`
}
