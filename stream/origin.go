package stream

import (
	"errors"
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
}

// ErrNoOrigin means no origin is healthy and accepting new streams.
var ErrNoOrigin = errors.New("stream: no healthy origin")

// Usable reports whether new streams may be assigned to the candidate.
func (c Candidate) Usable() bool { return c.Healthy && !c.Draining }

// Select picks the origin for a new stream: among healthy, non-draining
// candidates, the one with the fewest assigned streams; ties are broken by the
// highest rendezvous hash of (key, origin id), so that the choice is spread
// across origins and identical on every replica. The result depends only on
// the arguments (not on their order).
func Select(key Key, candidates []Candidate) (string, error) {
	best := -1
	var bestHash uint64
	for i, c := range candidates {
		if !c.Usable() {
			continue
		}
		h := RendezvousHash(key, c.ID)
		if best < 0 ||
			c.Streams < candidates[best].Streams ||
			(c.Streams == candidates[best].Streams && (h > bestHash || (h == bestHash && c.ID < candidates[best].ID))) {
			best, bestHash = i, h
		}
	}
	if best < 0 {
		return "", ErrNoOrigin
	}
	return candidates[best].ID, nil
}

// SelectByHash picks among candidates by rendezvous hash alone, ignoring load.
// It is the degraded choice a node makes without quorum: every node that sees
// the same healthy origins makes the same choice without talking to others.
func SelectByHash(key Key, candidates []Candidate) (string, error) {
	ids := make([]string, 0, len(candidates))
	for _, c := range candidates {
		if c.Usable() {
			ids = append(ids, c.ID)
		}
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
