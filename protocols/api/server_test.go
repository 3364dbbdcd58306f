package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

type listDoc struct {
	Code    int              `json:"code"`
	Server  string           `json:"server"`
	Streams []map[string]any `json:"streams"`
	Clients []map[string]any `json:"clients"`
	Origins []OriginResult   `json:"origins"`
}

func resultOf(t *testing.T, rs []OriginResult, id string) OriginResult {
	t.Helper()
	for _, r := range rs {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no origin %q in %+v", id, rs)
	return OriginResult{}
}

func TestNewRequiresOrigins(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrNoOrigins) {
		t.Fatalf("err = %v", err)
	}
}

func TestVersions(t *testing.T) {
	testkit.CheckGoroutines(t)
	_, hs := newTestServer(t, Config{Version: "v1.4.2-rc1"})
	var doc struct {
		Code   int    `json:"code"`
		Server string `json:"server"`
		PID    string `json:"pid"`
		Data   struct {
			Major, Minor, Revision int
			Version                string
		} `json:"data"`
	}
	for _, p := range []string{"/api/v1/versions", "/api/v1/versions/"} {
		res := do(t, "GET", hs.URL+p, &doc)
		if res.StatusCode != 200 || doc.Code != 0 || doc.Server != "node-a" || doc.PID == "" {
			t.Fatalf("%s: %d %+v", p, res.StatusCode, doc)
		}
		if d := doc.Data; d.Major != 1 || d.Minor != 4 || d.Revision != 2 || d.Version != "v1.4.2-rc1" {
			t.Fatalf("%s: data %+v", p, d)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in      string
		a, b, c int
	}{{"1.2.3", 1, 2, 3}, {"v7.0.18", 7, 0, 18}, {"2.1", 2, 1, 0}, {"dev", 0, 0, 0}, {"1.x.3+git", 1, 0, 3}, {"", 0, 0, 0}} {
		a, b, c := parseVersion(tc.in)
		if a != tc.a || b != tc.b || c != tc.c {
			t.Errorf("parseVersion(%q) = %d.%d.%d", tc.in, a, b, c)
		}
	}
}

func TestStreamsAggregated(t *testing.T) {
	testkit.CheckGoroutines(t)
	o1 := newFakeSRS(t, "o1", "cam1", "cam2")
	o2 := newFakeSRS(t, "o2", "livestream")
	_, hs := newTestServer(t, Config{}, o2.info(), o1.info())
	for _, p := range []string{"/api/v1/streams", "/api/v1/streams/"} {
		var doc listDoc
		if res := do(t, "GET", hs.URL+p, &doc); res.StatusCode != 200 || doc.Code != 0 {
			t.Fatalf("%s: %d %+v", p, res.StatusCode, doc)
		}
		var got []string
		for _, s := range doc.Streams {
			got = append(got, s["origin"].(string)+":"+s["name"].(string)+"@"+s["node"].(string))
			if s["video"].(map[string]any)["codec"] != "H264" {
				t.Fatalf("entry lost its fields: %v", s)
			}
		}
		want := []string{"o1:cam1@node-a", "o1:cam2@node-a", "o2:livestream@node-a"}
		if !slices.Equal(got, want) {
			t.Fatalf("streams %v, want %v", got, want)
		}
		if r := resultOf(t, doc.Origins, "o1"); !r.OK || r.Count != 2 {
			t.Fatalf("o1 result %+v", r)
		}
	}
	// Origins are asked for a large page, not SRS's default of 10.
	if l := o1.log(); !slices.Contains(l, "GET /api/v1/streams/?count=1000&start=0") {
		t.Fatalf("o1 requests %v", l)
	}
	// ?origin= restricts the list to one origin.
	var doc listDoc
	do(t, "GET", hs.URL+"/api/v1/streams?origin=o2", &doc)
	if len(doc.Streams) != 1 || len(doc.Origins) != 1 || doc.Streams[0]["origin"] != "o2" {
		t.Fatalf("?origin=o2: %+v", doc)
	}
	var e apiError
	if res := do(t, "GET", hs.URL+"/api/v1/streams?origin=nope", &e); res.StatusCode != 404 || e.Code != 404 {
		t.Fatalf("unknown origin: %d %+v", res.StatusCode, e)
	}
}

func TestClientsPaging(t *testing.T) {
	testkit.CheckGoroutines(t)
	o1 := newFakeSRS(t, "o1", "a", "b", "c")
	o2 := newFakeSRS(t, "o2", "d", "e")
	_, hs := newTestServer(t, Config{}, o1.info(), o2.info())
	ids := func(doc listDoc) (out []string) {
		for _, c := range doc.Clients {
			out = append(out, c["name"].(string))
		}
		return out
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"a", "b", "c", "d", "e"}},
		{"?count=2", []string{"a", "b"}},
		{"?start=2&count=2", []string{"c", "d"}},
		{"?start=4", []string{"e"}},
		{"?start=9&count=2", nil},
	} {
		var doc listDoc
		do(t, "GET", hs.URL+"/api/v1/clients/"+tc.query, &doc)
		if got := ids(doc); !slices.Equal(got, tc.want) {
			t.Errorf("%q: clients %v, want %v", tc.query, got, tc.want)
		}
		if doc.Clients == nil {
			t.Errorf("%q: clients must be a list, not absent", tc.query)
		}
	}
	if l := o2.log(); !slices.Contains(l, "GET /api/v1/clients/?count=4&start=0") {
		t.Fatalf("start+count not asked of o2: %v", l)
	}
	var e apiError
	if res := do(t, "GET", hs.URL+"/api/v1/clients/?count=x", &e); res.StatusCode != 400 {
		t.Fatalf("bad count: %d %+v", res.StatusCode, e)
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// One origin refuses connections, one never answers, one is unhealthy and
// one has no API: the answer still comes back with the healthy origin's
// streams and says what happened to each of the others. The bound is read
// off the requests to the silent origin, not timed: each carries a deadline
// PerOriginTimeout after the call to the API began, and at most that long
// after it was sent.
func TestAggregationDownAndSlow(t *testing.T) {
	testkit.CheckGoroutines(t)
	good := newFakeSRS(t, "good", "livestream")
	slow := newFakeSRS(t, "slow", "x")
	slow.slow = true
	sick := newFakeSRS(t, "sick", "y")
	sickInfo := sick.info()
	sickInfo.Healthy = false
	nginx := OriginInfo{Origin: stream.Origin{ID: "nginx", IP: "127.0.0.1", RTMP: "127.0.0.1:1935"}, Healthy: true}

	const perOrigin = 300 * time.Millisecond
	var mu sync.Mutex
	var began time.Time // when the current call to the API began
	var slowAsked int
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Host == slow.info().Origin.API {
			sent := time.Now()
			deadline, ok := r.Context().Deadline()
			mu.Lock()
			slowAsked++
			if lo, hi := began.Add(perOrigin), sent.Add(perOrigin); !ok || deadline.Before(lo) || deadline.After(hi) {
				t.Errorf("%s: deadline %v (set: %v), want between %v and %v", r.URL.Path, deadline, ok, lo, hi)
			}
			mu.Unlock()
		}
		return tr.RoundTrip(r)
	})}
	_, hs := newTestServer(t, Config{PerOriginTimeout: perOrigin, HTTPClient: client},
		good.info(), deadOrigin(t, "dead"), slow.info(), sickInfo, nginx)
	begin := func() {
		mu.Lock()
		began = time.Now()
		mu.Unlock()
	}

	for _, p := range []string{"/api/v1/streams/", "/api/v1/clients/"} {
		begin()
		var doc listDoc
		res := do(t, "GET", hs.URL+p, &doc)
		if res.StatusCode != 200 || doc.Code != 0 {
			t.Fatalf("%s: %d %+v", p, res.StatusCode, doc)
		}
		if n := len(doc.Streams) + len(doc.Clients); n != 1 {
			t.Fatalf("%s: %d entries, want 1: %+v", p, n, doc)
		}
		if len(doc.Origins) != 5 {
			t.Fatalf("%s: origins %+v", p, doc.Origins)
		}
		if r := resultOf(t, doc.Origins, "good"); !r.OK || r.Count != 1 {
			t.Fatalf("good: %+v", r)
		}
		for _, id := range []string{"dead", "slow", "sick", "nginx"} {
			if r := resultOf(t, doc.Origins, id); r.OK || r.Error == "" {
				t.Fatalf("%s: %+v", id, r)
			}
		}
		if r := resultOf(t, doc.Origins, "slow"); !strings.Contains(r.Error, "deadline") {
			t.Errorf("slow origin error %q", r.Error)
		}
	}
	if l := sick.log(); len(l) != 0 {
		t.Fatalf("unhealthy origin was asked: %v", l)
	}
	// The search for an id is bounded the same way.
	begin()
	var e apiError
	res := do(t, "GET", hs.URL+"/api/v1/clients/nope", &e)
	if res.StatusCode != 404 || e.Code != codeClientNotFound || !strings.Contains(e.Message, "slow") {
		t.Fatalf("missing client: %d %+v", res.StatusCode, e)
	}
	mu.Lock()
	defer mu.Unlock()
	if slowAsked < 3 {
		t.Fatalf("the silent origin was asked %d times, want 3 (two lists and a search)", slowAsked)
	}
}

