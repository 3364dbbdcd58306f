package e2e

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	pionwebrtc "github.com/pion/webrtc/v4"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc/webrtctest"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// The attacks of the security review, played against real srs-mesh
// processes configured as docs/security.md says for production: mutual TLS
// on the cluster port (certificates made with `srs-mesh tls`), an encrypted
// gossip, a token, and short HTTP read limits.

const secToken = "production-token-of-the-mesh"

// startSecureCluster starts n1..n3 in production shape with nginx-rtmp
// origins o1 and o2 and waits for a formed cluster with healthy origins.
func startSecureCluster(t *testing.T, extra ...string) (*cluster, []string) {
	t.Helper()
	_, origins := twoNginx(t)
	c := &cluster{}
	for i := range 3 {
		c.nodes = append(c.nodes, harness.NewNode(t, binary, harness.NodeSpec{ID: fmt.Sprintf("n%d", i+1), Protocols: true}))
	}
	c.certs = clusterCerts(t, "n1", "n2", "n3")
	for _, nd := range c.nodes {
		args := []string{"--bootstrap-expect", "3", "--gossip-key", gossipKey, "--token", secToken,
			"--http-read-timeout", "2s"}
		for _, peer := range c.nodes {
			args = append(args, "--join", peer.GossipAddr)
		}
		args = append(args, tlsFlags(c.certs, nd.ID)...)
		nd.Args = append(nd.Args, append(append(args, origins...), extra...)...)
	}
	harness.DumpOnFailure(t, c.nodes...)
	for _, nd := range c.nodes {
		nd.Start()
	}
	c.waitFormed(t, 3, 30*time.Second)
	c.waitVoters(t, 3, 30*time.Second)
	c.waitOriginsHealthy(t, 2)
	return c, origins
}

