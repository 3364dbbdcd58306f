package httpstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// requestCounter counts an origin's requests by path and keeps the
// headers of the last one.
type requestCounter struct {
	mu   sync.Mutex
	n    map[string]int
	last map[string]http.Header
}

func (c *requestCounter) count(p string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[p]
}

func (c *requestCounter) header(p string) http.Header {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last[p]
}

// countingOrigin serves h behind a counter of its requests.
func countingOrigin(t *testing.T, h http.HandlerFunc) (*httptest.Server, *requestCounter) {
	t.Helper()
	c := &requestCounter{n: map[string]int{}, last: map[string]http.Header{}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.n[r.URL.Path]++
		c.last[r.URL.Path] = r.Header.Clone()
		c.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts, c
}

// segBody is the content of a test segment: size bytes made from p.
func segBody(p string, size int) []byte {
	return bytes.Repeat([]byte(p+" "), size/(len(p)+1)+1)[:size]
}

// cachedProxy starts a Server for origin with cfg (Router, TokenSecret and
// Logger filled in) behind an httptest server, and a client of its own.
func cachedProxy(t *testing.T, origin string, cfg Config) (*Server, *httptest.Server, *http.Client) {
	t.Helper()
	cfg.Router = staticRouter(origin)
	cfg.TokenSecret = []byte("mesh-secret")
	cfg.Logger = quietLogger
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	tr := &http.Transport{MaxIdleConnsPerHost: 100}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		s.Close()
		ts.Close()
	})
	return s, ts, &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// segURL is the "/_hls/" URL of origin path p.
func segURL(t *testing.T, s *Server, origin, p string) string {
	t.Helper()
	tok, err := s.tokens.Encode(Token{Kind: TokenFile, Origin: origin, Path: p})
	if err != nil {
		t.Fatal(err)
	}
	return hlsPrefix + tok + p[strings.LastIndexByte(p, '/'):]
}

