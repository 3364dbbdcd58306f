package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// servePart runs httpPart for h within lim on a loopback port, as the
// listener "test", and returns its address. The part is closed at cleanup.
func servePart(t *testing.T, lim httpLimits, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := httpPart("test", "test", ln, h, lim)
	done := make(chan error, 1)
	go func() { done <- p.serve() }()
	t.Cleanup(func() {
		p.close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// get sends a keep-alive GET on c and reads the answer.
func get(c net.Conn, br *bufio.Reader) (*http.Response, string, error) {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, "", err
	}
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

// A streaming response (HTTP-FLV) runs far longer than the read timeout,
// with or without a request body read first, and its request context is not
// cancelled on the way: the handler writes one byte per 20 ms tick, so its
// 50 bytes take at least 1 s (a ticker drops ticks, it never runs early),
// five read timeouts, and the client gets them all.
func TestHTTPStreamOutlivesReadTimeout(t *testing.T) {
	testkit.CheckGoroutines(t)
	const ticks = 50
	result := make(chan string, 4) // never blocks a handler, even when a subtest fails
	addr := servePart(t, httpLimits{readTimeout: 200 * time.Millisecond, idleTimeout: 200 * time.Millisecond},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.ReadAll(r.Body); err != nil {
				result <- "body: " + err.Error()
				return
			}
			rc := http.NewResponseController(w)
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := range ticks {
				select {
				case <-r.Context().Done():
					result <- fmt.Sprintf("context ended after %d ticks: %v", i, r.Context().Err())
					return
				case <-tick.C:
				}
				if _, err := io.WriteString(w, "x"); err != nil {
					result <- "write: " + err.Error()
					return
				}
				if err := rc.Flush(); err != nil {
					result <- "flush: " + err.Error()
					return
				}
			}
			result <- "streamed"
		}))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			var body io.Reader
			if method == http.MethodPost {
				body = strings.NewReader("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n") // a WHIP offer's shape
			}
			req, _ := http.NewRequest(method, "http://"+addr+"/live/a.flv", body)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			handler := "still running"
			select {
			case handler = <-result:
			case <-time.After(5 * time.Second):
			}
			if err != nil || handler != "streamed" || len(got) != ticks {
				t.Fatalf("after %d of %d bytes: read error %v; handler: %s", len(got), ticks, err, handler)
			}
		})
	}
}

// A slowloris client that sends its headers a byte at a time is closed by
// the header timeout, and so is one that sends nothing. Without the read
// timeout, the header wait would be maxHeaderWait (10 s) and the slowloris
// would finish its headers (12 s): a close within half of maxHeaderWait,
// with the headers unfinished, is the read timeout's.
func TestHTTPSlowHeadersClosed(t *testing.T) {
	testkit.CheckGoroutines(t)
	var served atomic.Int64
	addr := servePart(t, httpLimits{readTimeout: 300 * time.Millisecond, idleTimeout: time.Minute},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))

	t.Run("slowloris", func(t *testing.T) {
		c := dial(t, addr)
		stop := make(chan struct{})
		defer close(stop)
		// 240 header bytes at 20 a second would take 12 s.
		req := []byte("GET / HTTP/1.1\r\nHost: test\r\nX-Pad: " + strings.Repeat("a", 200) + "\r\n\r\n")
		var written atomic.Int64
		go func() {
			for _, b := range req {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				written.Add(1)
			}
		}()
		waitClosed(t, c, maxHeaderWait/2)
		if n := written.Load(); n >= int64(len(req)) {
			t.Fatalf("closed only after all %d header bytes were sent", n)
		}
	})
	t.Run("silent", func(t *testing.T) {
		c := dial(t, addr)
		waitClosed(t, c, maxHeaderWait/2)
	})
	if n := served.Load(); n != 0 {
		t.Fatalf("handler ran %d times", n)
	}
}

// A request body sent a byte every 300 ms is cut by the read timeout: the
// handler's read fails with a timeout and the connection is closed long
// before the 100-byte body could have been sent (30 s).
func TestHTTPSlowBodyCut(t *testing.T) {
	testkit.CheckGoroutines(t)
	bodyErr := make(chan error, 1)
	addr := servePart(t, httpLimits{readTimeout: 500 * time.Millisecond, idleTimeout: time.Minute},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, err := io.ReadAll(r.Body)
			bodyErr <- err
			if err != nil {
				http.Error(w, "slow body", http.StatusBadRequest)
			}
		}))
	c := dial(t, addr)
	if _, err := io.WriteString(c, "POST /api/v1/srs/register HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for range 100 {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			if _, err := c.Write([]byte{'a'}); err != nil {
				return
			}
		}
	}()
	waitClosed(t, c, 10*time.Second)
	select {
	case err := <-bodyErr:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("body read: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler never finished reading the body")
	}
}

