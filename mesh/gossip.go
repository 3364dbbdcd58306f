package mesh

import (
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/srs-mesh/srs-mesh/mesh/members"
	"github.com/srs-mesh/srs-mesh/mesh/peers"
	"github.com/srs-mesh/srs-mesh/mesh/voters"
)

// gossipDelegate implements memberlist.Delegate (metadata only) and
// memberlist.EventDelegate (events are queued, never handled inline).
type gossipDelegate struct{ n *Node }

func (d gossipDelegate) NodeMeta(limit int) []byte {
	var api string
	if d.n.cfg.APIAddr.IsValid() {
		api = d.n.cfg.APIAddr.String()
	}
	m := members.Meta{ID: d.n.cfg.NodeID, Raft: d.n.raftAdvertise, API: api, HasState: d.n.hasState.Load(), Zone: d.n.cfg.Zone,
		Leaving: d.n.leavingMesh.Load(), Protocol: d.n.cfg.protocol()}
	return m.Encode(limit)
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
	ev := members.Event{Kind: kind, Name: node.Name, GossipAddr: node.Address(), Meta: append([]byte(nil), node.Meta...)}
	select {
	case d.n.events <- ev:
	case <-d.n.ctx.Done():
	}
}

// gossipLoop feeds the members view (package members) with gossip events
// and wakes the bootstrap and leader loops.
func (n *Node) gossipLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case ev := <-n.events:
			n.members.Apply(ev)
			kick(n.bootstrapKick)
			kick(n.reconcileKick)
		}
	}
}

// kick wakes a loop without blocking (channels have a buffer of one).
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// askable lists the other members for a cluster-wide document (package
// peers): those gossip shows alive, by their cluster address, and the others
// with why they are not asked. Members that left gracefully are not listed.
func (n *Node) askable() []peers.Peer {
	var out []peers.Peer
	for id, p := range n.members.Snapshot() {
		switch {
		case id == n.cfg.NodeID, p.State == members.Left:
		case p.State != members.Alive:
			out = append(out, peers.Peer{ID: id, Skip: "gossip state " + p.State})
		default:
			out = append(out, peers.Peer{ID: id, Addr: p.Meta.Raft})
		}
	}
	return out
}

// aliveVoterMembers is the alive members as the voter set sees them.
func (n *Node) aliveVoterMembers() []voters.Member {
	alive := n.members.Alive()
	out := make([]voters.Member, len(alive))
	for i, m := range alive {
		out[i] = voters.Member{ID: m.ID, Addr: m.Raft, Zone: m.Zone}
	}
	return out
}

// oneLine renders err on one line: memberlist's joined errors ("2 errors
// occurred:\n\t* ...") become "2 errors occurred: ...; ...".
func oneLine(err error) string {
	s := strings.TrimSpace(err.Error())
	s = strings.ReplaceAll(s, ":\n\t* ", ": ")
	s = strings.ReplaceAll(s, "\n\t* ", "; ")
	return strings.Join(strings.Fields(s), " ")
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
		// Peers that are not up yet are how a mesh starts: say so at
		// first, and warn when it lasts (attempt 10 is about 30 s in).
		if attempt == 1 || attempt%10 == 0 {
			level, msg := slog.LevelInfo, "no other member reached yet, retrying"
			if attempt > 1 {
				level, msg = slog.LevelWarn, "still no other member reached, retrying"
			}
			args := []any{"peers", strings.Join(n.cfg.Join, ","), "attempt", attempt}
			if err != nil {
				args = append(args, "err", oneLine(err))
			} else {
				args = append(args, "answered", "only this node")
			}
			n.log.Log(n.ctx, level, msg, args...)
		}
		if !n.sleep(backoff) {
			return
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}
