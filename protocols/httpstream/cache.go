package httpstream

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The node's caches. A node keeps two tables of origin answers in memory:
//
//   - documents (playlists and MPDs, as the origin sent them, before
//     rewriting), keyed by origin, origin path and the client's query, for
//     a short TTL (see Config.PlaylistCacheTTL);
//   - segments (everything served through proxyFile: segments, init
//     sections, keys), keyed by origin and origin path, for
//     Config.SegmentMaxAge, within Config.CacheBytes.
//
// Only complete 200 answers are stored. Concurrent misses for one key make
// one origin request, whose answer every waiting client gets (stored or
// not). Both tables are bounded by bytes and by entries, the least recently
// used entry going first; the table of fetches in flight holds one entry per
// key being fetched and loses it when the fetch ends, and is bounded too
// (maxFlights, maxFlightKeyBytes): a request that finds it full is relayed
// on its own, as for errBusy.

// Bounds of the caches.
const (
	// DefaultCacheBytes is the default of Config.CacheBytes.
	DefaultCacheBytes = 256 << 20
	// MaxCacheObject is the largest body the segment cache stores; an
	// object may also take at most half of Config.CacheBytes. Larger
	// answers are relayed uncached.
	MaxCacheObject = 32 << 20
	// maxCacheEntries bounds the entries of the segment cache, whatever
	// their size.
	maxCacheEntries = 65536
	// Bounds of the document cache. Each viewer of an SRS origin has a
	// query of its own (hls_ctx), so documents are many and short-lived.
	maxDocCacheBytes   = 16 << 20
	maxDocCacheEntries = 4096
	// maxDocumentTTL caps the TTL derived from a document.
	maxDocumentTTL = 30 * time.Second
	// fetchTimeout bounds a fetch that clients share: connecting, the
	// origin's headers and its whole body.
	fetchTimeout = 30 * time.Second
	// entryOverhead is what an entry counts against a byte bound beyond its
	// body, key and headers: the list element, the map slot, the object.
	entryOverhead = 256
	// Bounds of the table of fetches in flight of each cache: its entries
	// and the bytes of their keys (a document's key holds the client's
	// query) with entryOverhead each.
	maxFlights        = 4096
	maxFlightKeyBytes = 16 << 20
)

// Errors of fetchObject.
var (
	// errUnreachable: no answer from the origin.
	errUnreachable = errors.New("origin unreachable")
	// errTruncated: the origin's body ended early or did not arrive in
	// time.
	errTruncated = errors.New("origin closed the answer early")
	// errNotBuffered: the answer is not held in memory (errTooLarge,
	// errBusy). Every client then asks the origin on its own.
	errNotBuffered = errors.New("answer not buffered")
	// errTooLarge: the answer is larger than the cache stores. The key is
	// remembered as such (see object.relay) for the fetch's TTL.
	errTooLarge = fmt.Errorf("%w: larger than the cache stores", errNotBuffered)
	// errBusy: the memory for answers being fetched is used up.
	errBusy = fmt.Errorf("%w: memory for fetches in flight used up", errNotBuffered)
)

// object is an origin's answer held in memory. It is never modified once
// made, so any number of requests may serve it at once.
type object struct {
	status  int
	header  http.Header // the origin's response headers
	body    []byte
	modTime time.Time // the origin's Last-Modified; zero when absent or unreadable
	// relay marks a key whose answer was too large to store: requests for
	// it go to the origin at once instead of through a fetch that would be
	// thrown away.
	relay bool
}

// size is what o counts against a byte bound under key.
func (o *object) size(key string) int64 {
	n := int64(len(o.body) + len(key) + entryOverhead)
	for k, vv := range o.header {
		n += int64(len(k))
		for _, v := range vv {
			n += int64(len(v)) + 16
		}
	}
	return n
}

// CacheStats are the counters of one cache. Every request that reaches a
// cache counts once: as a hit (answered from a stored object), a miss (it
// made an origin request of its own) or coalesced (it was answered by an
// origin request that another request had made).
type CacheStats struct {
	Hits      uint64
	Misses    uint64
	Coalesced uint64
	// Bytes and Entries are what the cache holds now; Bytes counts bodies,
	// headers and bookkeeping. A key whose answer was too large to store
	// holds an entry (with no body) that sends its requests to the origin.
	Bytes   int64
	Entries int
}

// Stats are a Server's counters.
type Stats struct {
	// Segments is the cache of segments, init sections and keys
	// (Config.CacheBytes); zero when it is disabled.
	Segments CacheStats
	// Documents is the cache of playlists and MPDs
	// (Config.PlaylistCacheTTL); zero when it is disabled.
	Documents CacheStats
	// FanOut has the counters of HTTP-FLV fan-out; zero when it is off.
	FanOut FanOutStats
	// MovedSessions is the map of new SRS sessions of players of moved
	// streams (see sessionMap): its entries and bytes.
	MovedSessions TableStats
	// Holds is the table of documents held while their stream moves (see
	// holdTable): its entries and bytes.
	Holds TableStats
	// Viewers is the estimate of HLS and DASH viewers (see
	// Config.ViewerWindow) and the size of its table.
	Viewers ViewerStats
}

