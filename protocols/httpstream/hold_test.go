package httpstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
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
			s, err := New(Config{Router: rt, TokenSecret: []byte("0123456789abcdef"), MoveHold: 2 * time.Second, Logger: quietLogger})
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
	s, err := New(Config{Router: rt, TokenSecret: []byte("0123456789abcdef"), Logger: quietLogger})
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
