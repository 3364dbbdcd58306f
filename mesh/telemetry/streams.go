package telemetry

import (
	"context"
	"net/http"

	"github.com/srs-mesh/srs-mesh/mesh/streams"
	"github.com/srs-mesh/srs-mesh/stream/httpjson"
)

// LocalSessions returns this node's live sessions, the answer of
// GET /mesh/v1/local/sessions.
func (t *Telemetry) LocalSessions() streams.Local {
	rates := map[string]streams.Rate{}
	for k, r := range t.cfg.Activity.Rates() {
		rates[k] = streams.Rate{InBps: r.InBps, OutBps: r.OutBps}
	}
	return streams.NewLocal(t.cfg.NodeID, t.cfg.Activity.Sessions(), rates)
}

// ClusterStreams asks every member Peers lists for its live sessions (in
// parallel, each within a second and ctx; this node answers without the
// network) and joins the sums with the assignments of this node's replica.
func (t *Telemetry) ClusterStreams(ctx context.Context) streams.Cluster {
	answers := t.cfg.Asker.Ask(ctx, t.cfg.Peers(), streams.PathLocal, streams.MaxLocalBytes)
	return streams.Join(t.LocalSessions(), answers, t.cfg.Replica)
}

// HandleLocalSessions answers GET /mesh/v1/local/sessions.
func (t *Telemetry) HandleLocalSessions(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, t.LocalSessions())
}

// HandleStreams answers GET /mesh/v1/streams.
func (t *Telemetry) HandleStreams(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, t.ClusterStreams(r.Context()))
}