func TestResponseBounded(t *testing.T) {
	testkit.CheckGoroutines(t)
	big := newFakeSRS(t, "big")
	big.body = []byte(`{"code":0,"streams":[` + strings.Repeat(`{"id":"x"},`, 1000) + `{}]}`)
	ok := newFakeSRS(t, "ok", "s")
	_, hs := newTestServer(t, Config{MaxResponseBytes: 4096}, big.info(), ok.info())
	var doc listDoc
	do(t, "GET", hs.URL+"/api/v1/streams/", &doc)
	if r := resultOf(t, doc.Origins, "big"); r.OK || !strings.Contains(r.Error, "too large") {
		t.Fatalf("big: %+v", r)
	}
	if len(doc.Streams) != 1 {
		t.Fatalf("streams %+v", doc.Streams)
	}
}

func TestOneByID(t *testing.T) {
	testkit.CheckGoroutines(t)
	o1 := newFakeSRS(t, "o1", "a")
	o2 := newFakeSRS(t, "o2", "b", "c")
	_, hs := newTestServer(t, Config{}, o1.info(), o2.info(), deadOrigin(t, "o3"))

	var doc struct {
		Code   int            `json:"code"`
		Stream map[string]any `json:"stream"`
		Client map[string]any `json:"client"`
	}
	if res := do(t, "GET", hs.URL+"/api/v1/streams/vid-o21", &doc); res.StatusCode != 200 || doc.Code != 0 {
		t.Fatalf("get stream: %d %+v", res.StatusCode, doc)
	}
	if doc.Stream["name"] != "c" || doc.Stream["origin"] != "o2" || doc.Stream["node"] != "node-a" {
		t.Fatalf("stream %+v", doc.Stream)
	}
	if res := do(t, "GET", hs.URL+"/api/v1/clients/co10", &doc); res.StatusCode != 200 || doc.Client["origin"] != "o1" {
		t.Fatalf("get client: %d %+v", res.StatusCode, doc)
	}

	// DELETE reaches the owner only.
	var del struct{ Code int }
	if res := do(t, "DELETE", hs.URL+"/api/v1/clients/co20", &del); res.StatusCode != 200 || del.Code != 0 {
		t.Fatalf("delete: %d %+v", res.StatusCode, del)
	}
	if !slices.Equal(o2.deleted, []string{"co20"}) || len(o1.deleted) != 0 {
		t.Fatalf("deleted o1 %v o2 %v", o1.deleted, o2.deleted)
	}
	for _, r := range o1.log() {
		if strings.HasPrefix(r, "DELETE") {
			t.Fatalf("o1 got %s", r)
		}
	}
	var e apiError
	if res := do(t, "DELETE", hs.URL+"/api/v1/clients/co20", &e); res.StatusCode != 404 || e.Code != codeClientNotFound {
		t.Fatalf("second delete: %d %+v", res.StatusCode, e)
	}
	if res := do(t, "GET", hs.URL+"/api/v1/streams/vid-nope", &e); res.StatusCode != 404 || e.Code != codeStreamNotFound {
		t.Fatalf("missing stream: %d %+v", res.StatusCode, e)
	}
	// ?origin= asks only that origin.
	if res := do(t, "GET", hs.URL+"/api/v1/clients/co21?origin=o1", &e); res.StatusCode != 404 {
		t.Fatalf("client of o2 found on o1: %d %+v", res.StatusCode, e)
	}
	if res := do(t, "GET", hs.URL+"/api/v1/clients/co21?origin=o2", &doc); res.StatusCode != 200 || doc.Client["origin"] != "o2" {
		t.Fatalf("?origin=o2: %d %+v", res.StatusCode, doc)
	}
}

