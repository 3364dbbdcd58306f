package mesh_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/streams"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// Every node samples its throughput and sessions; /mesh/v1/history on any
// node has every node's samples, and /mesh/v1/streams the bit rates of the
// streams whose sessions count their bytes.
func TestClusterHistoryAndRates(t *testing.T) {
	var bytesIn atomic.Uint64
	c := startCluster(t, 3, func(i int, cfg *mesh.Config) {
		cfg.HistoryInterval = 100 * time.Millisecond
		if i == 1 {
			cfg.Throughput = func() (uint64, uint64) { return bytesIn.Load(), 2 * bytesIn.Load() }
		}
	})
	o := startOrigin(t, "o1")
	registerOrigins(t, c, o)

	var in, out atomic.Uint64
	end := c.Node(1).TrackMetered(key(1), "rtmp", stream.KindPublish, &in, &out)
	defer end()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				in.Add(12_500) // about 10 Mb/s
				out.Add(125)
				bytesIn.Add(12_500)
			}
		}
	}()
	defer func() { close(stop); <-done }()

	var h mesh.History
	testkit.WaitFor(t, clusterTimeout, "samples of every node, with node1's throughput", func() bool {
		getDoc(t, c.Members[0].URL+"/mesh/v1/history", &h)
		if len(h.Nodes) != 3 {
			return false
		}
		for _, n := range h.Nodes {
			if !n.OK || len(n.Samples) < 2 || n.IntervalMs != 100 {
				return false
			}
		}
		last := h.Nodes[1].Samples[len(h.Nodes[1].Samples)-1]
		return h.Nodes[1].ID == "node1" && last.InBps > 1e6 && last.OutBps > last.InBps && last.Sessions["rtmp"] == 1
	})
	var doc streams.Cluster
	testkit.WaitFor(t, clusterTimeout, "the stream's bit rates", func() bool {
		getDoc(t, c.Members[2].URL+"/mesh/v1/streams", &doc)
		s, ok := streamOf(doc, key(1).String())
		return ok && s.IngestBps > 1e6 && s.EgressBps > 0 && s.EgressBps < s.IngestBps
	})

	// A dead node is listed without samples, and the answer still comes.
	c.Kill(2)
	getDoc(t, c.Members[0].URL+"/mesh/v1/history", &h)
	for _, n := range h.Nodes {
		if n.ID == "node2" && (n.OK || n.Samples == nil) {
			t.Errorf("dead node: %+v", n.Answer)
		}
	}
}
