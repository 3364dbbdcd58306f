package httpstream

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
)

const nginxPlaylist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-TARGETDURATION:2\n" +
	"#EXTINF:1.000,\nlivestream-7.ts\n#EXTINF:1.000,\nlivestream-8.ts\n"

func TestEpochPlaylist(t *testing.T) {
	for _, c := range []struct {
		name, in string
		e        uint64
		want     string
	}{
		{"epoch 0 unchanged", nginxPlaylist, 0, nginxPlaylist},
		{"epoch 1", nginxPlaylist, 1, "#EXTM3U\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:1000000007\n#EXT-X-TARGETDURATION:2\n" +
			"#EXT-X-DISCONTINUITY\n#EXTINF:1.000,\nlivestream-7.ts\n#EXTINF:1.000,\nlivestream-8.ts\n"},
		{"epoch 3 with a discontinuity sequence", "#EXTM3U\r\n#EXT-X-MEDIA-SEQUENCE:0\r\n#EXT-X-DISCONTINUITY-SEQUENCE:2\r\n#EXTINF:2,\r\na.ts\r\n", 3,
			"#EXTM3U\r\n#EXT-X-MEDIA-SEQUENCE:3000000000\r\n#EXT-X-DISCONTINUITY-SEQUENCE:4\r\n#EXT-X-DISCONTINUITY\r\n#EXTINF:2,\r\na.ts\r\n"},
		{"origin's own discontinuity on the first segment", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:5\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\nb.ts", 2,
			"#EXTM3U\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n#EXT-X-MEDIA-SEQUENCE:2000000005\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\nb.ts"},
		{"no sequence tags", "#EXTM3U\n#EXTINF:2,\na.ts\n", 1,
			"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1000000000\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\na.ts\n"},
		{"master playlist unchanged", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", 2, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n"},
		{"no segments unchanged", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n", 2, "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n"},
		{"no header unchanged", "#EXTINF:2,\na.ts\n", 2, "#EXTINF:2,\na.ts\n"},
	} {
		if got := string(epochPlaylist([]byte(c.in), c.e)); got != c.want {
			t.Errorf("%s:\n%q\nwant\n%q", c.name, got, c.want)
		}
	}
}

// discNumbers returns the media sequence and discontinuity number of every
// segment of a playlist, as RFC 8216 section 6.2.1 defines them.
func discNumbers(t *testing.T, pl string) map[uint64]uint64 {
	var seq, disc uint64
	out := map[uint64]uint64{}
	for _, l := range strings.Split(pl, "\n") {
		switch {
		case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"):
			seq, _ = strconv.ParseUint(l[len("#EXT-X-MEDIA-SEQUENCE:"):], 10, 64)
		case strings.HasPrefix(l, "#EXT-X-DISCONTINUITY-SEQUENCE:"):
			disc, _ = strconv.ParseUint(l[len("#EXT-X-DISCONTINUITY-SEQUENCE:"):], 10, 64)
		case l == "#EXT-X-DISCONTINUITY":
			disc++
		case l != "" && l[0] != '#':
			out[seq] = disc
			seq++
		}
	}
	return out
}

// TestEpochPlaylistPlayerView: a player reloading across a move and across
// the sliding window sees sequence numbers that only grow, one
// discontinuity number per segment that never changes, and a larger one
// after the move.
func TestEpochPlaylistPlayerView(t *testing.T) {
	window := func(first int) string {
		var b strings.Builder
		b.WriteString("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:" + strconv.Itoa(first) + "\n")
		for i := first; i < first+3; i++ {
			b.WriteString("#EXTINF:1.0,\ns-" + strconv.Itoa(i) + ".ts\n")
		}
		return b.String()
	}
	seen := map[uint64]uint64{}
	var last uint64
	for _, step := range []struct {
		first int
		e     uint64
	}{{10, 0}, {11, 0}, {0, 1}, {1, 1}, {2, 1}, {0, 2}, {1, 2}} {
		pl := string(epochPlaylist([]byte(window(step.first)), step.e))
		first := uint64(step.first) + step.e*epochSeqStride
		if first < last {
			t.Fatalf("media sequence went backwards: %d after %d", first, last)
		}
		last = first
		for seq, d := range discNumbers(t, pl) {
			if old, ok := seen[seq]; ok && old != d {
				t.Fatalf("segment %d changed discontinuity number %d -> %d", seq, old, d)
			}
			seen[seq] = d
			if d < step.e {
				t.Fatalf("epoch %d segment %d has discontinuity number %d", step.e, seq, d)
			}
		}
	}
	if seen[10] == seen[epochSeqStride] || seen[epochSeqStride] == seen[2*epochSeqStride] {
		t.Fatalf("no discontinuity between epochs: %v", seen)
	}
}

func FuzzEpochPlaylist(f *testing.F) {
	f.Add([]byte(nginxPlaylist), uint64(1))
	f.Add([]byte("#EXTM3U\r\n#EXT-X-DISCONTINUITY-SEQUENCE:9\r\n#EXT-X-DISCONTINUITY\r\n#EXTINF:1,\r\nx"), uint64(7))
	f.Add([]byte("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n#EXTINF:1,\nx"), uint64(2))
	f.Fuzz(func(t *testing.T, src []byte, e uint64) {
		e %= 1 << 20
		out := epochPlaylist(src, e)
		if e == 0 && !bytes.Equal(out, src) {
			t.Fatal("epoch 0 changed the playlist")
		}
		if len(out) > len(src)+200 {
			t.Fatalf("grew by %d bytes", len(out)-len(src))
		}
	})
}

// epochRouter routes every key to one origin, at a fixed epoch.
type epochRouter struct {
	origin atomic.Value // string
	epoch  uint64
	moved  time.Time
}

func (r *epochRouter) Route(context.Context, stream.Key) (stream.Origin, error) {
	return stream.Origin{ID: "o", HTTP: r.origin.Load().(string)}, nil
}

func (r *epochRouter) StreamEpoch(stream.Key) (uint64, time.Time) { return r.epoch, r.moved }

// TestPlaylistAcrossMove: the playlist of a moved stream is renumbered by
// its epoch; while the new origin answers 404 just after the move, the
// request is held until the playlist appears.
func TestPlaylistAcrossMove(t *testing.T) {
	var ready atomic.Bool
	var asked atomic.Int32
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if !ready.Load() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		w.Write([]byte(nginxPlaylist))
	}))
	defer origin.Close()
	rt := &epochRouter{epoch: 1, moved: time.Now()}
	rt.origin.Store(strings.TrimPrefix(origin.URL, "http://"))
	s, err := New(Config{Router: rt, TokenSecret: []byte("0123456789abcdef"), MoveHold: 3 * time.Second, PlaylistCacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go func() {
		for asked.Load() < 2 {
			time.Sleep(10 * time.Millisecond)
		}
		ready.Store(true)
	}()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/livestream.m3u8", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, "#EXT-X-MEDIA-SEQUENCE:1000000007\n") ||
		!strings.Contains(body, "#EXT-X-DISCONTINUITY\n#EXTINF") || rec.Header().Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Fatalf("%d %v\n%s", rec.Code, rec.Header(), body)
	}
	// Long after the move, a 404 is a 404 at once.
	ready.Store(false)
	rt.moved = time.Now().Add(-time.Hour)
	start := time.Now()
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/livestream.m3u8", nil))
	if rec.Code != http.StatusNotFound || time.Since(start) > 2*time.Second {
		t.Fatalf("%d after %v", rec.Code, time.Since(start))
	}
}

