package mesh_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/meshtest"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

const srsHeartbeat = `{"ip":"127.0.0.1","server":"vid-x","service":"abc","pid":"123","rtmp":["1935"],"http":["8080"],"api":["1985"],"srt":["10080"],"rtc":["udp://0.0.0.0:8000"]}`

type apiReply struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

func serve(t *testing.T, h http.Handler, method, target, body string, hdr map[string]string) (int, apiReply) {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var r apiReply
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: content type %q, body %q", method, target, ct, rec.Body.String())
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("%s %s: reply is not JSON: %q", method, target, rec.Body.String())
	}
	if (rec.Code == http.StatusOK) != (r.Code == 0) {
		t.Fatalf("%s %s: HTTP %d with code %d", method, target, rec.Code, r.Code)
	}
	if r.Code != 0 && r.Message == "" {
		t.Fatalf("%s %s: error without message", method, target)
	}
	return rec.Code, r
}

func TestRegisterEndpoint(t *testing.T) {
	c := meshtest.Start(t, meshtest.Options{N: 1, Token: "s3cret", Logger: testLogger()})
	c.WaitLeader(clusterTimeout)
	h := c.Node(0).Handler()
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	tests := []struct {
		name   string
		method string
		target string
		body   string
		hdr    map[string]string
		status int
	}{
		{"srs heartbeat", "POST", "/api/v1/srs/register", srsHeartbeat, auth, 200},
		{"token in query", "POST", "/api/v1/srs/register?token=s3cret", srsHeartbeat, nil, 200},
		{"missing token", "POST", "/api/v1/srs/register", srsHeartbeat, nil, 401},
		{"wrong token", "POST", "/api/v1/srs/register?token=nope", srsHeartbeat, nil, 401},
		{"wrong bearer", "POST", "/api/v1/srs/register", srsHeartbeat, map[string]string{"Authorization": "Bearer x"}, 401},
		{"missing server", "POST", "/api/v1/srs/register", `{"ip":"127.0.0.1","rtmp":["1935"]}`, auth, 400},
		{"no endpoints", "POST", "/api/v1/srs/register", `{"ip":"127.0.0.1","server":"s"}`, auth, 400},
		{"bad port", "POST", "/api/v1/srs/register", `{"ip":"127.0.0.1","server":"s","rtmp":["99999"]}`, auth, 400},
		{"bad port text", "POST", "/api/v1/srs/register", `{"ip":"127.0.0.1","server":"s","rtmp":["rtmp"]}`, auth, 400},
		{"not json", "POST", "/api/v1/srs/register", `server=s&rtmp=1935`, auth, 400},
		{"empty body", "POST", "/api/v1/srs/register", ``, auth, 400},
		{"oversized", "POST", "/api/v1/srs/register", `{"server":"s","pad":"` + strings.Repeat("x", stream.MaxRegistrationBytes) + `"}`, auth, 413},
		{"wrong method", "GET", "/api/v1/srs/register", "", auth, 405},
		{"drain unknown", "POST", "/mesh/v1/origins/nope/drain", "", auth, 404},
		{"drain needs token", "POST", "/mesh/v1/origins/vid-x/drain", "", nil, 401},
		{"drain", "POST", "/mesh/v1/origins/vid-x/drain", "", auth, 200},
		{"undrain", "POST", "/mesh/v1/origins/vid-x/undrain", "", auth, 200},
		{"undrain with the token in the query", "POST", "/mesh/v1/origins/vid-x/undrain?token=s3cret", "", nil, 401},
		{"drain wrong method", "GET", "/mesh/v1/origins/vid-x/drain", "", auth, 405},
		{"no internal apply on the system API", "POST", "/mesh/v1/internal/apply", "x", auth, 404},
		{"no internal leave on the system API", "POST", "/mesh/v1/internal/leave", `{"id":"n1"}`, auth, 404},
		{"healthz", "GET", "/healthz", "", nil, 200},
		{"readyz", "GET", "/readyz", "", nil, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, r := serve(t, h, tc.method, tc.target, tc.body, tc.hdr)
			if status != tc.status {
				t.Fatalf("HTTP %d (%+v), want %d", status, r, tc.status)
			}
			if status == 200 && strings.Contains(tc.target, "register") {
				var d struct{ Origin string }
				if json.Unmarshal(r.Data, &d); d.Origin != "vid-x" {
					t.Fatalf("data = %s", r.Data)
				}
			}
		})
	}
	st := c.Node(0).Status()
	if len(st.Origins) != 1 {
		t.Fatalf("origins = %+v", st.Origins)
	}
	o := st.Origins[0]
	if o.ID != "vid-x" || o.RTMP != "127.0.0.1:1935" || o.RTC != "127.0.0.1:8000" || o.Service != "abc" || o.Draining || o.LastHeartbeatUnixMs == 0 {
		t.Fatalf("registered origin = %+v", o)
	}
}

