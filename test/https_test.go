package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/webrtc/webrtctest"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestBrowserOnHTTPSPage plays, in headless Chromium on a page served over
// HTTPS, an HLS stream from an nginx-rtmp origin and a WebRTC stream (WHEP)
// from a pion origin, both through the nodes' TLS listeners (--https and
// --api-https) with certificates of a local CA. A page served over HTTPS
// may fetch no http:// media, so this is what browsers need from the mesh.
// A Go client trusting only that CA checks the certificate the nodes serve.
func TestBrowserOnHTTPSPage(t *testing.T) {
	harness.NeedWebPlayers(t)
	harness.Need(t, "ffmpeg", "nginx")
	ca := harness.NewLocalCA(t)
	dir := t.TempDir()
	certFile, keyFile, nodeCert := ca.Leaf(t, dir, "nodes")
	_, _, pageCert := ca.Leaf(t, dir, "page")

	hlsOrigin := harness.StartNginx(t, harness.NginxOptions{HLS: true})
	rtcOrigin, err := webrtctest.Start(webrtctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rtcOrigin.Close() })
	https := map[int][2]string{}
	c := startProtocolCluster(t, 2, func(i int, _ []*harness.Node) []string {
		https[i] = [2]string{fmt.Sprintf("127.0.0.1:%d", harness.UniquePort(t, false)), fmt.Sprintf("127.0.0.1:%d", harness.UniquePort(t, false))}
		return []string{"--https", https[i][0], "--api-https", https[i][1], "--https-cert-file", certFile, "--https-key-file", keyFile}
	},
		"--origin", originFlag("hls1", hlsOrigin),
		"--origin", "id=rtc1,ip=127.0.0.1,api="+portOf(rtcOrigin.API)+",rtc="+portOf(rtcOrigin.RTC))
	c.waitOriginsHealthy(t, 2)

	// HLS: published over RTMP to node 1, with the WebRTC origin drained
	// meanwhile so that the stream lands on nginx-rtmp.
	drain := func(cmd string) {
		if out, err := exec.Command(binary, cmd, "rtc1", "--addr", c.nodes[0].SystemAPI).CombinedOutput(); err != nil {
			t.Fatalf("%s rtc1: %v\n%s", cmd, err, out)
		}
	}
	drain("drain")
	pub := harness.PublishRTMP(t, c.nodes[0].RTMPURL("live/tls"))
	if on := c.waitAssigned(t, "__defaultVhost__/live/tls"); on != "hls1" {
		t.Fatalf("live/tls on %s", on)
	}
	drain("undrain")
	playlist := "https://" + https[1][0] + "/live/tls.m3u8"
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	t.Cleanup(client.CloseIdleConnections)
	testkit.WaitFor(t, 60*time.Second, "the playlist served over HTTPS by node 2", func() bool {
		if pub.Exited() {
			t.Fatalf("publisher exited: %s", pub.Output())
		}
		resp, err := client.Get(playlist)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.TLS == nil || !resp.TLS.PeerCertificates[0].Equal(nodeCert.Leaf) {
			t.Fatalf("node 2 serves another certificate than --https-cert-file")
		}
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), "#EXTINF")
	})
	// Plain HTTP on the TLS port is refused, not served.
	if resp, err := http.Get("http://" + https[1][0] + "/live/tls.m3u8"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP on --https served the playlist")
		}
	}

	// WebRTC: published over WHIP (plain, from this test) to node 1.
	src, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	harness.Start(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
		"-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-tune", "zerolatency",
		"-pix_fmt", "yuv420p", "-g", "25", "-bsf:v", "dump_extra", "-an",
		"-f", "rtp", "-payload_type", "102", "rtp://"+src.LocalAddr().String()+"?pkt_size=1200")
	rtcPub, err := webrtctest.NewPublisher(rtcClientAPI(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rtcPub.Close)
	rtcSignal(t, rtcPub.PC, "http://"+c.nodes[0].APIAddr+"/rtc/v1/whip/?app=live&stream=tlsweb", c.nodes[0], c.nodes[0])
	rtcPub.StartRTP(src)
	testkit.WaitFor(t, 20*time.Second, "the WebRTC origin receives the published stream", func() bool {
		return rtcOrigin.Tracks("live", "tlsweb") == 2 && rtcOrigin.PublishedPackets() > 50
	})

	players := []harness.WebPlayer{
		{Name: "hls.js over HTTPS via n2", Kind: "hls", Src: playlist},
		{Name: "WHEP over HTTPS via n2", Kind: "whep", Src: "https://" + https[1][1] + "/rtc/v1/whep/?app=live&stream=tlsweb"},
	}
	for _, r := range harness.PlayInBrowserHTTPS(t, players, webRun, webLimit, pageCert, nodeCert.Leaf) {
		harness.CheckWebPlayback(t, r, webMinAdvance, webMaxStall)
		if r.Kind == "whep" && (r.Location == "" || !strings.Contains(strings.Join(r.Events, " "), "DELETE 200")) {
			t.Errorf("WHEP session over HTTPS: Location %q, events %q", r.Location, r.Events)
		}
	}
}

// TestRTMPS publishes over RTMPS (--rtmps) to one node and plays over RTMPS
// and plain RTMP from another, with a certificate of a local CA, which a Go
// client trusting only that CA accepts.
func TestRTMPS(t *testing.T) {
	harness.Need(t, "ffmpeg", "nginx")
	ca := harness.NewLocalCA(t)
	certFile, keyFile, nodeCert := ca.Leaf(t, t.TempDir(), "nodes")
	origin := harness.StartNginx(t, harness.NginxOptions{})
	rtmps := map[int]string{}
	c := startProtocolCluster(t, 2, func(i int, _ []*harness.Node) []string {
		rtmps[i] = fmt.Sprintf("127.0.0.1:%d", harness.UniquePort(t, false))
		return []string{"--rtmps", rtmps[i], "--https-cert-file", certFile, "--https-key-file", keyFile}
	}, "--origin", originFlag("o1", origin))
	c.waitOriginsHealthy(t, 1)

	conn, err := tls.Dial("tcp", rtmps[1], &tls.Config{RootCAs: ca.Pool})
	if err != nil {
		t.Fatalf("TLS to --rtmps with the CA: %v", err)
	}
	if !conn.ConnectionState().PeerCertificates[0].Equal(nodeCert.Leaf) {
		t.Errorf("--rtmps serves another certificate than --https-cert-file")
	}
	conn.Close()

	harness.PublishRTMP(t, "rtmps://"+rtmps[0]+"/live/secure")
	res := harness.PlayUntil(t, "rtmps://"+rtmps[1]+"/live/secure", 3*time.Second, 30, 60*time.Second)
	t.Logf("played %d frames over RTMPS through node 2", res.VideoFrames)
	res = harness.PlayUntil(t, c.nodes[1].RTMPURL("live/secure"), 3*time.Second, 30, 60*time.Second)
	t.Logf("played %d frames over RTMP through node 2", res.VideoFrames)
}
