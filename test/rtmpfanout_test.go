package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// playHook is an origin's on_play hook that allows token=good only and
// counts the plays it was asked about, by token.
type playHook struct {
	mu    sync.Mutex
	plays map[string]int
}

func (h *playHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	token := r.Form.Get("token")
	h.mu.Lock()
	h.plays[token]++
	h.mu.Unlock()
	if token != "good" {
		http.Error(w, "forbidden", http.StatusForbidden)
	}
}

func (h *playHook) count(token string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.plays[token]
}

// TestRTMPAndFLVFanOutThroughMesh plays one stream of an nginx-rtmp origin
// through one node with 20 RTMP and 50 HTTP-FLV players (a few FFmpeg
// decoders, the rest FFmpeg copies and plain readers). The origin's on_play
// hook sees one play for all of them; a player with a wrong token is
// refused in both protocols; a player that stops reading does not slow the
// others; /mesh/v1/streams reports the fan-out.
func TestRTMPAndFLVFanOutThroughMesh(t *testing.T) {
	harness.Need(t, "ffmpeg", "nginx")
	hook := &playHook{plays: map[string]int{}}
	hs := httptest.NewServer(hook)
	defer hs.Close()
	o := harness.StartNginx(t, harness.NginxOptions{OnPlay: hs.URL + "/on_play"})
	c := startProtocolCluster(t, 1, nil, "--origin", originFlag("o1", o))
	c.waitOriginsHealthy(t, 1)
	nd := c.nodes[0]
	pub := harness.PublishRTMP(t, nd.RTMPURL("live/fan"))
	harness.PlayUntil(t, nd.RTMPURL("live/fan?token=good"), time.Second, 10, 30*time.Second)

	// A player that stops reading after its first bytes, there all along.
	stalled := stallFLV(t, nd.HTTPURL("live/fan.flv?token=good"))
	defer stalled.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const rtmpPlayers, flvReaders, playFor = 20, 47, 8 * time.Second
	var wg sync.WaitGroup
	var failures atomic.Int32
	var flvBytes atomic.Int64
	fail := func(format string, args ...any) {
		failures.Add(1)
		t.Errorf(format, args...)
	}
	// RTMP: 3 decode, 17 copy (cheaper, and still read every message).
	for i := range rtmpPlayers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res harness.PlayResult
			var err error
			if i < 3 {
				res, err = harness.Play(ctx, nd.RTMPURL("live/fan?token=good"), playFor)
			} else {
				res, err = harness.PlayCopy(ctx, nd.RTMPURL("live/fan?token=good"), playFor)
			}
			if err != nil || res.VideoFrames < 50 {
				fail("RTMP player %d: %d frames, %v", i, res.VideoFrames, err)
			}
		}()
	}
	// HTTP-FLV: 3 decode, 47 plain readers.
	flvURL := nd.HTTPURL("live/fan.flv?token=good")
	// The decoders get the media at its rate despite the stalled player:
	// 8 s of it (fast start gives a head start of up to a GOP) in far less
	// than the 30 s a blocked write would take to time out.
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			res, err := harness.Play(ctx, flvURL, playFor)
			if took := time.Since(start); err != nil || res.VideoFrames < 150 || took > playFor+15*time.Second {
				fail("FLV decoder %d: %d frames in %v, %v", i, res.VideoFrames, took, err)
			}
		}()
	}
	for i := range flvReaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := readFLV(ctx, flvURL, playFor)
			if err != nil || n < 10000 {
				fail("FLV reader %d: %d bytes, %v", i, n, err)
			}
			flvBytes.Add(n)
		}()
	}

	testkit.WaitFor(t, 30*time.Second, "the fan-out in /mesh/v1/streams", func() bool {
		doc, err := meshStreams(nd)
		if err != nil {
			return false
		}
		for _, s := range doc.Streams {
			if s.Key == "__defaultVhost__/live/fan" {
				f := s.FanOut[nd.ID]
				return f.Upstreams == 1 && f.Players >= rtmpPlayers+flvReaders && f.Ratio >= float64(rtmpPlayers+flvReaders)
			}
		}
		return false
	})
	wg.Wait()
	if failures.Load() > 0 {
		t.FailNow()
	}
	// One upstream served them all: the first PlayUntil's may have lingered
	// or closed, so the hook saw at most two plays with the good token.
	if n := hook.count("good"); n < 1 || n > 2 {
		t.Errorf("the origin's hook saw %d plays with the good token for %d players, want 1 or 2", n, rtmpPlayers+flvReaders+4)
	}
	t.Logf("%d players, %d origin plays, %d MB to the FLV readers", rtmpPlayers+flvReaders+3, hook.count("good"), flvBytes.Load()>>20)

	// Wrong tokens are refused in both protocols; the origin decided.
	if res, err := harness.Play(ctx, nd.RTMPURL("live/fan?token=bad"), 2*time.Second); err == nil {
		t.Errorf("RTMP player with a wrong token played %d frames", res.VideoFrames)
	}
	resp, err := e2eHTTP.Get(nd.HTTPURL("live/fan.flv?token=bad"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("FLV player with a wrong token: %s, want 403", resp.Status)
	}
	if hook.count("bad") == 0 {
		t.Error("the origin's hook never saw the wrong token")
	}
	if pub.Exited() {
		t.Fatalf("publisher exited: %s", pub.Output())
	}
}

