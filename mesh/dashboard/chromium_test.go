package dashboard

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/harness"
)

func fakeStatus() mesh.Status {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	return mesh.Status{
		NodeID: "mesh-node-1", Leader: "mesh-node-1", LeaderAddr: "10.0.0.11:7947",
		RaftState: "Leader", Term: 3, CommitIndex: 42, AppliedIndex: 42, LastLogIndex: 42,
		GeneratedUnix: now,
		Members: []mesh.MemberStatus{
			{ID: "mesh-node-1", GossipAddr: "10.0.0.11:7946", RaftAddr: "10.0.0.11:7947", APIAddr: "10.0.0.11:12025", GossipState: "alive", RaftRole: "leader", Voter: true, Zone: "eu-west-1a"},
			{ID: "mesh-node-2", GossipAddr: "10.0.0.12:7946", RaftAddr: "10.0.0.12:7947", APIAddr: "10.0.0.12:12025", GossipState: "alive", RaftRole: "voter", Voter: true},
			{ID: "mesh-node-3", GossipAddr: "10.0.0.13:7946", RaftAddr: "10.0.0.13:7947", APIAddr: "10.0.0.13:12025", GossipState: "suspect", RaftRole: "voter", Voter: true},
		},
		Origins: []mesh.OriginStatus{
			{ID: "srs-origin-a", IP: "10.0.1.5", RTMP: "10.0.1.5:1935", HTTP: "10.0.1.5:8080", API: "10.0.1.5:1985", SRT: "10.0.1.5:10080", RTC: "10.0.1.5:8000",
				Healthy: true, Streams: 1, Service: "w9r1727y", PID: "7256", LastHeartbeatUnixMs: now - 4000, LastProbeUnixMs: now - 1000,
				MaxStreams: 50, Weight: 1, Load: stream.Load{CPUPermille: 125, Conns: 42, SampleMs: now - 4000, RecvKbps: 2500, SendKbps: 7500}},
			{ID: "srs-origin-b", IP: "10.0.1.6", RTMP: "10.0.1.6:1935", HTTP: "10.0.1.6:8080", API: "10.0.1.6:1985",
				Healthy: true, Draining: true, Streams: 0, LastHeartbeatUnixMs: now - 7000, LastProbeUnixMs: now - 2000},
		},
		Assignments: []mesh.AssignmentStatus{
			{Key: "__defaultVhost__/live/livestream", Origin: "srs-origin-a", CreatedUnixMs: now - 600000, LastUsedUnixMs: now - 2000, OriginHealthy: true},
		},
	}
}

