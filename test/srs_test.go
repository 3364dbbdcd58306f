package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// startSRSMesh starts a 3-node mesh and two real SRS origins that register
// themselves through their heartbeat (to node 1 and node 3), and waits until
// every node knows both origins as healthy. It skips unless
// SRS_MESH_TEST_SRS names an SRS binary.
func startSRSMesh(t *testing.T) (*cluster, []*harness.SRS) {
	t.Helper()
	harness.Need(t, "ffmpeg")
	c := startProtocolCluster(t, 3, nil)
	var origins []*harness.SRS
	for i, via := range []int{0, 2} {
		origins = append(origins, harness.StartSRS(t, harness.SRSOptions{
			ID:           fmt.Sprintf("srs%d", i+1),
			HeartbeatURL: "http://" + c.nodes[via].SystemAPI + "/api/v1/srs/register",
		}))
	}
	testkit.WaitFor(t, 30*time.Second, "both SRS origins registered and healthy on every node", func() bool {
		for i := range c.nodes {
			var st mesh.Status
			if c.nodes[i].Status(&st) != nil || len(st.Origins) != 2 {
				return false
			}
			for _, o := range st.Origins {
				if !o.Healthy || o.RTMP == "" || o.HTTP == "" || o.API == "" || o.SRT == "" || o.RTC == "" {
					return false
				}
			}
		}
		return true
	})
	return c, origins
}

// TestSRSOriginsRTMPAndHTTP checks the mesh against real SRS origins that
// register through their heartbeat: RTMP publish through one node, then RTMP,
// HTTP-FLV, HLS and DASH plays through the others.
func TestSRSOriginsRTMPAndHTTP(t *testing.T) {
	c, _ := startSRSMesh(t)
	pub := harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/srs?secret=x"))
	res := harness.PlayUntil(t, c.nodes[1].RTMPURL("live/srs"), 2*time.Second, 10, 30*time.Second)
	t.Logf("RTMP play through n2: %d frames", res.VideoFrames)
	res = harness.PlayUntil(t, "http://"+c.nodes[2].HTTPAddr+"/live/srs.flv", 2*time.Second, 10, 30*time.Second)
	t.Logf("HTTP-FLV play through n3: %d frames", res.VideoFrames)
	res = harness.PlayUntil(t, "http://"+c.nodes[1].HTTPAddr+"/live/srs.m3u8", 2*time.Second, 10, 60*time.Second)
	t.Logf("HLS play through n2: %d frames", res.VideoFrames)
	res = harness.PlayUntil(t, "http://"+c.nodes[2].HTTPAddr+"/live/srs.mpd", 2*time.Second, 10, 60*time.Second)
	t.Logf("DASH play through n3: %d frames", res.VideoFrames)
	if pub.Exited() {
		t.Fatalf("publisher exited: %s", pub.Output())
	}
}

// TestSRSOriginsSRT publishes over SRT through node 1 into a real SRS
// origin, then plays it over SRT (m=request) through node 2 and over RTMP
// (SRS's srt_to_rtmp) through node 3: all protocols meet at one key.
func TestSRSOriginsSRT(t *testing.T) {
	c, _ := startSRSMesh(t)
	harness.NeedFFmpegSRT(t)
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin"}
	args = append(args, harness.TestSourceArgs()...)
	args = append(args, harness.EncodeArgs()...)
	args = append(args, "-f", "mpegts", "srt://"+c.nodes[0].SRTAddr+"?streamid=#!::r=live/srt1,m=publish")
	pub := harness.Start(t, "ffmpeg", args...)
	res := harness.PlayUntil(t, "srt://"+c.nodes[1].SRTAddr+"?streamid=#!::r=live/srt1,m=request", 2*time.Second, 10, 60*time.Second)
	t.Logf("SRT play through n2: %d frames", res.VideoFrames)
	res = harness.PlayUntil(t, c.nodes[2].RTMPURL("live/srt1"), 2*time.Second, 10, 60*time.Second)
	t.Logf("RTMP play through n3: %d frames", res.VideoFrames)
	if pub.Exited() {
		t.Fatalf("SRT publisher exited: %s", pub.Output())
	}
}

