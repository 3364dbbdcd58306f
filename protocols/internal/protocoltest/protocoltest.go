// Package protocoltest holds the fakes the protocol servers' tests share: a
// stream.Router made of a function and a stream.Sessions that records the
// sessions it is told about. Only tests import it.
package protocoltest

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/srs-mesh/srs-mesh/stream"
)

// RouterFunc is a stream.Router made of one function, which answers Route
// and RoutePlay alike.
type RouterFunc func(ctx context.Context, key stream.Key) (stream.Origin, error)

// Route calls f.
func (f RouterFunc) Route(ctx context.Context, key stream.Key) (stream.Origin, error) {
	return f(ctx, key)
}

// RoutePlay calls f.
func (f RouterFunc) RoutePlay(ctx context.Context, key stream.Key) (stream.Origin, error) {
	return f(ctx, key)
}

var _ stream.Router = RouterFunc(nil)

// RouteTo returns a Router that routes every stream to o.
func RouteTo(o stream.Origin) RouterFunc {
	return func(context.Context, stream.Key) (stream.Origin, error) { return o, nil }
}

// Session is one session a Sessions was told about.
type Session struct {
	Key     stream.Key
	Proto   string
	Kind    string
	In, Out *atomic.Uint64 // as given to Track; nil when not metered
}

// Sessions is a stream.Sessions that records every session. The zero value
// is ready to use; it is safe for concurrent use.
type Sessions struct {
	mu       sync.Mutex
	live     map[string]int // by key and proto
	sessions []Session
	// Tracked, when not nil, receives every session as it starts; Track
	// blocks until it is received.
	Tracked chan Session
}

var _ stream.Sessions = (*Sessions)(nil)

func liveID(key stream.Key, proto string) string { return key.String() + " " + proto }

// Track records a session; the end it returns may be called any number of
// times.
func (s *Sessions) Track(key stream.Key, proto, kind string, in, out *atomic.Uint64) func() {
	ses := Session{Key: key, Proto: proto, Kind: kind, In: in, Out: out}
	id := liveID(key, proto)
	s.mu.Lock()
	if s.live == nil {
		s.live = map[string]int{}
	}
	s.live[id]++
	s.sessions = append(s.sessions, ses)
	s.mu.Unlock()
	if s.Tracked != nil {
		s.Tracked <- ses
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.live[id]--
			s.mu.Unlock()
		})
	}
}

// Count returns how many sessions of key and proto are live, and how many
// sessions of any stream were tracked in all.
func (s *Sessions) Count(key stream.Key, proto string) (live, total int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live[liveID(key, proto)], len(s.sessions)
}

// All returns the sessions tracked so far, in order.
func (s *Sessions) All() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Session(nil), s.sessions...)
}

// Bytes returns the counters of the last session tracked: bytes read from
// its client and written to it (0 for a nil counter).
func (s *Sessions) Bytes() (in, out uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessions) == 0 {
		return 0, 0
	}
	last := s.sessions[len(s.sessions)-1]
	return load(last.In), load(last.Out)
}

func load(c *atomic.Uint64) uint64 {
	if c == nil {
		return 0
	}
	return c.Load()
}
