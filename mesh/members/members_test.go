package members

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/events"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newView(rec *[]events.Event, c *clock) *View {
	return New(Config{Record: func(e events.Event) { *rec = append(*rec, e) }, MaxZoneLen: 8, Now: c.now,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func meta(id string, leaving bool) []byte {
	return Meta{ID: id, Raft: id + ":7947", Zone: "z", Leaving: leaving}.Encode(512)
}

func kinds(rec []events.Event) string {
	var out []string
	for _, e := range rec {
		out = append(out, string(e.Kind)+" "+e.Member)
	}
	return strings.Join(out, ", ")
}

// Joins, failures and graceful leaves become states and events; a node
// that is not a mesh member is ignored.
func TestApply(t *testing.T) {
	var rec []events.Event
	c := &clock{t: time.Unix(100, 0)}
	v := newView(&rec, c)
	v.Apply(Event{Kind: "join", Name: "n2", GossipAddr: "10.0.0.2:7946", Meta: meta("n2", false)})
	v.Apply(Event{Kind: "join", Name: "n3", Meta: meta("n3", false)})
	v.Apply(Event{Kind: "join", Name: "n4", Meta: meta("n4", false)})
	v.Apply(Event{Kind: "join", Name: "stranger", Meta: []byte(`{"x":1}`)})
	v.Apply(Event{Kind: "update", Name: "n2", GossipAddr: "10.0.0.2:7946", Meta: meta("n2", false)}) // no change
	v.Apply(Event{Kind: "leave", Name: "n2", GossipAddr: "10.0.0.2:7946"})                           // a failure
	v.MarkLeft("n3")
	v.Apply(Event{Kind: "leave", Name: "n3"})                          // left gracefully
	v.Apply(Event{Kind: "update", Name: "n4", Meta: meta("n4", true)}) // about to leave
	v.Apply(Event{Kind: "leave", Name: "n4"})                          // dead, but announced
	want := "node_joined n2, node_joined n3, node_joined n4, node_failed n2, node_left n3, node_left n4"
	if got := kinds(rec); got != want {
		t.Fatalf("events %s\nwant %s", got, want)
	}
	snap := v.Snapshot()
	if len(snap) != 3 || snap["n2"].State != Dead || snap["n3"].State != Left || snap["n4"].State != Dead || snap["n2"].GossipAddr != "10.0.0.2:7946" {
		t.Fatalf("snapshot %+v", snap)
	}
	if !v.HasLeft("n3") || v.HasLeft("n2") || v.HasLeft("n9") {
		t.Fatal("HasLeft")
	}
	// A rejoin forgets the leave.
	v.Apply(Event{Kind: "join", Name: "n3", Meta: meta("n3", false)})
	if v.RecentlyLeft("n3") || v.Snapshot()["n3"].State != Alive {
		t.Fatal("a rejoined member still counts as left")
	}
}

func TestRecentlyLeftExpires(t *testing.T) {
	var rec []events.Event
	c := &clock{t: time.Unix(100, 0)}
	v := newView(&rec, c)
	v.MarkLeft("n2")
	c.t = c.t.Add(time.Minute)
	if !v.RecentlyLeft("n2") {
		t.Fatal("a leave a minute old is forgotten")
	}
	c.t = c.t.Add(time.Second)
	if v.RecentlyLeft("n2") || v.RecentlyLeft("n2") {
		t.Fatal("a leave over a minute old is remembered")
	}
}

func TestAliveSortedByID(t *testing.T) {
	var rec []events.Event
	v := newView(&rec, &clock{})
	for _, id := range []string{"n3", "n1", "n2"} {
		v.Apply(Event{Kind: "join", Name: id, Meta: meta(id, false)})
	}
	v.Apply(Event{Kind: "join", Name: "alias", Meta: meta("n9", false)}) // metadata of another name
	v.Apply(Event{Kind: "leave", Name: "n2"})
	var ids []string
	for _, m := range v.Alive() {
		ids = append(ids, m.ID)
	}
	if fmt.Sprint(ids) != "[n1 n3]" {
		t.Fatalf("alive %v, want [n1 n3]", ids)
	}
}

func TestMetaEncodeDecode(t *testing.T) {
	m := Meta{ID: "n1", Raft: "10.0.0.1:7947", API: "10.0.0.1:1985", Zone: strings.Repeat("z", 20)}
	got, ok := Decode(m.Encode(512), 8)
	if !ok || got.Zone != "zzzzzzzz" || got.API != m.API {
		t.Fatalf("decoded %+v, %v", got, ok)
	}
	short := m.Encode(60)
	if got, ok := Decode(short, 64); !ok || got.API != "" || got.ID != "n1" {
		t.Fatalf("over the limit: %s decodes to %+v, %v", short, got, ok)
	}
	// The protocol version: builds before versions advertise none (1).
	if got, _ := Decode(m.Encode(512), 8); got.ProtocolVersion() != 1 {
		t.Errorf("no protocol decodes as %d", got.ProtocolVersion())
	}
	m.Protocol = 2
	if got, _ := Decode(m.Encode(512), 8); got.ProtocolVersion() != 2 || !strings.Contains(string(m.Encode(512)), `"proto":2`) {
		t.Errorf("protocol 2 decodes as %d", got.ProtocolVersion())
	}
	if got, _ := Decode([]byte(`{"id":"n1","raft":"a:1","proto":-5}`), 8); got.ProtocolVersion() != 1 {
		t.Errorf("a negative protocol decodes as %d", got.ProtocolVersion())
	}
	for _, b := range []string{"", "{", `{"id":"n1"}`, `{"raft":"a:1"}`} {
		if _, ok := Decode([]byte(b), 8); ok {
			t.Errorf("Decode(%q) took it for a member", b)
		}
	}
}
