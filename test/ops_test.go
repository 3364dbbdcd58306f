package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/streams"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// The "operating the cluster" scenarios: what an operator sees and does on a
// live mesh (stream lists, draining an origin, metrics, stopping a node, the
// dashboard, tokens).

// startNamedCluster is startCluster with chosen node ids.
func startNamedCluster(t *testing.T, ids []string, extra ...string) *cluster {
	t.Helper()
	c := &cluster{}
	for _, id := range ids {
		c.nodes = append(c.nodes, harness.NewNode(t, binary, harness.NodeSpec{ID: id}))
	}
	for i, nd := range c.nodes {
		args := []string{"--bootstrap-expect", strconv.Itoa(len(ids))}
		for j, other := range c.nodes {
			if j != i {
				args = append(args, "--join", other.GossipAddr)
			}
		}
		nd.Args = append(nd.Args, append(args, extra...)...)
	}
	harness.DumpOnFailure(t, c.nodes...)
	for _, nd := range c.nodes {
		nd.Start()
	}
	c.waitFormed(t, len(ids), 30*time.Second)
	return c
}

// twoNginx starts two nginx-rtmp origins, o1 and o2, and returns them with
// their --origin flags.
func twoNginx(t *testing.T) (map[string]*harness.Nginx, []string) {
	t.Helper()
	harness.Need(t, "ffmpeg", "nginx")
	o1 := harness.StartNginx(t, harness.NginxOptions{})
	o2 := harness.StartNginx(t, harness.NginxOptions{})
	return map[string]*harness.Nginx{"o1": o1, "o2": o2},
		[]string{"--origin", originFlag("o1", o1), "--origin", originFlag("o2", o2)}
}

// otherOrigin is the id of the origin of {o1, o2} that is not id.
func otherOrigin(id string) string {
	if id == "o1" {
		return "o2"
	}
	return "o1"
}

// meshStreams fetches a node's GET /mesh/v1/streams.
func meshStreams(nd *harness.Node) (streams.Cluster, error) {
	var doc streams.Cluster
	err := harness.GetJSON("http://"+nd.SystemAPI+"/mesh/v1/streams", &doc)
	return doc, err
}

// TestOpsStreams publishes two streams through two different nodes of a
// 3-node mesh with two nginx-rtmp origins: the fewest-streams policy puts
// them on different origins, each stream is on its origin, and every node
// lists both streams with their origins and the client sessions summed over
// all nodes.
func TestOpsStreams(t *testing.T) {
	origins, flags := twoNginx(t)
	c := startCluster(t, 3, flags...)
	c.waitOriginsHealthy(t, 2)

	keys := map[string]string{"__defaultVhost__/live/alpha": "live/alpha", "__defaultVhost__/live/beta": "live/beta"}
	owners := map[string]string{}
	i := 0
	for _, key := range []string{"__defaultVhost__/live/alpha", "__defaultVhost__/live/beta"} {
		harness.PublishRTMP(t, c.nodes[i].RTMPURL(keys[key]))
		owners[key] = c.waitAssigned(t, key)
		t.Logf("%s published through %s, assigned to %s", key, c.nodes[i].ID, owners[key])
		i++
	}
	if owners["__defaultVhost__/live/alpha"] == owners["__defaultVhost__/live/beta"] {
		t.Fatalf("both streams on %s; the fewest-streams policy should spread them", owners["__defaultVhost__/live/alpha"])
	}
	for key, owner := range owners {
		res := harness.PlayUntil(t, "rtmp://"+origins[owner].RTMPAddr+"/"+keys[key], 2*time.Second, 5, 30*time.Second)
		t.Logf("%s plays directly from %s (%d frames)", key, owner, res.VideoFrames)
	}

	// Players: alpha through n2 and n3, beta through n3. Every node then
	// lists both streams with their origins and the sessions of all nodes:
	// alpha 3 (publisher on n1, players on n2 and n3), beta 2 (publisher on
	// n2, player on n3).
	harness.StartPlayer(t, c.nodes[1].RTMPURL("live/alpha"))
	harness.StartPlayer(t, c.nodes[2].RTMPURL("live/alpha"))
	harness.StartPlayer(t, c.nodes[2].RTMPURL("live/beta"))
	want := map[string]map[string]int{
		"__defaultVhost__/live/alpha": {"n1": 1, "n2": 1, "n3": 1},
		"__defaultVhost__/live/beta":  {"n2": 1, "n3": 1},
	}
	for _, nd := range c.nodes {
		var doc streams.Cluster
		testkit.WaitFor(t, 30*time.Second, nd.ID+" lists both streams with the sessions of every node", func() bool {
			var err error
			if doc, err = meshStreams(nd); err != nil {
				return false
			}
			found := 0
			for _, s := range doc.Streams {
				w, ok := want[s.Key]
				if !ok {
					continue
				}
				if s.Origin != owners[s.Key] || !s.OriginHealthy || s.TotalClients != len(w) || s.Clients["rtmp"] != len(w) {
					return false
				}
				for id, n := range w {
					if s.Nodes[id] != n {
						return false
					}
				}
				found++
			}
			return found == len(want)
		})
		for _, s := range doc.Streams {
			t.Logf("%s: %s on %s, clients %v, by node %v", nd.ID, s.Key, s.Origin, s.Clients, s.Nodes)
		}
	}
	for _, nd := range c.nodes {
		out := runCLI(t, "streams", "--addr", nd.SystemAPI)
		for key, owner := range owners {
			if !lineHas(out, key, owner) {
				t.Errorf("srs-mesh streams via %s lacks %s on %s:\n%s", nd.ID, key, owner, out)
			}
		}
	}
}

