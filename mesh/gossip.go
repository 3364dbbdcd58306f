package mesh

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/peers"
	"github.com/srs-mesh/srs-mesh/mesh/voters"
)

// nodeMeta is the memberlist metadata of a node (JSON, at most
// memberlist.MetaMaxSize bytes).
type nodeMeta struct {
	ID   string `json:"id"`
	Raft string `json:"raft"`
	API  string `json:"api,omitempty"`
	// HasState is true once the node belongs to a Raft cluster; a fresh
	// node never bootstraps a new cluster while a peer reports state.
	HasState bool `json:"state,omitempty"`
	// Zone is the node's failure domain (Config.Zone), "" when none.
	Zone string `json:"zone,omitempty"`
	// Leaving is set by a node about to leave gracefully, so that peers
	// tell its leave from a failure (memberlist's events do not).
	Leaving bool `json:"leaving,omitempty"`
}

func decodeMeta(b []byte) (nodeMeta, bool) {
	var m nodeMeta
	if len(b) == 0 || json.Unmarshal(b, &m) != nil || m.ID == "" || m.Raft == "" {
		return nodeMeta{}, false
	}
	if len(m.Zone) > MaxZoneLen {
		m.Zone = m.Zone[:MaxZoneLen]
	}
	return m, true
}

// Gossip states of a peer as shown in MemberStatus.GossipState.
const (
	gossipAlive = "alive"
	gossipDead  = "dead"
	gossipLeft  = "left"
)

// peer is this node's view of another node, maintained from gossip events.
type peer struct {
	meta       nodeMeta
	gossipAddr string
	state      string
	since      time.Time
}

// memberEvent is one gossip callback, copied out of memberlist's locks.
type memberEvent struct {
	kind       string // join, leave, update
	name       string
	gossipAddr string
	meta       []byte
}

// gossipDelegate implements memberlist.Delegate (metadata only) and
// memberlist.EventDelegate (events are queued, never handled inline).
type gossipDelegate struct{ n *Node }

func (d gossipDelegate) NodeMeta(limit int) []byte {
	m := nodeMeta{ID: d.n.cfg.NodeID, Raft: d.n.raftAdvertise, API: d.n.cfg.APIAddr, HasState: d.n.hasState.Load(), Zone: d.n.cfg.Zone,
		Leaving: d.n.leavingMesh.Load()}
	b, _ := json.Marshal(m)
	if len(b) > limit {
		m.API = ""
		b, _ = json.Marshal(m)
	}
	return b
}
func (gossipDelegate) NotifyMsg([]byte)                           {}
func (gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (gossipDelegate) LocalState(join bool) []byte                { return nil }
func (gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

func (d gossipDelegate) NotifyJoin(node *memberlist.Node)   { d.enqueue("join", node) }
func (d gossipDelegate) NotifyLeave(node *memberlist.Node)  { d.enqueue("leave", node) }
func (d gossipDelegate) NotifyUpdate(node *memberlist.Node) { d.enqueue("update", node) }

// enqueue hands the event to the gossip loop. It blocks while the queue is
// full (back-pressure on memberlist) but never after the node is closed.
func (d gossipDelegate) enqueue(kind string, node *memberlist.Node) {
	ev := memberEvent{kind: kind, name: node.Name, gossipAddr: node.Address(), meta: append([]byte(nil), node.Meta...)}
	select {
	case d.n.events <- ev:
	case <-d.n.ctx.Done():
	}
}

// gossipLoop owns the peers map's updates: it consumes gossip events and
// wakes the bootstrap and leader loops.
func (n *Node) gossipLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case ev := <-n.events:
			n.handleMemberEvent(ev)
			kick(n.bootstrapKick)
			kick(n.reconcileKick)
		}
	}
}

