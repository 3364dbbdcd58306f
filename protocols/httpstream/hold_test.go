package httpstream

import (
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

	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// heldOrigin answers playlists with 404 until ready is set (or until
// readyAfter probes, when positive), and counts every request and those
// with no query (the node's probes).
type heldOrigin struct {
	*httptest.Server
	ready         atomic.Bool
	readyAfter    int32
	gets, noQuery atomic.Int32
}

func newHeldOrigin(t *testing.T, readyAfter int32) *heldOrigin {
	o := &heldOrigin{readyAfter: readyAfter}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.gets.Add(1)
		if r.URL.RawQuery == "" && o.noQuery.Add(1) == o.readyAfter {
			o.ready.Store(true)
		}
		if !o.ready.Load() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		w.Write([]byte(nginxPlaylist))
	}))
	t.Cleanup(o.Close)
	return o
}

// heldRequests sends n concurrent playlist requests, each with a random
// query, and returns their statuses.
func heldRequests(s *Server, n int) []int {
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			q := fmt.Sprintf("junk=%d-%d&pad=%s", i, time.Now().UnixNano(), strings.Repeat("x", 100))
			s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/livestream.m3u8?"+q, nil))
			codes[i] = rec.Code
		}()
	}
	wg.Wait()
	return codes
}

// TestHeldRetriesCoalesced: twenty requests with random queries, just
// after a move whose new origin has no playlist yet, share one retry loop:
// the origin sees the loop's probes (no query, at most maxHoldProbes) and
// one request per client, whether the playlist appears within the hold or
// never.
func TestHeldRetriesCoalesced(t *testing.T) {
	for _, appears := range []bool{true, false} {
		t.Run(fmt.Sprintf("appears=%v", appears), func(t *testing.T) {
			var after int32 // never
			if appears {
				after = 3
			}
			o := newHeldOrigin(t, after)
			rt := &epochRouter{epoch: 1, moved: time.Now()}
			rt.origin.Store(hostOf(o.Server))
			s, err := New(Config{Router: rt, Epochs: rt, TokenSecret: []byte("0123456789abcdef"), MoveHold: 2 * time.Second, Logger: quietLogger})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			const n = 20
			codes := heldRequests(s, n)
			want := http.StatusNotFound
			if appears {
				want = http.StatusOK
			}
			for i, c := range codes {
				if c != want {
					t.Errorf("request %d: %d, want %d", i, c, want)
				}
			}
			probes, gets := o.noQuery.Load(), o.gets.Load()
			t.Logf("%d requests: %d origin GETs, %d of them probes", n, gets, probes)
			if probes > maxHoldProbes {
				t.Errorf("%d probes, the bound is %d", probes, maxHoldProbes)
			}
			if clients := gets - probes; clients > n {
				t.Errorf("%d origin GETs with the clients' queries for %d requests", clients, n)
			}
			// A second wave within the window makes no probe once the
			// playlist was found, and at most the rest of the budget if not.
			before := o.noQuery.Load()
			heldRequests(s, n)
			if appears && o.noQuery.Load() != before {
				t.Errorf("%d probes after the playlist was found", o.noQuery.Load()-before)
			}
			if o.noQuery.Load() > maxHoldProbes {
				t.Errorf("%d probes in the move, the bound is %d", o.noQuery.Load(), maxHoldProbes)
			}
		})
	}
}

