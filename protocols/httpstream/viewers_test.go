package httpstream

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestViewerEstimate(t *testing.T) {
	now := time.Unix(1000, 0)
	v := newViewerTable(10*time.Second, 1000, func() time.Time { return now })
	get := func(addr, ua, path string) {
		r := httptest.NewRequest("GET", path, nil)
		r.RemoteAddr, r.Header["User-Agent"] = addr, []string{ua}
		proto := uint8(viewerHLS)
		if path == "/live/s.mpd" {
			proto = viewerDASH
		}
		v.note(proto, r)
	}
	// The same player, refreshing: one viewer. Another User-Agent behind
	// the same address, or another address (any port): two more.
	for range 5 {
		get("10.0.0.1:5000", "hls.js", "/live/s.m3u8")
	}
	get("10.0.0.1:5001", "hls.js", "/_hls/tok/s-1.ts")
	get("10.0.0.1:5000", "Lavf/60", "/live/s.m3u8")
	get("[::ffff:10.0.0.2]:6000", "hls.js", "/live/s.m3u8")
	get("10.0.0.3:7000", "dash.js", "/live/s.mpd")
	if st := v.stats(); st.HLS != 3 || st.DASH != 1 || st.Entries != 4 || st.Bytes != 4*viewerEntryBytes {
		t.Fatalf("stats = %+v, want 3 HLS and 1 DASH viewers in 4 entries", st)
	}
	// A viewer counts for the window after its last request.
	now = now.Add(6 * time.Second)
	get("10.0.0.1:5000", "hls.js", "/live/s.m3u8")
	now = now.Add(6 * time.Second)
	if st := v.stats(); st.HLS != 1 || st.DASH != 0 || st.Entries != 1 {
		t.Fatalf("stats after the window = %+v, want the one viewer that came back", st)
	}
}

// A client that sends a new address or User-Agent with every request
// cannot grow the table past its bound; the viewers seen least recently
// make room.
func TestViewerTableBound(t *testing.T) {
	now := time.Unix(1000, 0)
	const max = 64
	v := newViewerTable(time.Minute, max, func() time.Time { return now })
	note := func(ua string) {
		r := httptest.NewRequest("GET", "/live/s.m3u8", nil)
		r.RemoteAddr, r.Header["User-Agent"] = "192.0.2.1:1234", []string{ua}
		v.note(viewerHLS, r)
	}
	for i := range 10 * max {
		now = now.Add(time.Millisecond)
		note(fmt.Sprintf("flood-%d-%0512d", i, i)) // long User-Agents cost no more
	}
	st := v.stats()
	if st.Entries != max || st.HLS != max || st.Bytes != max*viewerEntryBytes {
		t.Fatalf("stats after a flood = %+v, want the bound of %d entries, %d bytes", st, max, max*viewerEntryBytes)
	}
	if len(v.m) != v.lru.Len() {
		t.Fatalf("map %d entries, list %d", len(v.m), v.lru.Len())
	}
	// The flood's most recent viewers are the ones kept.
	r := httptest.NewRequest("GET", "/live/s.m3u8", nil)
	r.RemoteAddr, r.Header["User-Agent"] = "192.0.2.1:1234", []string{fmt.Sprintf("flood-%d-%0512d", 10*max-1, 10*max-1)}
	before := v.stats().Entries
	v.note(viewerHLS, r)
	if v.stats().Entries != before {
		t.Fatal("the most recent viewer was evicted")
	}
}

// BenchmarkViewerNote is the cost the estimate of viewers adds to every
// HLS and DASH request: a known viewer refreshing, and (New) a new viewer
// in a full table, which evicts the least recently seen.
func BenchmarkViewerNote(b *testing.B) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	reqs := make([]*http.Request, 1024)
	for i := range reqs {
		reqs[i] = httptest.NewRequest("GET", "/live/s.m3u8", nil)
		reqs[i].RemoteAddr = fmt.Sprintf("10.0.%d.%d:4000", i/256, i%256)
		reqs[i].Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")
	}
	b.Run("Known", func(b *testing.B) {
		v := newViewerTable(DefaultViewerWindow, maxViewers, clock)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				v.note(viewerHLS, reqs[i%len(reqs)])
				i++
			}
		})
	})
	b.Run("New", func(b *testing.B) {
		v := newViewerTable(DefaultViewerWindow, len(reqs)/2, clock)
		b.ReportAllocs()
		for i := range b.N {
			v.note(viewerHLS, reqs[i%len(reqs)])
		}
	})
}