// readFLV reads an HTTP-FLV URL for d and returns the bytes it got.
func readFLV(ctx context.Context, url string, d time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := e2eHTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s", resp.Status)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if ctx.Err() != nil {
		err = nil
	}
	return n, err
}

// stallFLV opens an HTTP-FLV play with a tiny receive buffer and never
// reads past the response header.
func stallFLV(t *testing.T, url string) net.Conn {
	t.Helper()
	u := strings.TrimPrefix(url, "http://")
	host, path, _ := strings.Cut(u, "/")
	nc, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	nc.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(nc, "GET /%s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host)
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil || !strings.Contains(line, "200") {
		t.Fatalf("stalled player: %q %v", line, err)
	}
	return nc
}

// TestFanOutSRSOrigin is the fan-out test against a real SRS 7 origin
// (opt-in, SRS_MESH_TEST_SRS): 20 RTMP and 50 HTTP-FLV players of one
// stream through one node (a few FFmpeg decoders, the rest minimal
// readers), and SRS's own API counts the publisher and one player.
func TestFanOutSRSOrigin(t *testing.T) {
	harness.Need(t, "ffmpeg")
	srs := harness.StartSRS(t, harness.SRSOptions{ID: "fan"})
	port := func(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
	c := startProtocolCluster(t, 1, nil, "--origin",
		fmt.Sprintf("id=srs,ip=127.0.0.1,rtmp=%s,http=%s,api=%s", port(srs.RTMPAddr), port(srs.HTTPAddr), port(srs.APIAddr)))
	c.waitOriginsHealthy(t, 1)
	nd := c.nodes[0]
	pub := harness.PublishRTMP(t, nd.RTMPURL("live/fan"))
	harness.PlayUntil(t, nd.RTMPURL("live/fan"), time.Second, 10, 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const playFor = 8 * time.Second
	var wg sync.WaitGroup
	var failures atomic.Int32
	fail := func(format string, args ...any) {
		failures.Add(1)
		t.Errorf(format, args...)
	}
	for i := range 3 { // decoders of each protocol
		wg.Add(2)
		go func() {
			defer wg.Done()
			if res, err := harness.Play(ctx, nd.RTMPURL("live/fan"), playFor); err != nil || res.VideoFrames < 100 {
				fail("RTMP decoder %d: %d frames, %v", i, res.VideoFrames, err)
			}
		}()
		go func() {
			defer wg.Done()
			if res, err := harness.Play(ctx, nd.HTTPURL("live/fan.flv"), playFor); err != nil || res.VideoFrames < 100 {
				fail("FLV decoder %d: %d frames, %v", i, res.VideoFrames, err)
			}
		}()
	}
	rctx, rcancel := context.WithTimeout(ctx, playFor+5*time.Second)
	defer rcancel()
	var rtmpBytes, flvBytes atomic.Int64
	for range 17 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n atomic.Int64
			if err := harness.ReadRTMP(rctx, nd.RTMPURL("live/fan"), &n); err != nil || n.Load() < 10000 {
				fail("RTMP reader: %d bytes, %v", n.Load(), err)
			}
			rtmpBytes.Add(n.Load())
		}()
	}
	for range 47 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := readFLV(rctx, nd.HTTPURL("live/fan.flv"), playFor)
			if err != nil || n < 10000 {
				fail("FLV reader: %d bytes, %v", n, err)
			}
			flvBytes.Add(n)
		}()
	}
	// While they play, SRS sees the publisher and one player: the node's
	// shared upstream.
	testkit.WaitFor(t, 20*time.Second, "70 players on one upstream", func() bool {
		doc, err := meshStreams(nd)
		if err != nil {
			return false
		}
		for _, s := range doc.Streams {
			if s.Key == "__defaultVhost__/live/fan" {
				f := s.FanOut[nd.ID]
				return f.Upstreams == 1 && f.Players >= 70
			}
		}
		return false
	})
	if n := srsClients(t, srs.APIAddr, "fan"); n != 2 {
		t.Errorf("SRS counts %d clients of the stream, want 2 (the publisher and the node)", n)
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.FailNow()
	}
	t.Logf("70 players through one node; SRS served one; %d MB to RTMP readers, %d MB to FLV readers", rtmpBytes.Load()>>20, flvBytes.Load()>>20)
	if pub.Exited() {
		t.Fatalf("publisher exited: %s", pub.Output())
	}
}
