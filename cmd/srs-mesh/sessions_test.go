package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/srs-mesh/srs-mesh/mesh/meshtest"
	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/stream"
)

// srs_mesh_sessions counts the clients GET /mesh/v1/streams counts: a
// publisher, an RTMP player with its own origin leg, and three HTTP-FLV
// players sharing one upstream are five clients; the shared upstream is
// none.
func TestSessionsMetricCountsEveryClient(t *testing.T) {
	c := meshtest.Start(t, meshtest.Options{N: 1})
	c.WaitLeader(15 * time.Second)
	node := c.Node(0)
	s := nodeSessions{node}
	key := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "s"}
	meter := func() *atomic.Uint64 { return new(atomic.Uint64) }
	ends := []func(){
		s.Track(key, "rtmp", stream.KindPublish, meter(), meter()),
		s.Track(key, "rtmp", stream.KindPlay, meter(), meter()),
		s.Track(key, "upstream", "", nil, nil),
	}
	for range 3 {
		ends = append(ends, s.Track(key, "flv", stream.KindPlay, nil, meter()))
	}
	defer func() {
		for _, end := range ends {
			end()
		}
	}()

	fan := fanout.NewRegistry(fanout.Config{})
	defer fan.Close()
	reg := prometheus.NewRegistry()
	// An RTMP server is not needed for its clients to be counted; the
	// fan-out gauges come from the registry without an HTTP server.
	reg.MustRegister(&meshCollector{node: node, fanOut: fan})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	var sum float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()+labels(m)] = value(m)
			if mf.GetName() == "srs_mesh_sessions" {
				sum += value(m)
			}
		}
	}
	for series, want := range map[string]float64{
		`srs_mesh_sessions{kind="publish",proto="rtmp"}`: 1,
		`srs_mesh_sessions{kind="play",proto="rtmp"}`:    1,
		`srs_mesh_sessions{kind="play",proto="flv"}`:     3,
		`srs_mesh_fanout_players`:                        0,
		`srs_mesh_fanout_upstreams`:                      0,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	if _, ok := got[`srs_mesh_sessions{kind="",proto="upstream"}`]; ok {
		t.Error("a shared upstream is counted as a client")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var total int
	for _, st := range node.Telemetry().ClusterStreams(ctx).Streams {
		total += st.TotalClients
	}
	if sum != 5 || total != 5 {
		t.Errorf("srs_mesh_sessions sums to %v and /mesh/v1/streams counts %d clients; want 5 and 5", sum, total)
	}
}
