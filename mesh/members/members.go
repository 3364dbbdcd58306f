// Package members owns a node's view of the mesh's members, kept from
// gossip's events: each member's metadata (what a node gossips about itself),
// gossip address and state (alive, dead, or left gracefully), and the
// graceful leaves the leader records.
//
// The node's gossip loop feeds it (Apply) on its own goroutine; readers take
// copies. It starts no goroutine and knows nothing of memberlist's types,
// Raft or the mesh root: the node translates gossip's callbacks into Events.
package members

import (
	"encoding/json"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/events"
)

// Meta is the gossip metadata of a node (JSON, at most memberlist's
// MetaMaxSize bytes).
type Meta struct {
	ID   string `json:"id"`
	Raft string `json:"raft"`
	API  string `json:"api,omitempty"`
	// HasState is true once the node belongs to a Raft cluster; a fresh
	// node never bootstraps a new cluster while a peer reports state.
	HasState bool `json:"state,omitempty"`
	// Zone is the node's failure domain, "" when none.
	Zone string `json:"zone,omitempty"`
	// Leaving is set by a node about to leave gracefully, so that peers
	// tell its leave from a failure (memberlist's events do not).
	Leaving bool `json:"leaving,omitempty"`
	// Protocol is the protocol version of the command log the node applies
	// (state.ProtocolVersion); absent (0) from builds before versions
	// existed, which speak version 1 (see ProtocolVersion).
	Protocol int `json:"proto,omitempty"`
}

// ProtocolVersion is the protocol the node advertises: Protocol, or 1 for a
// node that advertises none.
func (m Meta) ProtocolVersion() int { return max(m.Protocol, 1) }

// Encode returns m as JSON of at most limit bytes when it can: a Meta too
// long is sent without its API address.
func (m Meta) Encode(limit int) []byte {
	b, _ := json.Marshal(m)
	if len(b) > limit {
		m.API = ""
		b, _ = json.Marshal(m)
	}
	return b
}

// Decode parses gossip metadata; it reports false for what is not a mesh
// node's. A zone longer than maxZone bytes is cut.
func Decode(b []byte, maxZone int) (Meta, bool) {
	var m Meta
	if len(b) == 0 || json.Unmarshal(b, &m) != nil || m.ID == "" || m.Raft == "" {
		return Meta{}, false
	}
	if len(m.Zone) > maxZone {
		m.Zone = m.Zone[:maxZone]
	}
	return m, true
}

// Gossip states of a member, as shown in the status document's
// gossip_state.
const (
	Alive = "alive"
	Dead  = "dead"
	Left  = "left"
)

// Member is this node's view of another node.
type Member struct {
	Meta       Meta
	GossipAddr string
	State      string
	Since      time.Time
}

// Event is one gossip callback, copied out of memberlist's locks.
type Event struct {
	Kind       string // join, leave, update
	Name       string
	GossipAddr string
	Meta       []byte
}

// Config is what a View reads; Record is required.
type Config struct {
	// Record adds an event to the node's event log (joins, leaves,
	// failures).
	Record func(events.Event)
	// MaxZoneLen bounds the zones Decode keeps.
	MaxZoneLen int
	// Log is the node's logger (nil: slog.Default()).
	Log *slog.Logger
	// Now is the clock of states and leaves (nil: time.Now).
	Now func() time.Time
}

// View is the members as gossip shows them. Its methods are safe for
// concurrent use. Its tables hold one entry per node gossip reported
// (memberlist bounds those), and leaves are forgotten a minute after they
// are recorded or when the node rejoins.
type View struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	members map[string]*Member
	// left holds, on the leader, nodes removed on a graceful leave and
	// when; they are not re-added until they rejoin gossip.
	left map[string]time.Time
}

// New returns an empty View.
func New(cfg Config) *View {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &View{cfg: cfg, log: cfg.Log, members: map[string]*Member{}, left: map[string]time.Time{}}
}

// Apply updates the view with one gossip event and records a change of
// state in the event log.
func (v *View) Apply(ev Event) {
	meta, ok := Decode(ev.Meta, v.cfg.MaxZoneLen)
	v.mu.Lock()
	defer v.mu.Unlock()
	p := v.members[ev.Name]
	if p == nil {
		if !ok {
			return // not a mesh node
		}
		p = &Member{}
		v.members[ev.Name] = p
	}
	if ok {
		p.Meta = meta
	}
	p.GossipAddr = ev.GossipAddr
	// memberlist does not tell a graceful leave from a failure in its
	// events; a node that asked the leader to remove it is "left".
	state := Alive
	if ev.Kind == "leave" {
		state = Dead
		if _, ok := v.left[ev.Name]; ok {
			state = Left
		}
	} else if ev.Kind == "join" {
		delete(v.left, ev.Name)
	}
	if state != p.State {
		p.State, p.Since = state, v.cfg.Now()
		v.log.Info("gossip member", "member", ev.Name, "state", state, "addr", ev.GossipAddr)
		kind := events.NodeJoined
		switch {
		case state == Alive:
		case state == Left || p.Meta.Leaving:
			kind = events.NodeLeft
		default:
			kind = events.NodeFailed
		}
		v.cfg.Record(events.Event{Kind: kind, Member: ev.Name})
	}
}

// MarkLeft records that a node left gracefully.
func (v *View) MarkLeft(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.left[id] = v.cfg.Now()
	if p := v.members[id]; p != nil && p.State != Alive {
		p.State = Left
	}
}

// RecentlyLeft reports whether id left gracefully in the last minute and has
// not rejoined since.
func (v *View) RecentlyLeft(id string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := v.left[id]
	if ok && v.cfg.Now().Sub(t) > time.Minute {
		delete(v.left, id)
		return false
	}
	return ok
}

// HasLeft reports whether gossip shows member id as having left
// gracefully.
func (v *View) HasLeft(id string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	p := v.members[id]
	return p != nil && p.State == Left
}

// Snapshot copies the view, by node id.
func (v *View) Snapshot() map[string]Member {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]Member, len(v.members))
	for id, p := range v.members {
		out[id] = *p
	}
	return out
}

// Alive returns the metadata of the members that are alive (this node
// included once gossip reported it), sorted by id.
func (v *View) Alive() []Meta {
	var out []Meta
	v.mu.Lock()
	for id, p := range v.members {
		if p.State == Alive && p.Meta.ID == id {
			out = append(out, p.Meta)
		}
	}
	v.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
