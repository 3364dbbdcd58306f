package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// grafanaDashboard is the Grafana dashboard shipped in the repository.
var grafanaDashboard = filepath.Join("..", "docs", "grafana", "srs-mesh.json")

// grafanaPanel is what the test reads of a Grafana panel.
type grafanaPanel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource map[string]any `json:"datasource"`
	Targets    []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // of a collapsed row
}

// grafanaVariables are what Grafana puts in place of the dashboard's
// variables before it sends a query; the test does the same to parse them.
var grafanaVariables = strings.NewReplacer(
	"$__rate_interval", "1m",
	"$__interval", "15s",
	"$__range", "1h",
	"$job", "srs-mesh",
	"$instance", ".*",
)

// TestGrafanaDashboard checks the form of docs/grafana/srs-mesh.json:
// its variables, panel ids and data sources, every panel's query is PromQL
// the Prometheus parser accepts (once Grafana's variables are replaced) and
// selects the dashboard's nodes, and the key metrics have a panel.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile(grafanaDashboard)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID        string         `json:"uid"`
		Title      string         `json:"title"`
		Schema     int            `json:"schemaVersion"`
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", grafanaDashboard, err)
	}
	if dash.UID == "" || dash.Title == "" || dash.Schema == 0 {
		t.Errorf("dashboard uid %q, title %q, schemaVersion %d", dash.UID, dash.Title, dash.Schema)
	}
	var vars []string
	for _, v := range dash.Templating.List {
		vars = append(vars, v.Name)
	}
	for _, want := range []string{"datasource", "job", "instance"} {
		if !slices.Contains(vars, want) {
			t.Errorf("no dashboard variable %q", want)
		}
	}

	// Every query parses; gather the metric names they use.
	used := map[string][]string{} // metric -> panels
	ids := map[int]bool{}
	p := parser.NewParser(parser.Options{})
	var walk func([]grafanaPanel)
	walk = func(panels []grafanaPanel) {
		for _, pn := range panels {
			if ids[pn.ID] {
				t.Errorf("panel id %d used twice", pn.ID)
			}
			ids[pn.ID] = true
			walk(pn.Panels)
			if pn.Type == "row" {
				continue
			}
			if pn.Title == "" || len(pn.Targets) == 0 {
				t.Errorf("panel %d: title %q, %d queries", pn.ID, pn.Title, len(pn.Targets))
			}
			if pn.Datasource["uid"] != "${datasource}" {
				t.Errorf("panel %q does not use the dashboard's data source: %v", pn.Title, pn.Datasource)
			}
			for _, q := range pn.Targets {
				if q.RefID == "" {
					t.Errorf("panel %q: a query without refId", pn.Title)
				}
				expr, err := p.ParseExpr(grafanaVariables.Replace(q.Expr))
				if err != nil {
					t.Errorf("panel %q: %q: %v", pn.Title, q.Expr, err)
					continue
				}
				if strings.Contains(q.Expr, "srs_mesh_") && !strings.Contains(q.Expr, `instance=~"$instance"`) {
					t.Errorf("panel %q: %q ignores the node selector", pn.Title, q.Expr)
				}
				parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
					if vs, ok := node.(*parser.VectorSelector); ok {
						if vs.Name == "" {
							t.Errorf("panel %q: a selector without a metric name in %q", pn.Title, q.Expr)
						}
						used[vs.Name] = append(used[vs.Name], pn.Title)
					}
					return nil
				})
			}
		}
	}
	walk(dash.Panels)
	if len(used) < 10 {
		t.Fatalf("the dashboard uses only %d metrics: %v", len(used), used)
	}
	for _, want := range []string{
		"srs_mesh_relayed_bytes_total", "srs_mesh_sessions", "srs_mesh_failovers_total", "srs_mesh_cache_requests_total",
		"srs_mesh_origin_healthy", "srs_mesh_raft_state", "srs_mesh_raft_commit_index", "srs_mesh_assignment_duration_seconds_bucket",
	} {
		if _, ok := used[want]; !ok {
			t.Errorf("no panel shows %s", want)
		}
	}

	// Whether every query answers with data on a live mesh is
	// TestGrafanaDashboardOnPrometheus's to check.
}
