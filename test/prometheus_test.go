package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/streams"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// promJob is the job name of the test's Prometheus scrape config: what the
// dashboard's $job variable selects.
const promJob = "srs-mesh"

// prometheusServer is a running Prometheus (Debian's `prometheus` package)
// scraping a set of srs-mesh nodes every second.
type prometheusServer struct {
	url  string // http://127.0.0.1:port
	proc *harness.Proc
}

// startPrometheus starts Prometheus scraping the system APIs of nodes
// every second, with its storage in a temporary directory, and waits until
// it answers. The test is skipped (failed under CI) when the binary is
// missing.
func startPrometheus(t *testing.T, nodes []*harness.Node) *prometheusServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		harness.Missing(t, "prometheus", "the Prometheus server is not installed (Debian package prometheus)")
	}
	dir := t.TempDir()
	var targets []string
	for _, nd := range nodes {
		targets = append(targets, strconv.Quote(nd.SystemAPI))
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: %s
    metrics_path: /metrics
    static_configs:
      - targets: [%s]
`, promJob, strings.Join(targets, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t, false))
	p := &prometheusServer{url: "http://" + addr}
	p.proc = harness.Start(t, bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("prometheus output:\n%s", p.proc.Output())
		}
	})
	testkit.WaitFor(t, 30*time.Second, "prometheus ready", func() bool {
		if p.proc.Exited() {
			t.Fatalf("prometheus exited: %s", p.proc.Output())
		}
		resp, err := e2eHTTP.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// promSample is one series of an instant query's answer.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // [unix time, "value"]
}

// value is the sample's value (NaN when Prometheus said so).
func (s promSample) value() float64 {
	str, _ := s.Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		return -1
	}
	return v
}

// query evaluates expr now through Prometheus's HTTP API and returns the
// vector it answers (a scalar answer is returned as one sample).
func (p *prometheusServer) query(expr string) ([]promSample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	if err != nil {
		return nil, err
	}
	resp, err := e2eHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	var ans struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, fmt.Errorf("%s: %w: %.200s", resp.Status, err, body)
	}
	if ans.Status != "success" {
		return nil, fmt.Errorf("%s: %s", resp.Status, ans.Error)
	}
	switch ans.Data.ResultType {
	case "vector":
		var out []promSample
		err := json.Unmarshal(ans.Data.Result, &out)
		return out, err
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(ans.Data.Result, &v); err != nil {
			return nil, err
		}
		return []promSample{{Value: v}}, nil
	}
	return nil, fmt.Errorf("result of type %q", ans.Data.ResultType)
}

// panelQuery is one query of one panel of the Grafana dashboard.
type panelQuery struct {
	panel, refID, expr string
}

// dashboardQueries returns every query of every panel of the dashboard, in
// panel order, rows' collapsed panels included.
func dashboardQueries(t *testing.T) []panelQuery {
	t.Helper()
	b, err := os.ReadFile(grafanaDashboard)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []grafanaPanel `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	var out []panelQuery
	var walk func([]grafanaPanel)
	walk = func(panels []grafanaPanel) {
		for _, pn := range panels {
			walk(pn.Panels)
			for _, q := range pn.Targets {
				out = append(out, panelQuery{panel: pn.Title, refID: q.RefID, expr: q.Expr})
			}
		}
	}
	walk(dash.Panels)
	return out
}

// meshClients sums the clients GET /mesh/v1/streams of node reports, over
// every stream and node.
func meshClients(t *testing.T, nd *harness.Node) (int, streams.Cluster) {
	t.Helper()
	var c streams.Cluster
	if err := harness.GetJSON("http://"+nd.SystemAPI+"/mesh/v1/streams", &c); err != nil {
		t.Fatalf("streams of %s: %v", nd.ID, err)
	}
	n := 0
	for _, s := range c.Streams {
		n += s.TotalClients
	}
	return n, c
}

