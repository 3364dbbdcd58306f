package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/srs-mesh/srs-mesh/stream"
)

// fakeOrigins is a fixed Origins.
type fakeOrigins []OriginInfo

func (f fakeOrigins) Origins() []OriginInfo { return f }

// fakeSRS is an httptest SRS HTTP API with a fixed set of streams and
// clients. It answers like SRS 7: collections redirect to their trailing
// slash form, unknown ids are HTTP 200 with code 2048/2049, and lists are
// paged by start and count (default 10).
type fakeSRS struct {
	id  string
	srv *httptest.Server

	mu       sync.Mutex
	streams  []map[string]any
	clients  []map[string]any
	requests []string      // method + " " + request URI
	headers  []http.Header // of each request
	deleted  []string      // client ids kicked

	// slow makes every request wait until the client goes away.
	slow bool
	// body, when set, is answered to every request.
	body []byte
}

func newFakeSRS(t *testing.T, id string, streamNames ...string) *fakeSRS {
	t.Helper()
	f := &fakeSRS{id: id}
	for i, name := range streamNames {
		sid := fmt.Sprintf("vid-%s%d", id, i)
		cid := fmt.Sprintf("c%s%d", id, i)
		f.streams = append(f.streams, srsStream(sid, name, cid))
		f.clients = append(f.clients, srsClient(cid, sid, name))
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSRS) info() OriginInfo {
	return OriginInfo{Origin: stream.Origin{ID: f.id, IP: "127.0.0.1", API: f.srv.Listener.Addr().String()}, Healthy: true}
}

func (f *fakeSRS) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// lastHeader returns the headers of the last request.
func (f *fakeSRS) lastHeader() http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.headers) == 0 {
		return nil
	}
	return f.headers[len(f.headers)-1]
}

func srsStream(id, name, cid string) map[string]any {
	return map[string]any{
		"id": id, "name": name, "vhost": "vid-vh0001", "app": "live",
		"tcUrl": "rtmp://127.0.0.1:1935/live", "url": "/live/" + name,
		"live_ms": 1795463904194, "clients": 1, "frames": 250,
		"send_bytes": 3987, "recv_bytes": 130825,
		"kbps":    map[string]any{"recv_30s": 420, "send_30s": 0},
		"publish": map[string]any{"active": true, "cid": cid},
		"video":   map[string]any{"codec": "H264", "profile": "High", "level": "3.1", "width": 1280, "height": 720},
		"audio":   map[string]any{"codec": "AAC", "sample_rate": 44100, "channel": 2, "profile": "LC"},
	}
}

func srsClient(id, sid, name string) map[string]any {
	return map[string]any{
		"id": id, "vhost": "vid-vh0001", "stream": sid, "ip": "127.0.0.1",
		"pageUrl": "", "swfUrl": "", "tcUrl": "rtmp://127.0.0.1:1935/live",
		"url": "/live/" + name, "name": name, "type": "fmle-publish", "publish": true,
		"alive": 5.23, "send_bytes": 3987, "recv_bytes": 130825,
		"kbps": map[string]any{"recv_30s": 420, "send_30s": 0},
	}
}

func (f *fakeSRS) reply(w http.ResponseWriter, extra map[string]any) {
	doc := map[string]any{"code": 0, "server": "vid-" + f.id, "service": "svc" + f.id, "pid": "4242"}
	for k, v := range extra {
		doc[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	json.NewEncoder(w).Encode(doc)
}

func (f *fakeSRS) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.headers = append(f.headers, r.Header.Clone())
	slow, body := f.slow, f.body
	f.mu.Unlock()
	if slow {
		<-r.Context().Done()
		return
	}
	if body != nil {
		w.Write(body)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p := r.URL.Path
	switch {
	case p == "/api/v1/streams" || p == "/api/v1/clients" || p == "/api/v1/vhosts":
		http.Redirect(w, r, p+"/", http.StatusFound)
	case p == "/api/v1/summaries":
		f.reply(w, map[string]any{"data": map[string]any{
			"ok": true, "now_ms": 1795463901718,
			"self":   map[string]any{"version": "7.0.18", "pid": 4242, "mem_kbyte": 40000},
			"system": map[string]any{"cpus": 2, "conn_srs": len(f.clients), "srs_recv_bytes": 1000, "srs_send_bytes": 500},
		}})
	case p == "/api/v1/vhosts/":
		f.reply(w, map[string]any{"vhosts": []any{map[string]any{"id": "vid-vh0001", "name": "__defaultVhost__"}}})
	case p == "/api/v1/streams/":
		f.reply(w, map[string]any{"streams": page(f.streams, r.URL.Query())})
	case p == "/api/v1/clients/":
		f.reply(w, map[string]any{"clients": page(f.clients, r.URL.Query())})
	case strings.HasPrefix(p, "/api/v1/streams/"):
		id := strings.TrimPrefix(p, "/api/v1/streams/")
		for _, s := range f.streams {
			if s["id"] == id {
				f.reply(w, map[string]any{"stream": s})
				return
			}
		}
		w.Write([]byte(`{"code":2048}`))
	case strings.HasPrefix(p, "/api/v1/clients/"):
		id := strings.TrimPrefix(p, "/api/v1/clients/")
		for i, c := range f.clients {
			if c["id"] != id {
				continue
			}
			if r.Method == http.MethodDelete {
				f.clients = append(f.clients[:i], f.clients[i+1:]...)
				f.deleted = append(f.deleted, id)
				f.reply(w, nil)
				return
			}
			f.reply(w, map[string]any{"client": c})
			return
		}
		w.Write([]byte(`{"code":2049}`))
	default:
		w.Write([]byte(`{"code":1001}`))
	}
}

func page(list []map[string]any, q url.Values) []map[string]any {
	start, _ := strconv.Atoi(q.Get("start"))
	count := 10
	if c := q.Get("count"); c != "" {
		count, _ = strconv.Atoi(c)
	}
	out := []map[string]any{}
	for i := start; i < len(list) && i < start+count; i++ {
		out = append(out, list[i])
	}
	return out
}

// deadOrigin is an origin whose API address refuses connections.
func deadOrigin(t *testing.T, id string) OriginInfo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return OriginInfo{Origin: stream.Origin{ID: id, IP: "127.0.0.1", API: addr}, Healthy: true}
}

// newTestServer returns a Server over origins and an httptest server of its
// handler. A Config without a Token gets OpenWrites, as a node's API on
// loopback does; newClosedServer keeps them closed.
func newTestServer(t *testing.T, cfg Config, origins ...OriginInfo) (*Server, *httptest.Server) {
	t.Helper()
	if cfg.Token == "" {
		cfg.OpenWrites = true
	}
	return newClosedServer(t, cfg, origins...)
}

// newClosedServer is newTestServer with cfg's OpenWrites as it is.
func newClosedServer(t *testing.T, cfg Config, origins ...OriginInfo) (*Server, *httptest.Server) {
	t.Helper()
	cfg.Origins = fakeOrigins(origins)
	if cfg.NodeID == "" {
		cfg.NodeID = "node-a"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return s, hs
}

// do makes a request and decodes the JSON answer into v (when non-nil).
func do(t *testing.T, method, url string, v any) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, body)
		}
	}
	return res
}
