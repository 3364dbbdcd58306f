package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/srs-mesh/srs-mesh/mesh/meshtest"
	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/protocols/httpstream"
	"github.com/srs-mesh/srs-mesh/stream"
)

func TestCacheFlags(t *testing.T) {
	cmd := newServeCmd()
	if err := cmd.Flags().Parse(nil); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"cache-size": "256MiB", "playlist-cache-ttl": "0s", "fanout": "true"} {
		if got := cmd.Flags().Lookup(name).Value.String(); got != want {
			t.Errorf("default --%s = %s, want %s", name, got, want)
		}
	}
	env := map[string]string{"SRS_MESH_CACHE_SIZE": "0", "SRS_MESH_PLAYLIST_CACHE_TTL": "-1s", "SRS_MESH_FANOUT": "false"}
	if err := applyEnv(cmd.Flags(), func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"cache-size": "0", "playlist-cache-ttl": "-1s", "fanout": "false"} {
		if got := cmd.Flags().Lookup(name).Value.String(); got != want {
			t.Errorf("--%s = %s from the environment, want %s", name, got, want)
		}
	}

	for in, want := range map[string]int64{
		"256MiB": 256 << 20, "1gib": 1 << 30, "64 KiB": 64 << 10, "500MB": 500e6, "1048576": 1 << 20, "10B": 10, "0": 0, "2TiB": 2 << 40,
	} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("%q: %d %v, want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5GiB", "MiB", "12 apples", "99999999999TiB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("%q accepted as %d", in, b)
		}
	}
	if got := byteSize(0).cacheBytes(); got >= 0 {
		t.Errorf("--cache-size 0 gives CacheBytes %d, want a negative (disabled) value", got)
	}
	if got := byteSize(1 << 20).cacheBytes(); got != 1<<20 {
		t.Errorf("--cache-size 1MiB gives CacheBytes %d", got)
	}
}

type oneOrigin string

func (o oneOrigin) Route(context.Context, stream.Key) (stream.Origin, error) {
	return stream.Origin{ID: "o1", HTTP: string(o)}, nil
}

func (o oneOrigin) RoutePlay(ctx context.Context, key stream.Key) (stream.Origin, error) {
	return o.Route(ctx, key)
}

// The cache's counters and size reach /metrics next to the existing
// series.
func TestCacheMetrics(t *testing.T) {
	c := meshtest.Start(t, meshtest.Options{N: 1})
	c.WaitLeader(15 * time.Second)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\ns-1.ts\n")
	}))
	defer origin.Close()
	hs, err := httpstream.New(httpstream.Config{Router: oneOrigin(strings.TrimPrefix(origin.URL, "http://")), TokenSecret: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	for range 2 {
		w := httptest.NewRecorder()
		hs.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/live/s.m3u8", nil))
		if w.Code != 200 {
			t.Fatalf("playlist: %d %s", w.Code, w.Body)
		}
	}

	fan := fanout.NewRegistry(fanout.Config{})
	defer fan.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(&meshCollector{node: c.Node(0), httpStream: hs, fanOut: fan})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()+labels(m)] = value(m)
		}
	}
	for series, want := range map[string]float64{
		`srs_mesh_cache_requests_total{kind="document",result="hit"}`:       1,
		`srs_mesh_cache_requests_total{kind="document",result="miss"}`:      1,
		`srs_mesh_cache_requests_total{kind="document",result="coalesced"}`: 0,
		`srs_mesh_cache_requests_total{kind="segment",result="hit"}`:        0,
		`srs_mesh_cache_bytes{kind="segment"}`:                              0,
		`srs_mesh_viewers_estimated{proto="hls"}`:                           1,
		`srs_mesh_viewers_estimated{proto="dash"}`:                          0,
		`srs_mesh_http_table_entries{table="viewers"}`:                      1,
		`srs_mesh_sessions{kind="play",proto="flv"}`:                        0,
		`srs_mesh_assignments`:                                              0,
		`srs_mesh_fanout_players`:                                           0,
		`srs_mesh_fanout_upstreams`:                                         0,
		`srs_mesh_fanout_dropped_total{action="skipped"}`:                   0,
		`srs_mesh_fanout_dropped_total{action="kicked"}`:                    0,
		`srs_mesh_raft_leader`:                                              1,
		`srs_mesh_state_halted`:                                             0,
		`srs_mesh_protocol_version{kind="node"}`:                            2,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	if v := got[`srs_mesh_cache_bytes{kind="document"}`]; v <= 0 {
		t.Errorf("document cache bytes %v", v)
	}
}

func labels(m *dto.Metric) string {
	if len(m.GetLabel()) == 0 {
		return ""
	}
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetName()+`="`+l.GetValue()+`"`)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return 0
}
