// Package activity records how one node of the mesh uses its streams: the
// stream keys it routed since it last reported them, its live client
// sessions per key and protocol, and, for sessions whose protocol counts
// their bytes, each stream's bit rates from and to clients. The node reports the keys to the mesh
// periodically, so that the assignments of streams in use are not
// garbage-collected; the session counts are the node's answer to
// GET /mesh/v1/local/sessions.
package activity

import (
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxPendingKeys bounds the keys Used records between two Takes (keys with
// live sessions are reported whatever the bound).
const maxPendingKeys = 1 << 17

// maxProtoBytes bounds a protocol label.
const maxProtoBytes = 32

// Recorder holds one node's activity. Its methods are safe for concurrent
// use. Make one with New.
type Recorder struct {
	mu   sync.Mutex
	keys map[string]struct{}
	live map[string]map[string]int
	// classes counts the live sessions of all keys by protocol and kind.
	classes map[Class]int

	// meters are the byte counters of live metered sessions, per key;
	// ended holds the final counts of the sessions that ended since the
	// last SampleRates, so that their last bytes are not lost. Both are
	// bounded by the live sessions (and those ended within one interval).
	meters map[string]map[*meter]struct{}
	ended  map[string]totals
	// prev are the totals per key at the last SampleRates; rates what it
	// computed.
	prev   map[string]totals
	prevAt time.Time
	rates  map[string]Rate
}

// meter is one session's byte counters, owned by its protocol server.
type meter struct{ in, out *atomic.Uint64 }

type totals struct{ in, out uint64 }

// Rate is a stream's bit rate on one node over the last sample interval:
// In from clients (publishers' ingest), Out to clients (players' egress).
type Rate struct {
	InBps, OutBps float64
}

// New returns an empty Recorder.
func New() *Recorder {
	return &Recorder{keys: map[string]struct{}{}, live: map[string]map[string]int{}, classes: map[Class]int{},
		meters: map[string]map[*meter]struct{}{}, ended: map[string]totals{}, prev: map[string]totals{},
		rates: map[string]Rate{}}
}

// Used records that key was used (routed) since the last Take.
func (r *Recorder) Used(key string) {
	r.mu.Lock()
	if len(r.keys) < maxPendingKeys {
		r.keys[key] = struct{}{}
	}
	r.mu.Unlock()
}

// Class is a protocol and a kind of session ("rtmp" and "play"), the
// labels under which Classes counts live sessions.
type Class struct {
	Proto, Kind string
}

// Begin records a live session of protocol proto and kind kind (such as
// "publish" or "play"; empty for a session that is not a client) on key
// until the returned end func is called; end is idempotent. proto and kind
// are lower-cased and cut to 32 bytes; an empty proto counts as "other".
func (r *Recorder) Begin(key, proto, kind string) (end func()) {
	c := Class{Proto: normProto(proto), Kind: normKind(kind)}
	r.mu.Lock()
	m := r.live[key]
	if m == nil {
		m = map[string]int{}
		r.live[key] = m
	}
	m[c.Proto]++
	r.classes[c]++
	r.keys[key] = struct{}{}
	r.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { r.end(key, c) }) }
}

// BeginMetered is Begin for a session whose protocol server counts the bytes
// it reads from the client in in and writes to the client in out (both only
// ever grow). SampleRates reads them while the session lasts, and once more
// when it has ended.
func (r *Recorder) BeginMetered(key, proto, kind string, in, out *atomic.Uint64) (end func()) {
	endSession := r.Begin(key, proto, kind)
	m := &meter{in: in, out: out}
	r.mu.Lock()
	ms := r.meters[key]
	if ms == nil {
		ms = map[*meter]struct{}{}
		r.meters[key] = ms
	}
	ms[m] = struct{}{}
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			if ms := r.meters[key]; ms != nil {
				if _, ok := ms[m]; ok {
					delete(ms, m)
					t := r.ended[key]
					t.in += m.in.Load()
					t.out += m.out.Load()
					r.ended[key] = t
				}
				if len(ms) == 0 {
					delete(r.meters, key)
				}
			}
			r.mu.Unlock()
			endSession()
		})
	}
}

// SampleRates computes each stream's bit rates since the previous call, for
// Rates. A stream's first call only sets its baseline. Streams without
// metered sessions are forgotten.
func (r *Recorder) SampleRates(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := make(map[string]totals, len(r.meters)+len(r.ended))
	for k, t := range r.ended {
		cur[k] = t
	}
	for k, ms := range r.meters {
		t := cur[k]
		for m := range ms {
			t.in += m.in.Load()
			t.out += m.out.Load()
		}
		cur[k] = t
	}
	secs := now.Sub(r.prevAt).Seconds()
	rates := make(map[string]Rate, len(r.meters))
	for k := range r.meters {
		p, ok := r.prev[k]
		if !ok || secs <= 0 {
			continue
		}
		c := cur[k]
		var rt Rate
		if c.in >= p.in {
			rt.InBps = 8 * float64(c.in-p.in) / secs
		}
		if c.out >= p.out {
			rt.OutBps = 8 * float64(c.out-p.out) / secs
		}
		rates[k] = rt
	}
	// The next interval starts from the live sessions' counts: a stream
	// keeps its ended sessions' bytes only while it has live ones.
	next := make(map[string]totals, len(r.meters))
	for k := range r.meters {
		next[k] = cur[k]
	}
	for k := range r.ended {
		if _, live := r.meters[k]; !live {
			delete(r.ended, k)
		}
	}
	r.prev, r.prevAt, r.rates = next, now, rates
}

// Rates returns the bit rates of the streams with metered sessions, as the
// last SampleRates computed them.
func (r *Recorder) Rates() map[string]Rate {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.rates)
}

func (r *Recorder) end(key string, c Class) {
	r.mu.Lock()
	if m := r.live[key]; m != nil {
		if m[c.Proto] <= 1 {
			delete(m, c.Proto)
		} else {
			m[c.Proto]--
		}
		if len(m) == 0 {
			delete(r.live, key)
		}
	}
	if r.classes[c] <= 1 {
		delete(r.classes, c)
	} else {
		r.classes[c]--
	}
	r.mu.Unlock()
}

// normProto bounds a protocol label.
func normProto(p string) string {
	if p == "" {
		return "other"
	}
	return normKind(p)
}

// normKind bounds a kind label.
func normKind(k string) string {
	if len(k) > maxProtoBytes {
		k = k[:maxProtoBytes]
	}
	return strings.ToLower(k)
}

// Classes returns the live sessions of all keys, counted by protocol and
// kind. A class without live sessions is absent.
func (r *Recorder) Classes() map[Class]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.classes)
}

// Sessions copies the live session counts, by key and then protocol. A key
// without live sessions is absent.
func (r *Recorder) Sessions() map[string]map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]map[string]int, len(r.live))
	for k, m := range r.live {
		out[k] = maps.Clone(m)
	}
	return out
}

// Take returns, each once and in no particular order, the keys used since the
// last Take and the keys with live sessions, and forgets the former.
func (r *Recorder) Take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.keys)+len(r.live))
	for k := range r.keys {
		out = append(out, k)
	}
	for k := range r.live {
		if _, dup := r.keys[k]; !dup {
			out = append(out, k)
		}
	}
	clear(r.keys)
	return out
}
