package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/handshake"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// Attacks of publishers on the mesh's replicated state, played against
// three srs-mesh processes in production shape (mutual TLS, gossip key,
// token) in front of real nginx-rtmp origins: a publisher must not be able
// to move its stream off a healthy origin, and publishes the origin
// refuses must leave nothing behind. `go test -run TestAttack ./test/` runs
// them with the other attacks.

// startAttackCluster starts n1..n3 in production shape with the origins of
// originFlags (--origin ...) and perNode[i] added to node i's flags, and
// waits for a formed cluster with healthy origins.
func startAttackCluster(t *testing.T, originFlags []string, origins int, perNode map[int][]string) *cluster {
	t.Helper()
	c := &cluster{}
	for i := range 3 {
		c.nodes = append(c.nodes, harness.NewNode(t, binary, harness.NodeSpec{ID: fmt.Sprintf("n%d", i+1), Protocols: true}))
	}
	c.certs = clusterCerts(t, "n1", "n2", "n3")
	for i, nd := range c.nodes {
		args := []string{"--bootstrap-expect", "3", "--gossip-key", gossipKey, "--token", secToken}
		for _, peer := range c.nodes {
			args = append(args, "--join", peer.GossipAddr)
		}
		args = append(args, tlsFlags(c.certs, nd.ID)...)
		args = append(args, originFlags...)
		nd.Args = append(nd.Args, append(args, perNode[i]...)...)
	}
	harness.DumpOnFailure(t, c.nodes...)
	for _, nd := range c.nodes {
		nd.Start()
	}
	c.waitFormed(t, 3, 30*time.Second)
	c.waitVoters(t, 3, 30*time.Second)
	c.waitOriginsHealthy(t, origins)
	return c
}

// rawPublish publishes app/name on the RTMP address addr with a minimal
// client (connect, createStream, publish) and returns the code of the
// publish's onStatus ("" when the connection closed before one). When the
// publish started and frame > 0, it then sends metadata, a video sequence
// header and one video key frame of frame bytes, and returns in after what
// followed within 5 s: the code of an error onStatus, "closed", or "open"
// when the peer kept the session.
func rawPublish(addr, app, name string, frame int) (code, after string, err error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", "", err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(15 * time.Second))
	if err := handshake.Client(nc, 0); err != nil {
		return "", "", err
	}
	r := chunk.NewReader(bufio.NewReader(nc), 16<<20, 64<<10)
	bw := bufio.NewWriterSize(nc, 64<<10)
	w := chunk.NewWriter(bw, 4096)
	var wmu sync.Mutex
	command := func(sid uint32, vals ...any) error {
		b, err := amf0.AppendAll(nil, vals...)
		if err != nil {
			return err
		}
		wmu.Lock()
		defer wmu.Unlock()
		if err := w.WriteMessage(&chunk.Message{CSID: 3, Type: chunk.TypeCommandAMF0, StreamID: sid, Payload: b}); err != nil {
			return err
		}
		return w.Flush()
	}
	tcURL := "rtmp://" + addr + "/" + app
	if err := command(0, "connect", 1.0, amf0.Object{{Key: "app", Value: app}, {Key: "tcUrl", Value: tcURL}, {Key: "type", Value: "nonprivate"}}); err != nil {
		return "", "", err
	}
	if err := command(0, "releaseStream", 2.0, nil, name); err != nil {
		return "", "", err
	}
	if err := command(0, "FCPublish", 3.0, nil, name); err != nil {
		return "", "", err
	}
	if err := command(0, "createStream", 4.0, nil); err != nil {
		return "", "", err
	}
	// next returns the next onStatus code (and its level) or the error
	// that ended the connection; it answers createStream with publish.
	next := func() (level, code string, err error) {
		for {
			m, err := r.ReadMessage()
			if err != nil {
				return "", "", err
			}
			if m.Type != chunk.TypeCommandAMF0 {
				continue
			}
			vals, err := amf0.DecodeAll(m.Payload)
			if err != nil || len(vals) < 2 {
				continue
			}
			switch n, _ := vals[0].(string); n {
			case "_result":
				if txn, _ := vals[1].(float64); txn == 4 && len(vals) >= 4 {
					sid, _ := vals[3].(float64)
					if err := command(uint32(sid), "publish", 5.0, nil, name, app); err != nil {
						return "", "", err
					}
				}
			case "onStatus":
				if len(vals) >= 4 {
					if info, ok := vals[3].(amf0.Object); ok {
						return info.String("level"), info.String("code"), nil
					}
				}
			}
		}
	}
	_, code, err = next()
	if err != nil {
		return "", "", nil // closed before an answer
	}
	if code != "NetStream.Publish.Start" || frame <= 0 {
		return code, "", nil
	}
	// Media, written while the answers are read: the node may stop reading
	// before the whole frame arrived.
	go func() {
		wmu.Lock()
		defer wmu.Unlock()
		meta, _ := amf0.AppendAll(nil, "@setDataFrame", "onMetaData", amf0.Object{{Key: "width", Value: 320.0}, {Key: "height", Value: 240.0}})
		big := make([]byte, frame)
		big[0], big[1] = 0x17, 0x01
		for _, m := range []chunk.Message{
			{CSID: 4, Type: chunk.TypeDataAMF0, StreamID: 1, Payload: meta},
			{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Payload: []byte{0x17, 0x00, 0, 0, 0, 1, 0x64, 0, 0x1e, 0xff}},
			{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Timestamp: 40, Payload: big},
		} {
			if w.WriteMessage(&m) != nil {
				return
			}
		}
		w.Flush()
	}()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		level, code, err := next()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "NetStream.Publish.Start", "open", nil
		}
		if err != nil {
			return "NetStream.Publish.Start", "closed", nil
		}
		if level == "error" {
			return "NetStream.Publish.Start", code, nil
		}
	}
}

