package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
)

// upgradeFromEnv names the commit (or tag) TestMixedVersionUpgrade starts
// from; defaultUpgradeFrom is the release before versioned commands.
const (
	upgradeFromEnv     = "SRS_MESH_UPGRADE_FROM"
	defaultUpgradeFrom = "5a5a224"
)

// buildRelease builds cmd/srs-mesh as it was at commit, from the module's
// git history (git archive into a temporary directory), and returns the
// binary. Without git or without that commit in the history, the test is
// skipped (failed in strict mode) with the reason.
func buildRelease(t *testing.T, commit string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		harness.Missing(t, "git", "builds the previous release from the project's history")
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	if b, err := exec.Command("git", "-C", root, "rev-parse", "--verify", "--quiet", commit+"^{commit}").CombinedOutput(); err != nil {
		harness.Missingf(t, "git history", "commit %s is not in the history of %s (%v %s); set %s to a release that is",
			commit, root, err, strings.TrimSpace(string(b)), upgradeFromEnv)
	}
	dir := t.TempDir()
	tarball := filepath.Join(dir, "src.tar")
	if b, err := exec.Command("git", "-C", root, "archive", "--format=tar", "-o", tarball, commit).CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v: %s", commit, err, b)
	}
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("tar", "-xf", tarball, "-C", src).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, b)
	}
	bin := filepath.Join(dir, "srs-mesh-"+commit)
	build := exec.Command("go", "build", "-o", bin, "./cmd/srs-mesh")
	build.Dir = src
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of %s: %v: %s", commit, err, b)
	}
	return bin
}

// hlsPoller fetches a stream's playlist and its newest segment through one
// node, again and again, and records every failure: HLS through a node that
// is not being restarted must never fail.
type hlsPoller struct {
	path   string
	target atomic.Pointer[harness.Node]
	polls  atomic.Int64
	mu     sync.Mutex
	errs   []string
	stop   chan struct{}
	done   chan struct{}
}

func startHLSPoller(t *testing.T, nd *harness.Node, path string) *hlsPoller {
	p := &hlsPoller{path: path, stop: make(chan struct{}), done: make(chan struct{})}
	p.target.Store(nd)
	go func() {
		defer close(p.done)
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			nd := p.target.Load()
			if err := p.poll(nd); err != nil {
				p.mu.Lock()
				// A poll that began on a node the test has since stopped
				// polling (it is being restarted) is not a failure.
				if p.target.Load() == nd {
					p.errs = append(p.errs, err.Error())
				}
				p.mu.Unlock()
			}
			p.polls.Add(1)
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *hlsPoller) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

func (p *hlsPoller) poll(nd *harness.Node) error {
	resp, err := e2eHTTP.Get(nd.HTTPURL(p.path))
	if err != nil {
		return fmt.Errorf("%s playlist: %v", nd.ID, err)
	}
	body, err := readAllClose(resp)
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s playlist: HTTP %d %v", nd.ID, resp.StatusCode, err)
	}
	segs := uriLines(string(body))
	if len(segs) == 0 {
		return fmt.Errorf("%s playlist without segments", nd.ID)
	}
	resp, err = e2eHTTP.Get("http://" + nd.HTTPAddr + segs[len(segs)-1])
	if err != nil {
		return fmt.Errorf("%s segment: %v", nd.ID, err)
	}
	seg, err := readAllClose(resp)
	if err != nil || resp.StatusCode != http.StatusOK || len(seg) == 0 || seg[0] != 0x47 {
		return fmt.Errorf("%s segment %s: HTTP %d, %d bytes, %v", nd.ID, segs[len(segs)-1], resp.StatusCode, len(seg), err)
	}
	return nil
}

// failures returns and clears the recorded failures.
func (p *hlsPoller) failures() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.errs
	p.errs = nil
	return out
}