// TableStats are the size of a table fed by client requests: its entries
// and the bytes it counts against its bound.
type TableStats struct {
	Entries int
	Bytes   int64
}

// Stats returns the server's counters. It is cheap enough for every
// metrics scrape.
func (s *Server) Stats() Stats {
	st := Stats{Segments: s.segments.stats(), Documents: s.docs.stats(), FanOut: s.fanOutStats()}
	st.MovedSessions.Entries, st.MovedSessions.Bytes = s.moved.stats()
	st.Holds.Entries, st.Holds.Bytes = s.holds.stats()
	st.Viewers = s.viewers.stats()
	return st
}

// objectCache is an LRU of objects bounded by bytes and entries, each
// entry with an expiry, plus the table of fetches in flight that coalesces
// concurrent misses. Memory buffered by fetches in flight is bounded by
// maxBytes too. A nil *objectCache is a disabled cache. It is safe for
// concurrent use.
type objectCache struct {
	maxBytes   int64
	maxEntries int
	maxObject  int64 // largest body fetched into the cache
	now        func() time.Time

	mu       sync.Mutex
	lru      list.List // of *cacheEntry, most recently used first
	entries  map[string]*list.Element
	bytes    int64
	flights  map[string]*flight
	flightB  int64 // bytes of the flights' keys, with entryOverhead each
	inflight int64 // body bytes buffered by fetches in flight

	hits, misses, coalesced atomic.Uint64
}

type cacheEntry struct {
	key     string
	obj     *object
	size    int64
	expires time.Time
}

// flight is a fetch in flight. obj and err are set before done is closed.
type flight struct {
	done chan struct{}
	obj  *object
	err  error
}

// newObjectCache returns a cache of at most maxBytes and maxEntries that
// fetches bodies of at most maxObject bytes and half of maxBytes (so that
// one object never flushes the whole cache), or nil (disabled) when
// maxBytes is not positive.
func newObjectCache(maxBytes int64, maxEntries int, maxObject int64, now func() time.Time) *objectCache {
	if maxBytes <= 0 {
		return nil
	}
	return &objectCache{
		maxBytes:   maxBytes,
		maxEntries: maxEntries,
		maxObject:  min(maxObject, maxBytes/2),
		now:        now,
		entries:    make(map[string]*list.Element),
		flights:    make(map[string]*flight),
	}
}

func (c *objectCache) stats() CacheStats {
	if c == nil {
		return CacheStats{}
	}
	c.mu.Lock()
	bytes, entries := c.bytes, c.lru.Len()
	c.mu.Unlock()
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Coalesced: c.coalesced.Load(), Bytes: bytes, Entries: entries}
}

// lookup returns key's stored object, counting a hit, or nil. It counts
// nothing on a miss.
func (c *objectCache) lookup(key string) *object {
	c.mu.Lock()
	defer c.mu.Unlock()
	obj := c.getLocked(key)
	if obj == nil || obj.relay {
		return nil
	}
	c.hits.Add(1)
	return obj
}

// getLocked returns key's object if stored and fresh (dropping it if
// expired) and marks it used.
func (c *objectCache) getLocked(key string) *object {
	el, ok := c.entries[key]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.removeLocked(el)
		return nil
	}
	c.lru.MoveToFront(el)
	return e.obj
}

// addLocked stores obj under key for ttl, replacing what key held, and
// evicts the least recently used entries (expired ones first from the
// tail) until both bounds hold. An object larger than the byte bound is
// not stored.
func (c *objectCache) addLocked(key string, obj *object, ttl time.Duration) {
	size := obj.size(key)
	if ttl <= 0 || size > c.maxBytes {
		return
	}
	if el, ok := c.entries[key]; ok {
		c.removeLocked(el)
	}
	now := c.now()
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, obj: obj, size: size, expires: now.Add(ttl)})
	c.bytes += size
	for el := c.lru.Back(); el != nil && !now.Before(el.Value.(*cacheEntry).expires); el = c.lru.Back() {
		c.removeLocked(el)
	}
	for c.bytes > c.maxBytes || c.lru.Len() > c.maxEntries {
		c.removeLocked(c.lru.Back())
	}
}

func (c *objectCache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.entries, e.key)
	c.bytes -= e.size
}

// join returns key's stored object (a hit), or the fetch in flight for key
// and whether the caller must start it (a miss: the caller leads) or only
// wait for it (coalesced), or neither and an error: errTooLarge for a key
// marked relay, errBusy when the table of fetches in flight is full (both
// misses). It counts the request.
func (c *objectCache) join(key string) (obj *object, f *flight, lead bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if obj := c.getLocked(key); obj != nil {
		if obj.relay {
			c.misses.Add(1)
			return nil, nil, false, errTooLarge
		}
		c.hits.Add(1)
		return obj, nil, false, nil
	}
	if f, ok := c.flights[key]; ok {
		c.coalesced.Add(1)
		return nil, f, false, nil
	}
	c.misses.Add(1)
	size := int64(len(key) + entryOverhead)
	if len(c.flights) >= maxFlights || c.flightB+size > maxFlightKeyBytes {
		return nil, nil, false, errBusy
	}
	f = &flight{done: make(chan struct{})}
	c.flights[key] = f
	c.flightB += size
	return nil, f, true, nil
}

