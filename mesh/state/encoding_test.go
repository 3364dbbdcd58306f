package state

import (
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/srs-mesh/srs-mesh/stream"
)

// The encodings of commands and snapshots are in Raft logs and snapshot files
// on disk: they must not change. The expected bytes were written by the
// version before the state machine moved into this package.
func TestEncodingIsStable(t *testing.T) {
	o := stream.Origin{ID: "o1", IP: "127.0.0.1", RTMP: "127.0.0.1:1935", Service: "s1", PID: "1"}
	s := stream.RTCSession{Ufrag: "a:b", OriginID: "o1", OriginRTC: "127.0.0.1:8000", Key: "v/live/a",
		Resource: "http://x/", Pwd: "p", CreatedUnixMs: 5}
	sa := s
	sa.LastActiveUnixMs = 9
	for _, tc := range []struct {
		c    Command
		want string
	}{
		{RegisterOriginCmd{Origin: o, Heartbeat: true, NowMs: 1}, "\x01" + `{"origin":{"id":"o1","ip":"127.0.0.1","service":"s1","pid":"1","rtmp":"127.0.0.1:1935"},"heartbeat":true,"now_ms":1}`},
		{RemoveOriginCmd{ID: "o1"}, "\x02" + `{"id":"o1"}`},
		{SetHealthCmd{Changes: []HealthChange{{ID: "o1", Healthy: false, Reason: "r", ProbeMs: 3}}, NowMs: 4}, "\x03" + `{"changes":[{"id":"o1","healthy":false,"reason":"r","probe_ms":3}],"now_ms":4}`},
		{SetDrainingCmd{ID: "o1", Draining: true}, "\x04" + `{"id":"o1","draining":true}`},
		{AssignCmd{Key: "v/live/a", NowMs: 2}, "\x05" + `{"key":"v/live/a","now_ms":2}`},
		{TouchCmd{Keys: []string{"v/live/a"}, NowMs: 3}, "\x06" + `{"keys":["v/live/a"],"now_ms":3}`},
		{DeleteAssignmentsCmd{Keys: []string{"v/live/a"}, CutoffMs: 4}, "\x07" + `{"keys":["v/live/a"],"cutoff_ms":4}`},
		{PutRTCSessionCmd{Session: s}, "\x08" + `{"session":{"ufrag":"a:b","origin":"o1","origin_rtc":"127.0.0.1:8000","key":"v/live/a","resource":"http://x/","pwd":"p","created_unix_ms":5}}`},
		{DeleteRTCSessionCmd{Ufrag: "a:b"}, "\x09" + `{"ufrag":"a:b"}`},
		{ExpireRTCSessionsCmd{Ufrags: []string{"a:b"}, CutoffMs: 6}, "\x0a" + `{"ufrags":["a:b"],"cutoff_ms":6}`},
		// Added later; the entries above must not change with them.
		{PutRTCSessionCmd{Session: sa, ProtectSinceMs: 3, MaxSessions: 10}, "\x08" + `{"session":{"ufrag":"a:b","origin":"o1","origin_rtc":"127.0.0.1:8000","key":"v/live/a","resource":"http://x/","pwd":"p","created_unix_ms":5,"last_active_unix_ms":9},"protect_since_ms":3,"max_sessions":10}`},
		{TouchRTCSessionsCmd{Ufrags: []string{"a:b"}, NowMs: 7}, "\x0c" + `{"ufrags":["a:b"],"now_ms":7}`},
		{MoveCmd{Key: "v/live/a", From: "o1", NowMs: 8, MinIntervalMs: 5000}, "\x1e" + `{"key":"v/live/a","from":"o1","now_ms":8,"min_interval_ms":5000}`},
	} {
		got := mustCmd(t, tc.c)
		if string(got) != tc.want {
			t.Errorf("%s encodes as\n%q, want\n%q", tc.c.Type(), got, tc.want)
		}
		c, err := Decode([]byte(tc.want))
		if err != nil || c.Type() != tc.c.Type() || string(mustCmd(t, c)) != tc.want {
			t.Errorf("%s does not decode back: %v", tc.c.Type(), err)
		}
	}

	f := NewFSM()
	for i, c := range []Command{
		RegisterOriginCmd{Origin: o, Heartbeat: true, NowMs: 1},
		AssignCmd{Key: "v/live/a", NowMs: 2},
		SetDrainingCmd{ID: "o1", Draining: true},
		PutRTCSessionCmd{Session: s},
	} {
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: mustCmd(t, c)})
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	const want = `{"origins":[{"origin":{"id":"o1","ip":"127.0.0.1","service":"s1","pid":"1","rtmp":"127.0.0.1:1935"},"healthy":true,"draining":true,"last_heartbeat_ms":1}],"assignments":[{"key":"v/live/a","origin":"o1","created_ms":2,"last_used_ms":2}],"rtc_sessions":[{"ufrag":"a:b","origin":"o1","origin_rtc":"127.0.0.1:8000","key":"v/live/a","resource":"http://x/","pwd":"p","created_unix_ms":5}],"index":4}` + "\n"
	if got := sink.String(); got != want {
		t.Fatalf("snapshot\n%q, want\n%q", got, want)
	}
	g := NewFSM()
	if err := g.Restore(io.NopCloser(strings.NewReader(want))); err != nil {
		t.Fatal(err)
	}
	if c := g.Contents(); len(c.Origins) != 1 || len(c.Assignments) != 1 || len(c.RTCSessions) != 1 || c.Index != 4 {
		t.Fatalf("restored %+v", c)
	}
}