// fakeDocs are the optional documents of a node with two streams flowing:
// clients and bit rates, events, and 15 minutes of history from two nodes
// (the third does not answer).
func fakeDocs(now int64) map[string]any {
	var samples1, samples2 []map[string]any
	for i := range 180 {
		t := now - int64(179-i)*5000
		samples1 = append(samples1, map[string]any{"t": t, "in_bps": 2.5e6 + float64(i%7)*1e5, "out_bps": 7.5e6 + float64(i%5)*2e5,
			"sessions": map[string]int{"rtmp": 1, "flv": 3}, "assignments_per_s": float64(i%30) / 30,
			"hls_viewers_estimated": 5, "dash_viewers_estimated": 2})
		samples2 = append(samples2, map[string]any{"t": t + 1200, "in_bps": 1e6, "out_bps": 3e6,
			"sessions": map[string]int{"rtmp": 2, "webrtc": 1}, "assignments_per_s": 0})
	}
	return map[string]any{
		"GET /mesh/v1/streams": map[string]any{
			"streams": []map[string]any{{"key": "__defaultVhost__/live/livestream", "origin": "srs-origin-a", "origin_healthy": true,
				"clients": map[string]int{"rtmp": 1, "flv": 3}, "total_clients": 4, "nodes": map[string]int{"mesh-node-1": 3, "mesh-node-2": 1},
				"ingest_bps": 2.5e6, "egress_bps": 7.5e6, "created_unix_ms": now - 600000, "last_used_unix_ms": now - 2000}},
			"nodes": []map[string]any{{"id": "mesh-node-1", "ok": true}, {"id": "mesh-node-2", "ok": true}, {"id": "mesh-node-3", "ok": false, "error": "no answer within 1s"}},
		},
		"GET /mesh/v1/events": map[string]any{
			"events": []map[string]any{
				{"time_unix_ms": now - 700000, "node": "mesh-node-1", "kind": "leader", "member": "mesh-node-1", "detail": "term 3", "seq": 1},
				{"time_unix_ms": now - 60000, "node": "mesh-node-1", "kind": "origin_down", "origin": "srs-origin-c", "detail": "unhealthy", "seq": 2},
				{"time_unix_ms": now - 58000, "node": "mesh-node-1", "kind": "stream_moved", "origin": "srs-origin-a", "stream": "__defaultVhost__/live/cam2", "detail": "from srs-origin-c", "seq": 3},
				{"time_unix_ms": now - 32000, "node": "mesh-node-1", "kind": "publisher_dropped", "stream": "__defaultVhost__/live/cam3", "origin": "srs-origin-a", "detail": "the publisher 10.0.9.8:50001 dropped after 2m0s without unpublishing: EOF", "seq": 5},
				{"time_unix_ms": now - 30000, "node": "mesh-node-2", "kind": "publisher_lost", "stream": "__defaultVhost__/live/cam3", "detail": "2 players ended after 10s", "seq": 1},
				{"time_unix_ms": now - 20000, "node": "mesh-node-1", "kind": "publisher_switched", "stream": "__defaultVhost__/live/cam4", "origin": "srs-origin-a", "detail": "the standby publisher 10.0.9.9:50000 took over after 600ms", "seq": 4},
				{"time_unix_ms": now - 5000, "node": "mesh-node-2", "kind": "origin_drained", "origin": "srs-origin-b", "seq": 2},
			},
			"nodes": []map[string]any{{"id": "mesh-node-1", "ok": true}, {"id": "mesh-node-2", "ok": true}, {"id": "mesh-node-3", "ok": false, "error": "no answer within 1s"}},
		},
		"GET /mesh/v1/history": map[string]any{
			"nodes": []map[string]any{
				{"id": "mesh-node-1", "ok": true, "interval_ms": 5000, "samples": samples1},
				{"id": "mesh-node-2", "ok": true, "interval_ms": 5000, "samples": samples2},
				{"id": "mesh-node-3", "ok": false, "error": "no answer within 1s", "samples": []any{}},
			},
		},
	}
}

