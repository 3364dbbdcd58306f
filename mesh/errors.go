package mesh

import "errors"

// Errors returned by Node methods. Callers compare with errors.Is.
var (
	// ErrNoLeader means no Raft leader was reachable within the bound of the
	// call (no quorum, an election in progress, or the leader's API is down).
	ErrNoLeader = errors.New("mesh: no leader")
	// ErrNotLeader is returned by the internal forwarding endpoint of a node
	// that is not (or no longer) the leader; the forwarder retries.
	ErrNotLeader = errors.New("mesh: not the leader")
	// ErrClosed means the node was closed.
	ErrClosed = errors.New("mesh: node closed")
	// ErrUnauthorized means a write endpoint was called without the token.
	ErrUnauthorized = errors.New("mesh: missing or wrong token")
)