// TestGrafanaDashboardOnPrometheus runs Debian's Prometheus against a live
// 3-node mesh in front of two nginx-rtmp origins, with clients on every
// protocol the dashboard shows: an RTMP publisher through node 1, three
// HTTP-FLV players sharing one upstream through node 2, an RTMP player and
// an HLS player through node 3. The Clients panel counts at least every
// client /mesh/v1/streams reports, fan-out players included, and the HLS
// player shows in the estimate of viewers. Then the stream's origin is
// killed, the publisher and the players fail over, and every panel query
// of docs/grafana/srs-mesh.json, evaluated through Prometheus's HTTP API
// with Grafana's variables filled in, returns data.
func TestGrafanaDashboardOnPrometheus(t *testing.T) {
	harness.Need(t, "ffmpeg", "nginx")
	if _, err := exec.LookPath("prometheus"); err != nil {
		harness.Missing(t, "prometheus", "the Prometheus server is not installed (Debian package prometheus)")
	}
	queries := dashboardQueries(t)
	if len(queries) < 20 {
		t.Fatalf("the dashboard has only %d queries", len(queries))
	}
	origins := map[string]*harness.Nginx{
		"o1": harness.StartNginx(t, harness.NginxOptions{HLS: true, HLSFragment: 2 * time.Second}),
		"o2": harness.StartNginx(t, harness.NginxOptions{HLS: true, HLSFragment: 2 * time.Second}),
	}
	c := startProtocolCluster(t, 3, nil, "--origin", originFlag("o1", origins["o1"]), "--origin", originFlag("o2", origins["o2"]))
	c.waitOriginsHealthy(t, 2)
	prom := startPrometheus(t, c.nodes)
	testkit.WaitFor(t, 30*time.Second, "prometheus scrapes the 3 nodes", func() bool {
		s, err := prom.query(fmt.Sprintf(`sum(up{job=%q})`, promJob))
		return err == nil && len(s) == 1 && s[0].value() == 3
	})

	const key = "__defaultVhost__/live/g"
	pub := harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/g"))
	victim := c.waitAssigned(t, key)
	playlist := c.nodes[2].HTTPURL("live/g.m3u8")
	waitOK(t, playlist, "the stream's playlist")

	type livePlayer struct {
		name string
		p    *harness.Player
	}
	var players []livePlayer
	for i := range 3 {
		players = append(players, livePlayer{fmt.Sprintf("HTTP-FLV player %d", i+1), harness.StartCopyPlayer(t, c.nodes[1].HTTPURL("live/g.flv"))})
	}
	players = append(players,
		livePlayer{"RTMP player", harness.StartCopyPlayer(t, c.nodes[2].RTMPURL("live/g"))},
		livePlayer{"HLS player", harness.StartCopyPlayer(t, playlist)})
	frames := func(what string, more []int) []int {
		t.Helper()
		got := make([]int, len(players))
		testkit.WaitFor(t, 60*time.Second, what, func() bool {
			if pub.Exited() {
				t.Fatalf("publisher exited: %s", pub.Output())
			}
			for i, lp := range players {
				if lp.p.Exited() {
					t.Fatalf("%s exited: %s", lp.name, lp.p.Output())
				}
				got[i] = lp.p.Frames()
				if got[i] < more[i]+25 {
					return false
				}
			}
			return true
		})
		return got
	}
	seen := frames("every player gets frames", make([]int, len(players)))

	// The three HTTP-FLV players of node 2 share one upstream.
	testkit.WaitFor(t, 20*time.Second, "node 2's HTTP-FLV players on one upstream", func() bool {
		_, cl := meshClients(t, c.nodes[1])
		for _, s := range cl.Streams {
			if f, ok := s.FanOut[c.nodes[1].ID]; s.Key == key && ok && f.Upstreams == 1 && f.Players >= 3 {
				return true
			}
		}
		return false
	})

	// The Clients panel counts every client the mesh reports: the
	// publisher, the RTMP player and the three HTTP-FLV players.
	clientsExpr := ""
	for _, q := range queries {
		if q.panel == "Clients" {
			clientsExpr = grafanaVariables.Replace(q.expr)
		}
	}
	if clientsExpr == "" {
		t.Fatal("no Clients panel")
	}
	var panelClients float64
	var reported int
	testkit.Eventually(t, 30*time.Second, func() error {
		reported, _ = meshClients(t, c.nodes[0])
		s, err := prom.query(clientsExpr)
		if err != nil || len(s) != 1 {
			return fmt.Errorf("Clients panel: %v, %d series", err, len(s))
		}
		panelClients = s[0].value()
		if reported < 5 || panelClients < float64(reported) {
			return fmt.Errorf("the Clients panel counts %v, /mesh/v1/streams %d clients; want at least 5, and the panel at least as many", panelClients, reported)
		}
		return nil
	})
	t.Logf("Clients panel: %v; /mesh/v1/streams: %d clients", panelClients, reported)
	testkit.WaitFor(t, 30*time.Second, "the HLS player in the estimate of viewers", func() bool {
		s, err := prom.query(fmt.Sprintf(`sum(srs_mesh_viewers_estimated{job=%q, proto="hls"})`, promJob))
		return err == nil && len(s) == 1 && s[0].value() >= 1
	})

	// A client that is not RTMP at all: a session failure to show.
	if nc, err := net.DialTimeout("tcp", c.nodes[2].RTMPAddr, 5*time.Second); err == nil {
		io.WriteString(nc, "GET / HTTP/1.0\r\n\r\n")
		io.Copy(io.Discard, nc)
		nc.Close()
	}

	// The stream's origin dies: the publisher and the shared upstreams
	// fail over to the other one, and every player gets frames again.
	origins[victim].Kill()
	t.Logf("killed %s, the origin of %s", victim, key)
	testkit.WaitFor(t, 30*time.Second, "the publisher's failover counted", func() bool {
		s, err := prom.query(fmt.Sprintf(`sum(srs_mesh_failovers_total{job=%q, kind="publish", result="ok"})`, promJob))
		return err == nil && len(s) == 1 && s[0].value() >= 1
	})
	frames("every player gets frames after the failover", seen)

	// Every panel query answers with data.
	missing := map[int]string{}
	for i := range queries {
		missing[i] = "not asked yet"
	}
	testkit.Eventually(t, 90*time.Second, func() error {
		for i, q := range queries {
			if _, ok := missing[i]; !ok {
				continue
			}
			s, err := prom.query(grafanaVariables.Replace(q.expr))
			switch {
			case err != nil:
				missing[i] = err.Error()
			case len(s) == 0:
				missing[i] = "no data"
			default:
				var vals []string
				for _, x := range s {
					vals = append(vals, x.Value[1].(string))
				}
				t.Logf("%s [%s]: %s", q.panel, q.refID, strings.Join(vals, " "))
				delete(missing, i)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		var out []string
		for i, why := range missing {
			out = append(out, fmt.Sprintf("%s [%s] %s: %s", queries[i].panel, queries[i].refID, queries[i].expr, why))
		}
		return fmt.Errorf("panel queries without data:\n%s", strings.Join(out, "\n"))
	})

	// The single-value panels say what happened: three nodes with a
	// leader, one origin of two down, one stream, the players of node 2
	// and 3 on shared upstreams.
	stat := func(panel string) float64 {
		t.Helper()
		for _, q := range queries {
			if q.panel == panel && q.refID == "A" {
				s, err := prom.query(grafanaVariables.Replace(q.expr))
				if err != nil || len(s) != 1 {
					t.Fatalf("%s: %v, %d series", panel, err, len(s))
				}
				return s[0].value()
			}
		}
		t.Fatalf("no panel %q", panel)
		return 0
	}
	for panel, want := range map[string]float64{
		"Nodes alive": 3, "Leader known": 1, "Origins healthy": 1, "Origins down": 1, "Streams assigned": 1,
	} {
		if got := stat(panel); got != want {
			t.Errorf("panel %s shows %v, want %v", panel, got, want)
		}
	}
	if got := stat("HTTP-FLV fan-out"); got < 3 {
		t.Errorf("panel HTTP-FLV fan-out shows %v players, want at least node 2's three", got)
	}
	if got := stat("Clients"); got < 5 {
		t.Errorf("panel Clients shows %v after the failover, want at least 5", got)
	}
}