// finish ends key's fetch f with its outcome: a 200 answer is stored for
// ttl (an answer too large to store is marked relay), the flight leaves
// the table, and its waiters are released.
func (c *objectCache) finish(key string, f *flight, obj *object, ttl time.Duration, err error) {
	f.obj, f.err = obj, err
	c.mu.Lock()
	switch {
	case err == nil && obj.status == http.StatusOK:
		c.addLocked(key, obj, ttl)
	case errors.Is(err, errTooLarge):
		c.addLocked(key, &object{relay: true}, ttl)
	}
	delete(c.flights, key)
	c.flightB -= int64(len(key) + entryOverhead)
	c.mu.Unlock()
	close(f.done)
}

// reserve takes n bytes of the memory for bodies being fetched, or reports
// that it is used up.
func (c *objectCache) reserve(n int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight+n > c.maxBytes {
		return false
	}
	c.inflight += n
	return true
}

func (c *objectCache) release(n int64) {
	c.mu.Lock()
	c.inflight -= n
	c.mu.Unlock()
}

// fetcher makes one shared origin request under ctx and returns the answer
// and how long a 200 answer may be stored.
type fetcher func(ctx context.Context) (*object, time.Duration, error)

// shared returns key's object from c: stored (a hit), from the fetch
// another request started (coalesced), or from a fetch this request starts
// (a miss). The fetch runs in a goroutine of its own, under the server's
// context and fetchTimeout rather than the request's, so a client that
// goes away stops waiting without ending the fetch for the others. shared
// returns ctx's error when ctx ends first, errTooLarge for a key marked
// relay, errBusy when the table of fetches in flight is full, and fetch's
// error otherwise.
func (s *Server) shared(ctx context.Context, c *objectCache, key string, fetch fetcher) (*object, error) {
	obj, f, lead, err := c.join(key)
	switch {
	case err != nil:
		return nil, err
	case obj != nil:
		return obj, nil
	}
	if lead {
		s.wg.Add(1) // the caller's request is counted, so Close has not returned
		go func() {
			defer s.wg.Done()
			fctx, cancel := context.WithTimeout(s.ctx, s.fetchTimeout)
			defer cancel()
			obj, ttl, err := fetch(fctx)
			c.finish(key, f, obj, ttl, err)
		}()
	}
	select {
	case <-f.done:
		return f.obj, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetchObject sends a GET for origin path (escaped) and query with the
// headers hdr, and reads the whole answer into an object, within c's
// per-object bound (errTooLarge beyond it) and its memory for fetches in
// flight (errBusy). It fails with errUnreachable when no answer comes and
// errTruncated when the body breaks off.
func (s *Server) fetchObject(ctx context.Context, c *objectCache, hdr http.Header, origin, path, query string) (*object, error) {
	out, err := http.NewRequestWithContext(ctx, http.MethodGet, originURL(origin, path, query), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnreachable, err)
	}
	out.Header = hdr
	resp, err := s.transport.RoundTrip(out)
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("origin unreachable", "origin", origin, "path", path, "err", err)
		}
		return nil, fmt.Errorf("%w: %v", errUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > c.maxObject {
		return nil, errTooLarge
	}
	body, err := c.readBody(resp.Body, resp.ContentLength)
	if err != nil {
		return nil, err
	}
	obj := &object{status: resp.StatusCode, header: resp.Header, body: body}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		obj.modTime, _ = http.ParseTime(lm)
	}
	return obj, nil
}

// readChunk is how much readBody reserves at a time when the length is
// unknown.
const readChunk = 64 << 10

// readBody reads r, of length n (-1: unknown), within c.maxObject and the
// memory for fetches in flight, which it holds only while reading.
func (c *objectCache) readBody(r io.Reader, n int64) ([]byte, error) {
	var held int64
	defer func() { c.release(held) }()
	grow := func(by int64) bool {
		if !c.reserve(by) {
			return false
		}
		held += by
		return true
	}
	if n >= 0 {
		if !grow(n) {
			return nil, errBusy
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, fmt.Errorf("%w: %v", errTruncated, err)
		}
		return body, nil
	}
	// Unknown length: double the buffer (and the reservation) as it fills.
	var body []byte
	for {
		if len(body) == cap(body) {
			by := min(max(readChunk, held), c.maxObject+1-held)
			if by <= 0 {
				return nil, errTooLarge
			}
			if !grow(by) {
				return nil, errBusy
			}
			next := make([]byte, len(body), held)
			copy(next, body)
			body = next
		}
		m, err := r.Read(body[len(body):cap(body)])
		body = body[:len(body)+m]
		if err == io.EOF {
			if int64(len(body)) > c.maxObject {
				return nil, errTooLarge
			}
			// The cache counts len(body): give back the unused capacity.
			exact := make([]byte, len(body))
			copy(exact, body)
			return exact, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errTruncated, err)
		}
	}
}
