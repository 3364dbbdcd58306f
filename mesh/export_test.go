package mesh

import (
	"context"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/state"
)

// ApplyCommand writes c as the node's own code does (through the gate, to
// the leader), for the external tests of this package.
func (n *Node) ApplyCommand(ctx context.Context, c state.Command) (state.Result, error) {
	return n.apply(ctx, c)
}

// ApplyRaw appends data to the log on the leader as it is, past every
// check: what a newer build's leader may write.
func (n *Node) ApplyRaw(data []byte) error {
	return n.raft.Apply(data, 5*time.Second).Error()
}
