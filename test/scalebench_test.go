package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestScaleFigures measures a 3-node and a 25-node mesh of real processes
// on loopback and prints the figures of docs/benchmarks.md ("Mesh size"):
// formation time, assignment rate and latency through voters and
// non-voters, idle memory and CPU per node, and how long a new origin's
// registration takes to reach every node; then the 25-node mesh again with
// every node a voter (--raft-voters 25), for comparison. It runs only with
// SRS_MESH_SCALE_BENCH=1:
//
//	SRS_MESH_SCALE_BENCH=1 go test -count=1 -run TestScaleFigures -v ./test/
func TestScaleFigures(t *testing.T) {
	if os.Getenv("SRS_MESH_SCALE_BENCH") == "" {
		t.Skip("set SRS_MESH_SCALE_BENCH=1 to measure")
	}
	for _, m := range []struct{ nodes, voters int }{{3, 5}, {25, 5}, {25, 25}} {
		t.Run(fmt.Sprintf("nodes=%d,voters=%d", m.nodes, min(m.nodes, m.voters)), func(t *testing.T) { measureMesh(t, m.nodes, m.voters) })
	}
}

// closingOrigin is a TCP listener standing in for an origin's RTMP port: it
// accepts and closes every connection. Health probes pass; a proxied publish
// fails at once after its assignment is written, so a publish's round trip
// measures the assignment.
func closingOrigin(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func measureMesh(t *testing.T, n, raftVoters int) {
	origin := closingOrigin(t)
	port := origin[strings.LastIndexByte(origin, ':')+1:]
	start := time.Now()
	c := startLargeCluster(t, n, "--log-level", "warn", "--raft-voters", fmt.Sprint(raftVoters),
		"--origin", "id=o1,ip=127.0.0.1,rtmp="+port)
	v := min(n, raftVoters)

	// Formation: the first node that reports a leader, then every node
	// ready (leader known, log applied) with the origin healthy.
	var leaderAt, routingAt atomic.Int64
	var wg sync.WaitGroup
	ready := make([]time.Duration, n)
	for i, nd := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(120 * time.Second)
			for time.Now().Before(deadline) {
				var st mesh.Status
				if nd.Status(&st) == nil && st.Leader != "" {
					leaderAt.CompareAndSwap(0, int64(time.Since(start)))
					if o, ok := originOf(st, "o1"); ok && o.Healthy && httpStatus("http://"+nd.SystemAPI+"/readyz") == http.StatusOK {
						ready[i] = time.Since(start)
						return
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	for i, d := range ready {
		if d == 0 {
			t.Fatalf("%s never became ready", c.nodes[i].ID)
		}
		routingAt.Store(max(routingAt.Load(), int64(d)))
	}
	var st mesh.Status
	testkit.WaitFor(t, 30*time.Second, "voters settled", func() bool {
		var ok bool
		st, ok = c.leaderStatus()
		return ok && st.Voters == v && st.NonVoters == n-v
	})
	t.Logf("FIGURE nodes=%d voters=%d formation: leader after %v, every node routing after %v", n, v,
		time.Duration(leaderAt.Load()).Round(time.Millisecond), time.Duration(routingAt.Load()).Round(time.Millisecond))

	// Idle cost of a node, over 10 s.
	rss, cpu := idleCost(t, c, 10*time.Second)
	t.Logf("FIGURE nodes=%d voters=%d idle per node: RSS %.1f MiB (max %.1f), CPU %.2f%% of a core (max %.2f%%)", n, v,
		avg(rss)/1024, slices.Max(rss)/1024, avg(cpu), slices.Max(cpu))

	// Propagation of a new origin's registration, sent to the last node.
	at := c.nodes[n-1]
	body := fmt.Sprintf(`{"server":"late","ip":"127.0.0.1","rtmp":["%s"]}`, port)
	seen := make([]time.Duration, n)
	sent := time.Now()
	for i, nd := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(sent) < 30*time.Second {
				var st mesh.Status
				if nd.Status(&st) == nil {
					if _, ok := originOf(st, "late"); ok {
						seen[i] = time.Since(sent)
						return
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	if code, msg := post(t, "http://"+at.SystemAPI+"/api/v1/srs/register", "", body); code != http.StatusOK {
		t.Fatalf("register: %d %s", code, msg)
	}
	wg.Wait()
	for i, d := range seen {
		if d == 0 {
			t.Fatalf("the registration never reached %s", c.nodes[i].ID)
		}
	}
	t.Logf("FIGURE nodes=%d voters=%d registration through %s: on every node after %v (median node %v)", n, v, at.ID,
		slices.Max(seen).Round(time.Millisecond), median(seen).Round(time.Millisecond))

	// Assignments: 16 clients publish new streams for 5 s through the
	// voters, then through the non-voters.
	roles := map[string][]*harness.Node{}
	for _, m := range st.Members {
		role := m.RaftRole
		if role == "leader" {
			role = "voter"
		}
		roles[role] = append(roles[role], c.byID(m.ID))
	}
	for _, role := range []string{"voter", "nonvoter"} {
		if len(roles[role]) == 0 {
			continue
		}
		rate, p50, p99, errs := assignLoad(t, roles[role], role, 16, 5*time.Second)
		t.Logf("FIGURE nodes=%d voters=%d assignments through %d %ss: %.0f/s, p50 %v, p99 %v, %d errors", n, v, len(roles[role]), role,
			rate, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), errs)
	}
}

func avg(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// idleCost samples every node's resident memory (KiB) and CPU use (percent
// of one core) over d.
func idleCost(t *testing.T, c *cluster, d time.Duration) (rss, cpu []float64) {
	before := make([]float64, len(c.nodes))
	for i, nd := range c.nodes {
		before[i] = cpuSeconds(t, nd.Proc().Cmd.Process.Pid)
	}
	time.Sleep(d) // the measurement window itself
	for i, nd := range c.nodes {
		pid := nd.Proc().Cmd.Process.Pid
		cpu = append(cpu, (cpuSeconds(t, pid)-before[i])/d.Seconds()*100)
		rss = append(rss, rssKiB(t, pid))
	}
	return rss, cpu
}

// cpuSeconds is the user and system CPU time of pid (/proc/pid/stat).
func cpuSeconds(t *testing.T, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces, in parentheses).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// rssKiB is the resident set size of pid.
func rssKiB(t *testing.T, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kib
		}
	}
	return 0
}

// assignLoad runs workers clients that publish new streams, round robin
// over nodes, for d, and returns the rate of answered publishes, their
// latency percentiles and the count of failed ones.
func assignLoad(t *testing.T, nodes []*harness.Node, tag string, workers int, d time.Duration) (rate float64, p50, p99 time.Duration, errs int64) {
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				nd := nodes[(w+i)%len(nodes)]
				took, err := publishOnce(nd.RTMPAddr, fmt.Sprintf("%s-%d-%d", tag, w, i))
				if err != nil {
					failed.Add(1)
					continue
				}
				mu.Lock()
				lat = append(lat, took)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(lat) == 0 {
		t.Fatalf("no publish answered through %ss (%d failed)", tag, failed.Load())
	}
	slices.Sort(lat)
	return float64(len(lat)) / d.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100], failed.Load()
}

// publishOnce connects to an RTMP address, publishes live/name and returns
// the time from the publish command to the node's onStatus (whatever its
// level: the stand-in origin refuses every stream once it is assigned).
func publishOnce(addr, name string) (time.Duration, error) {
	c, err := dialRTMPCommands(addr, 2*time.Second, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	tc := "rtmp://" + addr + "/live"
	if err := c.send(0, "connect", 1.0, amf0.Object{{Key: "app", Value: "live"}, {Key: "tcUrl", Value: tc}}); err != nil {
		return 0, err
	}
	if _, err := c.until("_result"); err != nil {
		return 0, err
	}
	if err := c.send(0, "createStream", 2.0, nil); err != nil {
		return 0, err
	}
	res, err := c.until("_result")
	if err != nil {
		return 0, err
	}
	if len(res) < 4 {
		return 0, errors.New("createStream: short _result")
	}
	sid, _ := res[3].(float64)
	begin := time.Now()
	if err := c.send(uint32(sid), "publish", 3.0, nil, name, "live"); err != nil {
		return 0, err
	}
	if _, err := c.until("onStatus"); err != nil {
		return 0, err
	}
	return time.Since(begin), nil
}
