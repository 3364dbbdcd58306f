// Package activity records how one node of the mesh uses its streams: the
// stream keys it routed since it last reported them, and its live client
// sessions per key and protocol. The node reports the keys to the mesh
// periodically, so that the assignments of streams in use are not
// garbage-collected; the session counts are the node's answer to
// GET /mesh/v1/local/sessions.
package activity

import (
	"maps"
	"strings"
	"sync"
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
}

// New returns an empty Recorder.
func New() *Recorder {
	return &Recorder{keys: map[string]struct{}{}, live: map[string]map[string]int{}}
}

// Used records that key was used (routed) since the last Take.
func (r *Recorder) Used(key string) {
	r.mu.Lock()
	if len(r.keys) < maxPendingKeys {
		r.keys[key] = struct{}{}
	}
	r.mu.Unlock()
}

// Begin records a live session of protocol proto on key until the returned
// end func is called; end is idempotent. proto is lower-cased and cut to 32
// bytes; an empty one counts as "other".
func (r *Recorder) Begin(key, proto string) (end func()) {
	proto = normProto(proto)
	r.mu.Lock()
	m := r.live[key]
	if m == nil {
		m = map[string]int{}
		r.live[key] = m
	}
	m[proto]++
	r.keys[key] = struct{}{}
	r.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { r.end(key, proto) }) }
}

func (r *Recorder) end(key, proto string) {
	r.mu.Lock()
	if m := r.live[key]; m != nil {
		if m[proto] <= 1 {
			delete(m, proto)
		} else {
			m[proto]--
		}
		if len(m) == 0 {
			delete(r.live, key)
		}
	}
	r.mu.Unlock()
}

// normProto bounds a protocol label.
func normProto(p string) string {
	if p == "" {
		return "other"
	}
	if len(p) > maxProtoBytes {
		p = p[:maxProtoBytes]
	}
	return strings.ToLower(p)
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
