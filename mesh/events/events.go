// Package events is a node's timeline of what happened to the mesh: origins
// going up and down, streams moving to another origin, leader changes, nodes
// joining and leaving, origins drained and undrained. Each node keeps its
// own bounded Log of the events it saw; GET /mesh/v1/events merges the logs
// of every node that answers (Merge).
//
// Who records what (so that one fact is recorded once, or merged):
//
//   - origin_up, origin_down: the leader, which probes the origins.
//   - leader: the node that became leader.
//   - node_joined, node_left, node_failed: every node that sees the gossip
//     change; Merge folds the copies of one fact from several nodes into one
//     event (see DedupWindow).
//   - origin_drained, origin_undrained: the node whose API took the request.
//   - origin_added: the leader for a static origin, else the node that took
//     the origin's first registration.
//   - origin_removed: the leader, when an origin's heartbeats stopped.
//   - stream_moved: the node that moved a stream to another origin
//     (Node.Reroute after its origin leg failed, or a route that repaired an
//     assignment whose origin is unhealthy); other code that moves streams
//     records Moved(...) with the node's Log.
//
// A package that emits events takes a Recorder (or, when it may not import
// this package, declares an interface with Emit's signature): it never needs
// the mesh itself. The Log holds no goroutine and is safe for concurrent use.
package events

import (
	"cmp"
	"slices"
	"sync"
	"time"
	"unicode/utf8"
)

// Kind names what happened. Kinds are stable strings of the JSON documents;
// new ones may be added.
type Kind = string

// The kinds of event the mesh records.
const (
	OriginUp        Kind = "origin_up"        // an origin became healthy (Origin)
	OriginDown      Kind = "origin_down"      // an origin became unhealthy (Origin, Detail: why)
	OriginAdded     Kind = "origin_added"     // an origin is known for the first time (Origin)
	OriginRemoved   Kind = "origin_removed"   // an origin was removed (Origin, Detail: why)
	OriginDrained   Kind = "origin_drained"   // an operator drained an origin (Origin)
	OriginUndrained Kind = "origin_undrained" // an operator undrained an origin (Origin)
	StreamMoved     Kind = "stream_moved"     // a stream moved to another origin (Stream, Origin: the new one, Detail: "from <old>", why; MoveKind)
	// ReplicaPromoted: a stream's origin failed and its warm replica took
	// over (Stream, Origin: the replica, Detail: "from <old>").
	ReplicaPromoted Kind = "replica_promoted"
	// PlayersReattached: a node's players of a stream rode through an
	// origin failure (Stream, Origin: the new one, Detail: how many, from
	// where, after how long); PlayersLost: no origin took them in time.
	PlayersReattached Kind = "players_reattached"
	PlayersLost       Kind = "players_lost"
	// PublisherReturned: a stream's publisher stopped and the stream was
	// published again within the publisher grace; the node's players rode
	// through (Stream, Detail: how many, after how long). PublisherLost:
	// it did not come back within the grace, and the players ended; or a
	// publisher that sent no media for --publish-stall was ended.
	PublisherReturned Kind = "publisher_returned"
	PublisherLost     Kind = "publisher_lost"
	// PublisherDropped: a publisher's connection ended without it
	// unpublishing (Stream, Origin, Detail: who, after how long, why),
	// recorded by the node it published through.
	PublisherDropped Kind = "publisher_dropped"
	// PublisherSwitched: a standby publisher (a backup encoder) took over
	// a stream whose publisher left (Stream, Origin, Detail: who, after
	// how long).
	PublisherSwitched Kind = "publisher_switched"
	Leader            Kind = "leader"      // Member became the Raft leader (Detail: "term N")
	NodeJoined        Kind = "node_joined" // Member joined the gossip mesh
	NodeLeft          Kind = "node_left"   // Member left gracefully
	NodeFailed        Kind = "node_failed" // Member stopped answering gossip
)

// Event is one thing that happened, as one node saw it.
type Event struct {
	// TimeUnixMs is when the node recorded it (unix ms).
	TimeUnixMs int64 `json:"time_unix_ms"`
	// Node is the id of the node that recorded it.
	Node string `json:"node"`
	Kind Kind   `json:"kind"`
	// Origin, Stream and Member name what the event is about; each is set
	// when the kind says so (see the constants).
	Origin string `json:"origin,omitempty"`
	Stream string `json:"stream,omitempty"`
	Member string `json:"member,omitempty"`
	// MoveKind says how a stream_moved stream moved: "planned",
	// "failover" or "replica_promoted" (state.Move*).
	MoveKind string `json:"move_kind,omitempty"`
	// Detail is a short human-readable addition (a reason, a term).
	Detail string `json:"detail,omitempty"`
	// Seq numbers the events of one node's Log from 1, so that a reader can
	// tell which it already has.
	Seq uint64 `json:"seq"`
}