func TestNoHealthyOrigin(t *testing.T) {
	testkit.CheckGoroutines(t)
	o := newFakeSRS(t, "o1", "a")
	info := o.info()
	info.Healthy = false
	_, hs := newTestServer(t, Config{}, info)
	var e apiError
	if res := do(t, "GET", hs.URL+"/api/v1/streams/vid-o10", &e); res.StatusCode != 503 {
		t.Fatalf("%d %+v", res.StatusCode, e)
	}
	var doc listDoc
	if res := do(t, "GET", hs.URL+"/api/v1/streams/", &doc); res.StatusCode != 200 || len(doc.Streams) != 0 || doc.Origins[0].OK {
		t.Fatalf("%d %+v", res.StatusCode, doc)
	}
}

func TestProxyByOrigin(t *testing.T) {
	testkit.CheckGoroutines(t)
	o1 := newFakeSRS(t, "o1")
	o2 := newFakeSRS(t, "o2")
	_, hs := newTestServer(t, Config{}, o1.info(), o2.info(), deadOrigin(t, "o3"))

	var e apiError
	res := do(t, "GET", hs.URL+"/api/v1/vhosts/", &e)
	if res.StatusCode != 400 || e.Code != 400 || !strings.Contains(e.Message, "?origin=<id>") || !strings.Contains(e.Message, "o1, o2, o3") {
		t.Fatalf("no origin: %d %+v", res.StatusCode, e)
	}
	if res.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("no CORS on errors: %v", res.Header)
	}

	var doc struct {
		Code   int              `json:"code"`
		Server string           `json:"server"`
		Vhosts []map[string]any `json:"vhosts"`
	}
	res = do(t, "GET", hs.URL+"/api/v1/vhosts/?origin=o2&x=1", &doc)
	if res.StatusCode != 200 || doc.Server != "vid-o2" || len(doc.Vhosts) != 1 {
		t.Fatalf("proxied: %d %+v", res.StatusCode, doc)
	}
	if got := res.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 {
		t.Fatalf("CORS header %v", got)
	}
	if l := o2.log(); !slices.Equal(l, []string{"GET /api/v1/vhosts/?x=1"}) {
		t.Fatalf("o2 requests %v", l)
	}
	if len(o1.log()) != 0 {
		t.Fatalf("o1 asked: %v", o1.log())
	}
	// SRS's redirect to the trailing-slash form keeps ?origin=.
	res = do(t, "GET", hs.URL+"/api/v1/vhosts?origin=o2", nil)
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/api/v1/vhosts/?origin=o2" {
		t.Fatalf("redirect: %d %v", res.StatusCode, res.Header)
	}
	if res := do(t, "GET", hs.URL+"/api/v1/vhosts/?origin=zz", &e); res.StatusCode != 404 {
		t.Fatalf("unknown origin: %d %+v", res.StatusCode, e)
	}
	if res := do(t, "GET", hs.URL+"/api/v1/vhosts/?origin=o3", &e); res.StatusCode != 502 || e.Code != 502 {
		t.Fatalf("dead origin: %d %+v", res.StatusCode, e)
	}
	if res := do(t, "GET", hs.URL+"/other", &e); res.StatusCode != 400 || e.Code != 400 {
		t.Fatalf("outside /api/v1/: %d %+v", res.StatusCode, e)
	}
}

