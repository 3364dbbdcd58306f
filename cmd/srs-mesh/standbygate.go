package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/telemetry"
	"github.com/srs-mesh/srs-mesh/stream"
)

// standbyGateTimeout bounds the question to the other nodes: it runs
// while a publisher waits for its answer (an SRT caller's handshake, a
// WHIP POST, an RTMP publish).
const standbyGateTimeout = 500 * time.Millisecond

// meshStandbyGate lets a node keep a standby publisher of a stream only
// while no node of the mesh, this one included, keeps one of it over any
// protocol: a stream key has at most two publishers, the active one and
// one standby. It asks every member for its sessions (GET
// /mesh/v1/local/sessions on the cluster port), within standbyGateTimeout.
//
// A member that does not answer in time is taken to hold none, so the
// bound holds across the members that answer. Two second publishers that
// reach two nodes at the same moment may both be kept: each node asked
// before the other counted its standby.
type meshStandbyGate struct {
	tel *telemetry.Telemetry
	log *slog.Logger
}

// MayHoldStandby implements the protocols' StandbyGate.
func (g meshStandbyGate) MayHoldStandby(ctx context.Context, key stream.Key) bool {
	ctx, cancel := context.WithTimeout(ctx, standbyGateTimeout)
	defer cancel()
	cs := g.tel.ClusterStreams(ctx)
	k := key.String()
	for _, s := range cs.Streams {
		if s.Key != k {
			continue
		}
		for node, n := range s.Standbys {
			if n > 0 {
				g.log.Info("the stream has a standby publisher already; refusing another", "stream", k, "on", node)
				return false
			}
		}
	}
	return true
}