// fakeNode serves the dashboard and the documents of a fake node.
func fakeNode(t *testing.T, docs map[string]any) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/", Handler())
	for pattern, doc := range docs {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(doc)
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

var (
	chartPoints = regexp.MustCompile(`id="(chart-[a-z]+)" data-points="(\d+)" data-series="(\d+)"`)
	chartUnit   = regexp.MustCompile(`id="(chart-[a-z]+)"[^>]* data-unit="([^"]*)"`)
)

// chartsIn returns, per chart id, its points and the series with data.
func chartsIn(dom string) map[string][2]int {
	out := map[string][2]int{}
	for _, m := range chartPoints.FindAllStringSubmatch(dom, -1) {
		p, _ := strconv.Atoi(m[2])
		s, _ := strconv.Atoi(m[3])
		out[m[1]] = [2]int{p, s}
	}
	return out
}

// TestChromium renders the dashboard in a real headless Chromium against a
// fake node and checks what the page shows: the tables in human units, the
// events, the merged charts, the nodes that did not answer, and no error of
// the page itself.
func TestChromium(t *testing.T) {
	bin := harness.ChromiumBin(t)
	st := fakeStatus()
	docs := fakeDocs(st.GeneratedUnix)
	docs["GET /mesh/v1/status"] = st
	srv := fakeNode(t, docs)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dom := string(harness.Chromium(ctx, t, bin, srv.URL+"/", "--dump-dom", "--window-size=1280,900"))
	for _, want := range []string{
		"mesh-node-1", "mesh-node-2", "mesh-node-3", ">leader<", "suspect",
		"srs-origin-a", "srs-origin-b", "draining", "10.0.1.5:1935",
		">live/livestream<", ">2.5 Mbit/s<", ">7.5 Mbit/s<", ">10 min<", // ingest, egress, age
		">flv</span> <b>3</b>", ">mesh-node-1</span> <b>3</b>", // clients by protocol and by node
		"≈7 HLS/DASH viewers (estimate)", // a node's estimate, apart from its clients
		"Origin srs-origin-c went down", "Stream live/cam2 moved to srs-origin-a", "mesh-node-1 became leader",
		"Origin srs-origin-b drained", "seen by mesh-node-2",
		`data-kind="publisher_lost"`, "The publisher of live/cam3 was lost", "2 players ended after 10s", // a publisher that dropped
		`data-kind="publisher_dropped"`, "The publisher of live/cam3 dropped", "without unpublishing",
		"A standby publisher took over live/cam4",
		"Not answering: mesh-node-3 (no answer within 1s)",
		">eu-west-1a<", "CPU 12.5% · 42 conns · in 2.5 Mbit/s · out 7.5 Mbit/s", ">1 / 50<", // zone, load, streams held / max_streams
		`data-errors="0"`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	for _, bad := range []string{"Cannot reach node", "created_unix_ms", "origin_healthy", "1748779"} {
		if strings.Contains(dom, bad) {
			t.Errorf("page shows %q", bad)
		}
	}
	charts := chartsIn(dom)
	// The clients chart has rtmp, flv and webrtc, and the HLS and DASH
	// estimates.
	for id, min := range map[string][2]int{"chart-throughput": {170, 2}, "chart-clients": {170, 5}, "chart-assignments": {170, 1}} {
		if got := charts[id]; got[0] < min[0] || got[1] < min[1] {
			t.Errorf("%s has %d points in %d series, want at least %d in %d", id, got[0], got[1], min[0], min[1])
		}
	}
	// The y axes name their units: the throughput (3.5 to 11.3 Mbit/s
	// summed over the nodes) in Mbit/s.
	units := map[string]string{}
	for _, m := range chartUnit.FindAllStringSubmatch(dom, -1) {
		units[m[1]] = m[2]
	}
	if want := map[string]string{"chart-throughput": "Mbit/s", "chart-clients": "clients", "chart-assignments": "assignments/s"}; !maps.Equal(units, want) {
		t.Errorf("chart units %v, want %v", units, want)
	}
	for _, want := range []string{"HLS viewers (estimate)", "DASH viewers (estimate)"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the clients chart lacks %q", want)
		}
	}
	if !strings.Contains(dom, "u-legend") {
		t.Error("uPlot drew no chart")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}

// TestChromiumBanner checks that a node that answers errors gets the
// "cannot reach node" banner with the node's message.
func TestChromiumBanner(t *testing.T) {
	bin := harness.ChromiumBin(t)
	mux := http.NewServeMux()
	mux.Handle("/", Handler())
	mux.HandleFunc("GET /mesh/v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"code":503,"message":"raft is shutting down"}`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dom := string(harness.Chromium(ctx, t, bin, srv.URL+"/", "--dump-dom"))
	if !strings.Contains(dom, "Cannot reach node: raft is shutting down") {
		t.Fatalf("no banner in:\n%s", dom)
	}
}

// TestChromiumTokenAndStreams checks that drain, undrain and move buttons
// appear once a token is in the tab's sessionStorage, and that the optional
// stream list fills the clients, bit rates and sources of the streams
// table.
func TestChromiumTokenAndStreams(t *testing.T) {
	bin := harness.ChromiumBin(t)
	mux := http.NewServeMux()
	mux.Handle("/", Handler())
	mux.HandleFunc("GET /mesh/v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(fakeStatus())
	})
	mux.HandleFunc("GET /mesh/v1/streams", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"streams":[{"key":"__defaultVhost__/live/livestream","origin":"srs-origin-a","origin_healthy":true,"clients":{"rtmp":1,"flv":3},"nodes":{"n1":4},"total_clients":4,"ingest_bps":2500000,"replicas":["srs-origin-b"],"moving":"srs-origin-c"}]}`))
	})
	// A page of the same origin puts a token in sessionStorage, as the token
	// form does, and goes on to the dashboard in the same tab.
	mux.HandleFunc("GET /set-token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<script>sessionStorage.setItem("srs-mesh.token","secret");location.replace("/");</script>`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dom := string(harness.Chromium(ctx, t, bin, srv.URL+"/set-token", "--dump-dom"))
	for _, want := range []string{
		`data-origin="srs-origin-a" data-action="drain"`,
		`data-origin="srs-origin-b" data-action="undrain"`,
		`data-origin="srs-origin-a" data-action="move"`,
		"replica srs-origin-b", "moving to srs-origin-c",
		">rtmp</span> <b>1</b>", ">flv</span> <b>3</b>", ">2.5 Mbit/s<",
		"Token set for this tab.",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}