func TestSecurityAttacks(t *testing.T) {
	c, _ := startSecureCluster(t)
	n1 := c.nodes[0]
	before := c.status(t, 0)

	t.Run("forged AppendEntries from a non-member", func(t *testing.T) {
		// An attacker speaking Raft's own wire protocol, in plain TCP as
		// raft's transport does, to every node's cluster port.
		trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		defer trans.Close()
		cmd := append([]byte{1}, []byte(`{"origin":{"id":"evil","ip":"10.6.6.6","rtmp":"10.6.6.6:1935"},"now_ms":1}`)...)
		for _, nd := range c.nodes {
			req := &raft.AppendEntriesRequest{
				RPCHeader: raft.RPCHeader{ID: []byte("attacker"), Addr: []byte(trans.LocalAddr())},
				Term:      before.Term + 100, PrevLogEntry: before.LastLogIndex, PrevLogTerm: before.Term,
				Entries:           []*raft.Log{{Index: before.LastLogIndex + 1, Term: before.Term + 100, Type: raft.LogCommand, Data: cmd}},
				LeaderCommitIndex: before.LastLogIndex + 1,
			}
			var resp raft.AppendEntriesResponse
			if err := trans.AppendEntries("x", raft.ServerAddress(nd.RaftAddr), req, &resp); err == nil {
				t.Errorf("%s answered a forged AppendEntries: %+v", nd.ID, resp)
			}
		}
		st := c.status(t, 0)
		if st.Term != before.Term || st.Leader != before.Leader {
			t.Errorf("term %d -> %d, leader %s -> %s", before.Term, st.Term, before.Leader, st.Leader)
		}
		if _, ok := originOf(st, "evil"); ok {
			t.Error("the forged origin was applied")
		}
	})

	t.Run("a stranger with another CA never votes", func(t *testing.T) {
		// It has the gossip key (say it leaked) but no certificate of the
		// cluster's CA: it joins gossip, never Raft.
		dir := clusterCerts(t, "stranger")
		nd := harness.NewNode(t, binary, harness.NodeSpec{ID: "stranger"})
		nd.Args = append(nd.Args, "--bootstrap-expect", "3", "--gossip-key", gossipKey, "--token", secToken,
			"--join", n1.GossipAddr)
		nd.Args = append(nd.Args, tlsFlags(dir, "stranger")...)
		harness.DumpOnFailure(t, nd)
		nd.Start()
		testkit.WaitFor(t, 20*time.Second, "the stranger seen in gossip", func() bool {
			_, ok := memberOf(c.status(t, 0), "stranger")
			return ok
		})
		deadline := time.Now().Add(5 * time.Second) // several reconciliations
		for time.Now().Before(deadline) {
			st := c.status(t, 0)
			if m, _ := memberOf(st, "stranger"); m.Voter || voters(st) != 3 || st.Leader == "" {
				t.Fatalf("with a stranger around: %d voters, leader %q, stranger %+v", voters(st), st.Leader, m)
			}
			time.Sleep(200 * time.Millisecond)
		}
		nd.Kill()
	})

	t.Run("forged segment tokens", func(t *testing.T) {
		// A listener of the test's own stands in for what a forger would
		// reach (a metadata service, say): the node must never connect.
		trip := testkit.NewTripwire(t)
		for _, tok := range []string{
			base64.RawURLEncoding.EncodeToString(append([]byte{2, 1, 14}, []byte("169.254.169.254:80\x0f/latest/meta-data0123456789abcdef")...)),
			strings.Repeat("A", 40),
			mintSegmentToken([]byte("guessed"), 1, trip.Addr(), "/latest/meta-data"),
			mintSegmentToken([]byte(secToken), 1, trip.Addr(), "/latest/meta-data"),
		} {
			code, _ := get(t, "http://"+n1.HTTPAddr+"/_hls/"+tok+"/meta-data")
			if code != http.StatusBadRequest {
				t.Errorf("forged token: HTTP %d, want 400", code)
			}
		}
		if got := trip.Connections(t); len(got) != 0 {
			t.Errorf("forged tokens made n1 connect to the origin they name: %v", got)
		}
	})

	t.Run("dot-segment traversal on the API port", func(t *testing.T) {
		for _, p := range []string{"/api/v1/..%2f..%2fprivate.txt?origin=o1", "/api/v1/%2e%2e/%2e%2e/etc/passwd", "/private.txt"} {
			req, _ := http.NewRequest(http.MethodGet, "http://"+n1.APIAddr+p, nil)
			req.Header.Set("Authorization", "Bearer "+secToken)
			resp, err := e2eHTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("GET %s: HTTP %d, want 400", p, resp.StatusCode)
			}
		}
	})

	t.Run("unauthenticated writes on every port", func(t *testing.T) {
		sys := "http://" + n1.SystemAPI
		api := "http://" + n1.APIAddr
		for _, w := range []struct {
			method, url, body string
			want              int
		}{
			{"POST", sys + "/api/v1/srs/register", `{"ip":"127.0.0.1","server":"evil","rtmp":["1935"]}`, 401},
			{"POST", sys + "/mesh/v1/origins/o1/drain", "", 401},
			{"POST", sys + "/mesh/v1/origins/o1/drain?token=" + secToken, "", 401}, // a URL is not a header
			{"POST", sys + "/mesh/v1/internal/apply", "\x05{}", 404},               // not on the system API
			{"DELETE", api + "/api/v1/clients/123", "", 401},
			{"GET", api + "/api/v1/clients/?origin=o1", "", 401},
		} {
			req, _ := http.NewRequest(w.method, w.url, strings.NewReader(w.body))
			resp, err := e2eHTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != w.want {
				t.Errorf("%s %s: HTTP %d, want %d", w.method, w.url, resp.StatusCode, w.want)
			}
		}
		// The cluster port's HTTP service, spoken in plain HTTP.
		if conn, err := net.DialTimeout("tcp", n1.RaftAddr, time.Second); err == nil {
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(conn, "\x02POST /mesh/v1/internal/apply HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
			if line, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
				t.Errorf("the cluster port answered plain HTTP: %q", line)
			}
			conn.Close()
		}
	})

	t.Run("slowloris", func(t *testing.T) {
		conn, err := net.Dial("tcp", n1.HTTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		closed := make(chan struct{})
		go func() {
			io.Copy(io.Discard, conn)
			close(closed)
		}()
		for _, b := range []byte("GET /live/s.flv HTTP/1.1\r\nHost: x\r\nX-Slow: ") {
			if _, err := conn.Write([]byte{b}); err != nil {
				break
			}
			select {
			case <-closed:
			case <-time.After(300 * time.Millisecond):
				continue
			}
			break
		}
		select {
		case <-closed:
			t.Logf("slow request closed after %v", time.Since(start).Round(100*time.Millisecond))
		case <-time.After(15 * time.Second):
			t.Fatal("a request sent one byte every 300 ms is still open after 15 s")
		}
	})

	// The bounds are the defaults (RoutePlay): at most MaxPlayOnly
	// play-only assignments in the mesh, whatever the flood's speed, and
	// at most PlayOnlyRate writes per second per node (bursts of twice
	// that), so the Raft log's growth is bounded per elapsed second.
	t.Run("anonymous plays are bounded", func(t *testing.T) {
		defaults := mesh.DefaultConfig()
		began := time.Now() // before the first status: the window covers every counted write
		start := c.status(t, 0)
		var sent atomic.Int64
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nd := c.nodes[w%3]
				for i := w; i < 20000; i += 16 {
					resp, err := e2eHTTP.Get(fmt.Sprintf("http://%s/live/anon-%d-%d.m3u8", nd.HTTPAddr, rand.Int(), i))
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						sent.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		end := c.status(t, 0)
		elapsed := time.Since(began)
		grown := end.LastLogIndex - start.LastLogIndex
		// Writes allowed in the window: each node's play-only writes
		// (burst, then the rate), its Touch reports (one entry per 1000
		// keys, every TouchInterval), and a margin for origin health and
		// the leader's sweeps.
		secs := float64(int(elapsed.Seconds()) + 1)
		nodes, rate := float64(len(c.nodes)), float64(defaults.PlayOnlyRate)
		touches := float64(sent.Load())/1000 + nodes*(secs/defaults.TouchInterval.Seconds()+1)
		allowed := uint64(nodes*(2*rate+rate*secs) + touches + 100)
		t.Logf("%d anonymous plays in %v: %d assignments (was %d), log index %d -> %d (+%d, %.0f/s; at most %d allowed)",
			sent.Load(), elapsed.Round(time.Millisecond), len(end.Assignments), len(start.Assignments),
			start.LastLogIndex, end.LastLogIndex, grown, float64(grown)/elapsed.Seconds(), allowed)
		if sent.Load() < 19000 {
			t.Fatalf("only %d plays got an answer", sent.Load())
		}
		if len(end.Assignments) > defaults.MaxPlayOnly+len(start.Assignments) {
			t.Errorf("%d assignments after the flood, more than MaxPlayOnly (%d) new ones", len(end.Assignments), defaults.MaxPlayOnly)
		}
		if grown > allowed {
			t.Errorf("the Raft log grew by %d entries in %v for %d anonymous plays; the play-only rate allows %d",
				grown, elapsed.Round(time.Millisecond), sent.Load(), allowed)
		}
		if allowed >= uint64(sent.Load())/2 {
			t.Logf("the flood took %v: too slow for the write bound to tell a limited node from an unlimited one", elapsed.Round(time.Millisecond))
		}
		harness.PublishRTMP(t, c.nodes[1].RTMPURL("live/real"))
		harness.PlayUntil(t, c.nodes[2].RTMPURL("live/real"), 2*time.Second, 5, 30*time.Second)
	})
}

// get fetches url and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := e2eHTTP.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// After SIGTERM on every node, any two of the three restarted elect a
// leader, and the streams assigned before still route to their origins.
func TestSecurityFullStop(t *testing.T) {
	c, _ := startSecureCluster(t, "--drain-timeout", "2s")
	harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/kept"))
	owner := c.waitAssigned(t, "__defaultVhost__/live/kept")
	var wg sync.WaitGroup
	for _, nd := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nd.Proc().Stop(20 * time.Second)
		}()
	}
	wg.Wait()
	for _, i := range []int{1, 2} {
		c.nodes[i].Start()
	}
	testkit.WaitFor(t, 30*time.Second, "a leader among the two restarted nodes", func() bool {
		var st mesh.Status
		return c.nodes[1].Status(&st) == nil && st.Leader != "" && st.Leader != "n1"
	})
	var st mesh.Status
	if err := c.nodes[2].Status(&st); err != nil {
		t.Fatal(err)
	}
	if a, ok := assignmentOf(st, "__defaultVhost__/live/kept"); !ok || a.Origin != owner {
		t.Fatalf("after the restart live/kept is assigned to %+v, want %s", a, owner)
	}
	harness.PublishRTMP(t, c.nodes[1].RTMPURL("live/kept"))
	harness.PlayUntil(t, c.nodes[2].RTMPURL("live/kept"), 2*time.Second, 5, 30*time.Second)
}

