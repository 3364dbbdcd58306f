package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
)

// startSRSMesh starts a 3-node mesh and two real SRS origins that register
// themselves through their heartbeat (to node 1 and node 3), and waits until
// every node knows both origins as healthy. It skips unless
// SRS_MESH_TEST_SRS names an SRS binary.
func startSRSMesh(t *testing.T) (*cluster, []*harness.SRS) {
	t.Helper()
	harness.Need(t, "ffmpeg")
	c := startCluster(t, 3)
	var origins []*harness.SRS
	for i, via := range []int{0, 2} {
		origins = append(origins, harness.StartSRS(t, harness.SRSOptions{
			ID:           fmt.Sprintf("srs%d", i+1),
			HeartbeatURL: "http://" + c.nodes[via].SystemAPI + "/api/v1/srs/register",
		}))
	}
	harness.WaitFor(t, 30*time.Second, "both SRS origins registered and healthy on every node", func() bool {
		for i := range c.nodes {
			var st mesh.Status
			if c.nodes[i].Status(&st) != nil || len(st.Origins) != 2 {
				return false
			}
			for _, o := range st.Origins {
				if !o.Healthy || o.RTMP == "" || o.HTTP == "" || o.API == "" || o.SRT == "" || o.RTC == "" {
					return false
				}
			}
		}
		return true
	})
	return c, origins
}

// TestSRSOriginsRTMPAndHTTP checks the mesh against real SRS origins that
// register through their heartbeat: RTMP publish through one node, then RTMP,
// HTTP-FLV and HLS plays through the others.
func TestSRSOriginsRTMPAndHTTP(t *testing.T) {
	c, _ := startSRSMesh(t)
	pub := harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/srs?secret=x"))
	res := harness.PlayUntil(t, c.nodes[1].RTMPURL("live/srs"), 2*time.Second, 10, 30*time.Second)
	t.Logf("RTMP play through n2: %d frames", res.VideoFrames)
	res = harness.PlayUntil(t, "http://"+c.nodes[2].HTTPAddr+"/live/srs.flv", 2*time.Second, 10, 30*time.Second)
	t.Logf("HTTP-FLV play through n3: %d frames", res.VideoFrames)
	res = harness.PlayUntil(t, "http://"+c.nodes[1].HTTPAddr+"/live/srs.m3u8", 2*time.Second, 10, 60*time.Second)
	t.Logf("HLS play through n2: %d frames", res.VideoFrames)
	if pub.Exited() {
		t.Fatalf("publisher exited: %s", pub.Output())
	}
}
