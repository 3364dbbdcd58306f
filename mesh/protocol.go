package mesh

// Versions of the command log during a rolling upgrade: the feature gate on
// writes, the halt of a replica that meets a command it cannot apply, the
// check of the data directory at start, and the leader's record of the
// mesh's protocol.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/srs-mesh/srs-mesh/mesh/members"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/mesh/view"
)

// ErrProtocolWaiting is a write of a command type that some member of the
// mesh cannot apply yet: it waits until every node runs a build that
// speaks the protocol that introduced it. The error is a
// *ProtocolWaitError.
var ErrProtocolWaiting = errors.New("mesh: waiting for all nodes to reach a newer protocol")

// ErrStateHalted means this node's replica halted (state.ErrHalted): it met
// a command it cannot apply, so it routes nothing and writes nothing until
// it runs a newer build.
var ErrStateHalted = state.ErrHalted

// ErrDowngrade is a node refused at start because its data directory holds
// commands (or a snapshot) of a newer protocol than this build's.
var ErrDowngrade = errors.New("mesh: the data directory was written by a newer srs-mesh; a downgrade is not supported")

// ProtocolWaitError is a write refused by the feature gate.
type ProtocolWaitError struct {
	// Type is the command type refused, Need the protocol that introduced
	// it and Lowest the lowest protocol among the members.
	Type   state.CmdType
	Need   int
	Lowest int
	// Behind lists the members below Need, as "id:version".
	Behind []string
}

func (e *ProtocolWaitError) Error() string {
	return fmt.Sprintf("mesh: %s is waiting for all nodes to reach protocol %d (lowest now %d; behind: %v)",
		e.Type, e.Need, e.Lowest, e.Behind)
}

// Unwrap makes errors.Is(err, ErrProtocolWaiting) hold.
func (e *ProtocolWaitError) Unwrap() error { return ErrProtocolWaiting }

// recentLeave is how long a member that left gracefully still counts in
// the gate: a node restarted by a rolling update leaves and comes back
// within it, and may come back on the build it ran.
const recentLeave = 2 * time.Minute

// memberProtocols returns the protocol of every member the gate counts:
// this node, every member gossip shows alive (voters, non-voters and nodes
// not yet added), every member that left gracefully within recentLeave,
// and every server of the Raft configuration, with the version it last
// advertised, or 1 when gossip never told (a member that is down may come
// back on any build it advertised last).
func (n *Node) memberProtocols() map[string]int {
	out := map[string]int{n.cfg.NodeID: n.cfg.protocol()}
	snap := n.members.Snapshot()
	now := time.Now()
	for id, m := range snap {
		counted := m.State == members.Alive || (m.State == members.Left && now.Sub(m.Since) < recentLeave)
		if counted && id != n.cfg.NodeID {
			out[id] = m.Meta.ProtocolVersion()
		}
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			id := string(s.ID)
			if _, ok := out[id]; ok {
				continue
			}
			v := 1
			if m, ok := snap[id]; ok {
				v = m.Meta.ProtocolVersion()
			}
			out[id] = v
		}
	}
	return out
}

// lowestProtocol is the lowest protocol among memberProtocols, and the
// members below below, as "id:version", sorted.
func lowestProtocol(protos map[string]int, below int) (int, []string) {
	low := state.ProtocolVersion
	var behind []string
	for id, v := range protos {
		low = min(low, v)
		if v < below {
			behind = append(behind, id+":"+strconv.Itoa(v))
		}
	}
	sort.Strings(behind)
	return low, behind
}

// gate refuses a write of type t that a member cannot apply yet (a
// *ProtocolWaitError), and any write on a halted replica. The types of
// protocol 1, which every build applies, pass without looking at the
// members.
func (n *Node) gate(t state.CmdType) error {
	if h, ok := n.fsm.Halted(); ok {
		return fmt.Errorf("%w: %s", ErrStateHalted, h.Reason)
	}
	need := state.Since(t)
	if need <= 1 {
		return nil
	}
	low, behind := lowestProtocol(n.memberProtocols(), need)
	if low >= need {
		return nil
	}
	return &ProtocolWaitError{Type: t, Need: need, Lowest: low, Behind: behind}
}

// protocolStatus is the protocol part of Status.
func (n *Node) protocolStatus() view.Protocol {
	low, behind := lowestProtocol(n.memberProtocols(), state.ProtocolVersion)
	p := view.Protocol{Node: state.ProtocolVersion, Lowest: low, Mesh: n.fsm.Protocol(), Behind: behind,
		SkippedCommands: n.fsm.Skipped(), Waiting: []string{}}
	for _, t := range state.TypesSince(low) {
		p.Waiting = append(p.Waiting, t.String())
	}
	if h, ok := n.fsm.Halted(); ok {
		p.Halted = h.Reason
	}
	return p
}

// Halted reports why this node's replica stopped applying the log, or ""
// when it applies it.
func (n *Node) Halted() string {
	if h, ok := n.fsm.Halted(); ok {
		return h.Reason
	}
	return ""
}

// onHalt says loudly, once, that the replica halted.
func (n *Node) onHalt(h state.Halt) {
	n.log.Error("REPLICATED STATE HALTED: this node met a command it cannot apply and stops applying the log; "+
		"it reports not ready and routes nothing until it runs a newer srs-mesh on the same data directory",
		"index", h.Index, "type", uint8(h.Type), "mesh_protocol", h.Protocol, "node_protocol", state.ProtocolVersion,
		"reason", h.Reason)
}

// checkLog refuses a data directory whose Raft log holds a command type
// that this build cannot apply (a required type it does not know): the
// binary is older than the one that wrote it. It reads every stored entry's
// type byte once, at start.
func checkLog(logs raft.LogStore) error {
	first, err := logs.FirstIndex()
	if err != nil {
		return fmt.Errorf("mesh: read raft log: %w", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return fmt.Errorf("mesh: read raft log: %w", err)
	}
	if last == 0 {
		return nil
	}
	var l raft.Log
	for i := max(first, 1); i <= last; i++ {
		if err := logs.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				continue
			}
			return fmt.Errorf("mesh: read raft log entry %d: %w", i, err)
		}
		if l.Type != raft.LogCommand {
			continue
		}
		if err := state.Readable(l.Data); err != nil {
			return fmt.Errorf("%w: raft log entry %d: %v", ErrDowngrade, i, err)
		}
	}
	return nil
}

// recordProtocol is the leader's duty of recording the mesh's protocol
// (state.SetProtocolCmd) once every member speaks a version above the one
// recorded. The gate keeps it waiting until then.
func (n *Node) recordProtocol(ctx context.Context) {
	low, _ := lowestProtocol(n.memberProtocols(), state.ProtocolVersion)
	if low <= n.fsm.Protocol() || n.gate(state.CmdSetProtocol) != nil {
		return
	}
	if _, err := n.applyLocal(ctx, state.SetProtocolCmd{Version: low}); err != nil {
		n.log.Warn("recording the mesh protocol", "protocol", low, "err", err)
		return
	}
	n.log.Info("every member speaks the protocol; recorded it", "protocol", low)
}