// An idle keep-alive connection is closed after the idle timeout. The read
// timeout is a minute, so only the idle timeout can close it within the
// generous wait below (http.Server falls back to ReadTimeout without one).
func TestHTTPIdleKeepAliveClosed(t *testing.T) {
	testkit.CheckGoroutines(t)
	const idle = 300 * time.Millisecond
	addr := servePart(t, httpLimits{readTimeout: time.Minute, idleTimeout: idle}, okHandler)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	for i := range 2 {
		resp, body, err := get(c, br)
		if err != nil || resp.StatusCode != http.StatusOK || body != "ok" || resp.Close {
			t.Fatalf("request %d: %v %v %q", i, resp, err, body)
		}
	}
	waitClosed(t, c, 10*time.Second)
}

// Request headers over maxHeaderBytes are refused with 431.
func TestHTTPHeadersTooLarge(t *testing.T) {
	testkit.CheckGoroutines(t)
	addr := servePart(t, httpLimits{readTimeout: 5 * time.Second, idleTimeout: time.Minute}, okHandler)
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\nX-Pad: "+strings.Repeat("a", maxHeaderBytes+8<<10)+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
}

// With a cap of 2, a third connection is answered 503 and closed while the
// first two keep working; closing one frees its slot.
func TestHTTPConnCap(t *testing.T) {
	testkit.CheckGoroutines(t)
	lim := httpLimits{readTimeout: 5 * time.Second, idleTimeout: time.Minute, maxConns: 2}
	lim.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refused"}, []string{"listener"})
	addr := servePart(t, lim, okHandler)
	refused := func() float64 {
		reg := prometheus.NewRegistry()
		reg.MustRegister(lim.refused)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == "test" {
					return m.GetCounter().GetValue()
				}
			}
		}
		return -1
	}
	if n := refused(); n != 0 {
		t.Fatalf("refused counter %v before any refusal, want 0", n)
	}

	type client struct {
		c  net.Conn
		br *bufio.Reader
	}
	open := func() client {
		c := dial(t, addr)
		return client{c, bufio.NewReader(c)}
	}
	mustOK := func(cl client, what string) {
		t.Helper()
		resp, body, err := get(cl.c, cl.br)
		if err != nil || resp.StatusCode != http.StatusOK || body != "ok" {
			t.Fatalf("%s: %v %v %q", what, resp, err, body)
		}
	}
	mustRefuse := func(cl client, what string) {
		t.Helper()
		cl.c.SetDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(cl.br, nil)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var body struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close || err != nil ||
			body.Code != 503 || body.Message != "too many connections" ||
			resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d close=%v %+v %v", what, resp.StatusCode, resp.Close, body, err)
		}
		waitClosed(t, cl.c, 3*time.Second)
	}

	c1, c2 := open(), open()
	mustOK(c1, "first connection")
	mustOK(c2, "second connection")
	mustRefuse(open(), "third connection")
	mustOK(c1, "first connection after the refusal")
	mustOK(c2, "second connection after the refusal")
	if n := refused(); n != 1 {
		t.Fatalf("refused counter %v, want 1", n)
	}

	c1.c.Close()
	var c4 client
	testkit.Eventually(t, 5*time.Second, func() error {
		c4 = open()
		resp, _, err := get(c4.c, c4.br)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	mustRefuse(open(), "connection over the cap again")
	mustOK(c2, "second connection at the end")
	mustOK(c4, "connection in the freed slot")
}

func TestHTTPLimitFlags(t *testing.T) {
	cmd := newServeCmd()
	if err := cmd.Flags().Parse(nil); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SRS_MESH_MAX_HTTP_CONNS": "7", "SRS_MESH_HTTP_IDLE_TIMEOUT": "0"}
	if err := applyEnv(cmd.Flags(), func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"http-read-timeout": "10s", "http-idle-timeout": "0s", "max-http-conns": "7"} {
		if got := cmd.Flags().Lookup(name).Value.String(); got != want {
			t.Errorf("--%s = %s, want %s", name, got, want)
		}
	}

	lim, err := newHTTPLimits(serveOptions{httpReadTimeout: 10 * time.Second, httpIdleTimeout: 60 * time.Second, maxHTTPConns: 10000})
	if err != nil {
		t.Fatal(err)
	}
	srv := lim.server(okHandler)
	if srv.ReadHeaderTimeout != 10*time.Second || srv.ReadTimeout != 10*time.Second || srv.IdleTimeout != time.Minute ||
		srv.WriteTimeout != 0 || srv.MaxHeaderBytes != 64<<10 {
		t.Errorf("defaults: header %v read %v idle %v write %v max header %d", srv.ReadHeaderTimeout, srv.ReadTimeout,
			srv.IdleTimeout, srv.WriteTimeout, srv.MaxHeaderBytes)
	}
	srv = httpLimits{readTimeout: 0, idleTimeout: 0}.server(okHandler)
	if srv.ReadHeaderTimeout != maxHeaderWait || srv.ReadTimeout != 0 || srv.IdleTimeout >= 0 {
		t.Errorf("no limits: header %v read %v idle %v", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout)
	}
	srv = httpLimits{readTimeout: time.Second}.server(okHandler)
	if srv.ReadHeaderTimeout != time.Second {
		t.Errorf("header timeout %v with a 1s read timeout", srv.ReadHeaderTimeout)
	}
	for _, o := range []serveOptions{{httpReadTimeout: -time.Second}, {httpIdleTimeout: -time.Second}, {maxHTTPConns: -1}} {
		if _, err := newHTTPLimits(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestRTCOfferLimitFlags(t *testing.T) {
	cmd := newServeCmd()
	if err := cmd.Flags().Parse(nil); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"rtc-offer-rate": "5", "rtc-offer-burst": "20"} {
		if got := cmd.Flags().Lookup(name).Value.String(); got != want {
			t.Errorf("--%s = %s, want %s", name, got, want)
		}
	}
	if err := applyEnv(cmd.Flags(), func(k string) (string, bool) { return "0.5", k == "SRS_MESH_RTC_OFFER_RATE" }); err != nil {
		t.Fatal(err)
	}
	if got := cmd.Flags().Lookup("rtc-offer-rate").Value.String(); got != "0.5" {
		t.Errorf("--rtc-offer-rate from the environment = %s", got)
	}
	for _, tc := range []struct {
		rate      float64
		burst     int
		wantRate  float64
		wantBurst int
		bad       bool
	}{
		{rate: 5, burst: 20, wantRate: 5, wantBurst: 20},
		{rate: 0.5, burst: 1, wantRate: 0.5, wantBurst: 1},
		{rate: 0, burst: 20, wantRate: -1, wantBurst: 20}, // no limit
		{rate: -1, burst: 20, bad: true},
		{rate: math.Inf(1), burst: 20, bad: true},
		{rate: math.NaN(), burst: 20, bad: true},
		{rate: 5, burst: 0, bad: true},
	} {
		r, b, err := rtcOfferLimit(serveOptions{rtcOfferRate: tc.rate, rtcOfferBurst: tc.burst})
		if (err != nil) != tc.bad || (!tc.bad && (r != tc.wantRate || b != tc.wantBurst)) {
			t.Errorf("rtcOfferLimit(%v, %d) = %v, %d, %v", tc.rate, tc.burst, r, b, err)
		}
	}
}

func TestRTMPMaxMessageFlag(t *testing.T) {
	cmd := newServeCmd()
	if err := cmd.Flags().Parse(nil); err != nil {
		t.Fatal(err)
	}
	if got := cmd.Flags().Lookup("rtmp-max-message").Value.String(); got != "1MiB" {
		t.Errorf("default --rtmp-max-message = %s, want 1MiB (nginx-rtmp's max_message)", got)
	}
	if err := applyEnv(cmd.Flags(), func(k string) (string, bool) { return "4MiB", k == "SRS_MESH_RTMP_MAX_MESSAGE" }); err != nil {
		t.Fatal(err)
	}
	if got := cmd.Flags().Lookup("rtmp-max-message").Value.String(); got != "4MiB" {
		t.Errorf("--rtmp-max-message from the environment = %s", got)
	}
	for size, ok := range map[byteSize]bool{1: true, 1 << 20: true, 0xffffff: true, 0: false, 16 << 20: false} {
		n, err := rtmpMaxMessage(serveOptions{rtmpMaxMessage: size})
		if (err == nil) != ok || (ok && n != uint32(size)) {
			t.Errorf("--rtmp-max-message %d: %d %v", size, n, err)
		}
	}
}
