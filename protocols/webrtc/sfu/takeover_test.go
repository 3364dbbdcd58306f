package sfu_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/webrtc/sfu"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc/webrtctest"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// standbyEvents passes a node's standby events to the test.
type standbyEvents chan sfu.StandbyEvent

func (c standbyEvents) Standby(ev sfu.StandbyEvent) {
	select {
	case c <- ev:
	default:
	}
}

func nextEvent(t *testing.T, c standbyEvents, kind string) sfu.StandbyEvent {
	t.Helper()
	select {
	case ev := <-c:
		if ev.Kind != kind {
			t.Fatalf("event %+v, want %s", ev, kind)
		}
		return ev
	case <-time.After(15 * time.Second):
		t.Fatalf("no %s event", kind)
	}
	return sfu.StandbyEvent{}
}

// TestStandbyTakesOver: a WHIP publisher that the origin refuses (it
// closes the request, as SRS does for a busy stream) while the stream is
// live there is answered by the node and held as the stream's standby;
// when the active publisher leaves, the node publishes the standby's
// tracks to the origin, which receives them; a DELETE of the standby's
// Location ends it and its session at the origin.
func TestStandbyTakesOver(t *testing.T) {
	o, err := webrtctest.Start(webrtctest.Options{RefuseBusy: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	r := &switchRouter{}
	r.set(o.StreamOrigin("o1"))
	events := make(standbyEvents, 8)
	n := startNode(t, r, sfu.Config{Standbys: events})
	api, err := webrtctest.ClientAPI()
	if err != nil {
		t.Fatal(err)
	}

	a, err := webrtctest.NewPublisher(api)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	aLoc := signal(t, a.PC, "http://"+o.API+"/rtc/v1/whip/?app=live&stream=s")
	a.Start()
	testkit.WaitFor(t, 10*time.Second, "the origin receives the first publisher", func() bool { return o.Tracks("live", "s") == 2 })

	b, err := webrtctest.NewPublisher(api)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	bLoc := signal(t, b.PC, n.url+"/rtc/v1/whip/?app=live&stream=s")
	b.Start()
	nextEvent(t, events, sfu.StandbyKept)
	if got := n.fan.Standbys(); got != 1 {
		t.Fatalf("%d standbys", got)
	}
	sessions := o.Sessions()

	// The active publisher leaves: the standby takes over.
	req, _ := http.NewRequest(http.MethodDelete, "http://"+o.API+aLoc, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	a.Close()
	ev := nextEvent(t, events, sfu.StandbyPromoted)
	if ev.Origin != "o1" || ev.Gap <= 0 {
		t.Errorf("promotion %+v", ev)
	}
	if got := n.fan.Standbys(); got != 0 {
		t.Errorf("%d standbys after the promotion", got)
	}
	base := o.PublishedPackets()
	testkit.WaitFor(t, 10*time.Second, "the origin receives the standby's media", func() bool {
		return o.Tracks("live", "s") == 2 && o.PublishedPackets() > base+100
	})

	// A DELETE of the standby's Location through its node ends it, and
	// its session at the origin.
	req, _ = http.NewRequest(http.MethodDelete, n.url+bLoc, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE %s: %d", bLoc, resp.StatusCode)
	}
	testkit.WaitFor(t, 10*time.Second, "the standby ended", func() bool {
		return o.Sessions() < sessions
	})
}
