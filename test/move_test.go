package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// maxSwitchGap is the longest frame gap an RTMP or HTTP-FLV player may see
// when its stream moves without a break, or its primary origin dies with a
// warm replica.
const maxSwitchGap = 500 * time.Millisecond

// startSRSMeshWith is startSRSMesh with extra serve flags.
func startSRSMeshWith(t *testing.T, extra ...string) (*cluster, []*harness.SRS, map[*harness.SRS]string) {
	t.Helper()
	harness.Need(t, "ffmpeg")
	c := startProtocolCluster(t, 3, nil, extra...)
	var origins []*harness.SRS
	for i, via := range []int{0, 2} {
		origins = append(origins, harness.StartSRS(t, harness.SRSOptions{
			ID:           fmt.Sprintf("srs%d", i+1),
			HeartbeatURL: "http://" + c.nodes[via].SystemAPI + "/api/v1/srs/register",
		}))
	}
	ids := map[*harness.SRS]string{}
	testkit.WaitFor(t, 30*time.Second, "both SRS origins registered and healthy on every node", func() bool {
		for i := range c.nodes {
			var st mesh.Status
			if c.nodes[i].Status(&st) != nil || len(st.Origins) != 2 {
				return false
			}
			for _, o := range st.Origins {
				if !o.Healthy {
					return false
				}
				for _, s := range origins {
					if o.RTMP == s.RTMPAddr {
						ids[s] = o.ID
					}
				}
			}
		}
		return len(ids) == 2
	})
	return c, origins, ids
}

// switchWatch is a set of frame-parsing players of a stream, one RTMP and
// one HTTP-FLV per node.
type switchWatch struct {
	t       *testing.T
	players []*harness.FrameWatch
}

func watchEverywhere(t *testing.T, c *cluster, path string) *switchWatch {
	w := &switchWatch{t: t}
	for _, nd := range c.nodes {
		w.players = append(w.players, harness.WatchFrames(t, nd.RTMPURL(path)), harness.WatchFrames(t, nd.HTTPURL(path+".flv")))
	}
	return w
}

// waitFrames waits until every player has more than n frames past what it
// had, failing if one stopped.
func (w *switchWatch) waitFrames(n int, what string) {
	w.t.Helper()
	base := make([]int, len(w.players))
	for i, p := range w.players {
		base[i] = p.Stats().Frames
	}
	testkit.WaitFor(w.t, 60*time.Second, what, func() bool {
		for i, p := range w.players {
			st := p.Stats()
			if st.Err != nil {
				w.t.Fatalf("%s: %v", p.URL, st.Err)
			}
			if st.Frames < base[i]+n {
				return false
			}
		}
		return true
	})
}

func (w *switchWatch) resetGaps() {
	for _, p := range w.players {
		p.ResetGap()
	}
}

// check fails for a player that saw a gap over bound, a repeated frame or a
// timestamp going back.
func (w *switchWatch) check(bound time.Duration) {
	w.t.Helper()
	for _, p := range w.players {
		st := p.Stats()
		w.t.Logf("%s: %d frames, longest gap %v, %d repeated, %d backwards", p.URL, st.Frames, st.LongestGap.Round(time.Millisecond), st.Repeats, st.Backwards)
		if st.LongestGap > bound || st.Repeats > 0 || st.Backwards > 0 || st.Err != nil {
			w.t.Errorf("%s: longest gap %v (bound %v, from %s), %d repeated frames, %d timestamps back, err %v",
				p.URL, st.LongestGap, bound, st.GapStart.Format("15:04:05.000"), st.Repeats, st.Backwards, st.Err)
		}
	}
}

