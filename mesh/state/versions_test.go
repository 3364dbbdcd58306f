package state

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// The version table and Decode know the same types, and every entry states
// what its value's optional bit says.
func TestVersionTableMatchesDecode(t *testing.T) {
	for v := 1; v < 256; v++ {
		ct := CmdType(v)
		_, err := Decode([]byte{byte(v), '{', '}'})
		decodes := !errors.Is(err, ErrUnknownCommand)
		e, inTable := cmdVersions[ct]
		if decodes != inTable {
			t.Errorf("type %d: Decode knows it %v, version table %v", v, decodes, inTable)
		}
		if !inTable {
			continue
		}
		if e.optional != ct.Optional() {
			t.Errorf("%s: table says optional=%v, its value %#x says %v", ct, e.optional, v, ct.Optional())
		}
		if e.since < 1 || e.since > ProtocolVersion {
			t.Errorf("%s: introduced in protocol %d, this build speaks %d", ct, e.since, ProtocolVersion)
		}
		if strings.HasPrefix(ct.String(), "cmd(") {
			t.Errorf("type %d has no name", v)
		}
	}
	// The types of the Raft logs written before versions existed keep
	// their values and stay required.
	for _, ct := range []CmdType{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 30} {
		if !Known(ct) || ct.Optional() || Since(ct) != 1 {
			t.Errorf("%s: known %v optional %v since %d", ct, Known(ct), ct.Optional(), Since(ct))
		}
	}
	if got := TypesSince(1); !slices.Contains(got, CmdSetProtocol) || !slices.Contains(got, CmdPlanMove) {
		t.Errorf("types after protocol 1: %v", got)
	}
	if got := TypesSince(ProtocolVersion); len(got) != 0 {
		t.Errorf("types after this build's protocol: %v", got)
	}
}

func TestSetProtocolEncoding(t *testing.T) {
	const want = "\x28" + `{"version":2}`
	if got := string(mustCmd(t, SetProtocolCmd{Version: 2})); got != want {
		t.Fatalf("encodes as %q, want %q", got, want)
	}
	c, err := Decode([]byte(want))
	if err != nil || *c.(*SetProtocolCmd) != (SetProtocolCmd{Version: 2}) {
		t.Fatalf("decodes as %v, %v", c, err)
	}
}

func TestReadable(t *testing.T) {
	for _, tc := range []struct {
		data []byte
		ok   bool
	}{
		{nil, true},
		{[]byte{byte(CmdAssign), '{', '}'}, true},
		{[]byte{byte(CmdSetProtocol)}, true},
		{[]byte{0x7f, '{', '}'}, false},
		{[]byte{39}, false},
		{[]byte{0x80}, true},
		{[]byte{0xfe, '{', '}'}, true},
	} {
		err := Readable(tc.data)
		if (err == nil) != tc.ok {
			t.Errorf("Readable(%q) = %v, want ok %v", tc.data, err, tc.ok)
		}
		var u *UnknownCommandError
		if err != nil && (!errors.As(err, &u) || !errors.Is(err, ErrBadCommand)) {
			t.Errorf("Readable(%q) = %#v, want an *UnknownCommandError", tc.data, err)
		}
	}
}

func applyAt(f *FSM, idx uint64, data []byte) Result {
	return f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data}).(Result)
}

// An unknown optional type is skipped and the replica carries on.
func TestUnknownOptionalIsSkipped(t *testing.T) {
	f := fsmWith(t, "o1")
	if r := applyAt(f, 10, []byte{0x90, '{', '"', 'x', '"', ':', '1', '}'}); r.Err() != nil {
		t.Fatalf("optional unknown: %v", r.Err())
	}
	if f.Skipped() != 1 {
		t.Fatalf("skipped %d", f.Skipped())
	}
	if _, ok := f.Halted(); ok {
		t.Fatal("halted on an optional type")
	}
	if r := applyAt(f, 11, mustCmd(t, AssignCmd{Key: "v/live/a", NowMs: 5})); r.Err() != nil || r.Origin == nil {
		t.Fatalf("assign after a skipped command: %+v", r)
	}
	if f.appliedIndex() != 11 {
		t.Fatalf("applied index %d", f.appliedIndex())
	}
}