func (n *Node) handleMemberEvent(ev memberEvent) {
	meta, ok := decodeMeta(ev.meta)
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	p := n.peers[ev.name]
	if p == nil {
		if !ok {
			return // not a mesh node
		}
		p = &peer{}
		n.peers[ev.name] = p
	}
	if ok {
		p.meta = meta
	}
	p.gossipAddr = ev.gossipAddr
	// memberlist does not tell a graceful leave from a failure in its
	// events; a node that asked the leader to remove it is "left".
	state := gossipAlive
	if ev.kind == "leave" {
		state = gossipDead
		if _, ok := n.left[ev.name]; ok {
			state = gossipLeft
		}
	} else if ev.kind == "join" {
		delete(n.left, ev.name)
	}
	if state != p.state {
		p.state, p.since = state, time.Now()
		n.log.Info("gossip member", "member", ev.name, "state", state, "addr", ev.gossipAddr)
		kind := events.NodeJoined
		switch {
		case state == gossipAlive:
		case state == gossipLeft || p.meta.Leaving:
			kind = events.NodeLeft
		default:
			kind = events.NodeFailed
		}
		n.tel.Record(events.Event{Kind: kind, Member: ev.name})
	}
}

// kick wakes a loop without blocking (channels have a buffer of one).
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// markLeft records that a node left gracefully.
func (n *Node) markLeft(id string) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	n.left[id] = time.Now()
	if p := n.peers[id]; p != nil && p.state != gossipAlive {
		p.state = gossipLeft
	}
}

// recentlyLeft reports whether id left gracefully in the last minute and has
// not rejoined since.
func (n *Node) recentlyLeft(id string) bool {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	t, ok := n.left[id]
	if ok && time.Since(t) > time.Minute {
		delete(n.left, id)
		return false
	}
	return ok
}

// peerSnapshot copies the peers map.
func (n *Node) peerSnapshot() map[string]peer {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	out := make(map[string]peer, len(n.peers))
	for id, p := range n.peers {
		out[id] = *p
	}
	return out
}

// askable lists the other members for a cluster-wide document (package
// peers): those gossip shows alive, by their cluster address, and the others
// with why they are not asked. Members that left gracefully are not listed.
func (n *Node) askable() []peers.Peer {
	var out []peers.Peer
	for id, p := range n.peerSnapshot() {
		switch {
		case id == n.cfg.NodeID, p.state == gossipLeft:
		case p.state != gossipAlive:
			out = append(out, peers.Peer{ID: id, Skip: "gossip state " + p.state})
		default:
			out = append(out, peers.Peer{ID: id, Addr: p.meta.Raft})
		}
	}
	return out
}

// aliveMembers returns the metadata of the gossip members that are alive
// (this node included), sorted by id. It reads the event-fed peers map, never
// memberlist's own node structs (which memberlist mutates without locking).
func (n *Node) aliveMembers() []nodeMeta {
	var out []nodeMeta
	n.peersMu.Lock()
	for id, p := range n.peers {
		if p.state == gossipAlive && p.meta.ID == id {
			out = append(out, p.meta)
		}
	}
	n.peersMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// aliveVoterMembers is aliveMembers as the voter set sees them.
func (n *Node) aliveVoterMembers() []voters.Member {
	alive := n.aliveMembers()
	out := make([]voters.Member, len(alive))
	for i, m := range alive {
		out[i] = voters.Member{ID: m.ID, Addr: m.Raft, Zone: m.Zone}
	}
	return out
}

// leftGracefully reports whether gossip shows member id as having left
// gracefully.
func (n *Node) leftGracefully(id string) bool {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	p := n.peers[id]
	return p != nil && p.state == gossipLeft
}

// joinLoop joins the configured peers, retrying (DNS names included) until
// this node sees at least one other member.
func (n *Node) joinLoop() {
	defer n.wg.Done()
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		_, err := n.ml.Join(n.cfg.Join)
		if n.ml.NumMembers() > 1 {
			n.log.Info("joined mesh", "peers", strings.Join(n.cfg.Join, ","), "members", n.ml.NumMembers())
			n.joined.Store(true)
			kick(n.bootstrapKick)
			return
		}
		if attempt == 1 || attempt%10 == 0 {
			n.log.Warn("join failed, retrying", "peers", strings.Join(n.cfg.Join, ","), "attempt", attempt, "err", err)
		}
		if !n.sleep(backoff) {
			return
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}