// lineHas reports whether one line of out contains every word.
func lineHas(out string, words ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			return true
		}
	}
	return false
}

// runCLI runs the srs-mesh binary with args and returns its combined
// output, failing the test when it exits non-zero.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cliOutput(args...)
	if err != nil {
		t.Fatalf("srs-mesh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// fakeSRSAPI is an SRS HTTP API that answers /api/v1/streams/ and
// /api/v1/clients/ with one published stream, the way SRS does, plus a TCP
// port that accepts connections so that the mesh's RTMP health probe passes.
type fakeSRSAPI struct {
	id       string
	api      *httptest.Server
	rtmpPort int
}

func startFakeSRSAPI(t *testing.T, id, streamName string) *fakeSRSAPI {
	t.Helper()
	f := &fakeSRSAPI{id: id}
	reply := func(w http.ResponseWriter, extra map[string]any) {
		doc := map[string]any{"code": 0, "server": "vid-" + id, "service": "svc-" + id, "pid": "4242"}
		for k, v := range extra {
			doc[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(doc)
	}
	sid, cid := "vid-"+streamName, "cid-"+streamName
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/streams/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"streams": []map[string]any{{
			"id": sid, "name": streamName, "vhost": "vid-vh0001", "app": "live",
			"tcUrl": "rtmp://127.0.0.1/live", "url": "/live/" + streamName, "clients": 1, "frames": 250,
			"kbps":    map[string]any{"recv_30s": 420, "send_30s": 0},
			"publish": map[string]any{"active": true, "cid": cid},
		}}})
	})
	mux.HandleFunc("GET /api/v1/clients/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"clients": []map[string]any{{
			"id": cid, "vhost": "vid-vh0001", "stream": sid, "ip": "127.0.0.1", "url": "/live/" + streamName,
			"name": streamName, "type": "fmle-publish", "publish": true,
		}}})
	})
	f.api = httptest.NewServer(mux)
	t.Cleanup(f.api.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	f.rtmpPort = ln.Addr().(*net.TCPAddr).Port
	return f
}

func (f *fakeSRSAPI) flag() string {
	return fmt.Sprintf("id=%s,ip=127.0.0.1,rtmp=%d,api=%d", f.id, f.rtmpPort, f.api.Listener.Addr().(*net.TCPAddr).Port)
}

