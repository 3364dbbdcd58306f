package api

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestRealSRS aggregates two real SRS origins, each with its own publisher,
// and kicks one publisher through the API. It is skipped unless
// SRS_MESH_TEST_SRS names an SRS binary.
func TestRealSRS(t *testing.T) {
	testkit.CheckGoroutines(t)
	a := harness.StartSRS(t, harness.SRSOptions{ID: "srs-a"})
	b := harness.StartSRS(t, harness.SRSOptions{ID: "srs-b"})
	origins := []OriginInfo{
		{Origin: stream.Origin{ID: "srs-a", IP: "127.0.0.1", RTMP: a.RTMPAddr, API: a.APIAddr}, Healthy: true},
		{Origin: stream.Origin{ID: "srs-b", IP: "127.0.0.1", RTMP: b.RTMPAddr, API: b.APIAddr}, Healthy: true},
	}
	_, hs := newTestServer(t, Config{NodeID: "node-1"}, origins...)

	pubA := harness.PublishRTMP(t, "rtmp://"+a.RTMPAddr+"/live/cam-a")
	pubB := harness.PublishRTMP(t, "rtmp://"+b.RTMPAddr+"/live/cam-b")

	var streams listDoc
	testkit.WaitFor(t, 20*time.Second, "both streams listed", func() bool {
		streams = listDoc{}
		do(t, "GET", hs.URL+"/api/v1/streams", &streams)
		var got []string
		for _, s := range streams.Streams {
			if p, _ := s["publish"].(map[string]any); p["active"] == true {
				got = append(got, s["origin"].(string)+":"+s["name"].(string))
			}
		}
		return slices.Equal(got, []string{"srs-a:cam-a", "srs-b:cam-b"})
	})
	for _, s := range streams.Streams {
		if s["node"] != "node-1" || s["url"] == "" {
			t.Fatalf("stream entry %v", s)
		}
	}

	var clients listDoc
	do(t, "GET", hs.URL+"/api/v1/clients/", &clients)
	publisher := map[string]string{} // origin -> client id
	for _, c := range clients.Clients {
		if c["publish"] == true {
			publisher[c["origin"].(string)] = c["id"].(string)
		}
	}
	if len(publisher) != 2 || publisher["srs-a"] == "" || publisher["srs-b"] == "" {
		t.Fatalf("publishers %v in %+v", publisher, clients)
	}

	// A stream id is found on its origin.
	var one struct {
		Code   int            `json:"code"`
		Stream map[string]any `json:"stream"`
	}
	sid := streams.Streams[1]["id"].(string)
	if res := do(t, "GET", hs.URL+"/api/v1/streams/"+sid, &one); res.StatusCode != 200 || one.Stream["origin"] != "srs-b" {
		t.Fatalf("stream %s: %d %+v", sid, res.StatusCode, one)
	}

	// Kicking srs-b's publisher ends its FFmpeg; srs-a's keeps publishing.
	var del struct{ Code int }
	if res := do(t, "DELETE", hs.URL+"/api/v1/clients/"+publisher["srs-b"], &del); res.StatusCode != http.StatusOK || del.Code != 0 {
		t.Fatalf("kick: %d %+v", res.StatusCode, del)
	}
	if err := pubB.Wait(15 * time.Second); !pubB.Exited() {
		t.Fatalf("publisher of srs-b still running after kick: %v", err)
	}
	if pubA.Exited() {
		t.Fatalf("publisher of srs-a exited: %s", pubA.Output())
	}

	// A call that names an origin reaches it.
	var vhosts struct {
		Code   int              `json:"code"`
		Vhosts []map[string]any `json:"vhosts"`
	}
	if res := do(t, "GET", hs.URL+"/api/v1/vhosts/?origin=srs-a", &vhosts); res.StatusCode != 200 || vhosts.Code != 0 || len(vhosts.Vhosts) == 0 {
		t.Fatalf("vhosts: %d %+v", res.StatusCode, vhosts)
	}
	var sum struct {
		Data struct {
			Totals map[string]float64 `json:"totals"`
		} `json:"data"`
	}
	do(t, "GET", hs.URL+"/api/v1/summaries", &sum)
	if sum.Data.Totals["origins_ok"] != 2 {
		t.Fatalf("summaries totals %v", sum.Data.Totals)
	}
}
