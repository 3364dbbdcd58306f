package loadclient

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	pionwebrtc "github.com/pion/webrtc/v4"

	"github.com/srs-mesh/srs-mesh/protocols/webrtc/webrtctest"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

func TestWHEPPlayers(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "srs-mesh/loadclient.")
	o, err := webrtctest.Start(webrtctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	api, err := webrtctest.ClientAPI()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := webrtctest.NewPublisher(api)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	publish(t, pub.PC, "http://"+o.API+"/rtc/v1/whip/?app=live&stream=s")
	pub.Start()
	testkit.WaitFor(t, 10*time.Second, "the origin receives the publisher", func() bool { return o.PublishedPackets() > 10 })

	s, err := Run(context.Background(), Config{URL: "http://" + o.API + "/rtc/v1/whep/?app=live&stream=s", Players: 5, Rate: 100,
		Duration: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s.Protocol != ProtoWHEP || s.Connected != 5 || s.Failed != 0 {
		t.Fatalf("%s", s)
	}
	for _, p := range s.PerPlayer {
		if p.Bytes < 1000 || p.Frames < 10 {
			t.Errorf("player %+v", p)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "the players' sessions deleted", func() bool { return o.Sessions() == 1 })

	s, err = Run(context.Background(), Config{URL: "http://" + o.API + "/rtc/v1/whep/?app=live&stream=none", Players: 2, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s.Failed != 2 || s.Errors["HTTP 404 Not Found"] != 2 {
		t.Fatalf("%s", s)
	}
}

// publish signals a WHIP publisher.
func publish(t *testing.T, pc *pionwebrtc.PeerConnection, url string) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pionwebrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	resp, err := http.Post(url, "application/sdp", strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %s %s", url, resp.Status, body)
	}
	if err := pc.SetRemoteDescription(pionwebrtc.SessionDescription{Type: pionwebrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		t.Fatal(err)
	}
}
