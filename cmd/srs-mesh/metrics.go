package main

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/activity"
	"github.com/srs-mesh/srs-mesh/mesh/history"
	"github.com/srs-mesh/srs-mesh/mesh/streams"
	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/protocols/httpstream"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp"
	"github.com/srs-mesh/srs-mesh/protocols/srt"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc/sfu"
	"github.com/srs-mesh/srs-mesh/stream"
)

// The Prometheus exporter. Protocol servers keep their own atomic counters
// (their Stats); the collector reads them at scrape time, so the data path
// pays nothing for metrics. Only route latency and HTTP streaming, which have
// no counters of their own, are measured here.

const ns = "srs_mesh"

var (
	descConns = prometheus.NewDesc(ns+"_connections", "Client connections or sessions open now, by protocol.",
		[]string{"proto"}, nil)
	descSessions = prometheus.NewDesc(ns+"_sessions", "Clients now: every publisher and player with a connection to this node, whether it has its own origin leg or shares an upstream, by protocol (rtmp, flv, ts, srt, webrtc) and kind (publish, play, session). The same count as GET /mesh/v1/streams.",
		[]string{"proto", "kind"}, nil)
	descViewers = prometheus.NewDesc(ns+"_viewers_estimated", "An estimate of HLS and DASH viewers, which hold no connection: distinct client addresses and User-Agents that fetched a playlist, MPD or segment from this node in the last 30 s. Not part of srs_mesh_sessions.",
		[]string{"proto"}, nil)
	descBytes = prometheus.NewDesc(ns+"_relayed_bytes_total", "Bytes relayed, by protocol and direction (client_to_origin, origin_to_client).",
		[]string{"proto", "direction"}, nil)
	descOriginBytes = prometheus.NewDesc(ns+"_origin_bytes_total", "Bytes on the node's origin legs, by protocol and direction (to_origin, from_origin): with warm replicas and planned moves, the publishers' copies to every source.",
		[]string{"proto", "direction"}, nil)
	descPackets = prometheus.NewDesc(ns+"_relayed_packets_total", "UDP packets relayed, by protocol and direction.",
		[]string{"proto", "direction"}, nil)
	descFailures = prometheus.NewDesc(ns+"_session_failures_total", "Client sessions that failed, by protocol and reason.",
		[]string{"proto", "reason"}, nil)
	descDropped = prometheus.NewDesc(ns+"_dropped_packets_total", "UDP packets dropped, by protocol and reason.",
		[]string{"proto", "reason"}, nil)
	descStreamDropped = prometheus.NewDesc(ns+"_stream_dropped_packets_total", "UDP packets of a stream this node dropped, by protocol, stream and reason: send_error (a send failed), overflow (the kernel dropped them on a full session socket; see --udp-buffer). Only streams of sessions the node relays now that dropped any.",
		[]string{"proto", "stream", "reason"}, nil)
	descOriginStreams = prometheus.NewDesc(ns+"_origin_streams", "Streams assigned to an origin.",
		[]string{"origin"}, nil)
	descOriginHealthy = prometheus.NewDesc(ns+"_origin_healthy", "1 when the origin is healthy, else 0.",
		[]string{"origin"}, nil)
	descOriginDraining = prometheus.NewDesc(ns+"_origin_draining", "1 when the origin is draining, else 0.",
		[]string{"origin"}, nil)
	descAssignments = prometheus.NewDesc(ns+"_assignments", "Stream assignments in the replicated table.", nil, nil)
	descRaftState   = prometheus.NewDesc(ns+"_raft_state", "1 for this node's current Raft state.",
		[]string{"state"}, nil)
	descRaftTerm    = prometheus.NewDesc(ns+"_raft_term", "Current Raft term.", nil, nil)
	descRaftCommit  = prometheus.NewDesc(ns+"_raft_commit_index", "Raft commit index.", nil, nil)
	descRaftApplied = prometheus.NewDesc(ns+"_raft_applied_index", "Raft applied index.", nil, nil)
	descRaftLeader  = prometheus.NewDesc(ns+"_raft_leader", "1 when this node sees a leader, else 0.", nil, nil)
	descMembers     = prometheus.NewDesc(ns+"_gossip_members", "Gossip members by state.",
		[]string{"state"}, nil)
	descStateHalted = prometheus.NewDesc(ns+"_state_halted", "1 when this node's replicated state halted on a command it cannot apply (it routes nothing until upgraded), else 0.", nil, nil)
	descSkipped     = prometheus.NewDesc(ns+"_state_skipped_commands_total", "Optional commands of types this build does not know, skipped.", nil, nil)
	descProtocol    = prometheus.NewDesc(ns+"_protocol_version", "Command protocol versions: node (this build), lowest (among the members), mesh (recorded in the replicated state).",
		[]string{"kind"}, nil)
	descWaiting       = prometheus.NewDesc(ns+"_protocol_waiting_types", "Command types this build has that wait for every member to upgrade.", nil, nil)
	descCacheRequests = prometheus.NewDesc(ns+"_cache_requests_total", "HTTP stream requests that reached this node's cache, by kind (segment, document) and result (hit, miss, coalesced).",
		[]string{"kind", "result"}, nil)
	descCacheBytes = prometheus.NewDesc(ns+"_cache_bytes", "Bytes held by this node's HTTP stream cache, by kind (segment, document).",
		[]string{"kind"}, nil)
	descTableEntries = prometheus.NewDesc(ns+"_http_table_entries", "Entries of this node's HTTP stream tables fed by clients, by table (moved_session: new SRS sessions of players of moved streams; hold: documents held across moves).",
		[]string{"table"}, nil)
	descTableBytes = prometheus.NewDesc(ns+"_http_table_bytes", "Bytes this node's HTTP stream tables fed by clients count against their bounds, by table (moved_session, hold).",
		[]string{"table"}, nil)
	descFanOutPlayers   = prometheus.NewDesc(ns+"_fanout_players", "RTMP and HTTP-FLV players served from a shared upstream (--fanout); srs_mesh_sessions counts them too.", nil, nil)
	descFanOutUpstreams = prometheus.NewDesc(ns+"_fanout_upstreams", "Upstreams shared by RTMP and HTTP-FLV players (--fanout): one per stream and query.", nil, nil)
	descFanOutDropped   = prometheus.NewDesc(ns+"_fanout_dropped_total", "RTMP and HTTP-FLV players that fell behind a shared stream, by action: skipped (dropped tags to the next keyframe), kicked (disconnected).",
		[]string{"action"}, nil)
)