// do sends a request with headers h (name, value pairs) and returns the
// answer and its body.
func do(t *testing.T, c *http.Client, method, u string, h ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Set(h[i], h[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// inFlight is the number of c's fetches in flight.
func inFlight(c *objectCache) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.flights)
}

func wantStats(t *testing.T, got CacheStats, hits, misses, coalesced uint64, entries int) {
	t.Helper()
	if got.Hits != hits || got.Misses != misses || got.Coalesced != coalesced || got.Entries != entries {
		t.Fatalf("stats %+v, want %d hits, %d misses, %d coalesced, %d entries", got, hits, misses, coalesced, entries)
	}
}

// A segment is fetched once and then served from the cache, whatever the
// query; ranges, HEAD and conditional requests are answered from the
// stored object, and a range of an object not stored passes through. A
// body of unknown length (chunked) is stored as well.
func TestSegmentCacheHitMissRange(t *testing.T) {
	const size = 100_000 // more than readChunk
	modTime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	origin, cnt := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/mp2t")
		w.Header().Set("Etag", `"v1"`)
		if r.URL.Path == "/live/chunked.ts" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			w.Write(segBody(r.URL.Path, size))
			return
		}
		http.ServeContent(w, r, "", modTime, bytes.NewReader(segBody(r.URL.Path, size)))
	})
	s, proxy, client := cachedProxy(t, hostOf(origin), Config{})
	a := proxy.URL + segURL(t, s, hostOf(origin), "/live/a.ts")
	b := proxy.URL + segURL(t, s, hostOf(origin), "/live/b.ts")
	chunked := proxy.URL + segURL(t, s, hostOf(origin), "/live/chunked.ts")
	wantA := segBody("/live/a.ts", size)

	for i, u := range []string{a, a + "?hls_ctx=other", a} {
		resp, body := do(t, client, "GET", u)
		if resp.StatusCode != 200 || !bytes.Equal(body, wantA) || resp.ContentLength != size {
			t.Fatalf("GET %d: %d, %d bytes (Content-Length %d)", i, resp.StatusCode, len(body), resp.ContentLength)
		}
	}
	if n := cnt.count("/live/a.ts"); n != 1 {
		t.Fatalf("origin saw %d requests for a.ts, want 1", n)
	}
	wantStats(t, s.Stats().Segments, 2, 1, 0, 1)

	resp, body := do(t, client, "GET", a, "Range", "bytes=10-19")
	if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", size) ||
		!bytes.Equal(body, wantA[10:20]) || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("range from the cache: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	resp, body = do(t, client, "HEAD", a)
	if resp.StatusCode != 200 || resp.ContentLength != size || len(body) != 0 {
		t.Fatalf("HEAD from the cache: %d, Content-Length %d, %d bytes", resp.StatusCode, resp.ContentLength, len(body))
	}
	resp, _ = do(t, client, "GET", a, "If-None-Match", `"v1"`)
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match from the cache: %d", resp.StatusCode)
	}
	resp, _ = do(t, client, "GET", a, "If-Modified-Since", modTime.Format(http.TimeFormat))
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-Modified-Since from the cache: %d", resp.StatusCode)
	}
	if n := cnt.count("/live/a.ts"); n != 1 {
		t.Fatalf("origin saw %d requests for a.ts, want 1", n)
	}
	wantStats(t, s.Stats().Segments, 6, 1, 0, 1)

	// A range of an object not stored goes to the origin as it is.
	resp, body = do(t, client, "GET", b, "Range", "bytes=0-3")
	if resp.StatusCode != http.StatusPartialContent || string(body) != "/liv" || cnt.header("/live/b.ts").Get("Range") != "bytes=0-3" {
		t.Fatalf("range passed through: %d %q, origin saw Range %q", resp.StatusCode, body, cnt.header("/live/b.ts").Get("Range"))
	}
	wantStats(t, s.Stats().Segments, 6, 2, 0, 1)
	// The GET that stores it asks the origin for the whole object.
	do(t, client, "GET", b, "If-None-Match", `"v0"`)
	if h := cnt.header("/live/b.ts"); h.Get("Range") != "" || h.Get("If-None-Match") != "" || h.Get("Accept-Encoding") != "identity" {
		t.Fatalf("fetch into the cache sent %v", h)
	}
	if resp, body = do(t, client, "GET", b, "Range", "bytes=0-3"); resp.StatusCode != http.StatusPartialContent || string(body) != "/liv" {
		t.Fatalf("range of b from the cache: %d %q", resp.StatusCode, body)
	}
	if n := cnt.count("/live/b.ts"); n != 2 {
		t.Fatalf("origin saw %d requests for b.ts, want 2", n)
	}
	wantStats(t, s.Stats().Segments, 7, 3, 0, 2)

	for range 2 {
		resp, body := do(t, client, "GET", chunked)
		if resp.StatusCode != 200 || !bytes.Equal(body, segBody("/live/chunked.ts", size)) {
			t.Fatalf("chunked: %d, %d bytes", resp.StatusCode, len(body))
		}
	}
	if n := cnt.count("/live/chunked.ts"); n != 1 {
		t.Fatalf("origin saw %d requests for chunked.ts, want 1", n)
	}
	st := s.Stats().Segments
	wantStats(t, st, 8, 4, 0, 3)
	if st.Bytes < 3*size || st.Bytes > 3*size+4096 {
		t.Errorf("cache bytes %d for three %d-byte objects", st.Bytes, size)
	}
}

// 50 concurrent requests for one segment make one origin request, and all
// get the whole segment. The table of fetches in flight is empty after.
func TestSegmentCoalesced(t *testing.T) {
	const clients, size = 50, 3000
	release := make(chan struct{})
	origin, cnt := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Write(segBody(r.URL.Path, size))
	})
	s, proxy, client := cachedProxy(t, hostOf(origin), Config{})
	u := proxy.URL + segURL(t, s, hostOf(origin), "/live/s-1.ts")
	want := segBody("/live/s-1.ts", size)

	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(fmt.Sprintf("%s?viewer=%d", u, i))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want) {
				errs <- fmt.Errorf("viewer %d: %d, %d bytes, %v", i, resp.StatusCode, len(body), err)
			}
		}()
	}
	testkit.WaitFor(t, 10*time.Second, "every request waiting at the cache", func() bool {
		st := s.Stats().Segments
		return st.Misses+st.Coalesced == clients
	})
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := cnt.count("/live/s-1.ts"); n != 1 {
		t.Fatalf("origin saw %d requests, want 1", n)
	}
	wantStats(t, s.Stats().Segments, 0, 1, clients-1, 1)
	s.segments.mu.Lock()
	held := s.segments.inflight
	s.segments.mu.Unlock()
	if n := inFlight(s.segments); n != 0 || held != 0 {
		t.Fatalf("after the fetch: %d fetches in flight holding %d bytes", n, held)
	}
	if resp, body := do(t, client, "GET", u); resp.StatusCode != 200 || !bytes.Equal(body, want) {
		t.Fatalf("after: %d, %d bytes", resp.StatusCode, len(body))
	}
	wantStats(t, s.Stats().Segments, 1, 1, clients-1, 1)
}