// An unknown required type halts the replica: it says so once, applies
// nothing more, keeps its applied index and routes nothing.
func TestUnknownRequiredHalts(t *testing.T) {
	f := fsmWith(t, "o1")
	applyAt(f, 4, mustCmd(t, RegisterOriginCmd{Origin: testOrigin("o2"), Heartbeat: true, NowMs: 4}))
	o := testOrigin("o2")
	o.HTTP = "127.0.0.1:8080"
	applyAt(f, 4, mustCmd(t, RegisterOriginCmd{Origin: o, Authenticated: true, Heartbeat: true, NowMs: 4}))
	applyAt(f, 5, mustCmd(t, AssignCmd{Key: "v/live/a", NowMs: 5}))
	applyAt(f, 5, mustCmd(t, PutRTCSessionCmd{Session: rtcSess("ans:off", 5)}))
	if _, ok := f.RTCSession("ans:off"); !ok || !f.HasHTTPEndpoint("127.0.0.1:8080") {
		t.Fatal("no session or HTTP endpoint before the halt")
	}
	if _, ok := f.Route("v/live/a"); !ok {
		t.Fatal("no route before the halt")
	}
	var told []Halt
	f.OnHalt(func(h Halt) { told = append(told, h) })
	r := applyAt(f, 6, []byte{0x33, '{', '}'})
	if !errors.Is(r.Err(), ErrHalted) {
		t.Fatalf("unknown required type: %v", r.Err())
	}
	h, ok := f.Halted()
	if !ok || h.Index != 6 || h.Type != 0x33 || !strings.Contains(h.Reason, "upgrade") {
		t.Fatalf("halt %+v %v", h, ok)
	}
	for i, c := range []Command{AssignCmd{Key: "v/live/b", NowMs: 6}, SetDrainingCmd{ID: "o1", Draining: true}} {
		if r := applyAt(f, uint64(7+i), mustCmd(t, c)); !errors.Is(r.Err(), ErrHalted) {
			t.Fatalf("%s after the halt: %v", c.Type(), r.Err())
		}
	}
	if len(told) != 1 {
		t.Fatalf("told %d times", len(told))
	}
	if f.appliedIndex() != 5 {
		t.Fatalf("applied index moved to %d", f.appliedIndex())
	}
	if _, ok := f.Route("v/live/a"); ok {
		t.Fatal("a halted replica routes")
	}
	if f.AssignedOrigin("v/live/a") != "" || f.Healthy("o1") || len(f.Candidates()) != 0 {
		t.Fatal("a halted replica answers routing reads")
	}
	if _, ok := f.Origin("o1"); ok {
		t.Fatal("a halted replica answers Origin")
	}
	if _, ok := f.RTCSession("ans:off"); ok {
		t.Fatal("a halted replica answers RTCSession")
	}
	if f.HasHTTPEndpoint("127.0.0.1:8080") {
		t.Fatal("a halted replica answers HasHTTPEndpoint")
	}
	if _, err := f.Snapshot(); !errors.Is(err, ErrHalted) {
		t.Fatalf("a halted replica takes a snapshot: %v", err)
	}
	if c := f.Contents(); len(c.Assignments) != 1 || c.Origins[0].Draining {
		t.Fatalf("state changed after the halt: %+v", c)
	}
}

func TestSetProtocol(t *testing.T) {
	f := NewFSM()
	if f.Protocol() != 0 {
		t.Fatal("fresh state has a protocol")
	}
	if r := applyAt(f, 1, mustCmd(t, SetProtocolCmd{Version: 0})); !errors.Is(r.Err(), ErrBadCommand) {
		t.Fatalf("version 0: %v", r.Err())
	}
	applyAt(f, 2, mustCmd(t, SetProtocolCmd{Version: 2}))
	applyAt(f, 3, mustCmd(t, SetProtocolCmd{Version: 1}))
	if f.Protocol() != 2 {
		t.Fatalf("protocol %d, want 2 (it never goes down)", f.Protocol())
	}
	// The snapshot carries it.
	snap, _ := f.Snapshot()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sink.String(), `"protocol":2`) {
		t.Fatalf("snapshot %s", sink.String())
	}
	g := NewFSM()
	if err := g.Restore(io.NopCloser(strings.NewReader(sink.String()))); err != nil || g.Protocol() != 2 {
		t.Fatalf("restored protocol %d, %v", g.Protocol(), err)
	}

	// A record above this build's protocol halts it: a downgrade.
	r := applyAt(f, 4, mustCmd(t, SetProtocolCmd{Version: ProtocolVersion + 1}))
	if h, ok := f.Halted(); !errors.Is(r.Err(), ErrHalted) || !ok || h.Protocol != ProtocolVersion+1 {
		t.Fatalf("newer protocol: %v, %+v", r.Err(), h)
	}
}

// A snapshot of a mesh on a newer protocol is not restored: the replica
// halts instead.
func TestRestoreNewerProtocolHalts(t *testing.T) {
	f := fsmWith(t, "o1")
	snap := `{"origins":[{"origin":{"id":"o9","ip":"127.0.0.1"},"healthy":true}],"assignments":[],"index":40,"protocol":99}`
	if err := f.Restore(io.NopCloser(strings.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	h, ok := f.Halted()
	if !ok || h.Protocol != 99 || h.Index != 40 {
		t.Fatalf("halt %+v %v", h, ok)
	}
	if c := f.Contents(); len(c.Origins) != 1 || c.Origins[0].Origin.ID != "o1" {
		t.Fatalf("restored a newer snapshot: %+v", c.Origins)
	}
}