// TestHoldTableBounds: the table of held documents stops at maxHoldStreams
// entries and at maxHoldBytes, refusing to hold more (nil) until entries
// are idle, and the budget of one stream's probes is maxHoldProbes.
func TestHoldTableBounds(t *testing.T) {
	now := time.Unix(1000, 0)
	noop := func(*holdEntry, *holdLoop) {}
	var tb holdTable
	var loops []*holdLoop
	var entries []*holdEntry
	keep := func(e *holdEntry, l *holdLoop) { entries, loops = append(entries, e), append(loops, l) }
	for i := range maxHoldStreams {
		if tb.join(holdKey{key: stream.Key{App: "live", Stream: fmt.Sprint(i)}, suffix: ".m3u8"}, now, true, now, time.Second, keep) == nil {
			t.Fatalf("stream %d not held", i)
		}
	}
	if n, _ := tb.stats(); n != maxHoldStreams {
		t.Fatalf("%d entries, want %d", n, maxHoldStreams)
	}
	extra := holdKey{key: stream.Key{App: "live", Stream: "extra"}, suffix: ".m3u8"}
	if tb.join(extra, now, true, now, time.Second, noop) != nil {
		t.Fatal("a stream past the entry bound was held")
	}
	// Loops that ended, windows over: the idle entries make room.
	for i, l := range loops {
		tb.end(entries[i], l, false)
	}
	later := now.Add(2 * time.Second)
	if tb.join(extra, now, true, later, time.Second, noop) == nil {
		t.Fatal("no room made by idle entries")
	}

	// Bytes: long keys reach maxHoldBytes before the entry bound.
	var big holdTable
	long := strings.Repeat("s", stream.MaxPartLen)
	n := 0
	for ; n < maxHoldStreams; n++ {
		k := holdKey{key: stream.Key{Vhost: long, App: long, Stream: fmt.Sprintf("%s%d", long[:200], n)}, suffix: ".m3u8"}
		if big.join(k, now, true, now, time.Second, noop) == nil {
			break
		}
	}
	entries2, bytes := big.stats()
	if n == maxHoldStreams || bytes > maxHoldBytes || entries2 != n {
		t.Fatalf("%d entries of long keys, %d bytes; the byte bound is %d", n, bytes, maxHoldBytes)
	}

	// Budget: one stream gets maxHoldProbes probes per move.
	var one holdTable
	k := holdKey{key: stream.Key{App: "live", Stream: "s"}, suffix: ".mpd"}
	var e *holdEntry
	var l *holdLoop
	l = one.join(k, now, true, now, time.Minute, func(ee *holdEntry, ll *holdLoop) { e = ee })
	spent := 0
	for one.spend(e) {
		spent++
	}
	one.end(e, l, false)
	if spent != maxHoldProbes {
		t.Errorf("%d probes spent, want %d", spent, maxHoldProbes)
	}
	if one.join(k, now, true, now.Add(time.Second), time.Minute, noop) != nil {
		t.Error("a loop started with its budget spent")
	}
	if one.join(k, now.Add(time.Second), true, now.Add(time.Second), time.Minute, noop) == nil {
		t.Error("a new move got no budget")
	}
}

// TestFlightTableBounds: the table of fetches in flight stops at
// maxFlights entries and maxFlightKeyBytes; a request past either is told
// errBusy (and is then relayed on its own).
func TestFlightTableBounds(t *testing.T) {
	clock := func() time.Time { return time.Unix(1000, 0) }
	c := newObjectCache(1<<20, 100, 1<<10, clock)
	for i := range maxFlights {
		if _, _, lead, err := c.join(fmt.Sprint("k", i)); !lead || err != nil {
			t.Fatalf("flight %d: lead %v, %v", i, lead, err)
		}
	}
	if _, _, _, err := c.join("one more"); err != errBusy {
		t.Fatalf("past the entry bound: %v, want errBusy", err)
	}
	c = newObjectCache(1<<20, 100, 1<<10, clock)
	long := strings.Repeat("q", 60<<10) // a padded query
	n := 0
	for ; n < maxFlights; n++ {
		if _, _, _, err := c.join(fmt.Sprint(n, long)); err != nil {
			break
		}
	}
	if want := maxFlightKeyBytes / (len(long) + 8 + entryOverhead); n > want || c.flightB > maxFlightKeyBytes {
		t.Fatalf("%d flights of 60 KiB keys (%d bytes), want at most %d", n, c.flightB, want)
	}
	// A flight that ends gives its bytes back.
	_, f, _, _ := c.join("0" + long)
	c.finish("0"+long, f, &object{status: http.StatusNotFound}, 0, nil)
	if _, _, lead, err := c.join("another"); !lead || err != nil {
		t.Fatalf("after a flight ended: lead %v, %v", lead, err)
	}
}

// TestFanOutLongQueryRelayed: a player whose query is longer than
// maxFanOutQuery is relayed on its own, so the hub registry never keeps
// its query.
func TestFanOutLongQueryRelayed(t *testing.T) {
	origin := newFLVOrigin(t, 100, 5*time.Millisecond)
	s, proxy := fanOutProxy(t, hostOf(origin.Server), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q := "?pad=" + strings.Repeat("p", maxFanOutQuery)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, proxy.URL+"/live/s.flv"+q, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 13)); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d, %v", resp.StatusCode, err)
	}
	if st := s.Stats().FanOut; st.Upstreams != 0 {
		t.Errorf("Stats = %+v: a long query has a shared upstream", st)
	}
}

