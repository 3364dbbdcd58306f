package mesh

import (
	"context"
	"net/http"

	"github.com/srs-mesh/srs-mesh/mesh/streams"
	"github.com/srs-mesh/srs-mesh/stream/httpjson"
)

// LocalSessions returns this node's live sessions, the answer of
// GET /mesh/v1/local/sessions.
func (n *Node) LocalSessions() streams.Local {
	rates := map[string]streams.Rate{}
	for k, r := range n.act.Rates() {
		rates[k] = streams.Rate{InBps: r.InBps, OutBps: r.OutBps}
	}
	return streams.NewLocal(n.cfg.NodeID, n.act.Sessions(), rates)
}

// ClusterStreams asks every alive member for its live sessions (in parallel,
// each bounded by one second and by ctx; this node answers without the
// network) and joins the sums with the assignments of this node's replica.
// Members that are not alive or advertise no API address are listed as not
// ok without being asked; members that left gracefully are not listed.
func (n *Node) ClusterStreams(ctx context.Context) streams.Cluster {
	var peers []streams.Peer
	for id, p := range n.peerSnapshot() {
		switch {
		case id == n.cfg.NodeID:
		case p.state == gossipLeft:
		case p.state != gossipAlive:
			peers = append(peers, streams.Peer{ID: id, Skip: "gossip state " + p.state})
		case p.meta.Raft == "":
			peers = append(peers, streams.Peer{ID: id, Skip: "no cluster address"})
		default:
			peers = append(peers, streams.Peer{ID: id, API: p.meta.Raft})
		}
	}
	return streams.Collect(ctx, n.client, n.LocalSessions(), peers, n.fsm)
}

func (n *Node) handleLocalSessions(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, n.LocalSessions())
}

func (n *Node) handleStreams(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, n.ClusterStreams(r.Context()))
}
