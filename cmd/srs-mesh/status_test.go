package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

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
		Nodes: []streams.NodeAnswer{{ID: "n1", OK: true}, {ID: "n3", Error: strings.Repeat("connection refused ", 10)}},
	}
	var a, b bytes.Buffer
	printStreams(&a, doc, true, now)
	printAssignments(&b, doc, true, now)
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