func readAllClose(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// TestMixedVersionUpgrade runs a 3-node mesh on the previous release (the
// commit SRS_MESH_UPGRADE_FROM names, 5a5a224 by default) with two live
// publishers, a player and an HLS poller (the clients reconnect through a
// ready node when theirs stops), and upgrades it node by node to this build,
// followers first and the leader last: SIGTERM, the new binary, the same
// data directory. After every step all nodes hold the same assignments,
// every stream plays through every node, the player plays on, HLS through a
// node that was not restarted never failed, and a command type of the new
// protocol waits (status: lowest 1, set_protocol waiting) until the last
// node runs the new build; then the mesh records protocol 2.
func TestMixedVersionUpgrade(t *testing.T) {
	harness.Need(t, "ffmpeg", "nginx")
	from := os.Getenv(upgradeFromEnv)
	if from == "" {
		from = defaultUpgradeFrom
	}
	old := buildRelease(t, from)

	o1 := harness.StartNginx(t, harness.NginxOptions{HLS: true})
	o2 := harness.StartNginx(t, harness.NginxOptions{HLS: true})
	c := &cluster{}
	for i := range 3 {
		c.nodes = append(c.nodes, harness.NewNode(t, old, harness.NodeSpec{ID: fmt.Sprintf("n%d", i+1)}))
	}
	for i, nd := range c.nodes {
		args := []string{"--bootstrap-expect", "3", "--drain-timeout", "1s",
			"--origin", originFlag("o1", o1), "--origin", originFlag("o2", o2)}
		for j, other := range c.nodes {
			if j != i {
				args = append(args, "--join", other.GossipAddr)
			}
		}
		nd.Args = append(nd.Args, args...)
	}
	harness.DumpOnFailure(t, c.nodes...)
	for _, nd := range c.nodes {
		nd.Start()
	}
	c.waitFormed(t, 3, 30*time.Second)
	c.waitOriginsHealthy(t, 2)

	// Two streams, published through the mesh by clients that reconnect
	// through a ready node when theirs goes away, and a player that
	// does the same.
	const path, key = "live/upgrade", "__defaultVhost__/live/upgrade"
	const path2, key2 = "live/upgrade2", "__defaultVhost__/live/upgrade2"
	pub := newLBClient(t, c.nodes, path, false, 0)
	pub2 := newLBClient(t, c.nodes, path2, false, 2)
	owner := c.waitAssigned(t, key)
	c.waitAssigned(t, key2)
	player := newLBClient(t, c.nodes, path, true, 1)
	clients := []*lbClient{pub, pub2, player}
	waitTicking(t, 30*time.Second, "the playlist through n2", clients, func() bool {
		resp, err := e2eHTTP.Get(c.nodes[1].HTTPURL(path + ".m3u8"))
		if err != nil {
			return false
		}
		body, _ := readAllClose(resp)
		return resp.StatusCode == http.StatusOK && len(uriLines(string(body))) > 0
	})
	before := assignments(t, c.nodes[0])
	t.Logf("%s on %s, running %s", key, owner, from)

	// Followers first, the leader last.
	leader := c.status(t, 0).Leader
	var order []int
	for i, nd := range c.nodes {
		if nd.ID != leader {
			order = append(order, i)
		}
	}
	for i, nd := range c.nodes {
		if nd.ID == leader {
			order = append(order, i)
		}
	}
	hls := startHLSPoller(t, c.nodes[order[1]], path+".m3u8")

	check := func(step string, upgraded map[int]bool) {
		t.Helper()
		waitTicking(t, 60*time.Second, step+": every node ready with a leader and three voters", clients, func() bool {
			for _, nd := range c.nodes {
				if !ready(nd) {
					return false
				}
			}
			return c.hasVoters(3)
		})
		waitTicking(t, 20*time.Second, step+": the same assignments on every node", clients, func() bool {
			for _, nd := range c.nodes {
				if got := assignments(t, nd); !sameTable(got, before) {
					return false
				}
			}
			return true
		})
		playEverywhere(t, step, c.nodes, path, path2)
		from := player.frames()
		waitTicking(t, 30*time.Second, step+": the player plays on", clients, func() bool { return player.frames() >= from+25 })
		// The new protocol waits for the last node.
		all := len(upgraded) == len(c.nodes)
		waitTicking(t, 20*time.Second, step+": the protocol as every new node shows it", clients, func() bool {
			for i := range upgraded {
				p := c.status(t, i).Protocol
				if all && (p.Lowest != 2 || p.Mesh != 2 || len(p.Waiting) != 0) {
					return false
				}
				if !all && (p.Lowest != 1 || p.Mesh != 0 || !slices.Contains(p.Waiting, "set_protocol")) {
					t.Fatalf("%s: %s shows %+v with an old node in the mesh", step, c.nodes[i].ID, p)
				}
			}
			return true
		})
		if f := hls.failures(); len(f) > 0 {
			t.Errorf("%s: HLS through a node not restarted failed %d times: %v", step, len(f), f[:min(len(f), 5)])
		}
		t.Logf("%s: assignments agree, every stream plays through every node, %d HLS polls so far", step, hls.polls.Load())
	}
	check("on "+from, map[int]bool{})

	upgraded := map[int]bool{}
	for _, k := range order {
		nd := c.nodes[k]
		// HLS is polled through a node that stays up during this step.
		for _, j := range order {
			if j != k {
				hls.target.Store(c.nodes[j])
				break
			}
		}
		hls.failures() // the switch itself is not a step's failure
		nd.Proc().Cmd.Process.Signal(syscall.SIGTERM)
		waitTicking(t, 30*time.Second, nd.ID+" exits after SIGTERM", clients, func() bool { return nd.Proc().Exited() })
		if err := nd.Proc().Wait(time.Second); err != nil {
			t.Fatalf("%s exited with %v", nd.ID, err)
		}
		nd.Bin = binary
		nd.Start()
		upgraded[k] = true
		check(nd.ID+" upgraded", upgraded)
	}
	after := assignments(t, c.nodes[0])
	if after[key] != owner {
		t.Errorf("%s on %q after the upgrade, was on %s", key, after[key], owner)
	}
	t.Logf("upgraded %v; publishers reconnected %d and %d times (%s; %s), the player %d times, %d frames; %d HLS polls",
		order, pub.reconnects, pub2.reconnects, strings.Join(pub.via, ","), strings.Join(pub2.via, ","),
		player.reconnects, player.frames(), hls.polls.Load())
	var st mesh.Status
	if err := c.nodes[0].Status(&st); err != nil || st.Protocol.Halted != "" {
		t.Fatalf("status after the upgrade: %+v, %v", st.Protocol, err)
	}
}

// playEverywhere plays every stream through every node at once, each
// until it decodes a few frames or 30 s pass, and fails the test for each
// that did not.
func playEverywhere(t *testing.T, step string, nodes []*harness.Node, paths ...string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, len(nodes)*len(paths))
	for _, nd := range nodes {
		for _, p := range paths {
			wg.Add(1)
			go func(url string) {
				defer wg.Done()
				deadline := time.Now().Add(30 * time.Second)
				var last error
				for time.Now().Before(deadline) {
					ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
					res, err := harness.PlayCopy(ctx, url, time.Second)
					cancel()
					if err == nil && res.VideoFrames >= 5 {
						return
					}
					if err == nil {
						err = fmt.Errorf("only %d frames", res.VideoFrames)
					}
					last = err
					time.Sleep(300 * time.Millisecond) // between attempts, not waiting for a condition
				}
				errs <- fmt.Sprintf("%s: %v", url, last)
			}(nd.RTMPURL(p))
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("%s: could not play %s", step, e)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// sameTable reports whether two key -> origin tables are equal.
func sameTable(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