// meshCollector reads the mesh's status and the protocol servers' counters
// at scrape time. A nil server is skipped.
type meshCollector struct {
	node *mesh.Node
	rtmp *rtmp.Server
	srt  *srt.Server
	rtc  *webrtc.Server
	// rtcFanOut serves WebRTC viewers at the node (nil without --rtc-fanout).
	rtcFanOut *sfu.Server
	httpS     *httpStats
	// httpStream has the caches of HLS and DASH.
	httpStream *httpstream.Server
	// fanOut is the registry of shared upstreams (nil without --fanout).
	fanOut *fanout.Registry
}

func (c *meshCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *meshCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	const c2o, o2c = "client_to_origin", "origin_to_client"

	if s := c.rtmp; s != nil {
		st := s.Stats()
		gauge(descConns, float64(st.ConnsOpen), "rtmp")
		counter(descBytes, st.BytesIn, "rtmp", c2o)
		counter(descBytes, st.BytesOut, "rtmp", o2c)
		counter(descOriginBytes, st.OriginBytesOut, "rtmp", "to_origin")
		counter(descOriginBytes, st.OriginBytesIn, "rtmp", "from_origin")
		counter(descFailures, st.ClientFailures, "rtmp", "client")
		counter(descFailures, st.RouteFailures, "rtmp", "no_route")
		counter(descFailures, st.OriginFailures, "rtmp", "origin")
		counter(descFailures, st.ConnsRefused, "rtmp", "too_many_connections")
		counter(descFailures, st.OversizedMessages, "rtmp", "message_too_large")
	}
	if s := c.srt; s != nil {
		st := s.Stats()
		gauge(descConns, float64(st.Sessions), "srt")
		counter(descBytes, st.BytesIn, "srt", c2o)
		counter(descBytes, st.BytesOut, "srt", o2c)
		counter(descPackets, st.PacketsIn, "srt", c2o)
		counter(descPackets, st.PacketsOut, "srt", o2c)
		counter(descDropped, st.Malformed, "srt", "malformed")
		counter(descDropped, st.NoSession, "srt", "no_session")
		counter(descDropped, st.SendErrors, "srt", "send_error")
		counter(descDropped, st.Overflow, "srt", "overflow")
		for _, d := range st.Streams {
			counter(descStreamDropped, d.SendErrors, "srt", d.Stream, "send_error")
			counter(descStreamDropped, d.Overflow, "srt", d.Stream, "overflow")
		}
		for reason, n := range st.Rejects {
			counter(descFailures, n, "srt", reason)
		}
	}
	if s := c.rtc; s != nil {
		st := s.Stats()
		gauge(descConns, float64(st.Sessions), "webrtc")
		counter(descBytes, st.BytesIn, "webrtc", c2o)
		counter(descBytes, st.BytesOut, "webrtc", o2c)
		counter(descPackets, st.PacketsIn, "webrtc", c2o)
		counter(descPackets, st.PacketsOut, "webrtc", o2c)
		for reason, n := range map[string]uint64{
			"malformed": st.DroppedMalformed, "unknown_ufrag": st.DroppedUnknownUfrag, "no_session": st.DroppedNoSession,
			"table_full": st.DroppedTableFull, "upstream": st.DroppedUpstream, "oversize": st.DroppedOversize,
			"bad_origin": st.DroppedBadOrigin, "integrity": st.DroppedIntegrity, "overflow": st.DroppedOverflow,
		} {
			counter(descDropped, n, "webrtc", reason)
		}
		for _, d := range st.Streams {
			counter(descStreamDropped, d.SendErrors, "webrtc", d.Stream, "send_error")
			counter(descStreamDropped, d.Overflow, "webrtc", d.Stream, "overflow")
		}
		counter(descFailures, st.SignallingErrors, "webrtc", "signalling")
		counter(descFailures, st.OffersLimited, "webrtc", "rate_limited")
	}
	if s := c.rtcFanOut; s != nil {
		collectRTCFanOut(ch, s.Stats())
	}
	if h := c.httpS; h != nil {
		var hijacked uint64 // FLV players' bytes written past the response writer
		if c.httpStream != nil {
			hijacked = c.httpStream.Stats().FanOut.BytesOut
		}
		gauge(descConns, float64(h.open.Load()), "http")
		counter(descBytes, h.bytesOut.Load()+hijacked, "http", o2c)
		counter(descFailures, h.failures.Load(), "http", "status_5xx")
	}
	if s := c.httpStream; s != nil {
		st := s.Stats()
		for kind, cs := range map[string]httpstream.CacheStats{"segment": st.Segments, "document": st.Documents} {
			counter(descCacheRequests, cs.Hits, kind, "hit")
			counter(descCacheRequests, cs.Misses, kind, "miss")
			counter(descCacheRequests, cs.Coalesced, kind, "coalesced")
			gauge(descCacheBytes, float64(cs.Bytes), kind)
		}
		for table, ts := range map[string]httpstream.TableStats{"moved_session": st.MovedSessions, "hold": st.Holds} {
			gauge(descTableEntries, float64(ts.Entries), table)
			gauge(descTableBytes, float64(ts.Bytes), table)
		}
		v := st.Viewers
		gauge(descTableEntries, float64(v.Entries), "viewers")
		gauge(descTableBytes, float64(v.Bytes), "viewers")
		gauge(descViewers, float64(v.HLS), "hls")
		gauge(descViewers, float64(v.DASH), "dash")
	}
	// The registry is shared by the RTMP and HTTP servers: its gauges are
	// the node's whichever of them run.
	if f := c.fanOut; f != nil {
		st := f.Stats()
		gauge(descFanOutPlayers, float64(st.Subscribers))
		gauge(descFanOutUpstreams, float64(st.Upstreams))
		counter(descFanOutDropped, st.Dropped, "skipped")
		counter(descFanOutDropped, st.Kicked, "kicked")
	}
	c.collectSessions(gauge)

	st := c.node.Status()
	for _, o := range st.Origins {
		gauge(descOriginStreams, float64(o.Streams), o.ID)
		gauge(descOriginHealthy, boolFloat(o.Healthy), o.ID)
		gauge(descOriginDraining, boolFloat(o.Draining), o.ID)
	}
	gauge(descAssignments, float64(len(st.Assignments)))
	for _, state := range []string{"Leader", "Follower", "Candidate", "Shutdown"} {
		gauge(descRaftState, boolFloat(st.RaftState == state), strings.ToLower(state))
	}
	gauge(descRaftTerm, float64(st.Term))
	gauge(descRaftCommit, float64(st.CommitIndex))
	gauge(descRaftApplied, float64(st.AppliedIndex))
	gauge(descRaftLeader, boolFloat(st.Leader != ""))
	gauge(descStateHalted, boolFloat(st.Protocol.Halted != ""))
	counter(descSkipped, st.Protocol.SkippedCommands)
	gauge(descProtocol, float64(st.Protocol.Node), "node")
	gauge(descProtocol, float64(st.Protocol.Lowest), "lowest")
	gauge(descProtocol, float64(st.Protocol.Mesh), "mesh")
	gauge(descWaiting, float64(len(st.Protocol.Waiting)))
	members := map[string]int{"alive": 0, "suspect": 0, "dead": 0, "left": 0}
	for _, m := range st.Members {
		if m.GossipState != "" {
			members[m.GossipState]++
		}
	}
	for state, n := range members {
		gauge(descMembers, float64(n), state)
	}
}

