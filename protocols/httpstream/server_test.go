package httpstream

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/internal/protocoltest"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestMain fails the package when goroutines started by the tests outlive
// them (polling, since closed connections wind down asynchronously). The
// check is off while fuzzing: the fuzzing engine keeps goroutines of its own.
func TestMain(m *testing.M) {
	flag.Parse()
	fuzzing := flag.Lookup("test.fuzz") != nil && flag.Lookup("test.fuzz").Value.String() != ""
	base := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 && !fuzzing {
		if err := testkit.GoroutinesBack(base, 10*time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// flvHeader is an FLV file header plus an empty first PreviousTagSize.
var flvHeader = []byte{'F', 'L', 'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0}

// proxyFor starts a Server routing every key to origin (host:port) behind an
// httptest server.
func proxyFor(t *testing.T, origin string, sess stream.Sessions) (*Server, *httptest.Server) {
	t.Helper()
	return serveProxy(t, Config{Router: staticRouter(origin), Sessions: sess, TokenSecret: []byte("mesh-secret"), DialTimeout: time.Second, Logger: quietLogger})
}

// serveProxy runs a Server of cfg behind an httptest server until the test
// ends.
func serveProxy(t *testing.T, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return s, ts
}

func hostOf(ts *httptest.Server) string { return strings.TrimPrefix(ts.URL, "http://") }

func decodeAPIError(t *testing.T, resp *http.Response) apiError {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error content type %q", ct)
	}
	var e apiError
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("error body: %v", err)
	}
	if e.Code != resp.StatusCode || e.Message == "" {
		t.Errorf("error body %+v for status %d", e, resp.StatusCode)
	}
	return e
}

// An FLV stream reaches the player tag by tag while the origin is still
// sending, with the origin's headers and the client's query intact, and the
// origin request ends when the player leaves. Of the client's headers only
// those an origin has use for reach it, and the forwarding headers name the
// real peer whatever the client claims.
func TestFLVStreaming(t *testing.T) {
	release := make(chan struct{})
	var originDone atomic.Bool
	type seen struct {
		method, query string
		header        http.Header
	}
	got := make(chan seen, 4)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Method, r.URL.RawQuery, r.Header.Clone()}
		if r.URL.Path != "/live/s.flv" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "video/x-flv")
		w.Header().Set("X-Origin", "srs")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return
		}
		w.Write(flvHeader)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			originDone.Store(true)
		}
	}))
	defer origin.Close()
	defer close(release)
	sess := &protocoltest.Sessions{}
	_, proxy := proxyFor(t, hostOf(origin), sess)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, proxy.URL+"/live/s.flv?token=abc&x=1", nil)
	req.Header.Set("User-Agent", "player/1")
	req.Header.Set("Range", "bytes=0-")
	req.Header.Set("Referer", "http://player.example/")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("X-Real-IP", "6.6.6.6")
	req.Header.Set("X-Forwarded-Host", "spoofed.example")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("Forwarded", "for=6.6.6.6")
	req.Header.Set("Connection", "X-Drop")
	req.Header.Set("X-Drop", "1")
	req.Header.Set("X-Custom", "1")
	req.Header.Set("Metadata-Flavor", "Google")
	req.Header.Set("Cookie", "session=1")
	req.Header.Set("Authorization", "Bearer x")
	req.Header.Set("Proxy-Authorization", "Basic eA==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "video/x-flv" || resp.Header.Get("X-Origin") != "srs" {
		t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
	}
	for _, h := range []string{"Proxy-Authenticate", "Keep-Alive"} {
		if resp.Header.Get(h) != "" {
			t.Errorf("hop-by-hop header %s reached the client", h)
		}
	}
	s := <-got
	if s.method != "GET" || s.query != "token=abc&x=1" {
		t.Errorf("origin saw %s ?%s", s.method, s.query)
	}
	for k, want := range map[string]string{
		"User-Agent":        "player/1",
		"Range":             "bytes=0-",
		"Referer":           "http://player.example/",
		"X-Forwarded-For":   "127.0.0.1",
		"X-Real-Ip":         "127.0.0.1",
		"X-Forwarded-Host":  hostOf(proxy),
		"X-Forwarded-Proto": "http",
	} {
		if got := s.header.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("origin saw %s %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"X-Drop", "X-Custom", "Metadata-Flavor", "Cookie", "Authorization", "Proxy-Authorization", "Forwarded"} {
		if got := s.header.Values(k); len(got) != 0 {
			t.Errorf("origin saw %s %q", k, got)
		}
	}
	// The FLV header arrives while the origin is still streaming.
	first := make([]byte, len(flvHeader))
	readDone := make(chan error, 1)
	go func() { _, err := io.ReadFull(resp.Body, first); readDone <- err }()
	select {
	case err := <-readDone:
		if err != nil || string(first) != string(flvHeader) {
			t.Fatalf("first bytes %q, %v", first, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first FLV bytes not flushed while the origin streams")
	}
	key := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "s"}
	if a, _ := sess.Count(key, "flv"); a != 1 {
		t.Errorf("active sessions %d, want 1", a)
	}
	if all := sess.All(); len(all) != 1 || all[0].Kind != stream.KindPlay {
		t.Errorf("tracked %+v, want one player", all)
	}
	// The player leaves: the origin request ends and the session closes.
	cancel()
	testkit.WaitFor(t, 5*time.Second, "origin request canceled", originDone.Load)
	testkit.WaitFor(t, 5*time.Second, "session ended", func() bool { a, _ := sess.Count(key, "flv"); return a == 0 })

	// HEAD is forwarded as HEAD.
	resp, err = http.Head(proxy.URL + "/live/s.flv")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := <-got; s.method != "HEAD" || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "video/x-flv" {
		t.Errorf("HEAD: origin saw %q, status %d, headers %v", s.method, resp.StatusCode, resp.Header)
	}

	// A 404 stays a 404.
	resp, err = http.Get(proxy.URL + "/live/other.ts")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-got
	if resp.StatusCode != 404 {
		t.Errorf("missing stream: status %d, want 404", resp.StatusCode)
	}
}

// Error answers are short JSON documents with the right status. Forged
// segment tokens name a listener of the test's own, and the proxy never
// connects to it.
func TestErrors(t *testing.T) {
	dead := deadAddr(t)
	_, proxy := proxyFor(t, dead, nil)
	noRoute := newTestServer(t, nil)
	noRouteTS := httptest.NewServer(noRoute.Handler())
	defer noRouteTS.Close()
	trip := testkit.NewTripwire(t)
	foreign := tokenCodec{key: []byte("not the mesh-secret")}
	foreignHLS, err := foreign.Encode(Token{Kind: TokenFile, Origin: trip.Addr(), Path: "/live/s-1.ts"})
	if err != nil {
		t.Fatal(err)
	}
	foreignDASH, err := foreign.Encode(Token{Kind: TokenDir, Origin: trip.Addr(), Path: "/live/"})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := tokenCodec{key: []byte("mesh-secret")}.Encode(Token{Kind: TokenFile, Origin: trip.Addr(), Path: "/live/s-1.ts"})
	if err != nil {
		t.Fatal(err)
	}
	tampered := []byte(signed) // a byte of the signature changed
	if tampered[len(tampered)-2] == 'A' {
		tampered[len(tampered)-2] = 'B'
	} else {
		tampered[len(tampered)-2] = 'A'
	}

	tests := []struct {
		name, url, method string
		status            int
	}{
		{"dead origin flv", proxy.URL + "/live/s.flv", "GET", http.StatusBadGateway},
		{"dead origin m3u8", proxy.URL + "/live/s.m3u8", "GET", http.StatusBadGateway},
		{"dead origin mpd", proxy.URL + "/live/s.mpd", "GET", http.StatusBadGateway},
		{"no origin", noRouteTS.URL + "/live/s.flv", "GET", http.StatusServiceUnavailable},
		{"unknown path", proxy.URL + "/favicon.ico", "GET", http.StatusNotFound},
		{"root", proxy.URL + "/", "GET", http.StatusNotFound},
		{"bad key", proxy.URL + "/live/../s.flv", "GET", http.StatusBadRequest},
		{"no app", proxy.URL + "/s.flv", "GET", http.StatusBadRequest},
		{"method", proxy.URL + "/live/s.flv", "POST", http.StatusMethodNotAllowed},
		{"forged hls token", proxy.URL + "/_hls/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/s-1.ts", "GET", http.StatusBadRequest},
		{"garbage hls token", proxy.URL + "/_hls/%21%21/s-1.ts", "GET", http.StatusBadRequest},
		{"hls token without name", proxy.URL + "/_hls/abc", "GET", http.StatusNotFound},
		{"forged dash token", proxy.URL + "/_dash/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/s-1.m4v", "GET", http.StatusBadRequest},
		{"hls token of another key", proxy.URL + hlsPrefix + foreignHLS + "/s-1.ts", "GET", http.StatusBadRequest},
		{"dash token of another key", proxy.URL + dashPrefix + foreignDASH + "/s-1.m4v", "GET", http.StatusBadRequest},
		{"hls token with a changed signature", proxy.URL + hlsPrefix + string(tampered) + "/s-1.ts", "GET", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, tt.url, nil)
			req.URL.Opaque = "" // keep dot segments as sent
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			decodeAPIError(t, resp)
		})
	}
	if got := trip.Connections(t); len(got) != 0 {
		t.Errorf("forged tokens made the proxy connect to the origin they name: %v", got)
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Close ends streaming responses and waits for their handlers.
func TestCloseEndsStreams(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/x-flv")
		w.Write(flvHeader)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer origin.Close()
	s, proxy := proxyFor(t, hostOf(origin), nil)
	resp, err := http.Get(proxy.URL + "/live/s.flv")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, len(flvHeader))); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := io.Copy(io.Discard, resp.Body); err == nil {
		// A clean end is fine too: the response is over either way.
	}
	resp, err = http.Get(proxy.URL + "/live/s.flv")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("after Close: status %d", resp.StatusCode)
	}
	decodeAPIError(t, resp)
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{TokenSecret: []byte("x")}); !errors.Is(err, ErrNoRouter) {
		t.Errorf("no router: %v", err)
	}
	if _, err := New(Config{Router: staticRouter("h:1")}); !errors.Is(err, ErrNoSecret) {
		t.Errorf("no secret: %v", err)
	}
}