// A node whose cluster ports are not on loopback refuses to start without
// the gossip key and the TLS files, and one whose system API is not on
// loopback refuses without a token; the error names the flags. --insecure
// starts it with a warning.
func TestSecurityRefusesAnOpenNode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"cluster ports on every interface", []string{"--gossip-addr", "0.0.0.0:0", "--raft-addr", "0.0.0.0:0", "--system-api", "127.0.0.1:0"},
			[]string{"--gossip-key", "--tls-ca-file", "--tls-cert-file", "--tls-key-file"}},
		{"system API on every interface", []string{"--system-api", ":0"}, []string{"--token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve", "--node-id", "open", "--data-dir", t.TempDir(), "--rtmp", "", "--http", "",
				"--api", "", "--rtc", "", "--srt", ""}, tc.args...)
			out, err := exec.Command(binary, args...).CombinedOutput()
			if err == nil {
				t.Fatalf("started:\n%s", out)
			}
			for _, w := range tc.wants {
				if !strings.Contains(string(out), w) {
					t.Errorf("the refusal does not name %s:\n%s", w, out)
				}
			}
		})
	}
	nd := harness.NewNode(t, binary, harness.NodeSpec{ID: "insecure"})
	nd.Args = append(nd.Args, "--system-api", "0.0.0.0:0", "--insecure")
	nd.Start()
	testkit.WaitFor(t, 20*time.Second, "the insecure node warns", func() bool {
		return strings.Contains(nd.Logs(), "INSECURE")
	})
	nd.Kill()
}

