package stream

import (
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
)

// Origin describes one media server that holds streams: an SRS origin that
// registered through its heartbeat, or a static origin from the command line.
// Endpoints are "host:port" strings ready to dial; an empty endpoint means the
// origin does not serve that protocol.
type Origin struct {
	// ID is the stable identity of the origin (SRS's "server" id, or the
	// name given to a static origin). It survives origin restarts.
	ID string `json:"id"`
	// IP is the address the origin reported (or was configured with).
	IP string `json:"ip"`
	// Service and PID change when the origin process restarts.
	Service string `json:"service,omitempty"`
	PID     string `json:"pid,omitempty"`
	// Endpoints, "host:port".
	RTMP string `json:"rtmp,omitempty"`
	HTTP string `json:"http,omitempty"`
	API  string `json:"api,omitempty"`
	SRT  string `json:"srt,omitempty"`
	RTC  string `json:"rtc,omitempty"`
	// Static is true for origins configured by flag rather than heartbeat.
	Static bool `json:"static,omitempty"`
	// MaxStreams caps the streams assigned to the origin: at the cap it
	// gets no new stream (0: no cap). At most MaxOriginStreams.
	MaxStreams int `json:"max_streams,omitempty"`
	// Weight is the origin's capacity relative to others (0 means 1): the
	// placement divides the origin's cost by it. At most MaxWeight.
	Weight int `json:"weight,omitempty"`
}

// Bounds of the capacity fields of Origin and Load.
const (
	MaxOriginStreams = 1_000_000
	MaxWeight        = 1000
	// MaxPermille is a CPU use of 100%.
	MaxPermille = 1000
)

// CheckCapacity reports whether the origin's MaxStreams and Weight are within
// their bounds.
func (o Origin) CheckCapacity() error {
	if o.MaxStreams < 0 || o.MaxStreams > MaxOriginStreams {
		return fmt.Errorf("%w: max_streams %d is not within 0..%d", ErrRegistration, o.MaxStreams, MaxOriginStreams)
	}
	if o.Weight < 0 || o.Weight > MaxWeight {
		return fmt.Errorf("%w: weight %d is not within 0..%d", ErrRegistration, o.Weight, MaxWeight)
	}
	return nil
}

// Load is what an origin reports of its own load in its heartbeat (SRS's
// "summaries", sent with "heartbeat { summaries on; }"). It travels in the
// registration command, so that every replica places streams from the same
// figures.
type Load struct {
	// CPUPermille is the host's CPU use (SRS's system cpu_percent, a
	// ratio), in thousandths: 0..MaxPermille.
	CPUPermille int `json:"cpu_permille"`
	// SelfCPUPermille is the SRS process's CPU use, in thousandths of one
	// CPU (may exceed MaxPermille on several CPUs; at most 64 CPUs' worth).
	SelfCPUPermille int `json:"self_cpu_permille,omitempty"`
	// Conns is the number of connections SRS serves (conn_srs).
	Conns int64 `json:"conns,omitempty"`
	// SampleMs, RecvBytes and SendBytes are SRS's network counters
	// (srs_sample_time, srs_recv_bytes, srs_send_bytes).
	SampleMs  int64 `json:"sample_ms,omitempty"`
	RecvBytes int64 `json:"recv_bytes,omitempty"`
	SendBytes int64 `json:"send_bytes,omitempty"`
	// RecvKbps and SendKbps are computed by the state machine from two
	// consecutive samples (0 until there are two).
	RecvKbps int64 `json:"recv_kbps,omitempty"`
	SendKbps int64 `json:"send_kbps,omitempty"`
}

// Valid reports whether every figure of the load is within its bounds.
func (l Load) Valid() bool {
	return l.CPUPermille >= 0 && l.CPUPermille <= MaxPermille &&
		l.SelfCPUPermille >= 0 && l.SelfCPUPermille <= 64*MaxPermille &&
		l.Conns >= 0 && l.SampleMs >= 0 && l.RecvBytes >= 0 && l.SendBytes >= 0 &&
		l.RecvKbps >= 0 && l.SendKbps >= 0
}

// Endpoint returns the endpoint of the origin for a protocol name ("rtmp",
// "http", "api", "srt", "rtc"), or "" when it has none.
func (o Origin) Endpoint(proto string) string {
	switch proto {
	case "rtmp":
		return o.RTMP
	case "http":
		return o.HTTP
	case "api":
		return o.API
	case "srt":
		return o.SRT
	case "rtc":
		return o.RTC
	}
	return ""
}

