// Package telemetry owns what one node tells operators about itself, and the
// cluster-wide documents it builds from every member's part:
//
//   - its event log (package events): GET /mesh/v1/local/events, and
//     GET /mesh/v1/events merged over the members;
//   - its history (package history), sampled every HistoryInterval by Run:
//     GET /mesh/v1/local/history, and GET /mesh/v1/history;
//   - its live sessions (package activity): GET /mesh/v1/local/sessions, and
//     GET /mesh/v1/streams joined with the replica's assignments (package
//     streams).
//
// Every cluster-wide document asks the other members once, through package
// peers. The mesh decides which members exist and serves the routes; this
// package builds the documents and answers them. It writes no replicated
// state.
package telemetry

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/activity"
	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/history"
	"github.com/srs-mesh/srs-mesh/mesh/peers"
	"github.com/srs-mesh/srs-mesh/mesh/streams"
)

// Config is what a Telemetry reads. NodeID, Peers, Asker, Replica and
// Activity are required.
type Config struct {
	NodeID string
	// Peers lists the other members to ask for their part (gossip's view,
	// this node left out), once per cluster-wide document.
	Peers func() []peers.Peer
	// Asker asks them (the cluster port's client).
	Asker peers.Asker
	// Replica is this node's replicated state, for the assignments of
	// GET /mesh/v1/streams.
	Replica streams.Replica
	// Activity holds this node's live sessions and their rates.
	Activity *activity.Recorder
	// HistoryInterval is how often Run samples (default 5 s).
	HistoryInterval time.Duration
	// Throughput, when set, returns the bytes the node's protocol servers
	// received and sent so far.
	Throughput func() (in, out uint64)
	// Serving, when set, returns the node's cache and fan-out counters so
	// far.
	Serving func() history.Counters
	// Operator reports whether a request comes from an operator, who sees
	// why an origin went down; nil means nobody does.
	Operator func(*http.Request) bool
	// Now is the clock of the event log (nil: time.Now).
	Now func() time.Time
}

// Telemetry is one node's telemetry. Its methods are safe for concurrent
// use. Make one with New; Run samples the history until its context ends.
type Telemetry struct {
	cfg      Config
	log      *events.Log
	history  *history.Ring
	assigned atomic.Uint64
}

// New returns a Telemetry with an empty event log and history.
func New(cfg Config) *Telemetry {
	if cfg.HistoryInterval <= 0 {
		cfg.HistoryInterval = 5 * time.Second
	}
	return &Telemetry{
		cfg:     cfg,
		log:     events.NewLog(cfg.NodeID, events.DefaultCapacity, cfg.Now),
		history: history.New(history.DefaultCapacity),
	}
}

// Record adds e to this node's event log.
func (t *Telemetry) Record(e events.Event) { t.log.Record(e) }

// Events is this node's event log, for the parts of the node (and of the
// protocol servers) that record events.
func (t *Telemetry) Events() *events.Log { return t.log }

// CountAssignment counts one assignment written by this node, shown in its
// history as assignments per second.
func (t *Telemetry) CountAssignment() { t.assigned.Add(1) }

// Run samples the node every HistoryInterval, and once at once, until ctx
// ends. The caller owns the goroutine that runs it.
func (t *Telemetry) Run(ctx context.Context) {
	tick := time.NewTicker(t.cfg.HistoryInterval)
	defer tick.Stop()
	t.sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.sample(now)
		}
	}
}

// operator reports whether r comes from an operator.
func (t *Telemetry) operator(r *http.Request) bool {
	return t.cfg.Operator != nil && t.cfg.Operator(r)
}
