package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/history"
	"github.com/srs-mesh/srs-mesh/mesh/peers"
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
	peers.Answer
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

// sample records the node's throughput, live sessions and assignment writes
// in the history ring, and each stream's bit rates.
func (t *Telemetry) sample(now time.Time) {
	c := history.Counters{Assignments: t.assigned.Load(), Sessions: map[string]int{}}
	if t.cfg.Throughput != nil {
		c.BytesIn, c.BytesOut = t.cfg.Throughput()
	}
	if t.cfg.Serving != nil {
		sv := t.cfg.Serving()
		c.CacheRequests, c.CacheOrigin, c.FanOutPlayers, c.FanOutUpstreams = sv.CacheRequests, sv.CacheOrigin, sv.FanOutPlayers, sv.FanOutUpstreams
		c.HLSViewers, c.DASHViewers = sv.HLSViewers, sv.DASHViewers
	}
	for _, byProto := range t.cfg.Activity.Sessions() {
		for p, k := range byProto {
			if p != streams.ProtoUpstream && p != streams.ProtoRTCUpstream { // a node's own shared upstream, not a client
				c.Sessions[p] += k
			}
		}
	}
	t.history.Observe(now, c)
	t.cfg.Activity.SampleRates(now)
}

// LocalHistory returns this node's history.
func (t *Telemetry) LocalHistory() LocalHistory {
	return LocalHistory{Node: t.cfg.NodeID, IntervalMs: t.cfg.HistoryInterval.Milliseconds(), Samples: t.history.Samples()}
}

// ClusterHistory gathers the history of this node and of every member
// Peers lists, each within a second and ctx.
func (t *Telemetry) ClusterHistory(ctx context.Context) History {
	self := t.LocalHistory()
	out := History{Nodes: []NodeHistory{{Answer: peers.Answer{ID: t.cfg.NodeID, OK: true}, IntervalMs: self.IntervalMs, Samples: self.Samples}}}
	for _, a := range t.cfg.Asker.Ask(ctx, t.cfg.Peers(), PathLocalHistory, maxHistoryBytes) {
		nh := NodeHistory{Answer: a.Answer, Samples: []history.Sample{}}
		if a.OK {
			var lh LocalHistory
			if err := json.Unmarshal(a.Body, &lh); err != nil {
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

// HandleLocalHistory answers GET /mesh/v1/local/history.
func (t *Telemetry) HandleLocalHistory(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, t.LocalHistory())
}

// HandleHistory answers GET /mesh/v1/history.
func (t *Telemetry) HandleHistory(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, t.ClusterHistory(r.Context()))
}