func TestStatusAndReadyEndpoints(t *testing.T) {
	c := meshtest.Start(t, meshtest.Options{N: 1, Logger: testLogger()})
	h := c.Node(0).Handler()
	c.WaitLeader(clusterTimeout)
	testkit.WaitFor(t, clusterTimeout, "ready", func() bool {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code == 200
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/mesh/v1/status", nil))
	var st mesh.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != 200 {
		t.Fatalf("status: %d %v", rec.Code, err)
	}
	if st.NodeID != "node0" || st.Leader != "node0" || st.RaftState != "Leader" || len(st.Members) != 1 || st.Members[0].RaftRole != "leader" || st.AppliedIndex == 0 {
		t.Fatalf("status = %+v", st)
	}
	if st.Origins == nil || st.Assignments == nil {
		t.Fatal("status lists must be [] not null")
	}
	if code, _ := serve(t, h, "POST", "/mesh/v1/status", "", nil); code != 405 {
		t.Fatalf("POST status: %d", code)
	}
	// Without a token configured, writes need none.
	if code, r := serve(t, h, "POST", "/api/v1/srs/register", srsHeartbeat, nil); code != 200 {
		t.Fatalf("register without token config: %d %+v", code, r)
	}
}

func TestRegisterViaFollowerReachesAllNodes(t *testing.T) {
	c := meshtest.Start(t, meshtest.Options{N: 3, Token: "tok", Logger: testLogger()})
	l := c.WaitLeader(clusterTimeout)
	c.WaitVoters(clusterTimeout, 3)
	f := (l + 1) % 3
	resp, err := http.Post(c.Members[f].URL+"/api/v1/srs/register?token=tok", "application/json", strings.NewReader(srsHeartbeat))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"code":0`) {
		t.Fatalf("register via follower: %d %s", resp.StatusCode, b)
	}
	testkit.WaitFor(t, clusterTimeout, "origin on every node", func() bool {
		for i := range c.Members {
			st := c.Node(i).Status()
			if len(st.Origins) != 1 || st.Origins[0].ID != "vid-x" {
				return false
			}
		}
		return true
	})
	// Drain through another follower, over HTTP.
	f2 := (l + 2) % 3
	req, _ := http.NewRequest("POST", c.Members[f2].URL+"/mesh/v1/origins/vid-x/drain", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("drain via follower: %d", resp.StatusCode)
	}
	testkit.WaitFor(t, clusterTimeout, "drain on every node", func() bool {
		for i := range c.Members {
			if st := c.Node(i).Status(); len(st.Origins) != 1 || !st.Origins[0].Draining {
				return false
			}
		}
		return true
	})
}

func TestRegisterWithoutLeaderIs503(t *testing.T) {
	c := meshtest.Start(t, meshtest.Options{N: 3, Logger: testLogger(), Tweak: func(i int, cfg *mesh.Config) {
		cfg.RouteTimeout = 300 * time.Millisecond
	}})
	c.WaitLeader(clusterTimeout)
	c.Kill(1)
	c.Kill(2)
	testkit.WaitFor(t, clusterTimeout, "node0 to lose its leader", func() bool { return c.Node(0).Status().Leader == "" })
	code, _ := serve(t, c.Node(0).Handler(), "POST", "/api/v1/srs/register", srsHeartbeat, nil)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("register without quorum: HTTP %d", code)
	}
	testkit.WaitFor(t, clusterTimeout, "readyz to fail without a leader", func() bool {
		code, _ := serve(t, c.Node(0).Handler(), "GET", "/readyz", "", nil)
		return code == http.StatusServiceUnavailable
	})
}

// lockedBuffer collects logs written by many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRegisterTokenInPath(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := meshtest.Start(t, meshtest.Options{N: 1, Token: "s3cret-path", Logger: logger})
	c.WaitLeader(clusterTimeout)
	h := c.Node(0).Handler()
	auth := map[string]string{"Authorization": "Bearer s3cret-path"}
	tests := []struct {
		name   string
		method string
		target string
		hdr    map[string]string
		status int
	}{
		{"token in path", "POST", "/api/v1/srs/register/s3cret-path", nil, 200},
		{"wrong token in path", "POST", "/api/v1/srs/register/wr0ng-path", nil, 401},
		{"wrong path token wins over a right bearer", "POST", "/api/v1/srs/register/wr0ng-path", auth, 401},
		{"token prefix in path", "POST", "/api/v1/srs/register/s3cret", nil, 401},
		{"token and more in path", "POST", "/api/v1/srs/register/s3cret-path/x", nil, 401},
		{"empty path token", "POST", "/api/v1/srs/register/", nil, 401},
		{"empty path token with bearer", "POST", "/api/v1/srs/register/", auth, 200},
		{"empty path token with query", "POST", "/api/v1/srs/register/?token=s3cret-path", nil, 200},
		{"path token wrong method", "GET", "/api/v1/srs/register/s3cret-path", nil, 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, r := serve(t, h, tc.method, tc.target, srsHeartbeat, tc.hdr)
			if status != tc.status {
				t.Fatalf("HTTP %d (%+v), want %d", status, r, tc.status)
			}
		})
	}
	if st := c.Node(0).Status(); len(st.Origins) != 1 || st.Origins[0].ID != "vid-x" {
		t.Fatalf("origins = %+v", st.Origins)
	}
	out := logs.String()
	for _, secret := range []string{"s3cret", "wr0ng-path"} {
		if strings.Contains(out, secret) {
			t.Fatalf("token %q in the logs:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "register/<redacted>") {
		t.Fatalf("path form not logged:\n%s", out)
	}
}

func TestRegisterTokenInPathWithoutConfiguredToken(t *testing.T) {
	c := meshtest.Start(t, meshtest.Options{N: 1, Logger: testLogger()})
	c.WaitLeader(clusterTimeout)
	h := c.Node(0).Handler()
	for _, target := range []string{"/api/v1/srs/register/anything", "/api/v1/srs/register/", "/api/v1/srs/register"} {
		if status, r := serve(t, h, "POST", target, srsHeartbeat, nil); status != 200 {
			t.Fatalf("POST %s: HTTP %d (%+v)", target, status, r)
		}
	}
}

// Registrations are refused (403) when they name an address the mesh must
// not dial, move an origin without the token, overwrite a static origin or
// pass the cap; the status shows a dial error to operators only.
func TestRegistrationGuards(t *testing.T) {
	static := stream.Origin{ID: "st", IP: "127.0.0.1", RTMP: "127.0.0.1:1", Static: true}
	c := meshtest.Start(t, meshtest.Options{N: 1, Logger: testLogger(), Tweak: func(_ int, cfg *mesh.Config) {
		cfg.MaxOrigins = 3
		cfg.OriginAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("169.254.0.0/16")}
		cfg.StaticOrigins = []stream.Origin{static}
	}})
	c.WaitLeader(clusterTimeout)
	testkit.WaitFor(t, clusterTimeout, "the static origin", func() bool { return len(c.Node(0).Status().Origins) == 1 })
	h := c.Node(0).Handler()
	beat := func(server, ip string, port int) string {
		return fmt.Sprintf(`{"ip":%q,"server":%q,"service":"s","pid":"1","rtmp":["%d"]}`, ip, server, port)
	}
	for _, tc := range []struct {
		name   string
		body   string
		status int
	}{
		{"link-local even when allowed", beat("a", "169.254.169.254", 80), 403},
		{"outside --origin-allow", beat("a", "10.0.0.5", 1935), 403},
		{"a heartbeat over a static origin", beat("st", "127.0.0.1", 2), 403},
		{"first registration", beat("a", "127.0.0.1", 1935), 200},
		{"a move without the token", beat("a", "127.0.0.2", 1935), 403},
		{"a refresh", beat("a", "127.0.0.1", 1935), 200},
		{"the third origin", beat("b", "127.0.0.1", 1936), 200},
		{"past the cap", beat("c", "127.0.0.1", 1937), 403},
	} {
		if status, r := serve(t, h, "POST", "/api/v1/srs/register", tc.body, nil); status != tc.status {
			t.Errorf("%s: HTTP %d %+v, want %d", tc.name, status, r, tc.status)
		}
	}
	if o := c.Node(0).Status(); len(o.Origins) != 3 {
		t.Fatalf("origins: %+v", o.Origins)
	}

	// Static origin st has no listener: it turns unhealthy with a dial
	// error, which only loopback readers (no token here) see.
	testkit.WaitFor(t, clusterTimeout, "st unhealthy", func() bool {
		for _, o := range c.Node(0).Status().Origins {
			if o.ID == "st" && !o.Healthy {
				return true
			}
		}
		return false
	})
	for _, remote := range []string{"127.0.0.1:5555", "192.0.2.7:5555"} {
		req := httptest.NewRequest("GET", "/mesh/v1/status", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var st mesh.Status
		json.Unmarshal(rec.Body.Bytes(), &st)
		for _, o := range st.Origins {
			if o.ID != "st" {
				continue
			}
			if leaks := strings.Contains(o.HealthReason, "127.0.0.1:1"); leaks != (remote == "127.0.0.1:5555") {
				t.Errorf("reader %s sees health reason %q", remote, o.HealthReason)
			}
		}
	}
}

// A heartbeat with SRS's summaries, sent to a follower, puts the origin's
// load in the replicated state: every node shows it.
func TestRegisterWithSummaries(t *testing.T) {
	c := meshtest.Start(t, meshtest.Options{N: 3, Token: "tok", Logger: testLogger()})
	l := c.WaitLeader(clusterTimeout)
	c.WaitVoters(clusterTimeout, 3)
	body := `{"server":"vid-load","ip":"127.0.0.1","rtmp":["19350"],"max_streams":"40",
"summaries":{"data":{"self":{"cpu_percent":0.5},"system":{"cpu_percent":0.625,"conn_srs":12,"srs_sample_time":1000,"srs_recv_bytes":10,"srs_send_bytes":20}}}}`
	resp, err := http.Post(c.Members[(l+1)%3].URL+"/api/v1/srs/register?token=tok", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("register: %d", resp.StatusCode)
	}
	testkit.WaitFor(t, clusterTimeout, "load on every node", func() bool {
		for i := range c.Members {
			st := c.Node(i).Status()
			if len(st.Origins) != 1 {
				return false
			}
			o := st.Origins[0]
			if o.Load.CPUPermille != 625 || o.Load.Conns != 12 || o.Load.SelfCPUPermille != 500 || o.MaxStreams != 40 {
				return false
			}
		}
		return true
	})
}
