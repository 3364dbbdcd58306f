package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/history"
	"github.com/srs-mesh/srs-mesh/mesh/streams"
	"github.com/srs-mesh/srs-mesh/stream/httpjson"
)

// PathLocalHistory is where every node serves its own history (system API
// and internal API); GET /mesh/v1/history gathers them.
const PathLocalHistory = "/mesh/v1/local/history"

// LocalHistory is the answer of GET /mesh/v1/local/history: one node's
// samples (package history), oldest first, one every IntervalMs.
type LocalHistory struct {
	Node       string           `json:"node"`
	IntervalMs int64            `json:"interval_ms"`
	Samples    []history.Sample `json:"samples"`
}

// NodeHistory is one node's part of History: its samples when OK.
type NodeHistory struct {
	NodeAnswer
	IntervalMs int64            `json:"interval_ms,omitempty"`
	Samples    []history.Sample `json:"samples"`
}

// History is the answer of GET /mesh/v1/history: the history of every node
// that answered within a second, as each node keeps it. The nodes sample on
// their own clocks; a reader merges them (the dashboard sums throughput and
// sessions over the nodes per interval).
//
//	{"nodes":[{"id":"n1","ok":true,"interval_ms":5000,
//	           "samples":[{"t":1700000000000,"in_bps":2.1e6,"out_bps":8.4e6,
//	                       "sessions":{"rtmp":3,"flv":2},"assignments_per_s":0.2}]},
//	          {"id":"n2","ok":false,"error":"...","samples":[]}],
//	 "generated_unix_ms":1700000001000}
type History struct {
	Nodes         []NodeHistory `json:"nodes"`
	GeneratedUnix int64         `json:"generated_unix_ms"`
}

// maxHistoryBytes bounds one peer's history answer (180 samples of a few
// hundred bytes).
const maxHistoryBytes = 1 << 20

// historyLoop samples the node every HistoryInterval: its throughput, live
// sessions and assignment writes into the history ring, and each stream's
// bit rates.
func (n *Node) historyLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.HistoryInterval)
	defer t.Stop()
	n.sample(time.Now())
	for {
		select {
		case <-n.ctx.Done():
			return
		case now := <-t.C:
			n.sample(now)
		}
	}
}

func (n *Node) sample(now time.Time) {
	c := history.Counters{Assignments: n.assigned.Load(), Sessions: map[string]int{}}
	if n.cfg.Throughput != nil {
		c.BytesIn, c.BytesOut = n.cfg.Throughput()
	}
	if n.cfg.Serving != nil {
		sv := n.cfg.Serving()
		c.CacheRequests, c.CacheOrigin, c.FanOutPlayers, c.FanOutUpstreams = sv.CacheRequests, sv.CacheOrigin, sv.FanOutPlayers, sv.FanOutUpstreams
	}
	for _, byProto := range n.act.Sessions() {
		for p, k := range byProto {
			if p != streams.ProtoUpstream { // a node's own shared upstream, not a client
				c.Sessions[p] += k
			}
		}
	}
	n.history.Observe(now, c)
	n.act.SampleRates(now)
}

// LocalHistory returns this node's history.
func (n *Node) LocalHistory() LocalHistory {
	return LocalHistory{Node: n.cfg.NodeID, IntervalMs: n.cfg.HistoryInterval.Milliseconds(), Samples: n.history.Samples()}
}

// ClusterHistory gathers the history of this node and of every alive
// member, each within a second and ctx.
func (n *Node) ClusterHistory(ctx context.Context) History {
	self := n.LocalHistory()
	out := History{Nodes: []NodeHistory{{NodeAnswer: NodeAnswer{ID: n.cfg.NodeID, OK: true}, IntervalMs: self.IntervalMs, Samples: self.Samples}}}
	for _, a := range n.askPeers(ctx, PathLocalHistory, maxHistoryBytes) {
		nh := NodeHistory{NodeAnswer: a.NodeAnswer, Samples: []history.Sample{}}
		if a.OK {
			var lh LocalHistory
			if err := json.Unmarshal(a.body, &lh); err != nil {
				nh.OK, nh.Error = false, fmt.Sprintf("bad answer: %v", err)
			} else {
				if len(lh.Samples) > history.DefaultCapacity {
					lh.Samples = lh.Samples[len(lh.Samples)-history.DefaultCapacity:]
				}
				nh.IntervalMs, nh.Samples = lh.IntervalMs, lh.Samples
			}
		}
		out.Nodes = append(out.Nodes, nh)
	}
	out.GeneratedUnix = time.Now().UnixMilli()
	return out
}

func (n *Node) handleLocalHistory(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, n.LocalHistory())
}

func (n *Node) handleHistory(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, n.ClusterHistory(r.Context()))
}
