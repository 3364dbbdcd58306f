package mesh_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/stream"
)

// BenchmarkAssign3Nodes measures first-use assignments (one Raft write each,
// forwarded to the leader from followers) on a 3-node in-process mesh, with
// 32 concurrent callers spread over the nodes: with the cluster port in
// plain TCP, and in mutual TLS.
func BenchmarkAssign3Nodes(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchAssign(b, nil) })
	b.Run("tls", func(b *testing.B) {
		ca := newTestCA(b)
		benchAssign(b, func(_ int, cfg *mesh.Config) { cfg.TLS = ca.node(b, cfg.NodeID) })
	})
}

func benchAssign(b *testing.B, tweak func(int, *mesh.Config)) {
	c := startCluster(b, 3, tweak)
	registerOrigins(b, c, startOrigin(b, "o1"), startOrigin(b, "o2"), startOrigin(b, "o3"))
	const workers = 32
	var next atomic.Int64
	lat := make([][]time.Duration, workers)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				k := stream.Key{Vhost: stream.DefaultVhost, App: "bench", Stream: fmt.Sprintf("k%d", i)}
				t0 := time.Now()
				if _, err := c.Node(int(i)%3).Route(context.Background(), k); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	p99 := all[min(len(all)-1, len(all)*99/100)]
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "assigns/s")
}

// BenchmarkRouteExisting measures the local read path: routing a stream that
// already has an assignment (no network).
func BenchmarkRouteExisting(b *testing.B) {
	c := startCluster(b, 1, nil)
	registerOrigins(b, c, startOrigin(b, "o1"), startOrigin(b, "o2"))
	n := c.Node(0)
	keys := make([]stream.Key, 1000)
	for i := range keys {
		keys[i] = stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: fmt.Sprintf("s%d", i)}
		if _, err := n.Route(context.Background(), keys[i]); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := n.Route(ctx, keys[i%len(keys)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