// TestSRSDrainMove: `srs-mesh drain ORIGIN --move` moves every live stream
// off a real SRS origin while RTMP publishers stay connected and RTMP and
// HTTP-FLV players on every node keep playing with no gap over
// maxSwitchGap, no frame twice and no timestamp going back; the command
// reports each stream and exits 0 when the origin holds nothing.
func TestSRSDrainMove(t *testing.T) {
	c, srs, ids := startSRSMeshWith(t)
	const streams = 2
	var pubs []*harness.Proc
	var watches []*switchWatch
	for i := range streams {
		path := fmt.Sprintf("live/m%d", i)
		pubs = append(pubs, harness.PublishRTMPDistinct(t, c.nodes[i%2].RTMPURL(path)))
	}
	owners := map[string]string{}
	for i := range streams {
		key := fmt.Sprintf("__defaultVhost__/live/m%d", i)
		owners[key] = c.waitAssigned(t, key)
		watches = append(watches, watchEverywhere(t, c, fmt.Sprintf("live/m%d", i)))
	}
	for _, w := range watches {
		w.waitFrames(50, "every player plays")
		w.resetGaps()
	}
	// Drain the origin that holds the most streams (both SRS have one or
	// both).
	victim := ids[srs[0]]
	n := 0
	for _, o := range owners {
		if o == victim {
			n++
		}
	}
	if n*2 < streams {
		victim = ids[srs[1]]
	}
	out := runCLI(t, "drain", victim, "--move", "--move-timeout", "60s", "--addr", c.nodes[2].SystemAPI)
	t.Logf("drain --move:\n%s", out)
	if !strings.Contains(out, "holds no stream") {
		t.Fatalf("drain --move did not report the origin empty:\n%s", out)
	}
	for key, o := range owners {
		if o == victim && !strings.Contains(out, "stream "+key+": on ") {
			t.Errorf("drain --move did not report %s landing", key)
		}
		if now := c.waitAssigned(t, key); now == victim {
			t.Errorf("%s is still on the drained origin", key)
		}
	}
	for _, w := range watches {
		w.waitFrames(50, "every player plays after the moves")
		w.check(maxSwitchGap)
	}
	for i, p := range pubs {
		if p.Exited() {
			t.Errorf("publisher %d exited: %s", i, p.Output())
		}
	}
	var st mesh.Status
	if err := c.nodes[1].Status(&st); err != nil {
		t.Fatal(err)
	}
	for _, a := range st.Assignments {
		if owners[a.Key] == victim && a.MoveKind != "planned" {
			t.Errorf("%s moved as %q, want planned", a.Key, a.MoveKind)
		}
	}
}

// TestSRSReplicaFailover: with --stream-replicas 2 every published stream
// has a warm copy on the other SRS; kill -9 of the primary leaves the
// publisher connected and the RTMP and HTTP-FLV players on every node see
// no gap over maxSwitchGap: the replica takes over without a re-publish.
func TestSRSReplicaFailover(t *testing.T) {
	c, srs, ids := startSRSMeshWith(t, "--stream-replicas", "2")
	pub := harness.PublishRTMPDistinct(t, c.nodes[0].RTMPURL("live/r1"))
	const key = "__defaultVhost__/live/r1"
	primary := c.waitAssigned(t, key)
	testkit.WaitFor(t, 30*time.Second, "the stream has a warm replica", func() bool {
		var st mesh.Status
		if c.nodes[1].Status(&st) != nil {
			return false
		}
		a, ok := assignmentOf(st, key)
		return ok && len(a.Replicas) == 1 && a.Replicas[0] != primary
	})
	w := watchEverywhere(t, c, "live/r1")
	w.waitFrames(75, "every player plays")
	w.resetGaps()
	for s, id := range ids {
		if id == primary {
			t.Logf("killing %s, the primary", id)
			s.Kill()
		}
	}
	testkit.WaitFor(t, 20*time.Second, "the stream leaves the dead origin", func() bool {
		return c.waitAssigned(t, key) != primary
	})
	w.waitFrames(50, "every player plays after the kill")
	w.check(maxSwitchGap)
	if pub.Exited() {
		t.Errorf("publisher exited: %s", pub.Output())
	}
	var st mesh.Status
	if err := c.nodes[2].Status(&st); err != nil {
		t.Fatal(err)
	}
	if a, _ := assignmentOf(st, key); a.MoveKind != "replica_promoted" {
		t.Errorf("moved as %q, want replica_promoted", a.MoveKind)
	}
	_ = srs
}
