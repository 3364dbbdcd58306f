package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// maxEncoderSwitchGap is the longest frame gap an RTMP or HTTP-FLV player
// may see when the active encoder of a stream with a backup is killed.
const maxEncoderSwitchGap = time.Second

// waitStandby waits until node logs say a publisher is kept as a standby,
// n times in all.
func waitStandby(t *testing.T, nd *harness.Node, n int) {
	t.Helper()
	testkit.WaitFor(t, 30*time.Second, "a publisher kept as the standby on "+nd.ID, func() bool {
		return strings.Count(nd.Logs(), "publisher kept as the stream's standby") >= n
	})
}

// TestSRSBackupEncoder: two FFmpeg encoders publish one stream key through
// different nodes to real SRS origins; the second is kept as the standby.
// Killing the active one, the standby takes over and the RTMP and
// HTTP-FLV players on every node ride through with no frame gap over
// maxEncoderSwitchGap, no frame twice and no timestamp going back, and an
// FFmpeg HLS player keeps playing. The killed encoder, started again,
// stays the standby (no switch back); killing the now active one switches
// again, the same way.
func TestSRSBackupEncoder(t *testing.T) {
	c, _, _ := startSRSMeshWith(t)
	const path, key = "live/b1", "__defaultVhost__/live/b1"
	a := publishPattern(t, c.nodes[0].RTMPURL(path), "null")
	c.waitAssigned(t, key)
	w := watchEverywhere(t, c, path)
	w.waitFrames(50, "every player plays the first encoder")
	b := publishPattern(t, c.nodes[2].RTMPURL(path), "negate")
	waitStandby(t, c.nodes[2], 1)
	testkit.WaitFor(t, 30*time.Second, "the stream list shows the standby", func() bool {
		doc, err := meshStreams(c.nodes[1])
		if err != nil {
			return false
		}
		for _, s := range doc.Streams {
			if s.Key == key {
				return s.Standbys[c.nodes[2].ID] == 1
			}
		}
		return false
	})
	playlist := c.nodes[1].HTTPURL(path + ".m3u8")
	waitOK(t, playlist, "the playlist")
	hls := harness.StartCopyPlayer(t, playlist)
	testkit.WaitFor(t, 60*time.Second, "the HLS player plays", func() bool {
		if hls.Exited() {
			t.Fatalf("HLS player exited: %s", hls.Output())
		}
		return hls.Frames() > 50
	})
	pw := watchPlaylist(t, c.nodes[0].HTTPURL(path+".m3u8"))
	w.waitFrames(25, "every player plays with a standby")
	w.resetGaps()

	// Kill the active encoder: the standby takes over.
	a.Kill()
	w.waitFrames(75, "every player plays the standby")
	w.check(maxEncoderSwitchGap)
	if b.Exited() {
		t.Fatalf("the standby encoder exited: %s", b.Output())
	}
	if !strings.Contains(c.nodes[2].Logs(), "standby publisher takes over the stream") {
		t.Errorf("node %s did not log the takeover", c.nodes[2].ID)
	}

	// The first encoder comes back, through its node: it is the standby.
	a2 := publishPattern(t, c.nodes[0].RTMPURL(path), "hflip")
	waitStandby(t, c.nodes[0], 1)
	w.resetGaps()
	w.waitFrames(50, "every player keeps playing the second encoder")
	w.check(maxEncoderSwitchGap)

	// Kill the second encoder: the first takes over again.
	b.Kill()
	w.waitFrames(75, "every player plays the first encoder again")
	w.check(maxEncoderSwitchGap)
	if a2.Exited() {
		t.Fatalf("the returned encoder exited: %s", a2.Output())
	}
	base := hls.Frames()
	testkit.WaitFor(t, 60*time.Second, "the HLS player keeps playing", func() bool {
		if hls.Exited() {
			t.Fatalf("HLS player exited: %s", hls.Output())
		}
		return hls.Frames() > base+50
	})
	t.Logf("HLS player: longest stall %v", hls.LongestStall().Round(time.Millisecond))
	pw.check(t)
}

// TestSRSBackupEncoderStall: an active encoder that stalls (SIGSTOP: its
// connection stays open, no media) is ended by its node after
// --publish-stall, and the standby takes over; the players ride through
// with no gap much over the stall.
func TestSRSBackupEncoderStall(t *testing.T) {
	const stall = time.Second
	c, _, _ := startSRSMeshWith(t, "--publish-stall", stall.String())
	const path, key = "live/b2", "__defaultVhost__/live/b2"
	a := publishPattern(t, c.nodes[0].RTMPURL(path), "null")
	c.waitAssigned(t, key)
	w := watchEverywhere(t, c, path)
	w.waitFrames(50, "every player plays the first encoder")
	b := publishPattern(t, c.nodes[2].RTMPURL(path), "negate")
	waitStandby(t, c.nodes[2], 1)
	w.waitFrames(25, "every player plays with a standby")
	w.resetGaps()

	if err := a.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Cmd.Process.Signal(syscall.SIGCONT) })
	w.waitFrames(75, "every player plays the standby")
	w.check(stall + maxEncoderSwitchGap)
	if !strings.Contains(c.nodes[0].Logs(), "publisher stalled") {
		t.Errorf("node %s did not end the stalled publisher", c.nodes[0].ID)
	}
	if b.Exited() {
		t.Fatalf("the standby encoder exited: %s", b.Output())
	}
}