func TestEpochMPD(t *testing.T) {
	const nginx = `<?xml version="1.0"?>
<MPD type="dynamic" xmlns="urn:mpeg:dash:schema:mpd:2011">
  <Period start="PT0S" id="dash">
    <AdaptationSet><Period/></AdaptationSet>
  </Period>
</MPD>
`
	for _, c := range []struct {
		name, in string
		e        uint64
		want     string
	}{
		{"epoch 0 unchanged", nginx, 0, nginx},
		{"nginx-rtmp period id", nginx, 2, strings.Replace(nginx, `id="dash"`, `id="dash-e2"`, 1)},
		{"period without id", `<MPD><Period start="PT0S"/><Period></Period></MPD>`, 1,
			`<MPD><Period id="e1" start="PT0S"/><Period id="e1"></Period></MPD>`},
		{"prefixed", `<m:MPD xmlns:m="urn:mpeg:dash:schema:mpd:2011"><m:Period id='p&amp;1'/></m:MPD>`, 3,
			`<m:MPD xmlns:m="urn:mpeg:dash:schema:mpd:2011"><m:Period id='p&amp;1-e3'/></m:MPD>`},
	} {
		got, err := epochMPD([]byte(c.in), c.e)
		if err != nil || string(got) != c.want {
			t.Errorf("%s: %v\n%s\nwant\n%s", c.name, err, got, c.want)
		}
	}
	if _, err := epochMPD([]byte("<MPD><Period>"), 1); err == nil {
		t.Error("truncated MPD accepted")
	}
}

func FuzzEpochMPD(f *testing.F) {
	f.Add([]byte(`<MPD><Period id="a" start="PT0S"/></MPD>`), uint64(1))
	f.Add([]byte(`<MPD><Period/><x:Period id='q'></x:Period></MPD>`), uint64(9))
	f.Fuzz(func(t *testing.T, src []byte, e uint64) {
		out, err := epochMPD(src, e)
		if err == nil && e == 0 && !bytes.Equal(out, src) {
			t.Fatal("epoch 0 changed the MPD")
		}
	})
}

// TestDocumentsHeldWhileOriginDown: a playlist or MPD request whose origin
// cannot be reached is retried, routing again, until the stream's new
// origin answers; the MPD's Period is renamed by the epoch.
func TestDocumentsHeldWhileOriginDown(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".mpd") {
			w.Write([]byte(`<MPD type="dynamic"><Period id="dash" start="PT0S"></Period></MPD>`))
			return
		}
		w.Write([]byte(nginxPlaylist))
	}))
	defer origin.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	for _, p := range []string{"/live/livestream.m3u8", "/live/livestream.mpd"} {
		rt := &epochRouter{epoch: 2, moved: time.Now()}
		rt.origin.Store(deadAddr)
		s, err := New(Config{Router: rt, TokenSecret: []byte("0123456789abcdef"), MoveHold: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(300*time.Millisecond, func() { rt.origin.Store(strings.TrimPrefix(origin.URL, "http://")) })
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		body := rec.Body.String()
		if rec.Code != http.StatusOK || !(strings.Contains(body, "#EXT-X-MEDIA-SEQUENCE:2000000007") || strings.Contains(body, `id="dash-e2"`)) {
			t.Fatalf("%s: %d\n%s", p, rec.Code, body)
		}
		s.Close()
	}
}
