// Package history keeps a node's recent throughput in memory: every
// interval (5 s by default) the node observes its cumulative counters (bytes
// from and to clients, assignments written) and its live sessions by
// protocol, and the Ring stores one Sample of rates, keeping the last
// Capacity (180 samples of 5 s: 15 minutes). The dashboard draws its charts
// from the rings of every node (GET /mesh/v1/history). The package holds no
// goroutine: the node's sampling loop calls Observe.
package history

import (
	"maps"
	"sync"
	"time"
)

// Sample is one interval of one node.
type Sample struct {
	// TimeUnixMs is when the interval ended.
	TimeUnixMs int64 `json:"t"`
	// InBps and OutBps are bits per second received from clients and sent
	// to clients over the interval, all protocols together.
	InBps  float64 `json:"in_bps"`
	OutBps float64 `json:"out_bps"`
	// Sessions are the live client sessions by protocol at TimeUnixMs.
	Sessions map[string]int `json:"sessions"`
	// AssignmentsPerSec is the rate of assignment writes this node made
	// (first uses of a stream routed through it).
	AssignmentsPerSec float64 `json:"assignments_per_s"`
	// CacheRequestsPerSec is the rate of HLS/DASH requests that reached the
	// node's cache, and CacheHitRatio the share of them answered without a
	// request of their own to the origin (hits and coalesced), over the
	// interval (0 without requests).
	CacheRequestsPerSec float64 `json:"cache_requests_per_s"`
	CacheHitRatio       float64 `json:"cache_hit_ratio"`
	// FanOutPlayers and FanOutUpstreams are the RTMP and HTTP-FLV players
	// served from shared upstreams and those upstreams, at TimeUnixMs.
	FanOutPlayers   int `json:"fanout_players"`
	FanOutUpstreams int `json:"fanout_upstreams"`
	// HLSViewersEstimated and DASHViewersEstimated are the node's estimate
	// of HLS and DASH viewers at TimeUnixMs: not a count (those players
	// hold no connection), and not among Sessions.
	HLSViewersEstimated  int `json:"hls_viewers_estimated,omitempty"`
	DASHViewersEstimated int `json:"dash_viewers_estimated,omitempty"`
}

// Counters are a node's cumulative counters at one instant. Counters never
// decrease while the node runs; a decrease (a counter that was reset) gives
// a rate of zero for that interval.
type Counters struct {
	BytesIn, BytesOut uint64
	Assignments       uint64
	// CacheRequests and CacheOrigin count the requests that reached the
	// HLS/DASH cache and those of them that went to the origin (misses).
	CacheRequests, CacheOrigin uint64
	// FanOutPlayers and FanOutUpstreams are gauges (not cumulative).
	FanOutPlayers, FanOutUpstreams int
	// HLSViewers and DASHViewers are the estimates of HLS and DASH viewers
	// (gauges).
	HLSViewers, DASHViewers int
	// Sessions are the live sessions by protocol (not cumulative).
	Sessions map[string]int
}

// DefaultCapacity is how many samples a Ring keeps by default: 15 minutes
// of 5 s samples.
const DefaultCapacity = 180

// maxProtocols bounds the protocols one sample keeps (labels come from the
// node's own protocol servers, but the bound keeps a sample small whatever
// they are).
const maxProtocols = 16

// Ring holds a node's last samples. It is safe for concurrent use.
type Ring struct {
	mu      sync.Mutex
	samples []Sample // oldest first, at most cap
	cap     int
	prev    Counters
	prevAt  time.Time
	started bool
}

// New returns an empty Ring keeping the last capacity samples
// (DefaultCapacity when capacity <= 0).
func New(capacity int) *Ring {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Ring{cap: capacity, samples: make([]Sample, 0, capacity)}
}

// Observe records the counters seen at at. The first call only sets the
// baseline; each later one adds the sample of rates since the previous call
// (none when at is not after it), dropping the oldest sample when the ring is
// full.
func (r *Ring) Observe(at time.Time, c Counters) {
	sessions := make(map[string]int, min(len(c.Sessions), maxProtocols))
	for p, n := range c.Sessions {
		if len(sessions) < maxProtocols && n > 0 {
			sessions[p] = n
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	prev, prevAt, started := r.prev, r.prevAt, r.started
	r.prev, r.prevAt, r.started = c, at, true
	if !started || !at.After(prevAt) {
		return
	}
	secs := at.Sub(prevAt).Seconds()
	rate := func(now, before uint64) float64 {
		if now < before {
			return 0
		}
		return float64(now-before) / secs
	}
	s := Sample{
		TimeUnixMs:        at.UnixMilli(),
		InBps:             8 * rate(c.BytesIn, prev.BytesIn),
		OutBps:            8 * rate(c.BytesOut, prev.BytesOut),
		Sessions:          sessions,
		AssignmentsPerSec: rate(c.Assignments, prev.Assignments),
		FanOutPlayers:     c.FanOutPlayers,
		FanOutUpstreams:   c.FanOutUpstreams,

		HLSViewersEstimated:  c.HLSViewers,
		DASHViewersEstimated: c.DASHViewers,
	}
	if c.CacheRequests > prev.CacheRequests && c.CacheOrigin >= prev.CacheOrigin {
		req, origin := c.CacheRequests-prev.CacheRequests, c.CacheOrigin-prev.CacheOrigin
		s.CacheRequestsPerSec = float64(req) / secs
		s.CacheHitRatio = 1 - float64(min(origin, req))/float64(req)
	}
	if len(r.samples) == r.cap {
		copy(r.samples, r.samples[1:])
		r.samples = r.samples[:r.cap-1]
	}
	r.samples = append(r.samples, s)
}

// Samples copies the samples, oldest first.
func (r *Ring) Samples() []Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Sample, len(r.samples))
	for i, s := range r.samples {
		s.Sessions = maps.Clone(s.Sessions)
		out[i] = s
	}
	return out
}

// Capacity is how many samples the ring keeps.
func (r *Ring) Capacity() int { return r.cap }