// clientBytes sums the bytes every protocol server of a node has read from
// and written to clients, for the node's history. It reads zero until c is
// stored; the collector's servers are not changed after that.
type clientBytes struct {
	c atomic.Pointer[meshCollector]
}

func (b *clientBytes) total() (in, out uint64) {
	c := b.c.Load()
	if c == nil {
		return 0, 0
	}
	if s := c.rtmp; s != nil {
		st := s.Stats()
		in, out = in+st.BytesIn, out+st.BytesOut
	}
	if s := c.srt; s != nil {
		st := s.Stats()
		in, out = in+st.BytesIn, out+st.BytesOut
	}
	if s := c.rtc; s != nil {
		st := s.Stats()
		in, out = in+st.BytesIn, out+st.BytesOut
	}
	if s := c.rtcFanOut; s != nil {
		out += s.Stats().BytesOut
	}
	if h := c.httpS; h != nil {
		out += h.bytesOut.Load()
	}
	if s := c.httpStream; s != nil {
		out += s.Stats().FanOut.BytesOut // HTTP-FLV players past the response writer
	}
	return in, out
}

// serving is the node's cache and fan-out counters and its estimate of
// HLS and DASH viewers, for its history.
func (b *clientBytes) serving() history.Counters {
	var out history.Counters
	c := b.c.Load()
	if c == nil {
		return out
	}
	if c.httpStream == nil {
		if c.fanOut != nil {
			st := c.fanOut.Stats()
			out.FanOutPlayers, out.FanOutUpstreams = st.Subscribers, st.Upstreams
		}
		return out
	}
	st := c.httpStream.Stats()
	for _, cs := range []httpstream.CacheStats{st.Segments, st.Documents} {
		out.CacheRequests += cs.Hits + cs.Misses + cs.Coalesced
		out.CacheOrigin += cs.Misses
	}
	// The HTTP server's fan-out stats are those of the registry it shares
	// with the RTMP server when both run.
	out.FanOutPlayers, out.FanOutUpstreams = st.FanOut.Players, st.FanOut.Upstreams
	out.HLSViewers, out.DASHViewers = st.Viewers.HLS, st.Viewers.DASH
	return out
}

