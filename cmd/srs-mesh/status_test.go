package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/peers"
	"github.com/srs-mesh/srs-mesh/mesh/streams"
)

func TestStreamTablesFit80Columns(t *testing.T) {
	now := time.Now()
	doc := streams.Cluster{
		Streams: []streams.Stream{
			{Key: "__defaultVhost__/live/" + strings.Repeat("x", 60), Origin: strings.Repeat("o", 30), OriginHealthy: false,
				Clients: map[string]int{"rtmp": 12345, "flv": 999, "webrtc": 77, "srt": 3, "hls": 1}, TotalClients: 13425,
				CreatedUnixMs: now.Add(-400 * 24 * time.Hour).UnixMilli(), LastUsedUnixMs: now.UnixMilli()},
			{Key: "__defaultVhost__/live/a", Origin: "o1", OriginHealthy: true, Clients: map[string]int{"rtmp": 2, "flv": 1},
				TotalClients: 3, CreatedUnixMs: now.UnixMilli()},
			{Key: "__defaultVhost__/live/b", Clients: map[string]int{}},
		},
		Nodes: []peers.Answer{{ID: "n1", OK: true}, {ID: "n3", Error: strings.Repeat("connection refused ", 10)}},
	}
	var a, b bytes.Buffer
	printStreams(&a, 80, doc, true, now)
	printAssignments(&b, 80, doc, true, now)
	for _, out := range []string{a.String(), b.String()} {
		for _, line := range strings.Split(out, "\n") {
			if len(line) > 80 {
				t.Errorf("line of %d columns: %q", len(line), line)
			}
		}
		if !strings.Contains(out, "(clients on n3 not counted") {
			t.Errorf("missing node not noted:\n%s", out)
		}
	}
	if !lineWith(a.String(), "__defaultVhost__/live/a", "o1", "flv:1 rtmp:2") {
		t.Errorf("streams table:\n%s", a.String())
	}
	if !lineWith(a.String(), "__defaultVhost__/live/b", "-", "0") {
		t.Errorf("unassigned stream:\n%s", a.String())
	}
	if !lineWith(b.String(), "__defaultVhost__/live/a", "o1", " 3 ") {
		t.Errorf("status streams table:\n%s", b.String())
	}
	t.Logf("\n%s\n%s", a.String(), b.String())
}

func TestEventsTableFits80Columns(t *testing.T) {
	now := time.Now()
	doc := mesh.Events{
		Events: []events.Event{
			{TimeUnixMs: now.Add(-time.Minute).UnixMilli(), Node: "node-1", Kind: events.OriginDown, Origin: "origin-a",
				Detail: "probe 10.0.0.5:1935 failed 2 times: connection refused"},
			{TimeUnixMs: now.UnixMilli(), Node: strings.Repeat("n", 40), Kind: events.StreamMoved,
				Stream: "__defaultVhost__/live/" + strings.Repeat("x", 60), Origin: "origin-b", Detail: "from origin-a"},
			{TimeUnixMs: now.UnixMilli(), Node: "node-2", Kind: events.NodeJoined, Member: "node-3"},
		},
		Nodes: []mesh.NodeAnswer{{ID: "node-1", OK: true}, {ID: "node-4", Error: strings.Repeat("no answer ", 20)}},
	}
	var b bytes.Buffer
	printEvents(&b, 80, doc, now)
	for _, line := range strings.Split(b.String(), "\n") {
		if len(line) > 80 {
			t.Errorf("line of %d columns: %q", len(line), line)
		}
	}
	if !lineWith(b.String(), "node-1", "origin_down", "origin-a") || !lineWith(b.String(), "node-2", "node_joined", "node-3") ||
		!strings.Contains(b.String(), "(events of node-4 missing") {
		t.Errorf("events table:\n%s", b.String())
	}
	t.Logf("\n%s", b.String())
}

func lineWith(out string, words ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			return true
		}
	}
	return false
}

func TestProtocolLines(t *testing.T) {
	var b bytes.Buffer
	printProtocol(&b, mesh.ProtocolStatus{Node: 2, Lowest: 1, Waiting: []string{"set_protocol"}, Behind: []string{"n3:1"}})
	want := "Protocol node 2  lowest 1  mesh 0\nWaiting for all nodes to reach protocol 2: set_protocol\n  behind: n3:1\n"
	if b.String() != want {
		t.Errorf("mixed versions:\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	printProtocol(&b, mesh.ProtocolStatus{Node: 2, Lowest: 2, Mesh: 2, Waiting: []string{}, Halted: "log entry 9 has required command type 50"})
	if want := "Protocol node 2  lowest 2  mesh 2\nHALTED: log entry 9 has required command type 50\n"; b.String() != want {
		t.Errorf("halted:\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	printProtocol(&b, mesh.ProtocolStatus{}) // a node before versions
	if b.Len() != 0 {
		t.Errorf("a node before versions: %q", b.String())
	}
}