// Recorder is what an emitter of events needs; *Log is one. Record fills in
// TimeUnixMs (when zero) and Node, and never blocks on anything but a
// mutex.
type Recorder interface {
	Record(e Event)
}

// Emitter is Recorder for packages that may not import this one (the
// protocol packages): they declare an interface with the same method, and
// a *Log satisfies it. kind is one of the Kind constants; stream is the
// stream key the event is about ("" when none).
type Emitter interface {
	Emit(kind, stream, detail string)
}

var (
	_ Recorder = (*Log)(nil)
	_ Emitter  = (*Log)(nil)
)

// DefaultCapacity is how many events a Log keeps by default.
const DefaultCapacity = 500

// maxField bounds each string of a recorded event, in bytes.
const maxField = 256

// Log is one node's bounded event log: a ring of the last Capacity events.
// Older events are dropped as new ones arrive.
type Log struct {
	node string
	now  func() time.Time

	mu   sync.Mutex
	ring []Event // len == capacity once full; next is where the next goes
	next int
	full bool
	seq  uint64
}

// NewLog returns an empty log of node's events keeping the last capacity
// (DefaultCapacity when capacity <= 0). now is the clock (time.Now when nil).
func NewLog(node string, capacity int, now func() time.Time) *Log {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	if now == nil {
		now = time.Now
	}
	return &Log{node: node, now: now, ring: make([]Event, capacity)}
}

// Record appends e, stamped with the log's node, the next sequence number
// and, when e.TimeUnixMs is zero, the current time. Strings are cut to 256
// bytes. When the log is full the oldest event is dropped.
func (l *Log) Record(e Event) {
	if e.TimeUnixMs == 0 {
		e.TimeUnixMs = l.now().UnixMilli()
	}
	e.Node = l.node
	e.Kind, e.Origin, e.Stream = cut(e.Kind), cut(e.Origin), cut(e.Stream)
	e.Member, e.Detail = cut(e.Member), cut(e.Detail)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e.Seq = l.seq
	l.ring[l.next] = e
	l.next++
	if l.next == len(l.ring) {
		l.next, l.full = 0, true
	}
}

// Emit records an event of kind about stream (see Emitter).
func (l *Log) Emit(kind, stream, detail string) {
	l.Record(Event{Kind: kind, Stream: stream, Detail: detail})
}

// Recent returns up to n of the latest events, oldest first (all of them
// when n <= 0).
func (l *Log) Recent(n int) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	if l.full {
		out = make([]Event, 0, len(l.ring))
		out = append(out, l.ring[l.next:]...)
	} else {
		out = make([]Event, 0, l.next)
	}
	out = append(out, l.ring[:l.next]...)
	if n > 0 && len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// Capacity is how many events the log keeps.
func (l *Log) Capacity() int { return len(l.ring) }

func cut(s string) string {
	if len(s) <= maxField {
		return s
	}
	s = s[:maxField]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// Moved is the stream_moved event of stream (its key), moved from origin
// from to origin to because of why (e.g. "origin o1 down"; may be empty).
// Failover records it with the node's Log: node.Events().Record(Moved(...)).
func Moved(stream, from, to, why string) Event {
	detail := "from " + from
	if why != "" {
		detail += ": " + why
	}
	return Event{Kind: StreamMoved, Stream: stream, Origin: to, Detail: detail}
}

// DedupWindow is how close in time the copies of one fact recorded by
// several nodes must be for Merge to fold them into one event.
const DedupWindow = 10 * time.Second

// Merge joins the logs of several nodes into one timeline, oldest first,
// keeping the latest limit events (all when limit <= 0). Events recorded by
// different nodes about the same fact (same kind, origin, stream, member and
// detail, within DedupWindow of each other) are one event: the earliest
// copy is kept. Events of one node are never folded together.
func Merge(logs [][]Event, limit int) []Event {
	var all []Event
	for _, l := range logs {
		all = append(all, l...)
	}
	slices.SortStableFunc(all, func(a, b Event) int {
		return cmp.Or(cmp.Compare(a.TimeUnixMs, b.TimeUnixMs), cmp.Compare(a.Node, b.Node), cmp.Compare(a.Seq, b.Seq))
	})
	type fact struct{ kind, origin, stream, member, detail string }
	type seen struct {
		at   int64
		node string
	}
	last := map[fact]seen{}
	out := make([]Event, 0, len(all))
	window := DedupWindow.Milliseconds()
	for _, e := range all {
		f := fact{e.Kind, e.Origin, e.Stream, e.Member, e.Detail}
		if s, ok := last[f]; ok && s.node != e.Node && e.TimeUnixMs-s.at <= window {
			continue
		}
		last[f] = seen{e.TimeUnixMs, e.Node}
		out = append(out, e)
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}