// TestOpsAPIStreams checks the SRS API aggregation of the real binary: with
// two origins that have an SRS HTTP API (small fakes answering SRS's JSON),
// GET /api/v1/streams and /api/v1/clients on every node's --api port list
// the streams of both origins, each with its origin's id.
func TestOpsAPIStreams(t *testing.T) {
	a := startFakeSRSAPI(t, "srs-a", "cam1")
	b := startFakeSRSAPI(t, "srs-b", "cam2")
	ids := []string{"n1", "n2", "n3"}
	c := &cluster{}
	apiAddrs := map[string]string{}
	for _, id := range ids {
		api := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t, false))
		apiAddrs[id] = api
		c.nodes = append(c.nodes, harness.NewNode(t, binary, harness.NodeSpec{ID: id}))
	}
	for i, nd := range c.nodes {
		nd.Args = append(nd.Args, "--bootstrap-expect", "3", "--api", apiAddrs[nd.ID],
			"--origin", a.flag(), "--origin", b.flag())
		for j, other := range c.nodes {
			if j != i {
				nd.Args = append(nd.Args, "--join", other.GossipAddr)
			}
		}
	}
	harness.DumpOnFailure(t, c.nodes...)
	for _, nd := range c.nodes {
		nd.Start()
	}
	c.waitFormed(t, 3, 30*time.Second)
	c.waitOriginsHealthy(t, 2)

	type entry struct {
		Name   string `json:"name"`
		ID     string `json:"id"`
		Origin string `json:"origin"`
		Node   string `json:"node"`
	}
	for _, nd := range c.nodes {
		for _, list := range []string{"streams", "clients"} {
			var doc struct {
				Code    int     `json:"code"`
				Streams []entry `json:"streams"`
				Clients []entry `json:"clients"`
				Origins []struct {
					ID string `json:"id"`
					OK bool   `json:"ok"`
				} `json:"origins"`
			}
			url := "http://" + apiAddrs[nd.ID] + "/api/v1/" + list
			testkit.WaitFor(t, 15*time.Second, url+" answers for both origins", func() bool {
				doc.Streams, doc.Clients, doc.Origins = nil, nil, nil
				if harness.GetJSON(url, &doc) != nil || len(doc.Origins) != 2 {
					return false
				}
				return doc.Origins[0].OK && doc.Origins[1].OK
			})
			entries := doc.Streams
			if list == "clients" {
				entries = doc.Clients
			}
			got := map[string]entry{}
			for _, e := range entries {
				got[e.Name] = e
			}
			if doc.Code != 0 || len(entries) != 2 || got["cam1"].Origin != "srs-a" || got["cam2"].Origin != "srs-b" ||
				got["cam1"].Node != nd.ID || got["cam2"].Node != nd.ID {
				t.Fatalf("GET %s: code %d, entries %+v", url, doc.Code, entries)
			}
		}
		t.Logf("%s: /api/v1/streams and /api/v1/clients list cam1 on srs-a and cam2 on srs-b", nd.ID)
	}
}

// cliOutput runs the srs-mesh binary with args (bounded to a minute) and
// returns its combined output.
func cliOutput(args ...string) (string, error) {
	return cliOutputEnv(nil, args...)
}

// cliOutputEnv is cliOutput with extra environment variables.
func cliOutputEnv(env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitRunningDraining waits until every running node sees origin id with the given
// draining state.
func (c *cluster) waitRunningDraining(t *testing.T, id string, draining bool) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, fmt.Sprintf("%s draining=%v on every node", id, draining), func() bool {
		for _, nd := range c.nodes {
			if nd.Proc() == nil || nd.Proc().Exited() {
				continue
			}
			var st mesh.Status
			if nd.Status(&st) != nil {
				return false
			}
			if o, ok := originOf(st, id); !ok || o.Draining != draining {
				return false
			}
		}
		return true
	})
}