// The client whose request started a shared fetch, and a client waiting
// for it, go away: the fetch goes on, and the client still waiting gets
// the whole segment.
func TestCoalescedClientGoesAway(t *testing.T) {
	const size = 5000
	release := make(chan struct{})
	var originCanceled atomic.Bool
	origin, cnt := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			originCanceled.Store(true)
			return
		}
		w.Write(segBody(r.URL.Path, size))
	})
	s, proxy, client := cachedProxy(t, hostOf(origin), Config{})
	u := proxy.URL + segURL(t, s, hostOf(origin), "/live/s-1.ts")

	get := func(ctx context.Context) (int, []byte, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	type result struct {
		status int
		body   []byte
		err    error
	}
	start := func(ctx context.Context) chan result {
		ch := make(chan result, 1)
		go func() {
			st, b, err := get(ctx)
			ch <- result{st, b, err}
		}()
		return ch
	}
	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	defer cancelLeader()
	leader := start(leaderCtx)
	testkit.WaitFor(t, 5*time.Second, "the first request's fetch", func() bool { return s.Stats().Segments.Misses == 1 })
	waiterCtx, cancelWaiter := context.WithCancel(context.Background())
	defer cancelWaiter()
	waiter := start(waiterCtx)
	stays := start(context.Background())
	testkit.WaitFor(t, 5*time.Second, "two requests coalesced", func() bool { return s.Stats().Segments.Coalesced == 2 })

	cancelLeader()
	cancelWaiter()
	for _, ch := range []chan result{leader, waiter} {
		if r := <-ch; r.err == nil {
			t.Fatalf("a canceled request got %d", r.status)
		}
	}
	// Give a wrongly canceled fetch time to reach the origin.
	time.Sleep(200 * time.Millisecond)
	if originCanceled.Load() {
		t.Fatal("the origin request ended with the first client")
	}
	close(release)
	r := <-stays
	if r.err != nil || r.status != 200 || !bytes.Equal(r.body, segBody("/live/s-1.ts", size)) {
		t.Fatalf("the remaining client: %d, %d bytes, %v", r.status, len(r.body), r.err)
	}
	if st, b, err := get(context.Background()); err != nil || st != 200 || len(b) != size {
		t.Fatalf("after: %d, %d bytes, %v", st, len(b), err)
	}
	if n := cnt.count("/live/s-1.ts"); n != 1 {
		t.Fatalf("origin saw %d requests, want 1", n)
	}
	wantStats(t, s.Stats().Segments, 1, 1, 2, 1)
}

// A shared fetch ends at its timeout (502 for the clients), and Close ends
// one in flight.
func TestSharedFetchBounded(t *testing.T) {
	origin, _ := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	t.Run("timeout", func(t *testing.T) {
		s, proxy, client := cachedProxy(t, hostOf(origin), Config{})
		s.fetchTimeout = 200 * time.Millisecond
		start := time.Now()
		resp, _ := do(t, client, "GET", proxy.URL+segURL(t, s, hostOf(origin), "/live/s-1.ts"))
		if resp.StatusCode != http.StatusBadGateway || time.Since(start) > 5*time.Second {
			t.Fatalf("%d after %v", resp.StatusCode, time.Since(start))
		}
		resp, _ = do(t, client, "GET", proxy.URL+"/live/s.m3u8")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("playlist: %d", resp.StatusCode)
		}
		if n := inFlight(s.segments) + inFlight(s.docs); n != 0 {
			t.Fatalf("%d fetches left in flight", n)
		}
	})
	t.Run("close", func(t *testing.T) {
		s, proxy, client := cachedProxy(t, hostOf(origin), Config{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			resp, err := client.Get(proxy.URL + segURL(t, s, hostOf(origin), "/live/s-1.ts"))
			if err == nil {
				resp.Body.Close()
			}
		}()
		testkit.WaitFor(t, 5*time.Second, "the fetch", func() bool { return s.Stats().Segments.Misses == 1 })
		closed := make(chan struct{})
		go func() { s.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("Close waits for the fetch")
		}
		<-done
	})
}

