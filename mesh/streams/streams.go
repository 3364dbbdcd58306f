// Package streams builds the cluster-wide view of the mesh's streams, the
// answer of GET /mesh/v1/streams: every assigned stream and every stream with
// live client sessions on some node, with the sessions summed over the nodes
// that answered. Each node reports its own sessions (GET
// /mesh/v1/local/sessions, a Local); Join adds up the answers of the other
// nodes (asked by package peers) and joins the sums with the assignments of
// the asking node's replica.
//
// The package holds the documents and their assembly only: asking the nodes
// is package peers', and the local sessions come from the mesh.
package streams

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/peers"
	"github.com/srs-mesh/srs-mesh/mesh/state"
)

// Local is the answer of GET /mesh/v1/local/sessions: the live client
// sessions one node relays, per stream key and protocol.
//
//	{"node":"n1","streams":[{"key":"__defaultVhost__/live/a","clients":{"rtmp":2,"flv":1}}]}
//
// Streams are sorted by key; a stream without sessions is not listed.
type Local struct {
	Node    string        `json:"node"`
	Streams []LocalStream `json:"streams"`
}

// LocalStream is one stream's sessions on one node, by protocol, and its
// bit rates from and to clients on that node over the node's last sample
// interval (zero until sampled, or when its protocols do not count bytes).
type LocalStream struct {
	Key     string         `json:"key"`
	Clients map[string]int `json:"clients"`
	InBps   float64        `json:"in_bps,omitempty"`
	OutBps  float64        `json:"out_bps,omitempty"`
}

// Rate is a stream's bit rate on one node: In from clients, Out to clients.
type Rate struct {
	InBps, OutBps float64
}

// Cluster is the answer of GET /mesh/v1/streams: every assigned stream and
// every stream with live sessions on some node, with the sessions summed over
// the nodes that answered, and how each node answered.
//
//	{"streams":[{"key":"__defaultVhost__/live/a","origin":"o1","origin_healthy":true,
//	             "clients":{"rtmp":3,"flv":1},"total_clients":4,"nodes":{"n1":3,"n2":1},
//	             "ingest_bps":2500000,"egress_bps":7500000,
//	             "created_unix_ms":1700000000000,"last_used_unix_ms":1700000060000}],
//	 "nodes":[{"id":"n1","ok":true},{"id":"n3","ok":false,"error":"..."}],
//	 "generated_unix_ms":1700000061000}
//
// The counts are a best-effort sum: a node that does not answer within a
// second is listed with ok false and its sessions are missing.
type Cluster struct {
	Streams       []Stream       `json:"streams"`
	Nodes         []peers.Answer `json:"nodes"`
	GeneratedUnix int64          `json:"generated_unix_ms"`
}

// Stream is one stream of Cluster.
type Stream struct {
	Key string `json:"key"`
	// Origin is the assigned origin ("" when the stream has live sessions
	// but no assignment, e.g. routed without quorum or just collected).
	Origin        string `json:"origin"`
	OriginHealthy bool   `json:"origin_healthy"`
	// Replicas are the origins holding a warm copy of the stream, Moving
	// the target of a planned move in progress ("" when none): with
	// Origin, the stream's sources. MoveKind is how it last moved
	// (planned, failover, replica_promoted; "" when it never did).
	Replicas []string `json:"replicas,omitempty"`
	Moving   string   `json:"moving,omitempty"`
	MoveKind string   `json:"move_kind,omitempty"`
	// Clients counts live sessions by protocol over all answering nodes.
	Clients      map[string]int `json:"clients"`
	TotalClients int            `json:"total_clients"`
	// Nodes counts live sessions by node id (nodes without any are left out).
	Nodes map[string]int `json:"nodes"`
	// IngestBps is the bit rate the stream's clients send through the
	// answering nodes (its publishers), EgressBps what the nodes send to
	// its clients (its players), over each node's last sample interval.
	IngestBps      float64 `json:"ingest_bps"`
	EgressBps      float64 `json:"egress_bps"`
	CreatedUnixMs  int64   `json:"created_unix_ms,omitempty"`
	LastUsedUnixMs int64   `json:"last_used_unix_ms,omitempty"`
	// FanOut is, by node id, the stream's shared upstreams on that node and
	// the RTMP and HTTP-FLV players they serve (nodes without one are left
	// out).
	FanOut map[string]FanOut `json:"fanout,omitempty"`
	// RTCFanOut is, by node id, the stream's WebRTC upstreams on that node
	// (WHEP sessions at the origin) and the node's WebRTC clients of the
	// stream, the viewers it answered itself (nodes without one are left
	// out).
	RTCFanOut map[string]FanOut `json:"rtc_fanout,omitempty"`
	// Standbys counts, by node id, the stream's standby publishers
	// (backup encoders kept while another publishes; not in Clients): the
	// active publisher is a client of its node, a standby takes over when
	// it leaves (nodes without one are left out).
	Standbys map[string]int `json:"standbys,omitempty"`
}

// FanOut is one node's shared upstreams of a stream.
type FanOut struct {
	// Upstreams are the node's upstream legs of the stream: one per
	// distinct player query.
	Upstreams int `json:"upstreams"`
	// Players are the node's RTMP and HTTP-FLV players of the stream.
	Players int `json:"players"`
	// Ratio is players per upstream leg.
	Ratio float64 `json:"ratio"`
}

