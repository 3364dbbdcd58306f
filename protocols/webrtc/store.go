package webrtc

import (
	"context"
	"sync"
)

// RTCSession is one ICE session as the mesh replicates it: enough for any node
// to relay the session's UDP flow to its origin and to end it.
type RTCSession struct {
	// Ufrag is the session key: the ICE username the client puts in its STUN
	// Binding requests, "answerUfrag:offerUfrag" (the origin's ufrag first).
	Ufrag string
	// OriginID is the id of the origin that answered.
	OriginID string
	// OriginRTC is the origin's WebRTC UDP endpoint, "host:port".
	OriginRTC string
	// Key is the stream key, stream.Key.String().
	Key string
	// Resource is the absolute URL of the origin's WHIP/WHEP resource (its
	// Location resolved against the origin's API address), the target of a
	// DELETE. Empty for SRS's JSON API, which has no resource.
	Resource string
	// Pwd is the origin's ICE password (the answer's a=ice-pwd), the key of
	// the MESSAGE-INTEGRITY of the client's Binding requests. The relay maps
	// a client address to the session only after checking it. Empty when
	// the answer had none or the session was stored by a node that predates
	// the field; such a session is relayed without the check. It is a
	// secret: never log it.
	Pwd string
	// CreatedUnixMs is when the offer was answered, for garbage collection.
	CreatedUnixMs int64
}

// SessionStore replicates ICE sessions across the mesh, so that a UDP flow that
// reaches another node than the HTTP offer still finds its origin. Sessions are
// keyed by RTCSession.Ufrag ("answerUfrag:offerUfrag").
type SessionStore interface {
	// PutRTCSession stores s (replacing a session with the same Ufrag) and
	// returns once the session is visible to this node's LookupRTCSession.
	PutRTCSession(ctx context.Context, s RTCSession) error
	// LookupRTCSession reads the local copy; it must not touch the network,
	// because the relay calls it on the first packet of a flow.
	LookupRTCSession(ufrag string) (RTCSession, bool)
	// DeleteRTCSession removes the session; deleting an absent one is not an
	// error.
	DeleteRTCSession(ctx context.Context, ufrag string) error
}

// MemorySessionStore is a SessionStore held in memory. Several Servers in one
// process may share one to behave as the nodes of a mesh; a single node uses
// one on its own.
type MemorySessionStore struct {
	mu sync.RWMutex
	m  map[string]RTCSession
}

var _ SessionStore = (*MemorySessionStore)(nil)

// NewMemorySessionStore returns an empty store.
func NewMemorySessionStore() *MemorySessionStore {
	return &MemorySessionStore{m: make(map[string]RTCSession)}
}

// PutRTCSession implements SessionStore.
func (m *MemorySessionStore) PutRTCSession(_ context.Context, s RTCSession) error {
	m.mu.Lock()
	m.m[s.Ufrag] = s
	m.mu.Unlock()
	return nil
}

// LookupRTCSession implements SessionStore.
func (m *MemorySessionStore) LookupRTCSession(ufrag string) (RTCSession, bool) {
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

// Len is the number of stored sessions.
func (m *MemorySessionStore) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.m)
}

// DeleteOlderThan removes sessions created before unixMs and returns how many
// it removed. It is the garbage collection a single node runs for sessions
// whose client never sent media and never sent DELETE.
func (m *MemorySessionStore) DeleteOlderThan(unixMs int64) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, s := range m.m {
		if s.CreatedUnixMs < unixMs {
			delete(m.m, k)
			n++
		}
	}
	return n
}