// The LRU holds what fits in CacheBytes, evicting the least recently used
// object; an object larger than the cache is relayed, and remembered as
// such so that its next request goes straight to the origin.
func TestSegmentCacheByteBound(t *testing.T) {
	const size, bound = 10_000, 25_000
	origin, cnt := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		n := size
		if strings.HasSuffix(r.URL.Path, "big.ts") {
			n = 3 * size
		}
		w.Write(segBody(r.URL.Path, n))
	})
	s, proxy, client := cachedProxy(t, hostOf(origin), Config{CacheBytes: bound})
	url := func(name string) string { return proxy.URL + segURL(t, s, hostOf(origin), "/live/"+name) }
	fetch := func(name string) {
		t.Helper()
		resp, body := do(t, client, "GET", url(name))
		want := size
		if name == "big.ts" {
			want = 3 * size
		}
		if resp.StatusCode != 200 || !bytes.Equal(body, segBody("/live/"+name, want)) {
			t.Fatalf("%s: %d, %d bytes", name, resp.StatusCode, len(body))
		}
		if st := s.Stats().Segments; st.Bytes > bound {
			t.Fatalf("after %s the cache holds %d bytes, over %d", name, st.Bytes, bound)
		}
	}
	for _, name := range []string{"a.ts", "b.ts", "a.ts", "c.ts"} { // c evicts b, the least recently used
		fetch(name)
	}
	wantStats(t, s.Stats().Segments, 1, 3, 0, 2)
	fetch("a.ts")
	fetch("b.ts")
	for name, want := range map[string]int{"a.ts": 1, "b.ts": 2, "c.ts": 1} {
		if n := cnt.count("/live/" + name); n != want {
			t.Errorf("origin saw %d requests for %s, want %d", n, name, want)
		}
	}
	wantStats(t, s.Stats().Segments, 2, 4, 0, 2)

	// big.ts: the shared fetch gives up past the bound and the client's own
	// request relays it; then the key's mark sends requests to the origin
	// at once.
	fetch("big.ts")
	fetch("big.ts")
	if n := cnt.count("/live/big.ts"); n != 3 {
		t.Errorf("origin saw %d requests for big.ts, want 3", n)
	}
}

// Bodies being fetched into the cache are bounded by CacheBytes too: a
// fetch that finds the memory taken relays its answer instead.
func TestSegmentFetchMemoryBound(t *testing.T) {
	const size, bound = 10_000, 25_000
	release := make(chan struct{})
	origin, cnt := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.WriteHeader(200)
		if strings.HasPrefix(r.URL.Path, "/live/slow") {
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		w.Write(segBody(r.URL.Path, size))
	})
	s, proxy, client := cachedProxy(t, hostOf(origin), Config{CacheBytes: bound})
	slow := make(chan []byte, 2)
	for _, name := range []string{"slow1.ts", "slow2.ts"} {
		u := proxy.URL + segURL(t, s, hostOf(origin), "/live/"+name)
		go func() {
			resp, err := client.Get(u)
			if err != nil {
				slow <- nil
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			slow <- body
		}()
	}
	testkit.WaitFor(t, 5*time.Second, "two slow fetches holding their memory", func() bool {
		s.segments.mu.Lock()
		defer s.segments.mu.Unlock()
		return s.segments.inflight == 2*size
	})
	resp, body := do(t, client, "GET", proxy.URL+segURL(t, s, hostOf(origin), "/live/fast.ts"))
	if resp.StatusCode != 200 || !bytes.Equal(body, segBody("/live/fast.ts", size)) {
		t.Fatalf("fast.ts: %d, %d bytes", resp.StatusCode, len(body))
	}
	if n := cnt.count("/live/fast.ts"); n != 2 {
		t.Errorf("origin saw %d requests for fast.ts, want 2 (the fetch given up and the relay)", n)
	}
	close(release)
	for range 2 {
		if body := <-slow; len(body) != size {
			t.Fatalf("slow segment: %d bytes", len(body))
		}
	}
	if st := s.Stats().Segments; st.Entries != 2 {
		t.Errorf("%d entries, want the two slow segments", st.Entries)
	}
}