// A player that stops reading is dropped after WriteTimeout, and its
// origin request ends with it, instead of holding both forever.
func TestFLVStalledPlayerIsDropped(t *testing.T) {
	originDone := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(originDone)
		w.Header().Set("Content-Type", "video/x-flv")
		chunk := make([]byte, 64<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	defer origin.Close()
	s, err := New(Config{Router: staticRouter(hostOf(origin)), TokenSecret: []byte("k"), Logger: quietLogger,
		WriteTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(s.Handler())
	defer func() { s.Close(); proxy.Close() }()

	// A raw client with a tiny receive buffer that sends a request and
	// never reads the answer.
	c, err := net.Dial("tcp", hostOf(proxy))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET /live/s.flv HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-originDone:
	case <-time.After(20 * time.Second):
		t.Fatal("origin request still open 20 s after the player stopped reading")
	}
}

// When every origin is at its max_streams, a player gets 503 with a JSON
// message that says so, for every kind of stream URL.
func TestEveryOriginFull(t *testing.T) {
	full := routerFunc(func(stream.Key) (stream.Origin, error) {
		return stream.Origin{}, fmt.Errorf("%w (no room for the new stream)", stream.ErrOriginsFull)
	})
	ts := httptest.NewServer(newTestServer(t, full).Handler())
	defer ts.Close()
	for _, path := range []string{"/live/s.flv", "/live/s.ts", "/live/s.m3u8", "/live/s.mpd"} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s: HTTP %d", path, resp.StatusCode)
		}
		if e := decodeAPIError(t, resp); !strings.Contains(e.Message, "max_streams") {
			t.Fatalf("%s: message %q", path, e.Message)
		}
	}
}