// TestOpsDrain drains an origin with the CLI: the next new stream goes to
// the other origin even though the drained one has fewer streams, and the
// first new stream after undrain goes back to it.
func TestOpsDrain(t *testing.T) {
	origins, flags := twoNginx(t)
	c := startCluster(t, 3, flags...)
	c.waitOriginsHealthy(t, 2)

	pub1 := harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/first"))
	busy := c.waitAssigned(t, "__defaultVhost__/live/first")
	idle := otherOrigin(busy)
	pub1.Kill()
	t.Logf("first stream on %s; draining %s", busy, idle)

	out := runCLI(t, "drain", idle, "--addr", c.nodes[1].SystemAPI)
	if !strings.Contains(out, idle) {
		t.Errorf("drain printed %q", out)
	}
	c.waitRunningDraining(t, idle, true)
	if out := runCLI(t, "origins", "--addr", c.nodes[2].SystemAPI); !lineHas(out, idle, "yes") {
		t.Errorf("srs-mesh origins does not show %s draining:\n%s", idle, out)
	}

	// Fewest streams would pick idle; draining sends the stream to busy.
	harness.PublishRTMP(t, c.nodes[2].RTMPURL("live/second"))
	if got := c.waitAssigned(t, "__defaultVhost__/live/second"); got != busy {
		t.Fatalf("stream published while %s drains went to %s, want %s", idle, got, busy)
	}
	harness.PlayUntil(t, "rtmp://"+origins[busy].RTMPAddr+"/live/second", 2*time.Second, 5, 30*time.Second)
	t.Logf("second stream on %s while %s drains", busy, idle)

	runCLI(t, "undrain", idle, "--addr", c.nodes[2].SystemAPI)
	c.waitRunningDraining(t, idle, false)
	harness.PublishRTMP(t, c.nodes[1].RTMPURL("live/third"))
	if got := c.waitAssigned(t, "__defaultVhost__/live/third"); got != idle {
		t.Fatalf("stream published after undrain went to %s, want %s", got, idle)
	}
	harness.PlayUntil(t, "rtmp://"+origins[idle].RTMPAddr+"/live/third", 2*time.Second, 5, 30*time.Second)
	t.Logf("third stream on %s after undrain", idle)

	// Draining an unknown origin is an error, not a silent success.
	if out, err := cliOutput("drain", "nope", "--addr", c.nodes[0].SystemAPI); err == nil {
		t.Errorf("drain of an unknown origin succeeded: %s", out)
	}
}

// scrape fetches and parses a node's /metrics.
func scrape(t *testing.T, nd *harness.Node) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + nd.SystemAPI + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", nd.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics of %s: %s", nd.ID, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics of %s do not parse: %v", nd.ID, err)
	}
	return fams
}

// metric finds the sample of family name whose labels include labels
// (name=value pairs).
func metric(fams map[string]*dto.MetricFamily, name string, labels ...string) (*dto.Metric, bool) {
	f, ok := fams[name]
	if !ok {
		return nil, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		return m, true
	}
	return nil, false
}

// value is the value of a gauge or counter sample, or -1 when there is
// none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	m, ok := metric(fams, name, labels...)
	if !ok {
		return -1
	}
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return -1
}