// TestSRSOriginsAPI checks the cluster-wide SRS API against real SRS
// origins: two streams published through the mesh land on different
// origins, /api/v1/streams and /api/v1/clients on any node list them with
// their origins, and DELETE of a client through the mesh kicks it.
func TestSRSOriginsAPI(t *testing.T) {
	c, _ := startSRSMesh(t)
	pubs := map[string]*harness.Proc{}
	for _, name := range []string{"api1", "api2"} {
		pubs[name] = harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/"+name))
		harness.PlayUntil(t, c.nodes[1].RTMPURL("live/"+name), time.Second, 5, 30*time.Second)
	}
	o1, o2 := c.waitAssigned(t, "__defaultVhost__/live/api1"), c.waitAssigned(t, "__defaultVhost__/live/api2")
	if o1 == o2 {
		t.Fatalf("both streams on %s; the policy spreads new streams", o1)
	}

	type entry struct {
		ID     string `json:"id"`
		Name   string `json:"name"`
		Origin string `json:"origin"`
		Type   string `json:"type"`
		Stream string `json:"stream"`
	}
	var streams struct {
		Code    int     `json:"code"`
		Streams []entry `json:"streams"`
	}
	testkit.WaitFor(t, 20*time.Second, "/api/v1/streams lists both streams with their origins", func() bool {
		if harness.GetJSON("http://"+c.nodes[2].APIAddr+"/api/v1/streams", &streams) != nil {
			return false
		}
		seen := map[string]string{}
		for _, s := range streams.Streams {
			seen[s.Name] = s.Origin
		}
		return seen["api1"] == o1 && seen["api2"] == o2
	})

	var clients struct {
		Code    int     `json:"code"`
		Clients []entry `json:"clients"`
	}
	var kick entry
	testkit.WaitFor(t, 20*time.Second, "/api/v1/clients lists the publishers", func() bool {
		if harness.GetJSON("http://"+c.nodes[1].APIAddr+"/api/v1/clients", &clients) != nil {
			return false
		}
		for _, cl := range clients.Clients {
			if cl.Origin == o2 && cl.Type == "fmle-publish" {
				kick = cl
				return true
			}
		}
		return false
	})
	req, _ := http.NewRequest(http.MethodDelete, "http://"+c.nodes[0].APIAddr+"/api/v1/clients/"+kick.ID, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		Code int `json:"code"`
	}
	json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || answer.Code != 0 {
		t.Fatalf("DELETE client %s: %s code %d", kick.ID, resp.Status, answer.Code)
	}
	if err := pubs["api2"].Wait(15 * time.Second); err == nil {
		t.Log("kicked publisher exited")
	} else if !pubs["api2"].Exited() {
		t.Fatalf("publisher of api2 still running after its client was deleted")
	}
	if pubs["api1"].Exited() {
		t.Fatalf("publisher of api1 exited too: %s", pubs["api1"].Output())
	}
}

// TestSRSOriginsWebRTC publishes H.264 and Opus over WHIP through node 1
// into a real SRS origin and plays them over WHEP through node 2.
func TestSRSOriginsWebRTC(t *testing.T) {
	c, _ := startSRSMesh(t)
	n1, n2 := c.nodes[0], c.nodes[1]
	api := rtcClientAPI(t)

	pub := startRTCPublisher(t, api, "http://"+n1.APIAddr+"/rtc/v1/whip/?app=live&stream=rtc1", n1, n1)
	player := startRTCPlayer(t, api, "http://"+n2.APIAddr+"/rtc/v1/whep/?app=live&stream=rtc1", n2, n2)
	player.waitPackets(t, 20, "WHEP player through n2")
	t.Logf("WHEP through n2: %d video, %d audio packets", player.video.Load(), player.audio.Load())
	rtcDelete(t, n2, player.location)
	player.close()
	rtcDelete(t, n1, pub.location)
	pub.close()
}

// TestSRSOriginsRTMPOverWHEP publishes over RTMP through node 1 and plays
// over WHEP through node 3 (SRS's rtmp_to_rtc; video only, since audio
// would need SRS's AAC-to-Opus transcoding).
func TestSRSOriginsRTMPOverWHEP(t *testing.T) {
	if os.Getenv(harness.SRSBinaryEnv) != "" && !harness.SRSHasFFmpegFit() {
		harness.Missing(t, "srs", "this SRS has no FFmpeg transcoder (--ffmpeg-fit=off), so it cannot bridge RTMP to WebRTC")
	}
	c, _ := startSRSMesh(t)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	api := rtcClientAPI(t)
	harness.PublishRTMP(t, n1.RTMPURL("live/rtmp2rtc"))
	harness.PlayUntil(t, n2.RTMPURL("live/rtmp2rtc"), time.Second, 5, 30*time.Second)
	viewer := startRTCPlayer(t, api, "http://"+n3.APIAddr+"/rtc/v1/whep/?app=live&stream=rtmp2rtc", n3, n3)
	testkit.WaitFor(t, 30*time.Second, "RTMP stream received over WHEP through n3", func() bool {
		return viewer.video.Load() >= 20
	})
	t.Logf("RTMP over WHEP through n3: %d video packets", viewer.video.Load())
}