// Candidate is an origin as the selection policy sees it.
type Candidate struct {
	ID       string
	Healthy  bool
	Draining bool
	// Streams is the number of streams assigned to the origin.
	Streams int
	// MaxStreams and Weight are the origin's (Origin.MaxStreams, Weight).
	MaxStreams int
	Weight     int
	// CPUPermille is the origin's last reported CPU use (Load).
	CPUPermille int
}

// ErrNoOrigin means no origin is healthy and accepting new streams.
var ErrNoOrigin = errors.New("stream: no healthy origin")

// ErrOriginsFull means every healthy origin that takes new streams is at its
// MaxStreams. It matches ErrNoOrigin under errors.Is, so that callers that
// only know ErrNoOrigin still refuse the client.
var ErrOriginsFull error = originsFull{}

type originsFull struct{}

func (originsFull) Error() string        { return "stream: every origin is at its max_streams" }
func (originsFull) Is(target error) bool { return target == ErrNoOrigin }

// Usable reports whether new streams may be assigned to the candidate.
func (c Candidate) Usable() bool { return c.Healthy && !c.Draining }

// Full reports whether the candidate is at its MaxStreams.
func (c Candidate) Full() bool { return c.MaxStreams > 0 && c.Streams >= c.MaxStreams }

// Cost is the candidate's placement cost: (Streams+1) scaled up by its CPU
// use (1x idle, 2x at 100%) and divided by its Weight. Integer arithmetic
// only, so that every replica computes the same figure on every platform.
func (c Candidate) Cost() uint64 {
	w := uint64(max(c.Weight, 1))
	cpu := uint64(min(max(c.CPUPermille, 0), MaxPermille))
	return uint64(max(c.Streams, 0)+1) * (MaxPermille + cpu) * MaxWeight / w
}

// Select picks the origin for a new stream: among healthy, non-draining
// candidates below their MaxStreams, the one with the lowest Cost (with no
// load reported and no weights: the fewest assigned streams); ties are broken
// by the highest rendezvous hash of (key, origin id), so that the choice is
// spread across origins and identical on every replica. The result depends
// only on the arguments (not on their order). It fails with ErrOriginsFull
// when usable origins exist but all are full, else with ErrNoOrigin when
// none is usable.
func Select(key Key, candidates []Candidate) (string, error) {
	best := -1
	var bestHash, bestCost uint64
	full := false
	for i, c := range candidates {
		if !c.Usable() {
			continue
		}
		if c.Full() {
			full = true
			continue
		}
		h, cost := RendezvousHash(key, c.ID), c.Cost()
		if best < 0 || cost < bestCost ||
			(cost == bestCost && (h > bestHash || (h == bestHash && c.ID < candidates[best].ID))) {
			best, bestHash, bestCost = i, h, cost
		}
	}
	switch {
	case best >= 0:
		return candidates[best].ID, nil
	case full:
		return "", ErrOriginsFull
	}
	return "", ErrNoOrigin
}

// SelectByHash picks among candidates by rendezvous hash alone, ignoring load
// (full origins are still skipped, as Select does). It is the degraded choice
// a node makes without quorum: every node that sees the same healthy origins
// makes the same choice without talking to others.
func SelectByHash(key Key, candidates []Candidate) (string, error) {
	ids := make([]string, 0, len(candidates))
	full := false
	for _, c := range candidates {
		switch {
		case c.Usable() && c.Full():
			full = true
		case c.Usable():
			ids = append(ids, c.ID)
		}
	}
	if len(ids) == 0 && full {
		return "", ErrOriginsFull
	}
	if len(ids) == 0 {
		return "", ErrNoOrigin
	}
	sort.Strings(ids)
	best, bestHash := ids[0], RendezvousHash(key, ids[0])
	for _, id := range ids[1:] {
		if h := RendezvousHash(key, id); h > bestHash {
			best, bestHash = id, h
		}
	}
	return best, nil
}

// RendezvousHash is the highest-random-weight hash of a key and an origin id.
func RendezvousHash(key Key, originID string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key.Vhost))
	h.Write([]byte{0})
	h.Write([]byte(key.App))
	h.Write([]byte{0})
	h.Write([]byte(key.Stream))
	h.Write([]byte{0})
	h.Write([]byte(originID))
	// FNV's low bits mix poorly for short inputs; finish with a 64-bit mixer.
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