// collectSessions exports srs_mesh_sessions from the node's live sessions
// (mesh.Node.LiveClients), the count GET /mesh/v1/streams and status show:
// every client of every protocol, fan-out players included. A node's own
// shared upstreams are not clients (srs_mesh_fanout_upstreams has them).
// The classes of the protocols this node serves are exported at zero while
// they have no client, so that a dashboard shows 0 rather than no data.
func (c *meshCollector) collectSessions(gauge func(*prometheus.Desc, float64, ...string)) {
	live := c.node.LiveClients()
	var idle []activity.Class
	if c.rtmp != nil {
		idle = append(idle, activity.Class{Proto: "rtmp", Kind: stream.KindPublish}, activity.Class{Proto: "rtmp", Kind: stream.KindPlay})
	}
	if c.httpStream != nil {
		idle = append(idle, activity.Class{Proto: "flv", Kind: stream.KindPlay}, activity.Class{Proto: "ts", Kind: stream.KindPlay})
	}
	if c.srt != nil {
		idle = append(idle, activity.Class{Proto: "srt", Kind: stream.KindPublish}, activity.Class{Proto: "srt", Kind: stream.KindPlay})
	}
	if c.rtc != nil {
		idle = append(idle, activity.Class{Proto: "webrtc", Kind: stream.KindSession})
	}
	for _, cl := range idle {
		if _, ok := live[cl]; !ok {
			live[cl] = 0
		}
	}
	for cl, n := range live {
		if cl.Proto == streams.ProtoUpstream {
			continue
		}
		gauge(descSessions, float64(n), cl.Proto, cl.Kind)
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// timedRouter measures every Route call (a local read for a known stream, a
// replicated assignment for a new one) into a histogram.
type timedRouter struct {
	node *mesh.Node
	hist *prometheus.HistogramVec
}

func newTimedRouter(node *mesh.Node, reg prometheus.Registerer) *timedRouter {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: ns,
		Name:      "assignment_duration_seconds",
		Help:      "Time to find or create a stream's origin assignment, by result (ok, error).",
		Buckets:   []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"result"})
	reg.MustRegister(h)
	// Both series exist from the start, so that a rate of errors is 0
	// rather than no data.
	h.WithLabelValues("ok")
	h.WithLabelValues("error")
	return &timedRouter{node: node, hist: h}
}