// TestSRSEdgeThroughMesh puts a real SRS edge server in front of the mesh,
// as in an SRS edge cluster whose upstream is the mesh: a player on the
// edge pulls a stream published through node 1 via node 2, and a publisher
// on the edge is forwarded through node 3 to the assigned origin.
func TestSRSEdgeThroughMesh(t *testing.T) {
	c, _ := startSRSMesh(t)
	edge := harness.StartSRS(t, harness.SRSOptions{ID: "edge", EdgeOf: c.nodes[1].RTMPAddr})

	harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/edgeplay"))
	harness.PlayUntil(t, c.nodes[2].RTMPURL("live/edgeplay"), time.Second, 5, 30*time.Second)
	res := harness.PlayUntil(t, "rtmp://"+edge.RTMPAddr+"/live/edgeplay", 2*time.Second, 10, 60*time.Second)
	t.Logf("played through an SRS edge pulling via n2: %d frames", res.VideoFrames)

	edge2 := harness.StartSRS(t, harness.SRSOptions{ID: "edge2", EdgeOf: c.nodes[2].RTMPAddr})
	harness.PublishRTMP(t, "rtmp://"+edge2.RTMPAddr+"/live/edgepush")
	res = harness.PlayUntil(t, c.nodes[0].RTMPURL("live/edgepush"), 2*time.Second, 10, 60*time.Second)
	t.Logf("published through an SRS edge pushing via n3, played through n1: %d frames", res.VideoFrames)
	c.waitAssigned(t, "__defaultVhost__/live/edgepush")
}

// TestSRSHeartbeatWithToken runs the mesh with --token: a real SRS origin
// registers with the token in the heartbeat URL's path (SRS drops the URL's
// query), and one with a wrong token, whose heartbeats reach the node too, is
// refused: every node knows the first origin (its RTMP address and process
// id) and only it.
func TestSRSHeartbeatWithToken(t *testing.T) {
	harness.Need(t, "ffmpeg")
	c := startProtocolCluster(t, 3, nil, "--token", "s3cret")
	good := harness.StartSRS(t, harness.SRSOptions{ID: "good",
		HeartbeatURL: "http://" + c.nodes[1].SystemAPI + "/api/v1/srs/register/s3cret"})
	bad := harness.StartSRS(t, harness.SRSOptions{ID: "bad",
		HeartbeatURL: "http://" + c.nodes[1].SystemAPI + "/api/v1/srs/register/wrong"})
	isGood := func(o mesh.OriginStatus) bool {
		return o.RTMP == good.RTMPAddr && o.PID == fmt.Sprint(good.Pid())
	}
	testkit.WaitFor(t, 30*time.Second, "the origin with the token registered on every node", func() bool {
		for _, nd := range c.nodes {
			var st mesh.Status
			if nd.Status(&st) != nil || len(st.Origins) != 1 || !st.Origins[0].Healthy || !isGood(st.Origins[0]) {
				return false
			}
		}
		return true
	})
	testkit.WaitFor(t, 15*time.Second, "the origin with the wrong token sends heartbeats", func() bool {
		return strings.Contains(c.nodes[1].Logs(), "registration with a wrong token in the path")
	})
	// Several heartbeats later, still only the origin with the token.
	var st mesh.Status
	testkit.WaitFor(t, 15*time.Second, "a few heartbeats pass", func() bool {
		return c.nodes[0].Status(&st) == nil && len(st.Origins) == 1 && st.Origins[0].LastHeartbeatUnixMs > 0 &&
			time.Since(time.UnixMilli(st.Origins[0].LastHeartbeatUnixMs)) < 3*time.Second &&
			st.CommitIndex > 8
	})
	for i, nd := range c.nodes {
		var st mesh.Status
		if err := nd.Status(&st); err != nil {
			t.Fatal(err)
		}
		if len(st.Origins) != 1 || !isGood(st.Origins[0]) {
			t.Errorf("n%d knows origins %+v; want only the one with the token (RTMP %s, pid %d)", i+1, st.Origins, good.RTMPAddr, good.Pid())
		}
		for _, o := range st.Origins {
			if o.RTMP == bad.RTMPAddr || o.PID == fmt.Sprint(bad.Pid()) {
				t.Errorf("n%d knows the origin with the wrong token: %+v", i+1, o)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/tok"))
	harness.PlayUntil(t, c.nodes[2].RTMPURL("live/tok"), time.Second, 5, 30*time.Second)
}
