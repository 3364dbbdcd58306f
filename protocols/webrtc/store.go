package webrtc

import (
	"context"
	"sync"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
)

// SessionStore replicates ICE sessions across the mesh, so that a UDP flow that
// reaches another node than the HTTP offer still finds its origin. Sessions are
// keyed by stream.RTCSession.Ufrag ("answerUfrag:offerUfrag").
type SessionStore interface {
	// PutRTCSession stores s (replacing a session with the same Ufrag) and
	// returns once the session is visible to this node's LookupRTCSession.
	PutRTCSession(ctx context.Context, s stream.RTCSession) error
	// LookupRTCSession reads the local copy; it must not touch the network,
	// because the relay calls it on the first packet of a flow.
	LookupRTCSession(ufrag string) (stream.RTCSession, bool)
	// DeleteRTCSession removes the session; deleting an absent one is not an
	// error.
	DeleteRTCSession(ctx context.Context, ufrag string) error
}

// SessionActivity keeps track of which sessions carry media
// (Config.Activity; srs-mesh's mesh does: its full session table evicts
// idle sessions first and never one carried recently, and it expires
// sessions by their last activity). The relay calls TouchRTCSessions from its
// sweep, every Config.SweepInterval, with the ufrags of the sessions that
// carried a packet, either way, since its previous call. It must not block
// on the network.
type SessionActivity interface {
	TouchRTCSessions(ufrags []string)
}

// MemorySessionStore is a SessionStore held in memory. Several Servers in one
// process may share one to behave as the nodes of a mesh; a single node uses
// one on its own.
type MemorySessionStore struct {
	mu sync.RWMutex
	m  map[string]stream.RTCSession
}

var (
	_ SessionStore    = (*MemorySessionStore)(nil)
	_ SessionActivity = (*MemorySessionStore)(nil)
)

// NewMemorySessionStore returns an empty store.
func NewMemorySessionStore() *MemorySessionStore {
	return &MemorySessionStore{m: make(map[string]stream.RTCSession)}
}

// PutRTCSession implements SessionStore.
func (m *MemorySessionStore) PutRTCSession(_ context.Context, s stream.RTCSession) error {
	m.mu.Lock()
	m.m[s.Ufrag] = s
	m.mu.Unlock()
	return nil
}

// LookupRTCSession implements SessionStore.
func (m *MemorySessionStore) LookupRTCSession(ufrag string) (stream.RTCSession, bool) {
	m.mu.RLock()
	s, ok := m.m[ufrag]
	m.mu.RUnlock()
	return s, ok
}

// DeleteRTCSession implements SessionStore.
func (m *MemorySessionStore) DeleteRTCSession(_ context.Context, ufrag string) error {
	m.mu.Lock()
	delete(m.m, ufrag)
	m.mu.Unlock()
	return nil
}

// TouchRTCSessions implements SessionActivity: the stored sessions named by
// ufrags get LastActiveUnixMs set to the current time.
func (m *MemorySessionStore) TouchRTCSessions(ufrags []string) {
	now := time.Now().UnixMilli()
	m.mu.Lock()
	for _, u := range ufrags {
		if s, ok := m.m[u]; ok && now > s.LastActiveUnixMs {
			s.LastActiveUnixMs = now
			m.m[u] = s
		}
	}
	m.mu.Unlock()
}

// Len is the number of stored sessions.
func (m *MemorySessionStore) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.m)
}

// DeleteOlderThan removes sessions last seen (created, or carried by a relay:
// stream.RTCSession.LastSeenUnixMs) before unixMs and returns how many it
// removed. It is the garbage collection a single node runs for sessions
// whose client stopped sending media without a DELETE.
func (m *MemorySessionStore) DeleteOlderThan(unixMs int64) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, s := range m.m {
		if s.LastSeenUnixMs() < unixMs {
			delete(m.m, k)
			n++
		}
	}
	return n
}