// The table itself: both bounds, expiry, and the memory for fetches in
// flight.
func TestObjectCacheBounds(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	c := newObjectCache(1<<20, 3, 1<<10, clock)
	obj := func(n int) *object { return &object{status: 200, body: make([]byte, n)} }
	c.mu.Lock()
	for i := range 5 {
		c.addLocked(fmt.Sprint("k", i), obj(10), time.Minute)
	}
	c.mu.Unlock()
	if st := c.stats(); st.Entries != 3 {
		t.Fatalf("%d entries, want 3", st.Entries)
	}
	for i, want := range []bool{false, false, true, true, true} {
		if got := c.lookup(fmt.Sprint("k", i)) != nil; got != want {
			t.Errorf("k%d stored: %v, want %v", i, got, want)
		}
	}

	size := obj(100).size("b0")
	c = newObjectCache(3*size, 100, 1<<10, clock)
	c.mu.Lock()
	for i := range 4 {
		c.addLocked(fmt.Sprint("b", i), obj(100), time.Minute)
	}
	c.addLocked("huge", obj(1000), time.Minute) // larger than the whole cache
	c.mu.Unlock()
	if st := c.stats(); st.Entries != 3 || st.Bytes != 3*size || c.lookup("b0") != nil || c.lookup("huge") != nil {
		t.Fatalf("byte bound: %+v", st)
	}

	now = now.Add(time.Minute)
	if c.lookup("b3") != nil || c.stats().Entries != 2 {
		t.Fatalf("expired entry served: %+v", c.stats())
	}

	if !c.reserve(3*size) || c.reserve(1) {
		t.Fatal("reservations past the bound")
	}
	c.release(3 * size)
	if !c.reserve(1) {
		t.Fatal("released memory not reusable")
	}
	if newObjectCache(0, 1, 1, clock) != nil || newObjectCache(-1, 1, 1, clock) != nil {
		t.Fatal("a cache of no bytes is not disabled")
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Documents are reused for the same origin path and query within their
// TTL (half the target duration; half the MPD's minimumUpdatePeriod; one
// second for a master playlist) and never across queries.
func TestDocumentCache(t *testing.T) {
	var version atomic.Int32
	origin, cnt := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		v := version.Add(1)
		switch r.URL.Path {
		case "/live/s.m3u8":
			fmt.Fprintf(w, "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:%d\n#EXTINF:4,\ns-%d.ts\n", v, v)
		case "/live/m.m3u8":
			fmt.Fprintf(w, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=%d\ns.m3u8\n", v)
		case "/live/s.mpd":
			fmt.Fprintf(w, `<MPD type="dynamic" minimumUpdatePeriod="PT6S"><Period><AdaptationSet><SegmentTemplate media="s-$Time$.m4v" initialization="s-init.m4v"><SegmentTimeline><S t="%d" d="2"/></SegmentTimeline></SegmentTemplate></AdaptationSet></Period></MPD>`, v)
		case "/live/gone.m3u8":
			http.NotFound(w, r)
		}
	})
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	s, proxy, client := cachedProxy(t, hostOf(origin), Config{Now: clock.Now})
	get := func(p string) string {
		t.Helper()
		resp, body := do(t, client, "GET", proxy.URL+p)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, body)
		}
		return string(body)
	}

	a := get("/live/s.m3u8?hls_ctx=a")
	if b := get("/live/s.m3u8?hls_ctx=a"); b != a {
		t.Fatalf("same query within the TTL: a new document")
	}
	others := map[string]bool{a: true}
	for _, q := range []string{"?hls_ctx=b", "", "?hls_ctx=a&token=x"} {
		d := get("/live/s.m3u8" + q)
		if others[d] {
			t.Fatalf("query %q shared another query's document", q)
		}
		others[d] = true
	}
	if n := cnt.count("/live/s.m3u8"); n != 4 {
		t.Fatalf("origin saw %d playlist requests, want 4", n)
	}
	clock.Add(2*time.Second - time.Millisecond)
	if get("/live/s.m3u8?hls_ctx=a") != a {
		t.Fatal("document expired before half its target duration")
	}
	clock.Add(time.Millisecond)
	if get("/live/s.m3u8?hls_ctx=a") == a {
		t.Fatal("document served past half its target duration")
	}

	mpd := get("/live/s.mpd")
	clock.Add(3*time.Second - time.Millisecond)
	if get("/live/s.mpd") != mpd {
		t.Fatal("MPD expired before half its minimumUpdatePeriod")
	}
	clock.Add(time.Millisecond)
	if get("/live/s.mpd") == mpd {
		t.Fatal("MPD served past half its minimumUpdatePeriod")
	}

	// A master playlist (SRS makes one per viewer) is never reused.
	before := cnt.count("/live/m.m3u8")
	get("/live/m.m3u8")
	get("/live/m.m3u8")
	if n := cnt.count("/live/m.m3u8") - before; n != 2 {
		t.Fatalf("origin saw %d requests for two master playlist fetches, want 2", n)
	}

	// A 404 is not stored.
	for range 2 {
		if resp, _ := do(t, client, "GET", proxy.URL+"/live/gone.m3u8"); resp.StatusCode != 404 {
			t.Fatalf("missing playlist: %d", resp.StatusCode)
		}
	}
	if n := cnt.count("/live/gone.m3u8"); n != 2 {
		t.Fatalf("origin saw %d requests for a missing playlist, want 2", n)
	}
	wantStats(t, s.Stats().Documents, 3, 11, 0, 1) // the expired entries are gone; master playlists are never stored
}