func TestCORSPreflight(t *testing.T) {
	testkit.CheckGoroutines(t)
	_, hs := newTestServer(t, Config{})
	for _, p := range []string{"/api/v1/streams/", "/api/v1/clients/x", "/api/v1/anything"} {
		res := do(t, "OPTIONS", hs.URL+p, nil)
		if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != "*" || res.Header.Get("Access-Control-Allow-Methods") == "" {
			t.Fatalf("%s: %d %v", p, res.StatusCode, res.Header)
		}
	}
}

func TestSummaries(t *testing.T) {
	testkit.CheckGoroutines(t)
	o1 := newFakeSRS(t, "o1", "a", "b")
	o2 := newFakeSRS(t, "o2", "c")
	_, hs := newTestServer(t, Config{}, o1.info(), o2.info(), deadOrigin(t, "o3"))
	var doc struct {
		Code int `json:"code"`
		Data struct {
			OK      bool               `json:"ok"`
			Totals  map[string]float64 `json:"totals"`
			Origins []SummaryResult    `json:"origins"`
		} `json:"data"`
	}
	if res := do(t, "GET", hs.URL+"/api/v1/summaries", &doc); res.StatusCode != 200 || doc.Code != 0 || !doc.Data.OK {
		t.Fatalf("%d %+v", res.StatusCode, doc)
	}
	tot := doc.Data.Totals
	if tot["origins"] != 3 || tot["origins_ok"] != 2 || tot["conn_srs"] != 3 || tot["cpus"] != 4 || tot["mem_kbyte"] != 80000 || tot["srs_recv_bytes"] != 2000 {
		t.Fatalf("totals %v", tot)
	}
	if len(doc.Data.Origins) != 3 || !doc.Data.Origins[0].OK || doc.Data.Origins[2].OK {
		t.Fatalf("origins %+v", doc.Data.Origins)
	}
	var self struct {
		Self map[string]any `json:"self"`
	}
	if err := json.Unmarshal(doc.Data.Origins[1].Data, &self); err != nil || self.Self["version"] != "7.0.18" {
		t.Fatalf("origin data %s: %v", doc.Data.Origins[1].Data, err)
	}
}