// A flood of WHIP offers from one address is cut at the per-client limit
// (429), and a live WebRTC session through the same node keeps carrying
// media all along.
func TestSecurityOfferFlood(t *testing.T) {
	origin, err := webrtctest.Start(webrtctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { origin.Close() })
	c := startProtocolCluster(t, 1, nil, "--origin", "id=rtc1,ip=127.0.0.1,api="+portOf(origin.API)+",rtc="+portOf(origin.RTC))
	c.waitOriginsHealthy(t, 1)
	nd := c.nodes[0]
	api := rtcClientAPI(t)
	startRTCPublisher(t, api, "http://"+nd.APIAddr+"/rtc/v1/whip/?app=live&stream=live", nd, nd)
	testkit.WaitFor(t, 20*time.Second, "the origin receives the published tracks", func() bool {
		return origin.Tracks("live", "live") == 2
	})
	player := startRTCPlayer(t, api, "http://"+nd.APIAddr+"/rtc/v1/whep/?app=live&stream=live", nd, nd)
	player.waitPackets(t, 20, "the live player")

	// The flood: a real offer, sent again and again from one address.
	pc, err := api.NewPeerConnection(pionwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.AddTransceiverFromKind(pionwebrtc.RTPCodecTypeVideo, pionwebrtc.RTPTransceiverInit{Direction: pionwebrtc.RTPTransceiverDirectionRecvonly})
	offer, _ := pc.CreateOffer(nil)
	pc.SetLocalDescription(offer)
	<-pionwebrtc.GatheringCompletePromise(pc)
	sdp := pc.LocalDescription().SDP
	limited := 0
	began := time.Now()
	for i := range 200 {
		resp, err := e2eHTTP.Post("http://"+nd.APIAddr+fmt.Sprintf("/rtc/v1/whep/?app=live&stream=flood%d", i), "application/sdp", strings.NewReader(sdp))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
		}
	}
	// The limit is a rate: at most a burst, then DefaultOfferRate per
	// second of the flood, are let through, however long the flood took.
	elapsed := time.Since(began)
	allowed := webrtc.DefaultOfferBurst + int(math.Ceil(webrtc.DefaultOfferRate*elapsed.Seconds()))
	if through := 200 - limited; through > allowed {
		t.Errorf("%d of 200 flooded offers in %v got through; the offer limit allows %d", through, elapsed.Round(time.Millisecond), allowed)
	}
	if limited == 0 {
		t.Errorf("none of 200 flooded offers in %v was refused with 429", elapsed.Round(time.Millisecond))
	}
	before := player.video.Load()
	testkit.WaitFor(t, 10*time.Second, "the live player still receives after the flood", func() bool {
		return player.video.Load() > before+20
	})
	t.Logf("%d of 200 offers refused in %v; the live player received %d video packets", limited, elapsed.Round(time.Millisecond), player.video.Load())
}