func (r *timedRouter) Route(ctx context.Context, key stream.Key) (stream.Origin, error) {
	return r.timed(ctx, key, r.node.Route)
}

// RoutePlay is Route for players (mesh.Node.RoutePlay), timed alike.
func (r *timedRouter) RoutePlay(ctx context.Context, key stream.Key) (stream.Origin, error) {
	return r.timed(ctx, key, r.node.RoutePlay)
}

// RoutePublish finds a publisher's origin without writing
// (mesh.Node.RoutePublish), timed like Route.
func (r *timedRouter) RoutePublish(ctx context.Context, key stream.Key) (stream.Origin, error) {
	return r.timed(ctx, key, r.node.RoutePublish)
}

// PublishAccepted writes the assignment of a publish its origin accepted
// (mesh.Node.PublishAccepted), timed like Route.
func (r *timedRouter) PublishAccepted(ctx context.Context, key stream.Key, origin stream.Origin) (stream.Origin, error) {
	return r.timed(ctx, key, func(ctx context.Context, key stream.Key) (stream.Origin, error) {
		return r.node.PublishAccepted(ctx, key, origin)
	})
}

// Reroute moves a stream off an origin that failed under a publisher
// (mesh.Node.Reroute), timed like Route.
func (r *timedRouter) Reroute(ctx context.Context, key stream.Key, failed stream.Origin) (stream.Origin, error) {
	return r.timed(ctx, key, func(ctx context.Context, key stream.Key) (stream.Origin, error) {
		return r.node.Reroute(ctx, key, failed)
	})
}

// StreamEpoch is how many times a stream moved, the base of its HLS
// sequence numbers and when it last moved (mesh.Node.StreamEpoch), for HLS
// and DASH renumbering.
func (r *timedRouter) StreamEpoch(key stream.Key) (uint64, uint64, time.Time) {
	return r.node.StreamEpoch(key)
}

// OriginHealthy reports the mesh's verdict on an origin
// (mesh.Node.OriginHealthy), so that publishers leave an origin the
// leader's probes found dead even when their leg has not failed yet.
func (r *timedRouter) OriginHealthy(id string) bool { return r.node.OriginHealthy(id) }

var (
	_ stream.Router     = (*timedRouter)(nil)
	_ stream.Publisher  = (*timedRouter)(nil)
	_ rtmp.OriginHealth = (*timedRouter)(nil)
	_ rtmp.Rerouter     = (*timedRouter)(nil)
	_ httpstream.Epochs = (*timedRouter)(nil)
)

func (r *timedRouter) timed(ctx context.Context, key stream.Key, route func(context.Context, stream.Key) (stream.Origin, error)) (stream.Origin, error) {
	start := time.Now()
	o, err := route(ctx, key)
	result := "ok"
	if err != nil {
		result = "error"
	}
	r.hist.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return o, err
}

// httpStats counts HTTP streaming requests and bytes.
type httpStats struct {
	open     atomic.Int64
	bytesOut atomic.Uint64
	failures atomic.Uint64
}

// wrap counts requests in flight and response bytes of h. The writer it
// passes on unwraps to the original, so flushing keeps working.
func (s *httpStats) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.open.Add(1)
		defer s.open.Add(-1)
		cw := &countingWriter{ResponseWriter: w, stats: s}
		h.ServeHTTP(cw, r)
	})
}

type countingWriter struct {
	http.ResponseWriter
	stats *httpStats
}

func (w *countingWriter) WriteHeader(code int) {
	if code >= 500 {
		w.stats.failures.Add(1)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.stats.bytesOut.Add(uint64(n))
	return n, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// newMetricsHandler registers the collectors and returns /metrics.
func newMetricsHandler(reg *prometheus.Registry, c *meshCollector) http.Handler {
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		readBuildInfo().collector())
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