func TestMergeList(t *testing.T) {
	answers := []answer{
		{ID: "o1", Body: []byte(`{"code":0,"streams":[{"id":"a","origin":"spoofed"}]}`)},
		{ID: "o2", Body: []byte(`{"code":2048}`)},
		{ID: "o3", Body: []byte(`{"code":0,"streams":[1]}`)},
		{ID: "o4", Body: []byte(`{"code":0,"streams":null}`)},
		{ID: "o5", Body: []byte(`[]`)},
		{ID: "o6", Err: errors.New("boom")},
	}
	entries, results := mergeList("streams", "n1", answers)
	if len(entries) != 1 || string(entries[0]) != `{"id":"a","node":"n1","origin":"o1"}` {
		t.Fatalf("entries %s", entries)
	}
	wantOK := []bool{true, false, false, true, false, false}
	for i, r := range results {
		if r.OK != wantOK[i] || r.OK == (r.Error != "") {
			t.Errorf("%s: %+v", r.ID, r)
		}
	}
}

func FuzzMergeStreams(f *testing.F) {
	real := `{"code":0,"server":"vid-4121896","service":"w9r1727y","pid":"7256","streams":[{"id":"vid-j188221","name":"livestream","vhost":"vid-1z14575","app":"live","tcUrl":"rtmp://127.0.0.1:21935/live","url":"/live/livestream","live_ms":1795463904194,"clients":1,"frames":0,"send_bytes":3987,"recv_bytes":130825,"kbps":{"recv_30s":0,"send_30s":0},"publish":{"active":true,"cid":"p38l27c7"},"video":{"codec":"H264","profile":"Other","level":"1.3","width":320,"height":240},"audio":{"codec":"AAC","sample_rate":44100,"channel":2,"profile":"LC"}}]}`
	f.Add([]byte(real), []byte(`{"code":0,"streams":[]}`))
	f.Add([]byte(`{"code":2048}`), []byte(`{"code":0,"streams":[{},{"origin":1}]}`))
	f.Add([]byte(`{"code":"0","streams":[{}]}`), []byte(`{"code":0.0,"streams":{}}`))
	f.Add([]byte(`null`), []byte(`{"code":0,"streams":[null]}`))
	f.Add([]byte(`{"code":0,"streams":[{"a":1}],"streams":[{"b":2},{"c":3}]}`), []byte{0xff})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		entries, results := mergeList("streams", "node-1", []answer{{ID: "o1", Body: a}, {ID: "o2", Body: b}})
		if len(results) != 2 {
			t.Fatalf("results %+v", results)
		}
		n := 0
		for _, r := range results {
			if r.OK == (r.Error != "") || (!r.OK && r.Count != 0) {
				t.Fatalf("inconsistent result %+v", r)
			}
			n += r.Count
		}
		if n != len(entries) {
			t.Fatalf("counts %d, entries %d", n, len(entries))
		}
		for i, e := range entries {
			var obj map[string]any
			if err := json.Unmarshal(e, &obj); err != nil {
				t.Fatalf("entry %s: %v", e, err)
			}
			want := "o1"
			if i >= results[0].Count {
				want = "o2"
			}
			if obj["origin"] != want || obj["node"] != "node-1" {
				t.Fatalf("entry %d %s: want origin %s", i, e, want)
			}
		}
		if _, err := json.Marshal(entries); err != nil {
			t.Fatal(err)
		}
	})
}
