package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/harness"
)

// TestHTTPFLVFanOutThroughMesh plays one live HTTP-FLV stream with 50
// players through one node (--fanout is on by default): a few FFmpeg
// players decode frames, the rest are plain HTTP readers counting bytes,
// and the origin serves the stream once.
func TestHTTPFLVFanOutThroughMesh(t *testing.T) {
	harness.Need(t, "ffmpeg")
	o := startFLVOrigin(t)
	port := o.addr[strings.LastIndexByte(o.addr, ':')+1:]
	c := startProtocolCluster(t, 1, nil, "--origin", "id=flv1,ip=127.0.0.1,http="+port)
	c.waitOriginsHealthy(t, 1)
	url := c.nodes[0].HTTPURL("live/s.flv?fan=1")

	const players, decoders = 50, 3
	const readFor = 6 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// read plays url with a plain client for readFor and returns the bytes
	// it got; it retries until the node answers 200.
	read := func(started chan<- struct{}) (int64, error) {
		var resp *http.Response
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			var err error
			if resp, err = e2eHTTP.Do(req); err == nil && resp.StatusCode == http.StatusOK {
				break
			}
			if err == nil {
				resp.Body.Close()
			}
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			time.Sleep(200 * time.Millisecond)
		}
		defer resp.Body.Close()
		head := make([]byte, 3)
		if _, err := io.ReadFull(resp.Body, head); err != nil || !bytes.Equal(head, []byte("FLV")) {
			return 0, io.ErrUnexpectedEOF
		}
		if started != nil {
			close(started)
		}
		rctx, rcancel := context.WithTimeout(ctx, readFor)
		defer rcancel()
		stop := context.AfterFunc(rctx, func() { resp.Body.Close() })
		defer stop()
		n, _ := io.Copy(io.Discard, resp.Body)
		return n + 3, nil
	}

	// The first reader holds the shared upstream open; the others join it.
	first := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var counts []int64
	var frames []int
	reader := func(started chan<- struct{}) {
		defer wg.Done()
		n, err := read(started)
		if err != nil {
			t.Errorf("HTTP reader: %v", err)
		}
		mu.Lock()
		counts = append(counts, n)
		mu.Unlock()
	}
	wg.Add(1)
	go reader(first)
	select {
	case <-first:
	case <-ctx.Done():
		t.Fatal("the first player got no stream")
	}
	for range players - decoders - 1 {
		wg.Add(1)
		go reader(nil)
	}
	for range decoders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := harness.Play(ctx, url, 3*time.Second, "-f", "flv")
			if err != nil {
				t.Errorf("FFmpeg player: %v", err)
			}
			mu.Lock()
			frames = append(frames, res.VideoFrames)
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("FFmpeg players decoded %v frames; HTTP readers got %v bytes", frames, counts)
	for _, f := range frames {
		if f < 10 {
			t.Errorf("an FFmpeg player decoded %d frames, want at least 10", f)
		}
	}
	for _, n := range counts {
		if n < 10<<10 {
			t.Errorf("an HTTP reader got %d bytes, want a live stream", n)
		}
	}
	reqs, _ := o.seen()
	var n int
	for _, r := range reqs {
		if r.URL.Path == "/live/s.flv" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the origin served /live/s.flv %d times for %d players, want once", n, players)
	}
}