// TestSessionMapBytes: the map of moved sessions stops at
// maxMovedSessionBytes before its entry bound when keys are long, and does
// not remember a new session's query longer than maxSessionQuery.
func TestSessionMapBytes(t *testing.T) {
	now := time.Unix(1000, 0)
	m := sessionMap{now: func() time.Time { return now }}
	pad := strings.Repeat("k", 4<<10)
	for i := range maxMovedSessions {
		m.put(fmt.Sprint(i, pad), "hls_ctx=new")
	}
	n, b := m.stats()
	if b > maxMovedSessionBytes || n >= maxMovedSessions || n < maxMovedSessionBytes/(len(pad)+300) {
		t.Fatalf("%d entries, %d bytes; the byte bound is %d", n, b, maxMovedSessionBytes)
	}
	if _, ok := m.get(fmt.Sprint(maxMovedSessions-1, pad)); !ok {
		t.Error("the newest entry was dropped")
	}
	if _, ok := m.get(fmt.Sprint(0, pad)); ok {
		t.Error("the least recently used entry was kept")
	}
	m.put("long", "hls_ctx="+strings.Repeat("q", maxSessionQuery))
	if _, ok := m.get("long"); ok {
		t.Error("a query over maxSessionQuery was remembered")
	}
}

// TestMovedSessionPadded: players of a moved stream reload with random
// session ids in 60 KB queries. The map keys each by its session id and a
// digest of the query, so its bytes do not grow with the padding; an
// oversized or malformed session id is not a session, and is not
// remembered.
func TestMovedSessionPadded(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("hls_ctx") != "new" {
			w.Write([]byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n/live/livestream.m3u8?hls_ctx=new\n"))
			return
		}
		w.Write([]byte("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1,\nlivestream-0.ts?hls_ctx=new\n"))
	}))
	defer origin.Close()
	rt := &epochRouter{epoch: 1, moved: time.Now().Add(-time.Hour)}
	rt.origin.Store(hostOf(origin))
	s, err := New(Config{Router: rt, Epochs: rt, TokenSecret: []byte("0123456789abcdef"), Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pad := strings.Repeat("p", 60<<10)
	get := func(q string) int {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/livestream.m3u8?"+q, nil))
		return rec.Code
	}
	const n = 50
	for i := range n {
		if c := get(fmt.Sprintf("hls_ctx=a%d&pad=%s", i, pad)); c != http.StatusOK {
			t.Fatalf("reload %d: %d", i, c)
		}
	}
	st := s.Stats().MovedSessions
	if st.Entries != n || st.Bytes > n*512 {
		t.Errorf("%d padded reloads: %+v; want %d entries of at most 512 bytes", n, st, n)
	}
	for _, id := range []string{strings.Repeat("x", maxSessionID+1), "a%20b", "a/b", "a%0Ab"} {
		get("hls_ctx=" + id)
	}
	if got := s.Stats().MovedSessions; got.Entries != n {
		t.Errorf("invalid session ids were remembered: %+v", got)
	}
	for _, id := range []string{"abc", strings.Repeat("x", maxSessionID), "A-b_c.d~9"} {
		if !validSessionID(id) {
			t.Errorf("%q refused", id)
		}
	}
}

// meshRouter routes streams and tells their epochs as the mesh does, each
// by a function the test may swap while requests run.
type meshRouter struct {
	mu    sync.Mutex
	route func(stream.Key) stream.Origin
	epoch func(stream.Key) (uint64, time.Time)
}

func (r *meshRouter) Route(_ context.Context, k stream.Key) (stream.Origin, error) {
	r.mu.Lock()
	f := r.route
	r.mu.Unlock()
	return f(k), nil
}

func (r *meshRouter) RoutePlay(ctx context.Context, k stream.Key) (stream.Origin, error) {
	return r.Route(ctx, k)
}

func (r *meshRouter) StreamEpoch(k stream.Key) (uint64, uint64, time.Time) {
	r.mu.Lock()
	f := r.epoch
	r.mu.Unlock()
	e, moved := f(k)
	return e, e * testSeqBase, moved
}

func (r *meshRouter) set(route func(stream.Key) stream.Origin, epoch func(stream.Key) (uint64, time.Time)) {
	r.mu.Lock()
	r.route, r.epoch = route, epoch
	r.mu.Unlock()
}

// to routes every stream to one origin HTTP endpoint.
func to(addr string) func(stream.Key) stream.Origin {
	return func(stream.Key) stream.Origin { return stream.Origin{ID: addr, HTTP: addr} }
}

// neverMoved is the epoch of streams that never moved.
func neverMoved(stream.Key) (uint64, time.Time) { return 0, time.Time{} }

// newSilentOrigin is an origin that closes every request's connection
// without an answer (the node gets none: "origin unreachable"), and counts
// the requests; onRequest, when set, is told each one's number.
func newSilentOrigin(t *testing.T, onRequest func(n int32)) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		if onRequest != nil {
			onRequest(i)
		}
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	t.Cleanup(o.Close)
	return o, &n
}

