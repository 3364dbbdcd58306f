package httpstream

import (
	"container/list"
	"hash/maphash"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// HLS and DASH players hold no connection the node could count: each
// fetches a playlist or MPD and its segments, request by request, from any
// node. viewerTable estimates them: a viewer is a distinct pair of client
// address and User-Agent that fetched a document or segment of the
// protocol from this node within the last window. Players behind one NAT
// with the same User-Agent count once, and a viewer that left counts until
// the window passes, so the figure is an estimate, exported as such
// (Stats.Viewers) and never added to the count of clients.
//
// The table is fed by client requests, so it is bounded in entries
// (maxViewers) and in bytes: a viewer is kept as a 64-bit hash of its
// address and User-Agent, never as the strings the client chose, so every
// entry has the same size (viewerEntryBytes). When the table is full, the
// viewer seen least recently makes room.

// DefaultViewerWindow is how long a viewer counts after its last request:
// longer than the target duration of common live playlists (SRS and
// nginx-rtmp default to 10 s and 5 s fragments), so that a player that
// refreshes its playlist once per target duration stays counted.
const DefaultViewerWindow = 30 * time.Second

// maxViewers bounds the entries of a node's viewer table.
const maxViewers = 1 << 16

// viewerEntryBytes is what one viewer costs, counted against the table's
// bound: the hash, the protocol, the time of the last request and the list
// element and map slot that hold them.
const viewerEntryBytes = 128

// Protocols a viewer is counted under.
const (
	viewerHLS = iota
	viewerDASH
)

// ViewerStats is the estimate of HLS and DASH viewers (see viewerTable)
// and the size of the table behind it.
type ViewerStats struct {
	// HLS and DASH are the distinct viewers that fetched a playlist or
	// segment of the protocol within the window.
	HLS, DASH int
	TableStats
}

type viewerID struct {
	hash  uint64
	proto uint8
}

type viewerEntry struct {
	id   viewerID
	seen time.Time
}

// viewerTable is a bounded set of recent viewers, most recent first. The
// zero value is not usable; the Server sets seed, window, max and now.
type viewerTable struct {
	seed   maphash.Seed
	window time.Duration
	max    int
	now    func() time.Time

	mu  sync.Mutex
	lru list.List // of *viewerEntry, most recently seen first
	m   map[viewerID]*list.Element
}

func newViewerTable(window time.Duration, maxEntries int, now func() time.Time) *viewerTable {
	return &viewerTable{seed: maphash.MakeSeed(), window: window, max: maxEntries, now: now,
		m: map[viewerID]*list.Element{}}
}

// note records that r's client fetched something of proto (viewerHLS,
// viewerDASH).
func (v *viewerTable) note(proto uint8, r *http.Request) {
	var h maphash.Hash
	h.SetSeed(v.seed)
	// The address without its port: a player opens new connections.
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		ip := ap.Addr().Unmap().As16()
		h.Write(ip[:])
	} else {
		h.WriteString(peerIP(r.RemoteAddr))
		h.WriteByte(0)
	}
	h.WriteString(r.UserAgent())
	id := viewerID{hash: h.Sum64(), proto: proto}
	now := v.now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.m[id]; ok {
		e.Value.(*viewerEntry).seen = now
		v.lru.MoveToFront(e)
		return
	}
	for v.lru.Len() >= v.max {
		oldest := v.lru.Back()
		delete(v.m, oldest.Value.(*viewerEntry).id)
		v.lru.Remove(oldest)
	}
	v.m[id] = v.lru.PushFront(&viewerEntry{id: id, seen: now})
}

// stats forgets the viewers older than the window and counts the others.
func (v *viewerTable) stats() ViewerStats {
	cut := v.now().Add(-v.window)
	v.mu.Lock()
	defer v.mu.Unlock()
	for e := v.lru.Back(); e != nil; e = v.lru.Back() {
		ve := e.Value.(*viewerEntry)
		if ve.seen.After(cut) {
			break
		}
		delete(v.m, ve.id)
		v.lru.Remove(e)
	}
	var st ViewerStats
	for _, e := range v.m {
		switch e.Value.(*viewerEntry).id.proto {
		case viewerHLS:
			st.HLS++
		case viewerDASH:
			st.DASH++
		}
	}
	st.Entries = v.lru.Len()
	st.Bytes = int64(st.Entries) * viewerEntryBytes
	return st
}
