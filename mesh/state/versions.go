package state

import (
	"errors"
	"fmt"
	"sort"
)

// ProtocolVersion is the protocol this build speaks: it applies every
// command type introduced up to this version. A node advertises it in gossip
// (package members), and the leader writes a type only once every member
// advertises at least the version that introduced it (Since).
//
// Version 1 is every build before versions existed (types 1-12 and 30);
// version 2 added the versioned command rules themselves and
// SetProtocolCmd.
const ProtocolVersion = 2

// CmdOptional is the bit of a type byte that marks an optional command
// type: values 0x80-0xff are optional, values 0x01-0x7f required. A node
// that meets an unknown optional type skips it (and counts it); one that
// meets an unknown required type halts (see FSM.Halted). The bit is what lets
// a node that has never heard of a type decide, so it is part of the type's
// value and never changes.
const CmdOptional CmdType = 0x80

// Optional reports whether t is an optional type: one an older node may skip
// without changing what it routes. It is read from the value alone, so it
// answers for types this build does not know.
func (t CmdType) Optional() bool { return t&CmdOptional != 0 }

// cmdVersion is one command type's entry in the version table.
type cmdVersion struct {
	// since is the protocol version that introduced the type.
	since int
	// optional must equal the type value's CmdOptional bit; a test checks
	// it, so that the table states what the encoding already says.
	optional bool
}

// cmdVersions is the version table: one entry per command type this build
// knows. Adding a type is one entry here (plus its body in Decode and its
// applyX in the FSM); a test checks that the table and Decode agree.
var cmdVersions = map[CmdType]cmdVersion{
	CmdRegisterOrigin:    {since: 1},
	CmdRemoveOrigin:      {since: 1},
	CmdSetHealth:         {since: 1},
	CmdSetDraining:       {since: 1},
	CmdAssign:            {since: 1},
	CmdTouch:             {since: 1},
	CmdDeleteAssignments: {since: 1},
	CmdPutRTCSession:     {since: 1},
	CmdDeleteRTCSession:  {since: 1},
	CmdExpireRTCSessions: {since: 1},
	CmdSetTokenKey:       {since: 1},
	CmdTouchRTCSessions:  {since: 1},
	CmdMove:              {since: 1},
	CmdPlanMove:          {since: 2},
	CmdCompleteMove:      {since: 2},
	CmdCancelMove:        {since: 2},
	CmdSetReplicas:       {since: 2},
	CmdSetProtocol:       {since: 2},
}

// Known reports whether this build decodes and applies commands of type t.
func Known(t CmdType) bool {
	_, ok := cmdVersions[t]
	return ok
}

// Since is the protocol version that introduced t: the version every member
// must advertise before the leader writes it. It is 0 for a type this build
// does not know.
func Since(t CmdType) int { return cmdVersions[t].since }

// TypesSince lists the known types introduced after protocol version v,
// ordered by value: what a mesh whose lowest member speaks v cannot write
// yet.
func TypesSince(v int) []CmdType {
	var out []CmdType
	for t, e := range cmdVersions {
		if e.since > v {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// ErrUnknownCommand is a command of a type this build does not know. It
// wraps ErrBadCommand, so that callers that treat every undecodable
// command alike keep doing so. UnknownCommandError carries the type.
var ErrUnknownCommand = fmt.Errorf("%w: unknown command type", ErrBadCommand)

// ErrHalted is a command refused because this replica halted: it met a
// required command type it does not know (or a mesh protocol above its
// own) and applies nothing more, so that it never serves a state that
// differs from its peers'. Only a newer build, restarted on the same data,
// resumes.
var ErrHalted = errors.New("mesh: replicated state halted: a command needs a newer srs-mesh")

// UnknownCommandError is what Decode and Readable return for a type this
// build does not know.
type UnknownCommandError struct {
	Type CmdType
}

func (e *UnknownCommandError) Error() string {
	kind := "required"
	if e.Type.Optional() {
		kind = "optional"
	}
	return fmt.Sprintf("%v %d (%s; this build speaks protocol %d)", ErrUnknownCommand, uint8(e.Type), kind, ProtocolVersion)
}

// Unwrap makes errors.Is(err, ErrUnknownCommand) and ErrBadCommand hold.
func (e *UnknownCommandError) Unwrap() error { return ErrUnknownCommand }

// Readable reports whether this build can apply the Raft log entry data
// without halting: nil for a known type or an unknown optional one (which is
// skipped), an *UnknownCommandError for an unknown required type. It looks
// at the type byte only. A node checks its log with it at start, so that a
// downgraded binary refuses to start rather than halt later.
func Readable(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	t := CmdType(data[0])
	if Known(t) || t.Optional() {
		return nil
	}
	return &UnknownCommandError{Type: t}
}

// SetProtocolCmd records that every member of the mesh speaks at least
// protocol Version: the leader writes it once they all advertise it, and
// FSM.Protocol never goes down. A replica whose own ProtocolVersion is lower
// halts on it: the mesh may have written state it cannot read (this is what
// refuses a downgrade once an upgrade has finished). A Version below 1 is
// refused with ErrBadCommand.
type SetProtocolCmd struct {
	Version int `json:"version"`
}

// Type implements Command.
func (SetProtocolCmd) Type() CmdType { return CmdSetProtocol }

// Halt says why and where a replica stopped applying the log.
type Halt struct {
	// Index is the Raft log index of the entry it could not apply (0 for
	// a snapshot).
	Index uint64 `json:"index"`
	// Type is the command type it met (0 for a snapshot or a protocol
	// record).
	Type CmdType `json:"type,omitempty"`
	// Protocol is the mesh protocol the entry or snapshot needs, when
	// known.
	Protocol int `json:"protocol,omitempty"`
	// Reason is for operators: what was met and what to do.
	Reason string `json:"reason"`
}
