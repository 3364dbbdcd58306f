package httpstream

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
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
		{"epoch 1", nginxPlaylist, 1, "#EXTM3U\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:1007\n#EXT-X-TARGETDURATION:2\n" +
			"#EXT-X-DISCONTINUITY\n#EXTINF:1.000,\nlivestream-7.ts\n#EXTINF:1.000,\nlivestream-8.ts\n"},
		{"epoch 3 with a discontinuity sequence", "#EXTM3U\r\n#EXT-X-MEDIA-SEQUENCE:0\r\n#EXT-X-DISCONTINUITY-SEQUENCE:2\r\n#EXTINF:2,\r\na.ts\r\n", 3,
			"#EXTM3U\r\n#EXT-X-MEDIA-SEQUENCE:3000\r\n#EXT-X-DISCONTINUITY-SEQUENCE:4\r\n#EXT-X-DISCONTINUITY\r\n#EXTINF:2,\r\na.ts\r\n"},
		{"origin's own discontinuity on the first segment", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:5\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\nb.ts", 2,
			"#EXTM3U\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n#EXT-X-MEDIA-SEQUENCE:2005\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\nb.ts"},
		{"no sequence tags", "#EXTM3U\n#EXTINF:2,\na.ts\n", 1,
			"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1000\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\na.ts\n"},
		{"master playlist unchanged", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", 2, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n"},
		{"no segments unchanged", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n", 2, "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n"},
		{"no header unchanged", "#EXTINF:2,\na.ts\n", 2, "#EXTINF:2,\na.ts\n"},
	} {
		if got := string(epochPlaylist([]byte(c.in), c.e, c.e*1000)); got != c.want {
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
		pl := string(epochPlaylist([]byte(window(step.first)), step.e, step.e*testSeqBase))
		first := uint64(step.first) + step.e*testSeqBase
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
	if seen[10] == seen[testSeqBase] || seen[testSeqBase] == seen[2*testSeqBase] {
		t.Fatalf("no discontinuity between epochs: %v", seen)
	}
}

func FuzzEpochPlaylist(f *testing.F) {
	f.Add([]byte(nginxPlaylist), uint64(1))
	f.Add([]byte("#EXTM3U\r\n#EXT-X-DISCONTINUITY-SEQUENCE:9\r\n#EXT-X-DISCONTINUITY\r\n#EXTINF:1,\r\nx"), uint64(7))
	f.Add([]byte("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n#EXTINF:1,\nx"), uint64(2))
	f.Fuzz(func(t *testing.T, src []byte, e uint64) {
		e %= 1 << 20
		out := epochPlaylist(src, e, e*testSeqBase)
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

func (r *epochRouter) RoutePlay(ctx context.Context, k stream.Key) (stream.Origin, error) {
	return r.Route(ctx, k)
}

func (r *epochRouter) StreamEpoch(stream.Key) (uint64, uint64, time.Time) {
	return r.epoch, r.epoch * testSeqBase, r.moved
}

// testSeqBase is the sequence base per epoch in these tests.
const testSeqBase = 1000

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
	s, err := New(Config{Router: rt, Epochs: rt, TokenSecret: []byte("0123456789abcdef"), MoveHold: 3 * time.Second, PlaylistCacheTTL: -1})
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
	if rec.Code != http.StatusOK || !strings.Contains(body, "#EXT-X-MEDIA-SEQUENCE:1007\n") ||
		!strings.Contains(body, "#EXT-X-DISCONTINUITY\n#EXTINF") || rec.Header().Get("Content-Length") != strconv.Itoa(len(body)) {
		t.Fatalf("%d %v\n%s", rec.Code, rec.Header(), body)
	}
	// Long after the move, a 404 is a 404 at once: the origin is asked once,
	// where a held request would ask again every moveHoldRetry.
	ready.Store(false)
	rt.moved = time.Now().Add(-time.Hour)
	before := asked.Load()
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/livestream.m3u8", nil))
	if n := asked.Load() - before; rec.Code != http.StatusNotFound || n != 1 {
		t.Fatalf("%d after asking the origin %d times, want 404 after one", rec.Code, n)
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

// FuzzEpochMPD checks epochMPD's contract on any input: epoch 0 returns the
// MPD as it is; otherwise it fails only on what does not parse as balanced
// XML, and its output parses into the same tokens as its input except that
// each Period directly under the root has its id suffixed with "-e<e>" (or
// gets the id "e<e>"), its other attributes unchanged and in order.
func FuzzEpochMPD(f *testing.F) {
	f.Add([]byte(`<MPD><Period id="a" start="PT0S"/></MPD>`), uint64(1))
	f.Add([]byte(`<MPD><Period/><x:Period id='q'></x:Period></MPD>`), uint64(9))
	f.Add([]byte(`<m:MPD xmlns:m="urn:mpeg:dash:schema:mpd:2011"><m:Period id='p&amp;1'><Period/></m:Period></m:MPD>`), uint64(3))
	f.Fuzz(func(t *testing.T, src []byte, e uint64) {
		out, err := epochMPD(src, e)
		if e == 0 {
			if err != nil || !bytes.Equal(out, src) {
				t.Fatalf("epoch 0 changed the MPD (%v)", err)
			}
			return
		}
		in, inErr := rawXMLTokens(src)
		if err != nil {
			if inErr == nil {
				t.Fatalf("refused balanced XML: %v", err)
			}
			return
		}
		if inErr != nil {
			t.Fatalf("accepted what does not parse: %v", inErr)
		}
		got, gotErr := rawXMLTokens(out)
		if gotErr != nil {
			t.Fatalf("output does not parse: %v\n%q", gotErr, out)
		}
		if len(got) != len(in) {
			t.Fatalf("%d tokens in, %d out:\n%q", len(in), len(got), out)
		}
		suffix := "e" + strconv.FormatUint(e, 10)
		depth := 0
		for i := range in {
			want := in[i]
			if se, ok := want.(xml.StartElement); ok {
				if depth == 1 && se.Name.Local == "Period" {
					want = withEpochID(se, suffix)
				}
				depth++
			} else if _, ok := want.(xml.EndElement); ok {
				depth--
			}
			if want == nil { // a Period with two ids is not XML: no claim
				return
			}
			if !reflect.DeepEqual(got[i], want) {
				t.Fatalf("token %d: %#v, want %#v\nin  %q\nout %q", i, got[i], want, src, out)
			}
		}
	})
}

// rawXMLTokens returns the raw tokens of b (copied), or why b is not
// balanced XML.
func rawXMLTokens(b []byte) ([]xml.Token, error) {
	dec := xml.NewDecoder(bytes.NewReader(b))
	var toks []xml.Token
	depth := 0
	for {
		tok, err := dec.RawToken()
		if err == io.EOF {
			if depth != 0 {
				return nil, errors.New("unbalanced elements")
			}
			return toks, nil
		}
		if err != nil {
			return nil, err
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
		}
		toks = append(toks, xml.CopyToken(tok))
	}
}

// withEpochID is se with its unprefixed id attribute suffixed by
// "-"+suffix, or with id=suffix first when it has none; nil when it has
// the attribute twice.
func withEpochID(se xml.StartElement, suffix string) xml.Token {
	se = se.Copy()
	at := -1
	for i, a := range se.Attr {
		if a.Name == (xml.Name{Local: "id"}) {
			if at >= 0 {
				return nil
			}
			at = i
		}
	}
	if at < 0 {
		se.Attr = append([]xml.Attr{{Name: xml.Name{Local: "id"}, Value: suffix}}, se.Attr...)
	} else {
		se.Attr[at].Value += "-" + suffix
	}
	return se
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
		s, err := New(Config{Router: rt, Epochs: rt, TokenSecret: []byte("0123456789abcdef"), MoveHold: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(300*time.Millisecond, func() { rt.origin.Store(strings.TrimPrefix(origin.URL, "http://")) })
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		body := rec.Body.String()
		if rec.Code != http.StatusOK || !(strings.Contains(body, "#EXT-X-MEDIA-SEQUENCE:2007") || strings.Contains(body, `id="dash-e2"`)) {
			t.Fatalf("%s: %d\n%s", p, rec.Code, body)
		}
		s.Close()
	}
}

// TestNewSessionAfterMove: a player reloads SRS's per-viewer media playlist
// (hls_ctx) of a moved stream; the new origin, which does not know the
// session, answers with a master playlist, and the node serves the media
// playlist of the new session instead. Before any move, the answer is
// relayed as it is.
func TestNewSessionAfterMove(t *testing.T) {
	var masters atomic.Int32
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("hls_ctx") != "new" {
			if r.URL.Query().Get("hls_ctx") != "" { // not the node's probe of a moved stream
				masters.Add(1)
			}
			w.Write([]byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n/live/livestream.m3u8?hls_ctx=new\n"))
			return
		}
		w.Write([]byte("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1,\nlivestream-0.ts?hls_ctx=new\n"))
	}))
	defer origin.Close()
	for _, tc := range []struct {
		epoch  uint64
		master bool
	}{{0, true}, {1, false}} {
		rt := &epochRouter{epoch: tc.epoch, moved: time.Now()}
		rt.origin.Store(strings.TrimPrefix(origin.URL, "http://"))
		s, err := New(Config{Router: rt, Epochs: rt, TokenSecret: []byte("0123456789abcdef"), PlaylistCacheTTL: -1})
		if err != nil {
			t.Fatal(err)
		}
		masters.Store(0)
		for range 3 { // reloads with the stale session open one new session
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/livestream.m3u8?hls_ctx=old", nil))
			body := rec.Body.String()
			if rec.Code != http.StatusOK || strings.Contains(body, "#EXT-X-STREAM-INF") != tc.master ||
				(!tc.master && !strings.Contains(body, "livestream-0.ts?hls_ctx=new")) {
				t.Errorf("epoch %d: %d\n%s", tc.epoch, rec.Code, body)
			}
		}
		if want := map[bool]int32{true: 3, false: 1}[tc.master]; masters.Load() != want {
			t.Errorf("epoch %d: the origin opened %d sessions for 3 reloads, want %d", tc.epoch, masters.Load(), want)
		}
		s.Close()
	}
}

// TestSessionMapBound: the map of moved sessions keeps at most
// maxMovedSessions entries, forgets idle ones, and drops the least
// recently used when full.
func TestSessionMapBound(t *testing.T) {
	now := time.Unix(1000, 0)
	m := sessionMap{now: func() time.Time { return now }}
	for i := range maxMovedSessions + 10 {
		m.put("stale"+strconv.Itoa(i), "q")
		now = now.Add(time.Millisecond)
	}
	if m.len() != maxMovedSessions {
		t.Fatalf("%d entries, want %d", m.len(), maxMovedSessions)
	}
	if _, ok := m.get("stale0"); ok {
		t.Error("the least recently used entry was kept")
	}
	if q, ok := m.get("stale" + strconv.Itoa(maxMovedSessions+9)); !ok || q != "q" {
		t.Error("the newest entry was dropped")
	}
	now = now.Add(movedSessionTTL + time.Second)
	if _, ok := m.get("stale20"); ok {
		t.Error("an idle entry outlived its TTL")
	}
}
