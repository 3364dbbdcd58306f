package mesh

import (
	"errors"

	"github.com/srs-mesh/srs-mesh/mesh/state"
)

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
	// ErrBadCommand means a malformed write: a bad stream key, an origin
	// without id, an invalid RTC session. It is state.ErrBadCommand.
	ErrBadCommand = state.ErrBadCommand
	// ErrUnknownOrigin means a write named an origin the mesh does not
	// know. It is state.ErrUnknownOrigin.
	ErrUnknownOrigin = state.ErrUnknownOrigin
	// ErrRegistrationRefused is an origin registration that the mesh's
	// rules refuse (a static origin, an unauthenticated move, the cap, an
	// address it must not dial).
	ErrRegistrationRefused = state.ErrRegistrationRefused
	// ErrRTCTableFull means a new WebRTC session was refused because the
	// replicated session table is full of sessions relays carry (see
	// Config.MaxRTCSessions). It is state.ErrRTCTableFull.
	ErrRTCTableFull = state.ErrRTCTableFull
	// ErrOriginAnswers is a move refused by the leader because the origin
	// to leave is healthy and accepts connections: only the failure of an
	// origin moves a stream.
	ErrOriginAnswers = errors.New("mesh: origin still answers; stream not moved")
)

// codeNotLeader is the failure code of a forwarded state.Result that stands
// for ErrNotLeader. No node writes it today (a follower learns it reached a
// former leader from HTTP 421), but a result carrying it is retried.
const codeNotLeader = "not_leader"

// resultErr is res.Err(), with codeNotLeader mapped to ErrNotLeader.
func resultErr(res state.Result) error {
	if res.Code == codeNotLeader {
		return ErrNotLeader
	}
	return res.Err()
}
