package streams

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/srs-mesh/srs-mesh/mesh/peers"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/stream"
)

type fakeReplica state.Contents

func (r fakeReplica) Contents() state.Contents { return state.Contents(r) }

// TestJoinSumsAnswers: the sums of self and of the members that answered,
// joined with the replica's assignments; a member that did not answer, or
// whose answer does not decode, is listed as not ok and adds nothing.
func TestJoinSumsAnswers(t *testing.T) {
	body, _ := json.Marshal(Local{Node: "n2", Streams: []LocalStream{
		{Key: "v/live/a", Clients: map[string]int{"flv": 2, "bogus": -1}, OutBps: 3e6, InBps: -5},
		{Key: "v/live/b", Clients: map[string]int{"srt": 1}},
		{Key: "", Clients: map[string]int{"rtmp": 9}},
	}})
	self := NewLocal("n1", map[string]map[string]int{"v/live/a": {"rtmp": 1}}, map[string]Rate{"v/live/a": {InBps: 2e6, OutBps: 1e3}, "v/live/gone": {InBps: 1}})
	replica := fakeReplica{
		Origins: []state.OriginState{{Origin: stream.Origin{ID: "o1"}, Healthy: true}},
		Assignments: []state.KeyAssignment{
			{Key: "v/live/a", Assignment: state.Assignment{Origin: "o1", CreatedMs: 5, LastUsedMs: 6}},
			{Key: "v/live/idle", Assignment: state.Assignment{Origin: "o2"}},
		},
	}
	answers := []peers.Body{
		{Answer: peers.Answer{ID: "n2", OK: true}, Body: body},
		{Answer: peers.Answer{ID: "n3", Error: "HTTP 500"}},
		{Answer: peers.Answer{ID: "n4", Error: "gossip state dead"}},
		{Answer: peers.Answer{ID: "n5", OK: true}, Body: []byte("{")},
	}
	doc := Join(self, answers, replica)

	if len(doc.Nodes) != 5 || !doc.Nodes[0].OK || !doc.Nodes[1].OK || doc.Nodes[2].OK || doc.Nodes[2].Error == "" ||
		doc.Nodes[3] != (peers.Answer{ID: "n4", Error: "gossip state dead"}) ||
		doc.Nodes[4].OK || !strings.Contains(doc.Nodes[4].Error, "bad answer") {
		t.Fatalf("nodes = %+v", doc.Nodes)
	}
	if len(doc.Streams) != 3 {
		t.Fatalf("streams = %+v", doc.Streams)
	}
	a, b, idle := doc.Streams[0], doc.Streams[1], doc.Streams[2]
	if a.Key != "v/live/a" || a.Origin != "o1" || !a.OriginHealthy || a.CreatedUnixMs != 5 || a.LastUsedUnixMs != 6 ||
		a.TotalClients != 3 || a.Clients["rtmp"] != 1 || a.Clients["flv"] != 2 || a.Nodes["n1"] != 1 || a.Nodes["n2"] != 2 {
		t.Fatalf("assigned stream = %+v", a)
	}
	if a.IngestBps != 2e6 || a.EgressBps != 3e6+1e3 {
		t.Fatalf("rates of the assigned stream: ingest %v egress %v", a.IngestBps, a.EgressBps)
	}
	if b.Key != "v/live/b" || b.Origin != "" || b.TotalClients != 1 || b.Nodes["n2"] != 1 {
		t.Fatalf("unassigned stream = %+v", b)
	}
	if idle.Key != "v/live/idle" || idle.Origin != "o2" || idle.OriginHealthy || idle.TotalClients != 0 || idle.Clients == nil {
		t.Fatalf("idle stream = %+v", idle)
	}
}

func TestJoinFanOut(t *testing.T) {
	self := NewLocal("n1", map[string]map[string]int{
		"v/live/a": {"rtmp": 20, "flv": 50, "hls": 3, ProtoUpstream: 2},
		"v/live/b": {"srt": 1},
	}, nil)
	c := Join(self, nil, fakeReplica{})
	if len(c.Streams) != 2 {
		t.Fatalf("streams %+v", c.Streams)
	}
	a, b := c.Streams[0], c.Streams[1]
	if a.TotalClients != 73 || a.Clients[ProtoUpstream] != 0 || a.Nodes["n1"] != 73 {
		t.Errorf("upstreams counted as clients: %+v", a)
	}
	if got, want := a.FanOut["n1"], (FanOut{Upstreams: 2, Players: 70, Ratio: 35}); got != want {
		t.Errorf("fan-out %+v, want %+v", got, want)
	}
	if b.FanOut != nil {
		t.Errorf("fan-out of a stream without upstreams: %+v", b.FanOut)
	}
}

func TestJoinRTCFanOut(t *testing.T) {
	self := NewLocal("n1", map[string]map[string]int{
		"v/live/a": {"webrtc": 30, ProtoRTCUpstream: 1, "rtmp": 2, ProtoUpstream: 1},
	}, nil)
	c := Join(self, nil, fakeReplica{})
	a := c.Streams[0]
	if a.TotalClients != 32 || a.Clients[ProtoRTCUpstream] != 0 {
		t.Errorf("WebRTC upstreams counted as clients: %+v", a)
	}
	if got, want := a.RTCFanOut["n1"], (FanOut{Upstreams: 1, Players: 30, Ratio: 30}); got != want {
		t.Errorf("WebRTC fan-out %+v, want %+v", got, want)
	}
	if got, want := a.FanOut["n1"], (FanOut{Upstreams: 1, Players: 2, Ratio: 2}); got != want {
		t.Errorf("RTMP fan-out %+v, want %+v", got, want)
	}
}

// TestJoinStandbys: standby publishers are reported by node, not counted
// as clients.
func TestJoinStandbys(t *testing.T) {
	self := NewLocal("n1", map[string]map[string]int{"v/live/a": {"rtmp": 3}}, nil)
	other, _ := json.Marshal(NewLocal("n3", map[string]map[string]int{"v/live/a": {ProtoStandby: 1, "flv": 2}}, nil))
	c := Join(self, []peers.Body{{Answer: peers.Answer{ID: "n3", OK: true}, Body: other}}, fakeReplica{})
	if len(c.Streams) != 1 {
		t.Fatalf("streams %+v", c.Streams)
	}
	a := c.Streams[0]
	if a.TotalClients != 5 || a.Clients[ProtoStandby] != 0 || a.Nodes["n3"] != 2 {
		t.Errorf("standbys counted as clients: %+v", a)
	}
	if len(a.Standbys) != 1 || a.Standbys["n3"] != 1 {
		t.Errorf("standbys %v, want n3:1", a.Standbys)
	}
}