// namedRequests sends n concurrent playlist requests, at most 64 at a time,
// for the streams prefix0, prefix1... (with pad appended) and returns
// their statuses.
func namedRequests(s *Server, n int, prefix, pad string) []int {
	codes := make([]int, n)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, fmt.Sprintf("/live/%s%d%s.m3u8", prefix, i, pad), nil))
			codes[i] = rec.Code
		}()
	}
	wg.Wait()
	return codes
}

// TestOriginErrorsPassedThrough: an origin that answers 503 (overloaded,
// rate limited) or 502 of its own to every stream: fifty requests for
// distinct names of streams that did not move get its answer at once, cost
// it one GET each (before, each name started a retry loop of its own: 900
// GETs), and leave nothing in the hold table.
func TestOriginErrorsPassedThrough(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusBadGateway} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			var gets atomic.Int32
			o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gets.Add(1)
				http.Error(w, "busy", status)
			}))
			defer o.Close()
			rt := &meshRouter{route: to(hostOf(o)), epoch: neverMoved}
			s, err := New(Config{Router: rt, Epochs: rt, TokenSecret: []byte("0123456789abcdef"), MoveHold: 4 * time.Second, Logger: quietLogger})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			const n = 50
			for i, c := range namedRequests(s, n, "s", "") {
				if c != status {
					t.Errorf("request %d: %d, want the origin's %d", i, c, status)
				}
			}
			t.Logf("%d requests for distinct names cost the origin %d GETs", n, gets.Load())
			if g := gets.Load(); g > n {
				t.Errorf("%d origin GETs for %d requests", g, n)
			}
			if entries, _ := s.holds.stats(); entries != 0 {
				t.Errorf("%d hold table entries for streams that did not move", entries)
			}
		})
	}
}

