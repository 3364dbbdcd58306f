package rtmp

import (
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
)

// dropEvents collects PublisherDrops.
type dropEvents chan PublisherDrop

func (e dropEvents) PublisherDropped(d PublisherDrop) { e <- d }

// TestPublisherDropReported: a publisher whose connection ends without it
// unpublishing is reported as dropped, with its stream and origin; one
// that sends deleteStream first, or that the node ends (its origin kicked
// it), is not.
func TestPublisherDropReported(t *testing.T) {
	cases := []struct {
		name string
		end  func(p *testPeer, o *fakeOrigin, snd *mediaSender)
		drop bool
	}{
		{"closed", func(p *testPeer, o *fakeOrigin, snd *mediaSender) {
			snd.finish(t)
			p.nc.Close()
		}, true},
		{"unpublished", func(p *testPeer, o *fakeOrigin, snd *mediaSender) {
			snd.finish(t)
			if err := p.command(3, 0, "FCUnpublish", 5.0, nil, "s1"); err != nil {
				t.Fatal(err)
			}
			if err := p.command(3, 0, "deleteStream", 6.0, nil, 1.0); err != nil {
				t.Fatal(err)
			}
			p.nc.Close()
		}, false},
		{"ended by the node", func(p *testPeer, o *fakeOrigin, snd *mediaSender) {
			client := watchClient(p)
			o.kick()
			waitChan(t, client)
			close(snd.stop)
			waitChan(t, snd.done) // its writes fail: the connection is closed
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := startFakeOrigin(t, "")
			r := &failoverRouter{first: stream.Origin{ID: "o1", RTMP: o.Addr}, failed: make(chan string, 4)}
			drops := make(dropEvents, 4)
			s, addr := startProxy(t, Config{Router: r, PublisherDrops: drops})
			p := dialTestPeer(t, addr)
			p.nc.SetDeadline(time.Now().Add(30 * time.Second))
			if info, err := p.start("rtmp://"+addr+"/live", "s1", true); err != nil || info.String("code") != codePublishStart {
				t.Fatalf("%v %v", info, err)
			}
			recv(t, o.names)
			snd := startSender(p, 40)
			waitChan(t, o.ordered)
			tc.end(p, o, snd)
			deadline := time.Now().Add(10 * time.Second)
			for s.Stats().ConnsOpen > 0 {
				if time.Now().After(deadline) {
					t.Fatal("the session did not end")
				}
				time.Sleep(10 * time.Millisecond)
			}
			select {
			case d := <-drops:
				if !tc.drop {
					t.Fatalf("reported as dropped: %+v", d)
				}
				if d.Key.Stream != "s1" || d.Origin != "o1" || d.Peer == "" {
					t.Fatalf("drop = %+v", d)
				}
			default:
				if tc.drop {
					t.Fatal("a dropped publisher was not reported")
				}
			}
		})
	}
}
