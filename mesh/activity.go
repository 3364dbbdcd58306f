package mesh

// Live client sessions (Track) and the report of the keys they use, which
// keeps their assignments from garbage collection.

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/activity"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Track records a live client session on key at this node, so that the key's
// assignment is reported as used every TouchInterval, and therefore not
// garbage-collected, while the session lasts. proto names the client's
// protocol ("rtmp", "flv", "srt", ...; lower case, at most 32 bytes, "other"
// when empty) and kind what the session does (stream.KindPublish,
// stream.KindPlay, stream.KindSession; empty for a node's own shared
// upstream, which is not a client). Sessions are counted per protocol in
// LocalSessions and GET /mesh/v1/streams, and per protocol and kind in
// LiveClients. The returned end func is idempotent.
func (n *Node) Track(key stream.Key, proto, kind string) (end func()) {
	return n.act.Begin(key.String(), proto, kind)
}

// LiveClients counts this node's live sessions (Track) by protocol and
// kind: every client, and under their own protocol the node's shared
// upstreams.
func (n *Node) LiveClients() map[activity.Class]int {
	return n.act.Classes()
}

// TrackMetered is Track for a session whose protocol server counts the
// bytes it reads from the client in in and writes to the client in out;
// the node samples them every Config.HistoryInterval into the stream's bit
// rates (GET /mesh/v1/streams). The counters must only grow.
func (n *Node) TrackMetered(key stream.Key, proto, kind string, in, out *atomic.Uint64) (end func()) {
	return n.act.BeginMetered(key.String(), proto, kind, in, out)
}

// activityLoop reports used keys with a Touch command every TouchInterval.
// (The WebRTC sessions the relay carried are reported by rtcsessions.Store.Run.)
func (n *Node) activityLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.TouchInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.flushActivity()
		}
	}
}

func (n *Node) flushActivity() {
	keys := n.act.Take()
	now := time.Now().UnixMilli()
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 1000)]
		keys = keys[len(batch):]
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RouteTimeout)
		_, err := n.apply(ctx, state.TouchCmd{Keys: batch, NowMs: now})
		cancel()
		if err != nil {
			n.log.Debug("report stream activity", "err", err)
			for _, k := range batch {
				n.act.Used(k)
			}
		}
	}
}