// Config.PlaylistCacheTTL overrides the derived TTL; a negative one and a
// negative CacheBytes disable the caches.
func TestCacheConfig(t *testing.T) {
	origin, cnt := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".m3u8") {
			io.WriteString(w, "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns-1.ts\n")
			return
		}
		io.WriteString(w, "segment")
	})
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	_, proxy, client := cachedProxy(t, hostOf(origin), Config{Now: clock.Now, PlaylistCacheTTL: 5 * time.Second})
	do(t, client, "GET", proxy.URL+"/live/s.m3u8")
	clock.Add(5*time.Second - time.Millisecond)
	do(t, client, "GET", proxy.URL+"/live/s.m3u8")
	if n := cnt.count("/live/s.m3u8"); n != 1 {
		t.Fatalf("origin saw %d requests within a configured TTL of 5s", n)
	}
	clock.Add(time.Millisecond)
	do(t, client, "GET", proxy.URL+"/live/s.m3u8")
	if n := cnt.count("/live/s.m3u8"); n != 2 {
		t.Fatalf("origin saw %d requests after the configured TTL", n)
	}

	off, offProxy, offClient := cachedProxy(t, hostOf(origin), Config{CacheBytes: -1, PlaylistCacheTTL: -1})
	if off.segments != nil || off.docs != nil {
		t.Fatal("caches not disabled")
	}
	_, pl := do(t, offClient, "GET", offProxy.URL+"/live/o.m3u8")
	seg := uriLines(string(pl))[0]
	for range 2 {
		do(t, offClient, "GET", offProxy.URL+"/live/o.m3u8")
		do(t, offClient, "GET", offProxy.URL+seg)
	}
	if p, sg := cnt.count("/live/o.m3u8"), cnt.count("/live/s-1.ts"); p != 3 || sg != 2 {
		t.Fatalf("with the caches off the origin saw %d playlist and %d segment requests, want 3 and 2", p, sg)
	}
	// The estimate of viewers counts this test's one client either way.
	if st := off.Stats(); st != (Stats{Viewers: ViewerStats{HLS: 1, TableStats: TableStats{Entries: 1, Bytes: viewerEntryBytes}}}) {
		t.Fatalf("stats of disabled caches: %+v", st)
	}
}