// ProtoUpstream is the protocol under which a node's Local counts shared
// upstreams (not clients): Collect reports them in Stream.FanOut.
const ProtoUpstream = "upstream"

// ProtoRTCUpstream is the protocol under which a node's Local counts its
// WebRTC upstreams (not clients): Collect reports them in
// Stream.RTCFanOut.
const ProtoRTCUpstream = "rtc-upstream"

// ProtoStandby is the protocol under which a node's Local counts standby
// publishers (not clients): Collect reports them in Stream.Standbys.
const ProtoStandby = "standby"

// PathLocal is the per-node endpoint Collect asks, served by every node.
const PathLocal = "/mesh/v1/local/sessions"

// MaxLocalBytes bounds one node's answer.
const MaxLocalBytes = 32 << 20

// NewLocal is node's Local for its live sessions, counted by stream key and
// then protocol, with the bit rates of those streams that rates has. It
// keeps the inner maps as they are.
func NewLocal(node string, live map[string]map[string]int, rates map[string]Rate) Local {
	out := Local{Node: node, Streams: make([]LocalStream, 0, len(live))}
	for k, m := range live {
		r := rates[k]
		out.Streams = append(out.Streams, LocalStream{Key: k, Clients: m, InBps: r.InBps, OutBps: r.OutBps})
	}
	slices.SortFunc(out.Streams, func(a, b LocalStream) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

// Replica is the replicated state whose assignments and origin health Collect
// joins with the sessions; *state.FSM is one.
type Replica interface {
	Contents() state.Contents
}

// Join decodes the Local of every member that answered (a member whose
// answer does not decode is marked not ok) and joins the sums of self and of
// those members with the assignments and origin health that replica holds.
// Every member is listed in Nodes whether or not it answered.
func Join(self Local, answers []peers.Body, replica Replica) Cluster {
	nodes := make([]peers.Answer, len(answers)+1)
	results := make([]Local, len(answers)+1)
	nodes[0], results[0] = peers.Answer{ID: self.Node, OK: true}, self
	for i, a := range answers {
		nodes[i+1] = a.Answer
		if !a.OK {
			continue
		}
		if err := json.Unmarshal(a.Body, &results[i+1]); err != nil {
			nodes[i+1].OK, nodes[i+1].Error = false, fmt.Sprintf("bad answer: %v", err)
		}
	}
	byKey := map[string]*Stream{}
	get := func(key string) *Stream {
		s := byKey[key]
		if s == nil {
			s = &Stream{Key: key, Clients: map[string]int{}, Nodes: map[string]int{}}
			byKey[key] = s
		}
		return s
	}
	st := replica.Contents()
	healthy := make(map[string]bool, len(st.Origins))
	for _, o := range st.Origins {
		healthy[o.Origin.ID] = o.Healthy
	}
	for _, a := range st.Assignments {
		s := get(a.Key)
		s.Origin, s.OriginHealthy = a.Origin, healthy[a.Origin]
		s.Replicas, s.Moving, s.MoveKind = a.Replicas, a.Target, a.MoveKind
		s.CreatedUnixMs, s.LastUsedUnixMs = a.CreatedMs, a.LastUsedMs
	}
	for i, ls := range results {
		if !nodes[i].OK {
			continue
		}
		for _, sc := range ls.Streams {
			if sc.Key == "" {
				continue
			}
			s := get(sc.Key)
			if sc.InBps > 0 {
				s.IngestBps += sc.InBps
			}
			if sc.OutBps > 0 {
				s.EgressBps += sc.OutBps
			}
			if up := sc.Clients[ProtoUpstream]; up > 0 {
				if s.FanOut == nil {
					s.FanOut = map[string]FanOut{}
				}
				players := max(sc.Clients["rtmp"], 0) + max(sc.Clients["flv"], 0)
				s.FanOut[nodes[i].ID] = FanOut{Upstreams: up, Players: players, Ratio: float64(players) / float64(up)}
			}
			if up := sc.Clients[ProtoRTCUpstream]; up > 0 {
				if s.RTCFanOut == nil {
					s.RTCFanOut = map[string]FanOut{}
				}
				viewers := max(sc.Clients["webrtc"], 0)
				s.RTCFanOut[nodes[i].ID] = FanOut{Upstreams: up, Players: viewers, Ratio: float64(viewers) / float64(up)}
			}
			if n := sc.Clients[ProtoStandby]; n > 0 {
				if s.Standbys == nil {
					s.Standbys = map[string]int{}
				}
				s.Standbys[nodes[i].ID] += n
			}
			for proto, c := range sc.Clients {
				if c <= 0 || proto == ProtoUpstream || proto == ProtoRTCUpstream || proto == ProtoStandby {
					continue
				}
				s.Clients[proto] += c
				s.TotalClients += c
				s.Nodes[nodes[i].ID] += c
			}
		}
	}
	out := Cluster{Streams: make([]Stream, 0, len(byKey)), Nodes: nodes, GeneratedUnix: time.Now().UnixMilli()}
	for _, s := range byKey {
		out.Streams = append(out.Streams, *s)
	}
	slices.SortFunc(out.Streams, func(a, b Stream) int { return cmp.Compare(a.Key, b.Key) })
	slices.SortFunc(out.Nodes, func(a, b peers.Answer) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