// TestMetrics scrapes /metrics of every node of a 3-node mesh after RTMP
// traffic through node 1 and checks that the exposition parses and carries
// sane values for connections, sessions, bytes, origins, Raft and gossip.
func TestMetrics(t *testing.T) {
	_, flags := twoNginx(t)
	c := startCluster(t, 3, flags...)
	c.waitOriginsHealthy(t, 2)

	const key = "__defaultVhost__/live/metrics"
	pub := harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/metrics"))
	owner := c.waitAssigned(t, key)
	harness.PlayUntil(t, c.nodes[0].RTMPURL("live/metrics"), 2*time.Second, 10, 30*time.Second)
	if pub.Exited() {
		t.Fatalf("publisher exited: %s", pub.Output())
	}

	// The publisher is live: one RTMP publish session on node 1, and its
	// bytes counted towards the origin.
	var fams map[string]*dto.MetricFamily
	testkit.WaitFor(t, 10*time.Second, "node 1 counts the live publisher", func() bool {
		fams = scrape(t, c.nodes[0])
		return value(fams, "srs_mesh_sessions", "proto", "rtmp", "kind", "publish") == 1 &&
			value(fams, "srs_mesh_connections", "proto", "rtmp") >= 1
	})
	up := value(fams, "srs_mesh_relayed_bytes_total", "proto", "rtmp", "direction", "client_to_origin")
	down := value(fams, "srs_mesh_relayed_bytes_total", "proto", "rtmp", "direction", "origin_to_client")
	if up <= 10000 || down <= 1000 {
		t.Errorf("rtmp relayed bytes: %v to origins, %v to clients; want both > 0 after a publish and a play", up, down)
	}
	if _, ok := fams["srs_mesh_session_failures_total"]; !ok {
		t.Errorf("no srs_mesh_session_failures_total")
	}
	if v := value(fams, "srs_mesh_session_failures_total", "proto", "rtmp", "reason", "no_route"); v != 0 {
		t.Errorf("rtmp no_route failures = %v, want 0", v)
	}
	hist, ok := metric(fams, "srs_mesh_assignment_duration_seconds", "result", "ok")
	if !ok || hist.GetHistogram().GetSampleCount() == 0 {
		t.Errorf("srs_mesh_assignment_duration_seconds{result=ok} has no samples: %v", hist)
	} else {
		h := hist.GetHistogram()
		t.Logf("node 1: %d routes, mean %.2f ms; rtmp bytes %v up, %v down",
			h.GetSampleCount(), 1000*h.GetSampleSum()/float64(h.GetSampleCount()), up, down)
	}

	leaders := 0
	for _, nd := range c.nodes {
		fams := scrape(t, nd)
		for _, id := range []string{"o1", "o2"} {
			if v := value(fams, "srs_mesh_origin_healthy", "origin", id); v != 1 {
				t.Errorf("%s: origin_healthy{%s} = %v, want 1", nd.ID, id, v)
			}
			want := 0.0
			if id == owner {
				want = 1
			}
			if v := value(fams, "srs_mesh_origin_streams", "origin", id); v != want {
				t.Errorf("%s: origin_streams{%s} = %v, want %v", nd.ID, id, v, want)
			}
		}
		states := 0.0
		for _, s := range []string{"leader", "follower", "candidate", "shutdown"} {
			states += value(fams, "srs_mesh_raft_state", "state", s)
		}
		if states != 1 {
			t.Errorf("%s: raft_state sums to %v over its states, want 1", nd.ID, states)
		}
		if value(fams, "srs_mesh_raft_state", "state", "leader") == 1 {
			leaders++
		}
		term := value(fams, "srs_mesh_raft_term")
		commit := value(fams, "srs_mesh_raft_commit_index")
		applied := value(fams, "srs_mesh_raft_applied_index")
		if term < 1 || commit < 1 || applied < 1 {
			t.Errorf("%s: raft term %v, commit %v, applied %v; want all >= 1", nd.ID, term, commit, applied)
		}
		if v := value(fams, "srs_mesh_gossip_members", "state", "alive"); v != 3 {
			t.Errorf("%s: gossip_members{alive} = %v, want 3", nd.ID, v)
		}
		t.Logf("%s: term %v, commit %v, applied %v, leader %v", nd.ID, term, commit, applied,
			value(fams, "srs_mesh_raft_state", "state", "leader"))
	}
	if leaders != 1 {
		t.Errorf("%d nodes export raft_state{leader} = 1, want 1", leaders)
	}
}

// httpStatus is the status code of GET url (0 when it cannot be reached).
func httpStatus(url string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// cliStatus runs "srs-mesh status --json" against a node.
func cliStatus(t *testing.T, nd *harness.Node) mesh.Status {
	t.Helper()
	out, err := exec.Command(binary, "status", "--json", "--addr", nd.SystemAPI).Output()
	if err != nil {
		t.Fatalf("srs-mesh status --json via %s: %v", nd.ID, err)
	}
	var st mesh.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("srs-mesh status --json via %s: %v\n%s", nd.ID, err, out)
	}
	return st
}

// memberOf finds a member by id.
func memberOf(st mesh.Status, id string) (mesh.MemberStatus, bool) {
	for _, m := range st.Members {
		if m.ID == id {
			return m, true
		}
	}
	return mesh.MemberStatus{}, false
}

// voters counts the Raft voters in a status document.
func voters(st mesh.Status) int {
	n := 0
	for _, m := range st.Members {
		if m.Voter {
			n++
		}
	}
	return n
}

// gone reports whether a node has left: it is no Raft voter and gossip
// does not see it alive.
func gone(st mesh.Status, id string) bool {
	m, ok := memberOf(st, id)
	return !ok || (!m.Voter && m.GossipState != "alive" && m.GossipState != "suspect")
}