// streamMoves counts the stream_moved events a node knows of.
func streamMoves(t *testing.T, c *cluster, i int) int {
	n := 0
	for _, e := range c.status(t, i).RecentEvents {
		if e.Kind == events.StreamMoved {
			n++
		}
	}
	return n
}

// TestAttackOversizedMessageMovesNothing: publishers that send one video
// message larger than their origin accepts (nginx-rtmp drops a session
// over its 1 MiB max_message) cannot move their streams off the healthy
// origin. Through a node with the default --rtmp-max-message the message is
// refused at the node, with an error onStatus and a counter, and never
// reaches the origin; through a node whose limit is raised to 8 MiB it is
// relayed, the origin drops the session with a reset or broken pipe, and
// still nothing moves: the origin still answers. A real publisher and its
// player next to the attack keep streaming.
func TestAttackOversizedMessageMovesNothing(t *testing.T) {
	nginx, origins := twoNginx(t)
	c := startAttackCluster(t, origins, 2, map[int][]string{2: {"--rtmp-max-message", "8MiB"}})
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]

	pub := harness.PublishRTMP(t, n1.RTMPURL("live/legit"))
	defer pub.Stop(5 * time.Second)
	harness.PlayUntil(t, n2.RTMPURL("live/legit"), time.Second, 10, 30*time.Second)
	player := harness.StartCopyPlayer(t, n2.RTMPURL("live/legit"))
	testkit.WaitFor(t, 30*time.Second, "the legitimate player plays", func() bool { return player.Frames() > 25 })
	legitOrigin := c.waitAssigned(t, "__defaultVhost__/live/legit")

	const attackers = 30
	var wg sync.WaitGroup
	var refusedAtNode, started atomic.Int32
	attack := func(nd *harness.Node, prefix string, refused *atomic.Int32) {
		for i := range attackers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, after, err := rawPublish(nd.RTMPAddr, "live", fmt.Sprintf("%s%d", prefix, i), 2<<20)
				if err != nil {
					t.Errorf("%s%d: %v", prefix, i, err)
					return
				}
				if code == "NetStream.Publish.Start" {
					started.Add(1)
				}
				if refused != nil && after == "NetStream.Publish.Failed" {
					refused.Add(1)
				}
			}()
		}
	}
	attack(n1, "big", &refusedAtNode) // refused at the node
	attack(n3, "relayed", nil)        // relayed; nginx-rtmp drops them
	wg.Wait()
	if started.Load() != 2*attackers {
		t.Fatalf("%d of %d attacking publishes started", started.Load(), 2*attackers)
	}
	if got := refusedAtNode.Load(); got != attackers {
		t.Errorf("%d of %d oversized messages were refused at the node with an error onStatus", got, attackers)
	}
	if got := value(scrape(t, n1), "srs_mesh_session_failures_total", "proto", "rtmp", "reason", "message_too_large"); got != attackers {
		t.Errorf("n1 counted %v oversized messages, want %d", got, attackers)
	}
	// The relayed ones reached nginx-rtmp, which dropped them, and their
	// legs broke while the origin answered.
	testkit.WaitFor(t, 10*time.Second, "the relayed publishes ended", func() bool {
		return value(scrape(t, n3), "srs_mesh_sessions", "proto", "rtmp", "kind", "publish") <= 0
	})
	if !strings.Contains(nginx["o1"].ErrorLog()+nginx["o2"].ErrorLog(), "too big message") {
		t.Error("nginx-rtmp never dropped a message as too big")
	}
	if n := strings.Count(n3.Logs(), "the origin still answers; not failing over"); n == 0 {
		t.Error("no relayed publisher's leg broke at the origin")
	} else {
		t.Logf("%d relayed publishers' legs broke while their origin answered", n)
	}

	// Nothing moved: no failover, no move event, every stream on its first
	// origin (epoch 0).
	if n := failovers(t, c, "publish", ""); n != 0 {
		t.Errorf("%v publisher failovers after the attack", n)
	}
	for i := range c.nodes {
		if m := streamMoves(t, c, i); m != 0 {
			t.Errorf("node %d knows %d stream moves", i+1, m)
		}
		for _, a := range c.status(t, i).Assignments {
			if a.Epoch != 0 || a.MovedFrom != "" {
				t.Errorf("node %d: %s moved (epoch %d, from %q)", i+1, a.Key, a.Epoch, a.MovedFrom)
			}
		}
	}
	if o := c.waitAssigned(t, "__defaultVhost__/live/legit"); o != legitOrigin {
		t.Errorf("the legitimate stream moved from %s to %s", legitOrigin, o)
	}
	// The real stream still plays, and a new publisher still publishes.
	before := player.Frames()
	testkit.WaitFor(t, 20*time.Second, "the legitimate player keeps playing", func() bool { return player.Frames() > before+25 })
	if code, _, err := rawPublish(n1.RTMPAddr, "live", "fine", 0); err != nil || code != "NetStream.Publish.Start" {
		t.Errorf("a publish after the attack: %q %v", code, err)
	}
}

