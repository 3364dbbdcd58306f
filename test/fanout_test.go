package e2e

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestHLSFanOutThroughOneNode plays live/s through node 2 with 100
// concurrent HLS fetchers: plain HTTP clients that reload the playlist and
// fetch every segment it names, as a player does, without decoding. Every
// fetcher gets every segment from its first playlist on, with no gap, and
// all get the same bytes; the origin's access log shows at most one
// request per segment from node 2, whose cache answered the rest.
func TestHLSFanOutThroughOneNode(t *testing.T) {
	const (
		fetchers = 100
		playFor  = 10 * time.Second
		reload   = 500 * time.Millisecond // nginx-rtmp writes 1 s fragments
	)
	c, origins := startHTTPStreamMesh(t)
	owner := c.waitAssigned(t, "__defaultVhost__/live/s")
	node := c.nodes[1]
	playlistURL := node.HTTPURL("live/s.m3u8")

	tr := &http.Transport{MaxIdleConnsPerHost: 2 * fetchers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	get := func(u string) ([]byte, error) {
		resp, err := client.Get(u)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return body, err
	}

	type fetched struct {
		seqs   []int               // segment numbers, in the order fetched
		digest map[string][32]byte // by segment name
		err    error
	}
	results := make([]fetched, fetchers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range fetchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[i]
			res.digest = map[string][32]byte{}
			<-start
			for deadline := time.Now().Add(playFor); time.Now().Before(deadline); time.Sleep(reload) {
				pl, err := get(playlistURL)
				if err != nil {
					res.err = fmt.Errorf("playlist: %v", err)
					return
				}
				for _, u := range uriLines(string(pl)) {
					name := path.Base(strings.SplitN(u, "?", 2)[0])
					if _, ok := res.digest[name]; ok {
						continue
					}
					body, err := get("http://" + node.HTTPAddr + u)
					if err != nil || len(body) == 0 || body[0] != 0x47 {
						res.err = fmt.Errorf("segment %s: %d bytes, %v", name, len(body), err)
						return
					}
					res.digest[name] = sha256.Sum256(body)
					res.seqs = append(res.seqs, segmentNumber(name))
				}
			}
		}()
	}
	close(start)
	wg.Wait()

	segments := map[string][32]byte{}
	for i, res := range results {
		if res.err != nil {
			t.Fatalf("fetcher %d: %v", i, res.err)
		}
		if len(res.seqs) < 5 {
			t.Fatalf("fetcher %d got %d segments in %v: %v", i, len(res.seqs), playFor, res.seqs)
		}
		for j := 1; j < len(res.seqs); j++ {
			if res.seqs[j] != res.seqs[j-1]+1 {
				t.Fatalf("fetcher %d skipped from segment %d to %d: %v", i, res.seqs[j-1], res.seqs[j], res.seqs)
			}
		}
		for name, d := range res.digest {
			if prev, ok := segments[name]; ok && prev != d {
				t.Fatalf("fetcher %d got other bytes for %s than another fetcher", i, name)
			}
			segments[name] = d
		}
	}

	// nginx logs a request once it has sent the answer: wait until the
	// last segments fetched are in the log.
	var perSegment map[string]int
	playlists := 0
	testkit.WaitFor(t, 5*time.Second, "every segment fetched in the origin's access log", func() bool {
		perSegment, playlists = map[string]int{}, 0
		for _, e := range origins[owner].AccessLog() {
			if e.ForwardedHost != node.HTTPAddr {
				continue
			}
			switch p := strings.SplitN(e.URI, "?", 2)[0]; {
			case strings.HasSuffix(p, ".ts"):
				perSegment[path.Base(p)]++
			case strings.HasSuffix(p, ".m3u8"):
				playlists++
			}
		}
		for name := range segments {
			if perSegment[name] == 0 {
				return false
			}
		}
		return true
	})
	for name := range segments {
		if n := perSegment[name]; n != 1 {
			t.Errorf("origin %s served %s to node 2 %d times, want once", owner, name, n)
		}
	}
	for name, n := range perSegment {
		if n > 1 {
			t.Errorf("origin %s served %s to node 2 %d times", owner, name, n)
		}
	}

	fams := scrape(t, node)
	hits := value(fams, "srs_mesh_cache_requests_total", "kind", "segment", "result", "hit")
	coalesced := value(fams, "srs_mesh_cache_requests_total", "kind", "segment", "result", "coalesced")
	misses := value(fams, "srs_mesh_cache_requests_total", "kind", "segment", "result", "miss")
	if misses != float64(len(segments)) {
		t.Errorf("node 2 counted %v segment misses for %d segments", misses, len(segments))
	}
	t.Logf("%d fetchers, %d segments each or more: the origin served node 2 %d segment and %d playlist requests; "+
		"node 2's segment cache: %v hits, %v coalesced, %v misses; %v bytes held",
		fetchers, len(results[0].seqs), len(perSegment), playlists, hits, coalesced, misses,
		value(fams, "srs_mesh_cache_bytes", "kind", "segment"))
}

// segmentNumber is n of nginx-rtmp's segment name "s-<n>.ts", or -1.
func segmentNumber(name string) int {
	m := regexp.MustCompile(`-(\d+)\.ts$`).FindStringSubmatch(name)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