// TestNodeDrain stops the leader with SIGTERM while an RTMP player reads
// through it: the node turns unready and refuses new RTMP connections, the player
// keeps receiving frames, and once the player stops the node exits 0 long
// before --drain-timeout and leaves gossip (it stays a voter, since the mesh
// never has fewer voters than --bootstrap-expect); the others keep quorum
// and keep assigning streams.
func TestNodeDrain(t *testing.T) {
	const drainTimeout = 30 * time.Second
	_, flags := twoNginx(t)
	c := startCluster(t, 3, append(flags, "--drain-timeout", drainTimeout.String())...)
	c.waitOriginsHealthy(t, 2)
	// Drain the leader, the hardest case: it must hand leadership over
	// before it leaves.
	var n1, n2, n3 *harness.Node
	leader := c.status(t, 0).Leader
	for _, nd := range c.nodes {
		switch {
		case nd.ID == leader:
			n3 = nd
		case n1 == nil:
			n1 = nd
		default:
			n2 = nd
		}
	}

	pub := harness.PublishRTMP(t, n1.RTMPURL("live/drain"))
	c.waitAssigned(t, "__defaultVhost__/live/drain")
	player := harness.StartPlayer(t, n3.RTMPURL("live/drain"))
	testkit.WaitFor(t, 30*time.Second, "player decodes frames through "+n3.ID, func() bool {
		return player.Frames() >= 25 || player.Exited()
	})
	if player.Exited() {
		t.Fatalf("player exited: %s", player.Output())
	}
	var before mesh.Status
	if err := n3.Status(&before); err != nil {
		t.Fatal(err)
	}

	sigterm := time.Now()
	if err := n3.Proc().Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, n3.ID+" /readyz answers 503 while draining", func() bool {
		return httpStatus("http://"+n3.SystemAPI+"/readyz") == http.StatusServiceUnavailable
	})
	if code := httpStatus("http://" + n3.SystemAPI + "/healthz"); code != http.StatusOK {
		t.Errorf("%s /healthz answers %d while draining, want 200", n3.ID, code)
	}
	testkit.WaitFor(t, 5*time.Second, n3.ID+" refuses new RTMP connections", func() bool {
		conn, err := net.DialTimeout("tcp", n3.RTMPAddr, time.Second)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	})
	from := player.Frames()
	testkit.WaitFor(t, 20*time.Second, "player keeps receiving 3 s of frames after SIGTERM", func() bool {
		return player.Frames() >= from+75 || player.Exited()
	})
	if player.Exited() || n3.Proc().Exited() {
		t.Fatalf("player exited %v, node exited %v during the drain; player: %s", player.Exited(), n3.Proc().Exited(), player.Output())
	}
	t.Logf("player went from %d to %d frames during the drain (%v after SIGTERM)",
		from, player.Frames(), time.Since(sigterm).Round(100*time.Millisecond))

	player.Kill()
	stopped := time.Now()
	if err := n3.Proc().Wait(15 * time.Second); err != nil {
		t.Fatalf("%s after the last session ended: %v", n3.ID, err)
	}
	t.Logf("%s exited 0 %v after its last session ended (%v after SIGTERM, drain timeout %v)",
		n3.ID, time.Since(stopped).Round(10*time.Millisecond), time.Since(sigterm).Round(10*time.Millisecond), drainTimeout)
	if time.Since(sigterm) > drainTimeout-5*time.Second {
		t.Errorf("%s took %v to exit; it should not wait for the drain timeout", n3.ID, time.Since(sigterm))
	}

	for _, nd := range []*harness.Node{n1, n2} {
		testkit.WaitFor(t, 20*time.Second, nd.ID+" sees "+n3.ID+" gone", func() bool {
			st := cliStatus(t, nd)
			// n3 stays a voter: the voter set never drops below
			// --bootstrap-expect (3), so a full stop can restart.
			m, _ := memberOf(st, n3.ID)
			leftGossip := m.GossipState != "alive" && m.GossipState != "suspect"
			return leftGossip && voters(st) == 3 && st.Leader != "" && st.Leader != n3.ID
		})
	}
	st := cliStatus(t, n1)
	m, _ := memberOf(st, n3.ID)
	t.Logf("after the drain: leader %s (was %s in term %d, now term %d), %d voters, %s shown as %+v",
		st.Leader, before.Leader, before.Term, st.Term, voters(st), n3.ID, m)

	harness.PublishRTMP(t, n2.RTMPURL("live/after-drain"))
	owner := c.waitAssigned(t, "__defaultVhost__/live/after-drain")
	harness.PlayUntil(t, n1.RTMPURL("live/after-drain"), 2*time.Second, 5, 30*time.Second)
	t.Logf("new stream after the drain assigned to %s and playable", owner)
	if pub.Exited() {
		t.Errorf("publisher through %s exited: %s", n1.ID, pub.Output())
	}
}

