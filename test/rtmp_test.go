package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestRTMPThroughMesh is the foundation scenario: three srs-mesh processes
// in front of two nginx-rtmp origins. FFmpeg publishes through node 1 and
// plays through nodes 2 and 3; every leg reaches the one assigned origin.
// Then that origin dies and a new publish through node 3 lands on the other.
func TestRTMPThroughMesh(t *testing.T) {
	harness.Need(t, "ffmpeg", "nginx")
	o1 := harness.StartNginx(t, harness.NginxOptions{})
	o2 := harness.StartNginx(t, harness.NginxOptions{})
	origins := map[string]*harness.Nginx{"o1": o1, "o2": o2}
	c := startCluster(t, 3, "--origin", originFlag("o1", o1), "--origin", originFlag("o2", o2))

	testkit.WaitFor(t, 15*time.Second, "both origins healthy on every node", func() bool {
		for i := range c.nodes {
			var st mesh.Status
			if c.nodes[i].Status(&st) != nil || len(st.Origins) != 2 {
				return false
			}
			for _, o := range st.Origins {
				if !o.Healthy {
					return false
				}
			}
		}
		return true
	})

	const key = "__defaultVhost__/live/mesh"
	pub := harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/mesh?secret=s3cret"))

	// Plays through node 2 and node 3 decode frames.
	for _, i := range []int{1, 2} {
		res := harness.PlayUntil(t, c.nodes[i].RTMPURL("live/mesh"), 2*time.Second, 10, 30*time.Second)
		t.Logf("played %d frames through %s", res.VideoFrames, c.nodes[i].ID)
	}
	if pub.Exited() {
		t.Fatalf("publisher exited: %s", pub.Output())
	}

	// Every node agrees on the assignment, and the stream is on that origin
	// and not on the other one.
	var owner string
	testkit.WaitFor(t, 10*time.Second, "assignment replicated to all nodes", func() bool {
		owner = ""
		for i := range c.nodes {
			a, ok := assignmentOf(c.status(t, i), key)
			if !ok || (owner != "" && a.Origin != owner) {
				return false
			}
			owner = a.Origin
		}
		return true
	})
	other := "o1"
	if owner == "o1" {
		other = "o2"
	}
	t.Logf("stream %s assigned to %s", key, owner)
	harness.PlayUntil(t, "rtmp://"+origins[owner].RTMPAddr+"/live/mesh", time.Second, 5, 10*time.Second)
	if res, err := playOnce("rtmp://"+origins[other].RTMPAddr+"/live/mesh", 4*time.Second); err == nil && res.VideoFrames > 0 {
		t.Fatalf("stream also found on %s, which does not own it", other)
	}

	// srs-mesh status --json against any node shows the whole picture.
	for i := range c.nodes {
		out, err := exec.Command(binary, "status", "--json", "--addr", c.nodes[i].SystemAPI).Output()
		if err != nil {
			t.Fatalf("status --json via %s: %v", c.nodes[i].ID, err)
		}
		var st mesh.Status
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatalf("status --json is not a Status document: %v\n%s", err, out)
		}
		leaders := 0
		for _, m := range st.Members {
			if m.RaftRole == "leader" {
				leaders++
			}
		}
		if len(st.Members) != 3 || st.Leader == "" || leaders != 1 || len(st.Origins) != 2 {
			t.Fatalf("status via %s: %d members, leader %q (%d with role leader), %d origins",
				c.nodes[i].ID, len(st.Members), st.Leader, leaders, len(st.Origins))
		}
		if a, ok := assignmentOf(st, key); !ok || a.Origin != owner {
			t.Fatalf("status via %s: assignment %+v, want origin %s", c.nodes[i].ID, a, owner)
		}
	}
	if out, err := exec.Command(binary, "status", "--addr", c.nodes[1].SystemAPI).CombinedOutput(); err != nil {
		t.Fatalf("status table: %v\n%s", err, out)
	} else {
		t.Logf("srs-mesh status:\n%s", out)
	}

	// Kill the owning origin. The mesh must notice within 5 s, and a new
	// publish of the same stream through node 3 must land on the other one.
	pub.Kill()
	killed := time.Now()
	origins[owner].Kill()
	testkit.WaitFor(t, 10*time.Second, owner+" marked unhealthy", func() bool {
		o, ok := originOf(c.status(t, 2), owner)
		return ok && !o.Healthy
	})
	detect := time.Since(killed)
	t.Logf("origin %s unhealthy after %v", owner, detect.Round(10*time.Millisecond))
	if detect > 5*time.Second+500*time.Millisecond {
		t.Errorf("dead origin took %v to be marked unhealthy; the bound is 5 s", detect)
	}
	pub2 := harness.PublishRTMP(t, c.nodes[2].RTMPURL("live/mesh"))
	harness.PlayUntil(t, "rtmp://"+origins[other].RTMPAddr+"/live/mesh", time.Second, 5, 20*time.Second)
	t.Logf("republished stream playable on %s %v after the kill", other, time.Since(killed).Round(10*time.Millisecond))
	if a, ok := assignmentOf(c.status(t, 0), key); !ok || a.Origin != other {
		t.Fatalf("after failover: assignment %+v, want %s", a, other)
	}
	harness.PlayUntil(t, c.nodes[1].RTMPURL("live/mesh"), time.Second, 5, 20*time.Second)
	if pub2.Exited() {
		t.Fatalf("second publisher exited: %s", pub2.Output())
	}
}

// playOnce is a single bounded play attempt.
func playOnce(url string, d time.Duration) (harness.PlayResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+5*time.Second)
	defer cancel()
	return harness.Play(ctx, url, d)
}