// publishHook is an origin's on_publish hook: it accepts stream names that
// start with "ok" and refuses the others (403), counting both.
type publishHook struct {
	accepted, refused atomic.Int32
}

func (h *publishHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err == nil && strings.HasPrefix(r.PostForm.Get("name"), "ok") {
		h.accepted.Add(1)
		w.WriteHeader(http.StatusOK)
		return
	}
	h.refused.Add(1)
	w.WriteHeader(http.StatusForbidden)
}

// TestAttackRefusedPublishesLeaveNoState: anonymous publishes that the
// origins' on_publish hook refuses write no assignment: 400 of them through
// one node leave the replicated state as it was. Accepted publishes write
// at most the per-node rate (20 a second, bursts of 40). A real publisher
// and its player keep streaming next to the attack, and a publish after it
// is assigned as usual.
func TestAttackRefusedPublishesLeaveNoState(t *testing.T) {
	harness.Need(t, "ffmpeg", "nginx")
	hook := &publishHook{}
	hs := httptest.NewServer(hook)
	defer hs.Close()
	o1 := harness.StartNginx(t, harness.NginxOptions{OnPublish: hs.URL + "/on_publish"})
	o2 := harness.StartNginx(t, harness.NginxOptions{OnPublish: hs.URL + "/on_publish"})
	c := startAttackCluster(t, []string{"--origin", originFlag("o1", o1), "--origin", originFlag("o2", o2)}, 2, nil)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]

	pub := harness.PublishRTMP(t, n2.RTMPURL("live/ok-legit"))
	defer pub.Stop(5 * time.Second)
	harness.PlayUntil(t, n3.RTMPURL("live/ok-legit"), time.Second, 10, 30*time.Second)
	player := harness.StartCopyPlayer(t, n3.RTMPURL("live/ok-legit"))
	testkit.WaitFor(t, 30*time.Second, "the legitimate player plays", func() bool { return player.Frames() > 25 })
	c.waitAssigned(t, "__defaultVhost__/live/ok-legit")
	assignments := func(i int, prefix string) int {
		n := 0
		for _, a := range c.status(t, i).Assignments {
			if strings.HasPrefix(a.Key, "__defaultVhost__/live/"+prefix) {
				n++
			}
		}
		return n
	}

	// flood publishes prefix0..prefix<n-1> through n1, 16 at a time, and
	// counts the answers: started, and refused with an error onStatus.
	flood := func(prefix string, n int) (started, failed int32) {
		var st, fa atomic.Int32
		jobs := make(chan int)
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobs {
					code, _, err := rawPublish(n1.RTMPAddr, "live", fmt.Sprintf("%s%d", prefix, i), 0)
					switch {
					case err != nil:
						t.Errorf("%s%d: %v", prefix, i, err)
					case code == "NetStream.Publish.Start":
						st.Add(1)
					case code == "NetStream.Publish.Failed":
						fa.Add(1)
					}
				}
			}()
		}
		for i := range n {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		return st.Load(), fa.Load()
	}

	// The attack: anonymous publishes that the hook refuses.
	const anonymous = 400
	refusedBefore := hook.refused.Load()
	started, failed := flood("anon", anonymous)
	if started != 0 || failed != anonymous {
		t.Fatalf("of %d refused publishes, %d started and %d got an error onStatus", anonymous, started, failed)
	}
	if got := hook.refused.Load() - refusedBefore; got < anonymous {
		t.Fatalf("the origins' hook refused %d publishes, want %d: the attack did not reach them", got, anonymous)
	}

	// Accepted publishes through one node: the writes are bounded by the
	// node's rate (20 a second, bursts of 40), and every one is served.
	const accepted = 200
	start := time.Now()
	if started, _ := flood("okflood", accepted); started != accepted {
		t.Fatalf("%d of %d accepted publishes started", started, accepted)
	}
	elapsed := time.Since(start)
	var written int
	testkit.WaitFor(t, 10*time.Second, "the accepted publishes' assignments replicated", func() bool {
		written = assignments(0, "okflood")
		return written > 0 && assignments(1, "okflood") == written && assignments(2, "okflood") == written
	})
	if bound := 40 + int(20*elapsed.Seconds()) + 1; written > bound {
		t.Errorf("%d accepted publishes in %v wrote %d assignments, more than the rate allows (%d)", accepted, elapsed, written, bound)
	}
	t.Logf("%d accepted publishes in %v wrote %d assignments", accepted, elapsed.Round(time.Millisecond), written)
	// Those writes went through the log after any the refused publishes
	// could have made: every node has applied them, and holds none.
	for i := range c.nodes {
		if n := assignments(i, "anon"); n != 0 {
			t.Errorf("node %d holds %d assignments of refused publishes", i+1, n)
		}
	}

	// The real stream still plays; a new publisher is assigned and plays.
	before := player.Frames()
	testkit.WaitFor(t, 20*time.Second, "the legitimate player keeps playing", func() bool { return player.Frames() > before+25 })
	late := harness.PublishRTMP(t, n1.RTMPURL("live/ok-late"))
	defer late.Stop(5 * time.Second)
	c.waitAssigned(t, "__defaultVhost__/live/ok-late")
	harness.PlayUntil(t, n2.RTMPURL("live/ok-late"), time.Second, 10, 30*time.Second)
}