// TestDashboard renders the dashboard of a live 3-node mesh in headless
// Chromium and checks that the page shows the nodes, the origins and the
// live streams, and a drained origin as draining. With SRS_MESH_UPDATE_SCREENSHOT=1 it writes
// docs/dashboard.png.
func TestDashboard(t *testing.T) {
	bin := harness.ChromiumBin(t)
	harness.Need(t, "ffmpeg", "nginx")
	a := harness.StartNginx(t, harness.NginxOptions{})
	b := harness.StartNginx(t, harness.NginxOptions{})
	ids := []string{"srs-mesh-0", "srs-mesh-1", "srs-mesh-2"}
	c := startNamedCluster(t, ids, "--origin", originFlag("origin-a", a), "--origin", originFlag("origin-b", b))
	c.waitOriginsHealthy(t, 2)
	keys := []string{"__defaultVhost__/live/livestream", "__defaultVhost__/live/camera-2"}
	for i, key := range keys {
		harness.PublishRTMP(t, c.nodes[i].RTMPURL(strings.TrimPrefix(key, "__defaultVhost__/")))
		c.waitAssigned(t, key)
	}

	// A drained origin, so that the page shows that state too.
	runCLI(t, "drain", "origin-b", "--addr", c.nodes[0].SystemAPI)
	c.waitRunningDraining(t, "origin-b", true)

	// The leader's page: only the leader probes origins, so its page also
	// shows when each origin last answered a probe.
	var page *harness.Node
	leader := c.status(t, 0).Leader
	for _, nd := range c.nodes {
		if nd.ID == leader {
			page = nd
		}
	}
	if page == nil {
		t.Fatalf("leader %q is not one of %v", leader, ids)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := "http://" + page.SystemAPI + "/"
	dom := string(harness.Chromium(ctx, t, bin, url, "--dump-dom"))
	want := append(append([]string{"origin-a", "origin-b", a.RTMPAddr, b.RTMPAddr, ">leader<", "draining"}, ids...), keys...)
	for _, w := range want {
		if !strings.Contains(dom, w) {
			t.Errorf("rendered dashboard lacks %q", w)
		}
	}
	if strings.Contains(dom, "Cannot reach node") {
		t.Errorf("dashboard shows the error banner against a working node")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	// docs/dashboard.png is written by TestDashboardLiveMesh.
}

// post sends a POST with an optional bearer token and body and returns the
// status code and body.
func post(t *testing.T, url, bearer, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, b.String()
}

// heartbeat is the body SRS's heartbeat (ports on) posts for server id.
func heartbeat(id string, rtmpPort int) string {
	return fmt.Sprintf(`{"device_id":%q,"ip":"127.0.0.1","server":%q,"service":"s%s","pid":"4242",`+
		`"rtmp":["0.0.0.0:%d"],"http":["8080"],"api":["1985"],"srt":["udp://0.0.0.0:10080"],"rtc":["udp://0.0.0.0:8000"]}`,
		id, id, id, rtmpPort)
}

// TestAuth runs a mesh with --token: registration and drain without the
// token (or with a wrong one) get 401, and with it they succeed and
// replicate: registration takes a bearer header, ?token= or the path
// segment; drain only the bearer header. The
// CLI's --token and SRS_MESH_TOKEN work; reads stay open.
func TestAuth(t *testing.T) {
	const token = "op-s3cret-token"
	origin := startFakeSRSAPI(t, "unused", "x") // only its accepting TCP port
	c := startCluster(t, 3, "--token", token)
	// Writes through a follower also check that forwarding to the leader
	// carries the token.
	var nd *harness.Node
	leader := c.status(t, 0).Leader
	for _, n := range c.nodes {
		if n.ID != leader {
			nd = n
			break
		}
	}
	base := "http://" + nd.SystemAPI
	reg := base + "/api/v1/srs/register"

	for _, tc := range []struct{ name, url, bearer string }{
		{"no token", reg, ""},
		{"wrong bearer", reg, "nope"},
		{"wrong query", reg + "?token=nope", ""},
		{"wrong path", reg + "/nope", ""},
	} {
		code, body := post(t, tc.url, tc.bearer, heartbeat("srs-denied", origin.rtmpPort))
		if code != http.StatusUnauthorized {
			t.Errorf("register with %s: %d %s, want 401", tc.name, code, body)
		}
	}
	accepted := []string{}
	for _, tc := range []struct{ id, url, bearer string }{
		{"srs-bearer", reg, token},
		{"srs-query", reg + "?token=" + token, ""},
		{"srs-path", reg + "/" + token, ""},
	} {
		code, body := post(t, tc.url, tc.bearer, heartbeat(tc.id, origin.rtmpPort))
		if tc.id == "srs-path" && code == http.StatusNotFound {
			t.Logf("no registration route with the token in the path: %s", body)
			continue
		}
		if code != http.StatusOK || !strings.Contains(body, `"code":0`) {
			t.Fatalf("register %s: %d %s, want 200 with code 0", tc.id, code, body)
		}
		accepted = append(accepted, tc.id)
	}
	testkit.WaitFor(t, 10*time.Second, "registered origins on every node", func() bool {
		for _, n := range c.nodes {
			var st mesh.Status
			if n.Status(&st) != nil {
				return false
			}
			for _, id := range accepted {
				if _, ok := originOf(st, id); !ok {
					return false
				}
			}
			if _, ok := originOf(st, "srs-denied"); ok {
				t.Fatalf("%s knows the origin registered without the token", n.ID)
			}
		}
		return true
	})
	t.Logf("registered with the token: %v", accepted)

	drain := base + "/mesh/v1/origins/srs-bearer/drain"
	if code, body := post(t, drain, "", ""); code != http.StatusUnauthorized {
		t.Errorf("drain without token: %d %s, want 401", code, body)
	}
	if code, body := post(t, drain, "nope", ""); code != http.StatusUnauthorized {
		t.Errorf("drain with a wrong token: %d %s, want 401", code, body)
	}
	if out, err := cliOutputEnv([]string{"SRS_MESH_TOKEN="}, "drain", "srs-bearer", "--addr", nd.SystemAPI); err == nil ||
		!strings.Contains(out, "401") {
		t.Errorf("srs-mesh drain without --token: err %v, output %q; want a 401 error", err, out)
	}
	if out, err := cliOutputEnv([]string{"SRS_MESH_TOKEN="}, "drain", "srs-bearer", "--addr", nd.SystemAPI, "--token", "nope"); err == nil {
		t.Errorf("srs-mesh drain with a wrong --token succeeded: %s", out)
	}
	for _, n := range c.nodes {
		var st mesh.Status
		if err := n.Status(&st); err != nil {
			t.Fatalf("status without a token: %v", err)
		}
		if o, _ := originOf(st, "srs-bearer"); o.Draining {
			t.Fatalf("%s shows srs-bearer draining after unauthorized drains", n.ID)
		}
	}

	runCLI(t, "drain", "srs-bearer", "--addr", nd.SystemAPI, "--token", token)
	c.waitRunningDraining(t, "srs-bearer", true)
	if out, err := cliOutputEnv([]string{"SRS_MESH_TOKEN=" + token}, "undrain", "srs-bearer", "--addr", nd.SystemAPI); err != nil {
		t.Fatalf("srs-mesh undrain with SRS_MESH_TOKEN: %v\n%s", err, out)
	}
	c.waitRunningDraining(t, "srs-bearer", false)
	// Operator writes take the token from the Authorization header only:
	// a web page can put it in a URL, not in a header.
	if code, body := post(t, base+"/mesh/v1/origins/srs-query/drain?token="+token, "", ""); code != http.StatusUnauthorized {
		t.Fatalf("drain with ?token=: %d %s, want 401", code, body)
	}
	if code, body := post(t, base+"/mesh/v1/origins/srs-query/drain", token, ""); code != http.StatusOK {
		t.Fatalf("drain with the bearer token: %d %s", code, body)
	}
	c.waitRunningDraining(t, "srs-query", true)

	// Reads need no token.
	for _, path := range []string{"/mesh/v1/status", "/metrics", "/healthz", "/readyz", "/"} {
		if code := httpStatus(base + path); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200", path, code)
		}
	}
	// The token never reaches the logs, not even from the path form.
	for _, n := range c.nodes {
		if strings.Contains(n.Logs(), token) {
			t.Errorf("the logs of %s contain the token", n.ID)
		}
	}
}
