package mesh

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// LocalSessions is the answer of GET /mesh/v1/local/sessions: the live client
// sessions this node relays (as recorded by Node.Track), per stream key and
// protocol.
//
//	{"node":"n1","streams":[{"key":"__defaultVhost__/live/a","clients":{"rtmp":2,"flv":1}}]}
//
// Streams are sorted by key; a stream without sessions is not listed.
type LocalSessions struct {
	Node    string               `json:"node"`
	Streams []LocalStreamClients `json:"streams"`
}

// LocalStreamClients is one stream's sessions on one node, by protocol.
type LocalStreamClients struct {
	Key     string         `json:"key"`
	Clients map[string]int `json:"clients"`
}

// ClusterStreams is the answer of GET /mesh/v1/streams: every assigned
// stream and every stream with live sessions on some node, with the sessions
// summed over the nodes that answered, and how each node answered.
//
//	{"streams":[{"key":"__defaultVhost__/live/a","origin":"o1","origin_healthy":true,
//	             "clients":{"rtmp":3,"flv":1},"total_clients":4,"nodes":{"n1":3,"n2":1},
//	             "created_unix_ms":1700000000000,"last_used_unix_ms":1700000060000}],
//	 "nodes":[{"id":"n1","ok":true},{"id":"n3","ok":false,"error":"..."}],
//	 "generated_unix_ms":1700000061000}
//
// The counts are a best-effort sum: a node that does not answer within a
// second is listed with ok false and its sessions are missing.
type ClusterStreams struct {
	Streams       []StreamClients `json:"streams"`
	Nodes         []NodeAnswer    `json:"nodes"`
	GeneratedUnix int64           `json:"generated_unix_ms"`
}

// StreamClients is one stream of ClusterStreams.
type StreamClients struct {
	Key string `json:"key"`
	// Origin is the assigned origin ("" when the stream has live sessions
	// but no assignment, e.g. routed without quorum or just collected).
	Origin        string `json:"origin"`
	OriginHealthy bool   `json:"origin_healthy"`
	// Clients counts live sessions by protocol over all answering nodes.
	Clients      map[string]int `json:"clients"`
	TotalClients int            `json:"total_clients"`
	// Nodes counts live sessions by node id (nodes without any are left out).
	Nodes          map[string]int `json:"nodes"`
	CreatedUnixMs  int64          `json:"created_unix_ms,omitempty"`
	LastUsedUnixMs int64          `json:"last_used_unix_ms,omitempty"`
}

// NodeAnswer says whether one node's sessions are in ClusterStreams.
type NodeAnswer struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// pathLocalSessions is the per-node endpoint GET /mesh/v1/streams fans out to.
const pathLocalSessions = "/mesh/v1/local/sessions"

// fanoutTimeout bounds each node's answer to GET /mesh/v1/streams.
const fanoutTimeout = time.Second

// maxLocalSessionsBytes bounds one node's answer.
const maxLocalSessionsBytes = 32 << 20

// LocalSessions returns this node's live sessions.
func (n *Node) LocalSessions() LocalSessions {
	live := n.act.sessions()
	out := LocalSessions{Node: n.cfg.NodeID, Streams: make([]LocalStreamClients, 0, len(live))}
	for k, m := range live {
		out.Streams = append(out.Streams, LocalStreamClients{Key: k, Clients: m})
	}
	slices.SortFunc(out.Streams, func(a, b LocalStreamClients) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

// ClusterStreams asks every alive member for its live sessions (in parallel,
// each bounded by one second and by ctx; this node answers without the
// network) and joins the sums with the assignments of this node's replica.
// Members that are not alive or advertise no API address are listed as not
// ok without being asked; members that left gracefully are not listed.
func (n *Node) ClusterStreams(ctx context.Context) ClusterStreams {
	type target struct {
		id, api, skip string
	}
	var targets []target
	for id, p := range n.peerSnapshot() {
		switch {
		case id == n.cfg.NodeID:
		case p.state == gossipLeft:
		case p.state != gossipAlive:
			targets = append(targets, target{id: id, skip: "gossip state " + p.state})
		case p.meta.API == "":
			targets = append(targets, target{id: id, skip: "no API address"})
		default:
			targets = append(targets, target{id: id, api: p.meta.API})
		}
	}
	answers := make([]NodeAnswer, len(targets)+1)
	results := make([]LocalSessions, len(targets)+1)
	answers[0], results[0] = NodeAnswer{ID: n.cfg.NodeID, OK: true}, n.LocalSessions()
	var wg sync.WaitGroup
	for i, t := range targets {
		answers[i+1] = NodeAnswer{ID: t.id, Error: t.skip}
		if t.skip != "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ls, err := n.fetchLocalSessions(ctx, t.api)
			if err != nil {
				answers[i+1].Error = err.Error()
				return
			}
			answers[i+1].OK, results[i+1] = true, ls
		}()
	}
	wg.Wait()

	byKey := map[string]*StreamClients{}
	get := func(key string) *StreamClients {
		s := byKey[key]
		if s == nil {
			s = &StreamClients{Key: key, Clients: map[string]int{}, Nodes: map[string]int{}}
			byKey[key] = s
		}
		return s
	}
	st := n.fsm.Contents()
	healthy := make(map[string]bool, len(st.Origins))
	for _, o := range st.Origins {
		healthy[o.Origin.ID] = o.Healthy
	}
	for _, a := range st.Assignments {
		s := get(a.Key)
		s.Origin, s.OriginHealthy = a.Origin, healthy[a.Origin]
		s.CreatedUnixMs, s.LastUsedUnixMs = a.CreatedMs, a.LastUsedMs
	}
	for i, ls := range results {
		if !answers[i].OK {
			continue
		}
		for _, sc := range ls.Streams {
			if sc.Key == "" {
				continue
			}
			s := get(sc.Key)
			for proto, c := range sc.Clients {
				if c <= 0 {
					continue
				}
				s.Clients[proto] += c
				s.TotalClients += c
				s.Nodes[answers[i].ID] += c
			}
		}
	}
	out := ClusterStreams{Streams: make([]StreamClients, 0, len(byKey)), Nodes: answers, GeneratedUnix: time.Now().UnixMilli()}
	for _, s := range byKey {
		out.Streams = append(out.Streams, *s)
	}
	slices.SortFunc(out.Streams, func(a, b StreamClients) int { return cmp.Compare(a.Key, b.Key) })
	slices.SortFunc(out.Nodes, func(a, b NodeAnswer) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// fetchLocalSessions asks one node for its live sessions.
func (n *Node) fetchLocalSessions(ctx context.Context, api string) (LocalSessions, error) {
	ctx, cancel := context.WithTimeout(ctx, fanoutTimeout)
	defer cancel()
	var ls LocalSessions
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+api+pathLocalSessions, nil)
	if err != nil {
		return ls, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return ls, fmt.Errorf("%s: no answer within %v", api, fanoutTimeout)
		}
		return ls, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return ls, fmt.Errorf("%s: HTTP %d", api, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxLocalSessionsBytes)).Decode(&ls); err != nil {
		return ls, fmt.Errorf("%s: bad answer: %v", api, err)
	}
	return ls, nil
}

func (n *Node) handleLocalSessions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.LocalSessions())
}

func (n *Node) handleStreams(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.ClusterStreams(r.Context()))
}
