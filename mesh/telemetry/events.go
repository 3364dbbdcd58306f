package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/peers"
	"github.com/srs-mesh/srs-mesh/stream/httpjson"
)

// PathLocalEvents is where every node serves its own event log (system API
// and internal API); GET /mesh/v1/events merges them.
const PathLocalEvents = "/mesh/v1/local/events"

// LocalEvents is the answer of GET /mesh/v1/local/events: one node's event
// log, oldest first.
type LocalEvents struct {
	Node   string         `json:"node"`
	Events []events.Event `json:"events"`
}

// Events is the answer of GET /mesh/v1/events: the event logs of every node
// that answered, merged by events.Merge (oldest first), and how each node
// answered. A node that does not answer within a second is listed with ok
// false, and the events only it saw are missing.
//
//	{"events":[{"time_unix_ms":1700000000000,"node":"n1","kind":"origin_down","origin":"o1",
//	            "detail":"unhealthy","seq":7}],
//	 "nodes":[{"id":"n1","ok":true},{"id":"n2","ok":false,"error":"..."}],
//	 "generated_unix_ms":1700000001000}
type Events struct {
	Events        []events.Event `json:"events"`
	Nodes         []peers.Answer `json:"nodes"`
	GeneratedUnix int64          `json:"generated_unix_ms"`
}

// maxEventsBytes bounds one peer's event log answer.
const maxEventsBytes = 4 << 20

// DefaultEventsLimit is how many events GET /mesh/v1/events returns without
// ?limit=; MaxEventsLimit is the most it returns.
const (
	DefaultEventsLimit = 100
	MaxEventsLimit     = 1000
)

// LocalEvents returns this node's event log.
func (t *Telemetry) LocalEvents() LocalEvents {
	return LocalEvents{Node: t.cfg.NodeID, Events: t.log.Recent(0)}
}

// ClusterEvents gathers the event logs of this node and of every member
// Peers lists (each within a second and ctx) and merges them, keeping the
// latest limit events.
func (t *Telemetry) ClusterEvents(ctx context.Context, limit int) Events {
	self := t.LocalEvents()
	logs := [][]events.Event{self.Events}
	nodes := []peers.Answer{{ID: t.cfg.NodeID, OK: true}}
	for _, a := range t.cfg.Asker.Ask(ctx, t.cfg.Peers(), PathLocalEvents, maxEventsBytes) {
		if a.OK {
			var le LocalEvents
			if err := json.Unmarshal(a.Body, &le); err != nil {
				a.OK, a.Error = false, fmt.Sprintf("bad answer: %v", err)
			} else {
				for i := range le.Events {
					le.Events[i].Node = a.ID // a peer speaks for itself only
				}
				logs = append(logs, le.Events)
			}
		}
		nodes = append(nodes, a.Answer)
	}
	return Events{Events: events.Merge(logs, limit), Nodes: nodes, GeneratedUnix: time.Now().UnixMilli()}
}

// Redact hides, in place, what only operators may read of evs: why an
// origin went down (a dial error names addresses and ports) and why players
// were lost.
func Redact(evs []events.Event) {
	for i := range evs {
		switch {
		case evs[i].Kind == events.OriginDown && evs[i].Detail != "":
			evs[i].Detail = "unhealthy"
		case evs[i].Kind == events.PlayersLost:
			evs[i].Detail = "no origin took the stream in time"
		}
	}
}

// redactFor redacts evs unless r comes from an operator.
func (t *Telemetry) redactFor(r *http.Request, evs []events.Event) {
	if !t.operator(r) {
		Redact(evs)
	}
}

// HandleLocalEvents answers GET /mesh/v1/local/events on the system API,
// redacted for callers who are not operators.
func (t *Telemetry) HandleLocalEvents(w http.ResponseWriter, r *http.Request) {
	le := t.LocalEvents()
	t.redactFor(r, le.Events)
	httpjson.Write(w, http.StatusOK, le)
}

// HandleInternalLocalEvents answers GET /mesh/v1/local/events on the
// internal API: members get it whole and redact for their own callers.
func (t *Telemetry) HandleInternalLocalEvents(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, t.LocalEvents())
}

// HandleEvents answers GET /mesh/v1/events[?limit=N].
func (t *Telemetry) HandleEvents(w http.ResponseWriter, r *http.Request) {
	limit := DefaultEventsLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			httpjson.Error(w, http.StatusBadRequest, "limit must be a positive integer")
			return
		}
		limit = min(v, MaxEventsLimit)
	}
	ev := t.ClusterEvents(r.Context(), limit)
	t.redactFor(r, ev.Events)
	httpjson.Write(w, http.StatusOK, ev)
}