// Answers from the caches are the answers the node gives without them:
// the same status and body, and the same headers but Date (and the
// Accept-Ranges that a node serving ranges itself adds to a segment). The
// origin's Content-Type and Cache-Control (or the segment default) and the
// CORS headers are kept, and an origin's own CORS policy is not doubled.
func TestCachedAnswersMatchUncached(t *testing.T) {
	origin := fakeSRS(t)
	own, _ := countingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/iso.segment")
		w.Header().Set("Cache-Control", "max-age=5")
		w.Header().Set("Access-Control-Allow-Origin", "http://site.example")
		io.WriteString(w, "segment with its own headers")
	})
	for _, o := range []*httptest.Server{origin, own} {
		on, onProxy, onClient := cachedProxy(t, hostOf(o), Config{})
		_, offProxy, offClient := cachedProxy(t, hostOf(o), Config{CacheBytes: -1, PlaylistCacheTTL: -1})
		paths := []string{segURL(t, on, hostOf(o), "/live/s-1.ts")}
		if o == origin {
			paths = append(paths, "/live/s.m3u8", "/live/s.m3u8?hls_ctx=ctx1", "/live/livestream.mpd", "/live/missing.m3u8",
				segURL(t, on, hostOf(o), "/live/missing.ts"))
		}
		for _, p := range paths {
			for round := range 2 { // a miss, then a hit
				want, wantBody := do(t, offClient, "GET", offProxy.URL+p)
				got, gotBody := do(t, onClient, "GET", onProxy.URL+p)
				if got.StatusCode != want.StatusCode || !bytes.Equal(gotBody, wantBody) {
					t.Fatalf("%s round %d: %d %q, uncached %d %q", p, round, got.StatusCode, gotBody, want.StatusCode, wantBody)
				}
				g, w := got.Header.Clone(), want.Header.Clone()
				for _, h := range []http.Header{g, w} {
					h.Del("Date")
					if strings.HasPrefix(p, hlsPrefix) {
						h.Del("Accept-Ranges")
					}
				}
				if fmt.Sprint(g) != fmt.Sprint(w) {
					t.Errorf("%s round %d: headers\n%v\nuncached\n%v", p, round, g, w)
				}
			}
		}
		resp, _ := do(t, onClient, "GET", onProxy.URL+segURL(t, on, hostOf(o), "/live/s-1.ts"))
		wantCC, wantACAO := "public, max-age=30", "*"
		if o == own {
			wantCC, wantACAO = "max-age=5", "http://site.example"
		}
		if cc, acao := resp.Header.Values("Cache-Control"), resp.Header.Values("Access-Control-Allow-Origin"); len(cc) != 1 || cc[0] != wantCC || len(acao) != 1 || acao[0] != wantACAO {
			t.Errorf("cached segment: Cache-Control %q, Access-Control-Allow-Origin %q", cc, acao)
		}
		if st := on.Stats().Segments; st.Hits == 0 {
			t.Errorf("no segment served from the cache: %+v", st)
		}
	}
}

func TestDocumentTTL(t *testing.T) {
	for _, c := range []struct {
		doc  string
		want time.Duration
	}{
		{"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\na.ts\n", 5 * time.Second},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:1\n", 500 * time.Millisecond},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:3600\n", maxDocumentTTL},
		{"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", 0},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:x\n", 0},
	} {
		if got := (&Server{}).documentTTL([]byte(c.doc), hlsFormat); got != c.want {
			t.Errorf("%q: %v, want %v", c.doc, got, c.want)
		}
	}
	for _, c := range []struct {
		doc  string
		want time.Duration
	}{
		{`<MPD type="dynamic" minimumUpdatePeriod="PT4S">`, 2 * time.Second},
		{`<MPD minimumUpdatePeriod='PT0.5S' type="dynamic">`, 250 * time.Millisecond},
		{`<MPD type="dynamic" minimumUpdatePeriod="PT1M">`, maxDocumentTTL},
		{`<MPD type="dynamic">`, time.Second},
		{`<MPD type="dynamic" minimumUpdatePeriod="PT0S">`, time.Second},
		{`<MPD type="dynamic" minimumUpdatePeriod="junk">`, time.Second},
	} {
		if got := (&Server{}).documentTTL([]byte(c.doc), dashFormat); got != c.want {
			t.Errorf("%q: %v, want %v", c.doc, got, c.want)
		}
	}
	if got := (&Server{docTTL: 7 * time.Second}).documentTTL([]byte("#EXTM3U\n#EXT-X-TARGETDURATION:2\n"), hlsFormat); got != 7*time.Second {
		t.Errorf("configured TTL: %v", got)
	}
	if got := (&Server{docTTL: 7 * time.Second}).documentTTL([]byte("#EXTM3U\n"), hlsFormat); got != 0 {
		t.Errorf("configured TTL of a master playlist: %v", got)
	}
}

func TestParseXSDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"PT2S", 2 * time.Second, true},
		{"PT0.5S", 500 * time.Millisecond, true},
		{"PT1M30S", 90 * time.Second, true},
		{"PT1H", time.Hour, true},
		{"P1DT2H", 26 * time.Hour, true},
		{"P0Y0M0DT0H0M2.000S", 2 * time.Second, true},
		{"P1Y", 0, false}, // years and months have no fixed length
		{"P1M", 0, false},
		{"PT", 0, false},
		{"P", 0, false},
		{"2S", 0, false},
		{"-PT2S", 0, false},
		{"PT2S2S", 0, false},
		{"PTS", 0, false},
		{"PT2", 0, false},
		{"P400D", 0, false},
		{"PT1.2.3S", 0, false},
	} {
		got, ok := parseXSDuration(c.in)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("%q: %v %v, want %v %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