// playlistWatch polls an HLS playlist (the variant of SRS's master
// playlist) through a node while a test runs, and records what a player
// would see go wrong: answers other than 200, and media sequences going
// back; and the discontinuities seen.
type playlistWatch struct {
	mu            sync.Mutex
	polls, bad    int
	backwards     int
	lastSeq       int
	discontinuity int // playlists that carried EXT-X-DISCONTINUITY
	lastBad       string
}

func watchPlaylist(t *testing.T, rawURL string) *playlistWatch {
	w := &playlistWatch{lastSeq: -1}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		u := rawURL
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			status, body := getPlaylist(u)
			w.mu.Lock()
			w.polls++
			if status != http.StatusOK {
				w.bad++
				w.lastBad = fmt.Sprintf("%s: %d", u, status)
				w.mu.Unlock()
				continue
			}
			seq, variant, disc := -1, "", false
			for _, l := range strings.Split(body, "\n") {
				l = strings.TrimSpace(l)
				switch {
				case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"):
					seq, _ = strconv.Atoi(strings.TrimPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"))
				case l == "#EXT-X-DISCONTINUITY":
					disc = true
				case l != "" && !strings.HasPrefix(l, "#") && strings.Contains(l, ".m3u8"):
					variant = l
				}
			}
			if disc {
				w.discontinuity++
			}
			if seq >= 0 {
				if seq < w.lastSeq {
					w.backwards++
				}
				w.lastSeq = seq
			}
			w.mu.Unlock()
			if variant != "" {
				if ref, err := url.Parse(variant); err == nil {
					if base, err := url.Parse(u); err == nil {
						u = base.ResolveReference(ref).String()
					}
				}
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		<-stopped
	})
	return w
}

func getPlaylist(u string) (int, string) {
	resp, err := e2eHTTP.Get(u)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// check fails when the playlist answered anything but 200 or its media
// sequence went back.
func (w *playlistWatch) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("playlist: %d polls, %d not 200, %d sequences back, %d playlists with a discontinuity, last sequence %d", w.polls, w.bad, w.backwards, w.discontinuity, w.lastSeq)
	if w.bad > 0 || w.backwards > 0 || w.polls == 0 {
		t.Errorf("playlist: %d of %d polls not 200 (last %s), %d sequences back", w.bad, w.polls, w.lastBad, w.backwards)
	}
}

// TestNginxBackupEncoder: the same switch with nginx-rtmp origins, which
// refuse a second publisher and end their plays at unpublish: the standby
// takes over when its watch ends, and the RTMP and HTTP-FLV players on
// every node ride through.
func TestNginxBackupEncoder(t *testing.T) {
	_, flags := twoNginx(t)
	c := startCluster(t, 3, flags...)
	c.waitOriginsHealthy(t, 2)
	const path, key = "live/b3", "__defaultVhost__/live/b3"
	a := publishPattern(t, c.nodes[0].RTMPURL(path), "null")
	c.waitAssigned(t, key)
	w := watchEverywhere(t, c, path)
	w.waitFrames(50, "every player plays the first encoder")
	b := publishPattern(t, c.nodes[2].RTMPURL(path), "negate")
	waitStandby(t, c.nodes[2], 1)
	w.waitFrames(25, "every player plays with a standby")
	w.resetGaps()
	a.Kill()
	w.waitFrames(75, "every player plays the standby")
	w.check(maxEncoderSwitchGap)
	if b.Exited() {
		t.Fatalf("the standby encoder exited: %s", b.Output())
	}
}

// TestNginxThirdEncoderRefused: a stream key has at most two publishers in
// the mesh. With an active encoder through one node and its standby
// through another, a third encoder of the key through the third node is
// refused as busy, as the origin would refuse it, and the mesh still lists
// one standby.
func TestNginxThirdEncoderRefused(t *testing.T) {
	_, flags := twoNginx(t)
	c := startCluster(t, 3, flags...)
	c.waitOriginsHealthy(t, 2)
	const path, key = "live/b4", "__defaultVhost__/live/b4"
	a := publishPattern(t, c.nodes[0].RTMPURL(path), "null")
	c.waitAssigned(t, key)
	p := harness.StartPlayer(t, c.nodes[0].RTMPURL(path))
	testkit.WaitFor(t, 60*time.Second, "the player decoding", func() bool { return p.Frames() > 25 })
	b := publishPattern(t, c.nodes[1].RTMPURL(path), "negate")
	waitStandby(t, c.nodes[1], 1)
	third := publishPattern(t, c.nodes[2].RTMPURL(path), "hflip")
	testkit.WaitFor(t, 30*time.Second, "the third encoder refused", third.Exited)
	if !strings.Contains(c.nodes[2].Logs(), "has a standby publisher already") {
		t.Errorf("node 3 did not say why it refused the third encoder:\n%s", c.nodes[2].Logs())
	}
	var cs struct {
		Streams []struct {
			Key      string         `json:"key"`
			Standbys map[string]int `json:"standbys"`
		} `json:"streams"`
	}
	if err := harness.GetJSON("http://"+c.nodes[2].SystemAPI+"/mesh/v1/streams", &cs); err != nil {
		t.Fatal(err)
	}
	for _, s := range cs.Streams {
		if s.Key == key && (len(s.Standbys) != 1 || s.Standbys[c.nodes[1].ID] != 1) {
			t.Errorf("standbys of %s: %v, want one on %s", key, s.Standbys, c.nodes[1].ID)
		}
	}
	if a.Exited() || b.Exited() {
		t.Fatalf("the active or the standby encoder exited: %s %s", a.Output(), b.Output())
	}
}