// TestUnreachableOriginOneLoop: fifty requests for distinct names of
// streams whose origin gives no answer share that origin's one retry loop:
// the origin sees one request per client and the loop's probes (at most
// maxHoldProbes), the hold table one entry, and every client its 502.
func TestUnreachableOriginOneLoop(t *testing.T) {
	o, gets := newSilentOrigin(t, nil)
	rt := &meshRouter{route: to(hostOf(o)), epoch: neverMoved}
	s, err := New(Config{Router: rt, Epochs: rt, TokenSecret: []byte("0123456789abcdef"), MoveHold: time.Second, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 50
	var peak atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, c := range namedRequests(s, n, "s", "") {
			if c != http.StatusBadGateway {
				t.Errorf("request %d: %d, want 502", i, c)
			}
		}
	}()
	testkit.WaitFor(t, 10*time.Second, "the requests answered", func() bool {
		if entries, _ := s.holds.stats(); int32(entries) > peak.Load() {
			peak.Store(int32(entries))
		}
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	t.Logf("%d requests for distinct names: %d requests to the unreachable origin, %d hold table entries at most", n, gets.Load(), peak.Load())
	if g := gets.Load(); g > n+maxHoldProbes {
		t.Errorf("%d requests to the origin for %d clients; the bound is %d", g, n, n+maxHoldProbes)
	}
	if peak.Load() > 1 {
		t.Errorf("%d hold table entries for one origin", peak.Load())
	}
}

// TestHeldUntilMovedOffUnreachableOrigin: a playlist request of a stream
// whose origin died waits for that origin's loop; when the stream moves
// (its epoch changes) to an origin that has no playlist yet, it waits for
// the new origin's document and gets it, renumbered by the epoch.
func TestHeldUntilMovedOffUnreachableOrigin(t *testing.T) {
	live := newHeldOrigin(t, 2)
	rt := &meshRouter{epoch: neverMoved}
	moved := time.Now()
	dead, _ := newSilentOrigin(t, func(n int32) {
		if n == 2 { // the request, then the loop's first probe: the mesh moves the stream
			rt.set(to(hostOf(live.Server)), func(stream.Key) (uint64, time.Time) { return 1, moved })
		}
	})
	rt.set(to(hostOf(dead)), neverMoved)
	s, err := New(Config{Router: rt, Epochs: rt, TokenSecret: []byte("0123456789abcdef"), MoveHold: 4 * time.Second, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/livestream.m3u8", nil))
	if body := rec.Body.String(); rec.Code != http.StatusOK || !strings.Contains(body, "#EXT-X-MEDIA-SEQUENCE:1007\n") {
		t.Fatalf("%d\n%s", rec.Code, body)
	}
}

// TestMovedStreamHeldAmidJunk: requests for thousands of made-up names,
// long enough to have filled the hold table's bytes, that the origin
// answers 503, that the node answers 503 (an origin without HTTP) or whose
// origin is unreachable, make no more than one hold table entry (the
// unreachable origin's); a player of a stream that really moved is still
// held across its move meanwhile, and gets its playlist.
func TestMovedStreamHeldAmidJunk(t *testing.T) {
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer busy.Close()
	dead, deadGets := newSilentOrigin(t, nil)
	real := newHeldOrigin(t, 3)
	var movedAt atomic.Int64 // unix nanoseconds of the real stream's move; 0: none
	rt := &meshRouter{
		route: func(k stream.Key) stream.Origin {
			switch {
			case strings.HasPrefix(k.Stream, "busy"):
				return stream.Origin{ID: "busy", HTTP: hostOf(busy)}
			case strings.HasPrefix(k.Stream, "rtmp"):
				return stream.Origin{ID: "rtmponly", RTMP: "127.0.0.1:1935"}
			case strings.HasPrefix(k.Stream, "dead"):
				return stream.Origin{ID: "dead", HTTP: hostOf(dead)}
			}
			return stream.Origin{ID: "real", HTTP: hostOf(real.Server)}
		},
		epoch: func(k stream.Key) (uint64, time.Time) {
			if ns := movedAt.Load(); k.Stream == "real" && ns != 0 {
				return 1, time.Unix(0, ns)
			}
			return 0, time.Time{}
		},
	}
	s, err := New(Config{Router: rt, Epochs: rt, TokenSecret: []byte("0123456789abcdef"), MoveHold: 4 * time.Second, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pad := strings.Repeat("j", 240)
	n := maxHoldBytes/(len(pad)+entryOverhead) + 100
	for _, prefix := range []string{"busy", "rtmp"} {
		for i, c := range namedRequests(s, n/2, prefix, pad) {
			if c != http.StatusServiceUnavailable {
				t.Fatalf("%s request %d: %d, want 503", prefix, i, c)
			}
		}
	}
	if entries, bytes := s.holds.stats(); entries != 0 {
		t.Fatalf("%d requests answered 503: %d hold table entries, %d bytes", n, entries, bytes)
	}
	const deadN = 100
	deadDone := make(chan struct{})
	go func() {
		defer close(deadDone)
		for i, c := range namedRequests(s, deadN, "dead", pad) {
			if c != http.StatusBadGateway {
				t.Errorf("dead request %d: %d, want 502", i, c)
			}
		}
	}()
	testkit.WaitFor(t, 10*time.Second, "the unreachable origin's loop", func() bool {
		entries, _ := s.holds.stats()
		return entries == 1
	})
	movedAt.Store(time.Now().UnixNano())
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/real.m3u8", nil))
	if body := rec.Body.String(); rec.Code != http.StatusOK || !strings.Contains(body, "#EXT-X-MEDIA-SEQUENCE:1007\n") {
		t.Fatalf("the moved stream's player: %d\n%s", rec.Code, body)
	}
	if entries, _ := s.holds.stats(); entries > 2 {
		t.Errorf("%d hold table entries; want the unreachable origin's and the moved stream's", entries)
	}
	<-deadDone
	if g := deadGets.Load(); g > deadN+maxHoldProbes {
		t.Errorf("%d requests to the unreachable origin for %d clients; the bound is %d", g, deadN, deadN+maxHoldProbes)
	}
}
