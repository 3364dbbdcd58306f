package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
)

// updateScreenshotEnv makes TestChromium write docs/dashboard.png.
const updateScreenshotEnv = "SRS_MESH_UPDATE_SCREENSHOT"

func fakeStatus() mesh.Status {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	return mesh.Status{
		NodeID: "mesh-node-1", Leader: "mesh-node-1", LeaderAddr: "10.0.0.11:7947",
		RaftState: "Leader", Term: 3, CommitIndex: 42, AppliedIndex: 42, LastLogIndex: 42,
		GeneratedUnix: now,
		Members: []mesh.MemberStatus{
			{ID: "mesh-node-1", GossipAddr: "10.0.0.11:7946", RaftAddr: "10.0.0.11:7947", APIAddr: "10.0.0.11:12025", GossipState: "alive", RaftRole: "leader", Voter: true},
			{ID: "mesh-node-2", GossipAddr: "10.0.0.12:7946", RaftAddr: "10.0.0.12:7947", APIAddr: "10.0.0.12:12025", GossipState: "alive", RaftRole: "voter", Voter: true},
			{ID: "mesh-node-3", GossipAddr: "10.0.0.13:7946", RaftAddr: "10.0.0.13:7947", APIAddr: "10.0.0.13:12025", GossipState: "suspect", RaftRole: "voter", Voter: true},
		},
		Origins: []mesh.OriginStatus{
			{ID: "srs-origin-a", IP: "10.0.1.5", RTMP: "10.0.1.5:1935", HTTP: "10.0.1.5:8080", API: "10.0.1.5:1985", SRT: "10.0.1.5:10080", RTC: "10.0.1.5:8000",
				Healthy: true, Streams: 1, Service: "w9r1727y", PID: "7256", LastHeartbeatUnixMs: now - 4000, LastProbeUnixMs: now - 1000},
			{ID: "srs-origin-b", IP: "10.0.1.6", RTMP: "10.0.1.6:1935", HTTP: "10.0.1.6:8080", API: "10.0.1.6:1985",
				Healthy: true, Draining: true, Streams: 0, LastHeartbeatUnixMs: now - 7000, LastProbeUnixMs: now - 2000},
		},
		Assignments: []mesh.AssignmentStatus{
			{Key: "__defaultVhost__/live/livestream", Origin: "srs-origin-a", CreatedUnixMs: now - 600000, LastUsedUnixMs: now - 2000, OriginHealthy: true},
		},
	}
}

// TestChromium renders the dashboard in a real headless Chromium against a
// fake node and checks what the page shows. With SRS_MESH_UPDATE_SCREENSHOT=1
// it also writes docs/dashboard.png at 1280x800.
func TestChromium(t *testing.T) {
	bin := harness.ChromiumBin(t)
	mux := http.NewServeMux()
	mux.Handle("/", Handler())
	mux.HandleFunc("GET /mesh/v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(fakeStatus())
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dom := string(harness.Chromium(ctx, t, bin, srv.URL+"/", "--dump-dom"))
	for _, want := range []string{
		"mesh-node-1", "mesh-node-2", "mesh-node-3", ">leader<", "suspect",
		"srs-origin-a", "srs-origin-b", "draining", "10.0.1.5:1935",
		"__defaultVhost__/live/livestream",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	if strings.Contains(dom, "Cannot reach node") {
		t.Errorf("error banner shown with a working node")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	if os.Getenv(updateScreenshotEnv) == "1" {
		shot := filepath.Join(t.TempDir(), "dashboard.png")
		harness.Chromium(ctx, t, bin, srv.URL+"/", "--hide-scrollbars", "--window-size=1280,800", "--screenshot="+shot)
		png, err := os.ReadFile(shot)
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.MkdirAll("../../docs", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("../../docs/dashboard.png", png, 0o644); err != nil {
			t.Fatal(err)
		}
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

// TestChromiumTokenAndStreams checks that drain and undrain buttons appear
// once a token is in the tab's sessionStorage, and that the optional stream
// list adds its columns to the streams table.
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
		w.Write([]byte(`{"code":0,"streams":[{"key":"__defaultVhost__/live/livestream","origin":"srs-origin-a","clients":{"rtmp":1,"flv":3},"kbps":{"recv_30s":2500}}]}`))
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
		">clients rtmp<", ">clients flv<", ">kbps recv_30s<", ">2500<",
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
