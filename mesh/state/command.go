package state

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/srs-mesh/srs-mesh/stream"
)

// CmdType is the first byte of an encoded command and names its body.
//
// A command is one Raft log entry: a type byte followed by a JSON body (one of
// the *Cmd types). Every timestamp a command needs travels inside it, in unix
// milliseconds, so that applying the log is deterministic on every replica.
// The encoding is stored in the Raft log: a CmdType value never changes
// meaning and the bodies' JSON field names never change, so that entries
// written by older nodes still decode.
//
// Versions (versions.go). Every type has one entry in the version table:
// the protocol version that introduced it, and whether it is optional. The
// value says which, so that a node that does not know a type can still
// decide what to do with it:
//   - 0x01-0x7f are required types: they change what nodes route. A node
//     that meets an unknown one halts (FSM.Halted): it applies nothing more,
//     reports not ready and routes nothing, rather than diverge from its
//     peers.
//   - 0x80-0xff (the CmdOptional bit set) are optional types: an older node
//     may skip them without changing what it routes. A node that meets an
//     unknown one skips it and counts it (FSM.Skipped).
//
// The leader writes a type only once every member advertises (in gossip) a
// protocol version at least the one that introduced it, so that during a
// rolling upgrade no replica meets a type it cannot apply. A new type takes
// a new value on the side of the rule it belongs to and the current
// ProtocolVersion (raised when a release adds types).
type CmdType uint8

// The command types. Values are written to the Raft log; new types take new
// values.
const (
	CmdRegisterOrigin    CmdType = 1
	CmdRemoveOrigin      CmdType = 2
	CmdSetHealth         CmdType = 3
	CmdSetDraining       CmdType = 4
	CmdAssign            CmdType = 5
	CmdTouch             CmdType = 6
	CmdDeleteAssignments CmdType = 7
	CmdPutRTCSession     CmdType = 8
	CmdDeleteRTCSession  CmdType = 9
	CmdExpireRTCSessions CmdType = 10
	CmdSetTokenKey       CmdType = 11
	CmdTouchRTCSessions  CmdType = 12
	// Types from 30 on.
	CmdMove CmdType = 30
	// Protocol 2.
	CmdPlanMove     CmdType = 31
	CmdCompleteMove CmdType = 32
	CmdCancelMove   CmdType = 33
	CmdSetReplicas  CmdType = 34
	CmdSetProtocol  CmdType = 40
)

// Forwardable reports whether followers forward commands of type t to the
// leader on behalf of their clients and origins. The others (health, GC,
// session expiry, removals, the token key) are written by the leader itself,
// and a leader refuses them from the network.
func Forwardable(t CmdType) bool {
	switch t {
	case CmdRegisterOrigin, CmdSetDraining, CmdAssign, CmdTouch, CmdPutRTCSession, CmdDeleteRTCSession, CmdTouchRTCSessions, CmdMove,
		CmdCompleteMove:
		return true
	}
	return false
}

// String is the command's name for logs, "assign" or "cmd(99)".
func (t CmdType) String() string {
	switch t {
	case CmdRegisterOrigin:
		return "register_origin"
	case CmdRemoveOrigin:
		return "remove_origin"
	case CmdSetHealth:
		return "set_health"
	case CmdSetDraining:
		return "set_draining"
	case CmdAssign:
		return "assign"
	case CmdTouch:
		return "touch"
	case CmdDeleteAssignments:
		return "delete_assignments"
	case CmdPutRTCSession:
		return "put_rtc_session"
	case CmdDeleteRTCSession:
		return "delete_rtc_session"
	case CmdExpireRTCSessions:
		return "expire_rtc_sessions"
	case CmdSetTokenKey:
		return "set_token_key"
	case CmdTouchRTCSessions:
		return "touch_rtc_sessions"
	case CmdMove:
		return "move"
	case CmdPlanMove:
		return "plan_move"
	case CmdCompleteMove:
		return "complete_move"
	case CmdCancelMove:
		return "cancel_move"
	case CmdSetReplicas:
		return "set_replicas"
	case CmdSetProtocol:
		return "set_protocol"
	}
	return fmt.Sprintf("cmd(%d)", uint8(t))
}

// MaxCommandBytes bounds one encoded command: Decode refuses larger ones, so it
// also bounds the body of a write forwarded to the leader.
const MaxCommandBytes = 1 << 20

// Errors of command decoding and application. Their text starts with "mesh:",
// as the mesh API shows them.
var (
	// ErrBadCommand means a command that does not decode or whose content is
	// invalid (an origin without id, a malformed key or RTC session).
	ErrBadCommand = errors.New("mesh: malformed command")
	// ErrUnknownOrigin means a command names an origin the state does not
	// hold.
	ErrUnknownOrigin = errors.New("mesh: unknown origin")
	// ErrPlayOnlyFull is a play-only AssignCmd refused at MaxPlayOnly.
	ErrPlayOnlyFull = errors.New("mesh: too many streams with players and no publisher")
	// ErrRegistrationRefused is a registration that the rules of
	// RegisterOriginCmd refuse.
	ErrRegistrationRefused = errors.New("mesh: registration refused")
	// ErrAssignmentsFull is a new assignment refused at
	// AssignCmd.MaxAssignments.
	ErrAssignmentsFull = errors.New("mesh: too many assigned streams")
	// ErrMoveTooSoon is a MoveCmd refused because the assignment moved less
	// than MinIntervalMs before.
	ErrMoveTooSoon = errors.New("mesh: stream moved too recently")
	// ErrRTCTableFull is a PutRTCSessionCmd refused because the session
	// table is full and every session in it is protected: relays carried
	// them recently.
	ErrRTCTableFull = errors.New("mesh: rtc session table is full of active sessions")
)

// Command is a command body, one of the *Cmd types of this package (or a
// pointer to one). Type names the body in its encoding.
type Command interface {
	Type() CmdType
}

// Type implements Command.
func (RegisterOriginCmd) Type() CmdType { return CmdRegisterOrigin }

// Type implements Command.
func (RemoveOriginCmd) Type() CmdType { return CmdRemoveOrigin }

// Type implements Command.
func (SetHealthCmd) Type() CmdType { return CmdSetHealth }

// Type implements Command.
func (SetDrainingCmd) Type() CmdType { return CmdSetDraining }

// Type implements Command.
func (AssignCmd) Type() CmdType { return CmdAssign }

// Type implements Command.
func (TouchCmd) Type() CmdType { return CmdTouch }

// Type implements Command.
func (DeleteAssignmentsCmd) Type() CmdType { return CmdDeleteAssignments }

// Type implements Command.
func (PutRTCSessionCmd) Type() CmdType { return CmdPutRTCSession }

// Type implements Command.
func (DeleteRTCSessionCmd) Type() CmdType { return CmdDeleteRTCSession }

// Type implements Command.
func (ExpireRTCSessionsCmd) Type() CmdType { return CmdExpireRTCSessions }

// Type implements Command.
func (TouchRTCSessionsCmd) Type() CmdType { return CmdTouchRTCSessions }

// RegisterOriginCmd upserts an origin. Heartbeat is true for SRS heartbeats and
// API registrations (NowMs becomes the last heartbeat); false for static
// origins registered by the leader.
//
// Registrations are bounded and guarded:
//   - a heartbeat (Heartbeat) never overwrites a static origin;
//   - an existing origin's addresses change only through a registration the
//     receiving node authenticated (Authenticated: the mesh has a token and
//     the request carried it), or a static one;
//   - a new origin is refused once MaxOrigins (when positive) are known.
//
// Refusals fail with ErrRegistrationRefused.
//
// Load, when set, replaces the origin's reported load (the figures its
// heartbeat carried; the receiving node parsed them, the state machine
// never reads them anywhere else). Origin.MaxStreams and Origin.Weight must
// be within their bounds and a Load within its own (stream.Load.Valid), or
// the command fails with ErrBadCommand.
type RegisterOriginCmd struct {
	Origin        stream.Origin `json:"origin"`
	Load          *stream.Load  `json:"load,omitempty"`
	Heartbeat     bool          `json:"heartbeat,omitempty"`
	Authenticated bool          `json:"authenticated,omitempty"`
	MaxOrigins    int           `json:"max_origins,omitempty"`
	NowMs         int64         `json:"now_ms"`
}

// RemoveOriginCmd removes an origin and every assignment to it. It fails with
// ErrUnknownOrigin for an unknown id. With StaleBeforeMs set, it removes the
// origin only if its last heartbeat is older (a heartbeat that raced the
// leader's decision keeps the origin).
type RemoveOriginCmd struct {
	ID            string `json:"id"`
	StaleBeforeMs int64  `json:"stale_before_ms,omitempty"`
}

// HealthChange is one origin's new health as decided by the leader's probes.
// A healthy origin's Reason is cleared.
type HealthChange struct {
	ID      string `json:"id"`
	Healthy bool   `json:"healthy"`
	Reason  string `json:"reason,omitempty"`
	// ProbeMs is the time of the last successful probe (0: unchanged).
	ProbeMs int64 `json:"probe_ms,omitempty"`
}

// SetHealthCmd applies the leader's health verdicts; changes for origins
// removed meanwhile are ignored.
type SetHealthCmd struct {
	Changes []HealthChange `json:"changes"`
	NowMs   int64          `json:"now_ms"`
}

// SetDrainingCmd drains (no new streams; existing ones stay) or undrains an
// origin. With Move, the drained origin is also evacuated: the leader moves
// its live streams away, make-before-break (OriginState.Evacuate). It fails
// with ErrUnknownOrigin for an unknown id.
type SetDrainingCmd struct {
	ID       string `json:"id"`
	Draining bool   `json:"draining"`
	Move     bool   `json:"move,omitempty"`
}

// AssignCmd returns the origin of Key, creating or repairing the assignment
// when it is absent or its origin is unknown or unhealthy (a draining origin,
// or one at its max_streams, keeps the streams it has). A new assignment goes
// where stream.Select says, from the replicated streams per origin, the
// origins' capacity fields and their reported loads. It fails with
// ErrBadCommand for a malformed key, with stream.ErrOriginsFull when every
// origin that could take the stream is at its max_streams, and with
// stream.ErrNoOrigin when no origin can take it.
//
// PlayOnly marks a write made for a player of a stream that nobody has
// published through the mesh: the new assignment is play-only, and it is
// refused with ErrPlayOnlyFull once MaxPlayOnly (when positive) play-only
// assignments exist. A later assignment of the same key without PlayOnly (a
// publisher) keeps the origin and clears the mark. Anonymous players thus
// bound what they can add to the state.
//
// Prefer, when set, names the origin a publisher's node published to and
// that accepted the publish: a new or repaired assignment goes there when
// stream.Select could pick it (known, healthy, not draining, below its
// max_streams), and where Select says otherwise. An existing assignment on
// a healthy origin is never changed by it.
//
// With MaxAssignments positive, a new assignment (not a repair) is refused
// with ErrAssignmentsFull once that many assignments exist: the bound of
// the whole table, whoever writes.
type AssignCmd struct {
	Key            string `json:"key"`
	NowMs          int64  `json:"now_ms"`
	PlayOnly       bool   `json:"play_only,omitempty"`
	MaxPlayOnly    int    `json:"max_play_only,omitempty"`
	Prefer         string `json:"prefer,omitempty"`
	MaxAssignments int    `json:"max_assignments,omitempty"`
}

// MoveCmd moves Key's assignment away from origin From, which a node saw fail
// while it carried the stream (its origin leg broke), without waiting for the
// leader's probes. The new origin is chosen as AssignCmd chooses one, among
// the healthy origins other than From, so every replica makes the same
// choice. A move bumps the assignment's Epoch and sets MovedMs, so that every
// node rewriting the stream's HLS playlists and DASH manifests agrees on the
// discontinuity.
//
// A move is idempotent in effect: when the assignment is no longer on From
// (another node moved it first) and its origin is healthy, nothing changes
// and the current origin is returned. A key without an assignment is assigned
// as by AssignCmd, From excluded. With MinIntervalMs positive, an assignment
// on From that moved less than MinIntervalMs before NowMs is not moved again
// and the command fails with ErrMoveTooSoon, which bounds how often one stream
// can move. It fails with ErrBadCommand for a malformed key or an empty From
// and with stream.ErrNoOrigin when no other origin can take the stream.
type MoveCmd struct {
	Key           string `json:"key"`
	From          string `json:"from"`
	NowMs         int64  `json:"now_ms"`
	MinIntervalMs int64  `json:"min_interval_ms,omitempty"`
}

// Type implements Command.
func (MoveCmd) Type() CmdType { return CmdMove }

// TouchCmd records that the keys were in use at NowMs.
type TouchCmd struct {
	Keys  []string `json:"keys"`
	NowMs int64    `json:"now_ms"`
}

// DeleteAssignmentsCmd deletes the listed assignments whose last use is still
// older than CutoffMs when the command is applied (a Touch that raced with the
// leader's decision wins).
type DeleteAssignmentsCmd struct {
	Keys     []string `json:"keys"`
	CutoffMs int64    `json:"cutoff_ms"`
}

// PutRTCSessionCmd stores a WebRTC ICE session, replacing one with the same
// ufrag (the replacement keeps the later LastActiveUnixMs of the two). The
// session carries its own creation time. An invalid session (see Validate)
// is refused with ErrBadCommand.
//
// The table holds at most MaxSessions sessions (when positive and below
// MaxRTCSessions; else MaxRTCSessions). A new session in a full table evicts
// the session last seen the longest ago (stream.RTCSession.LastSeenUnixMs,
// ties broken by the smaller ufrag) that the command does not protect. With
// ProtectSinceMs positive, every session a relay has carried and that was
// created or carried at or after ProtectSinceMs is protected: in particular,
// no session active at or after ProtectSinceMs is ever evicted. Sessions no
// relay has carried are never protected. When every session is protected the
// put fails with ErrRTCTableFull and the table is unchanged.
//
// The writer sets ProtectSinceMs and MaxSessions (from its clock and
// configuration), so that every replica evicts the same session. Commands
// written before these fields existed decode with both zero: no protection,
// the MaxRTCSessions bound, oldest creation first, as they were applied then.
type PutRTCSessionCmd struct {
	Session        stream.RTCSession `json:"session"`
	ProtectSinceMs int64             `json:"protect_since_ms,omitempty"`
	MaxSessions    int               `json:"max_sessions,omitempty"`
}

// TouchRTCSessionsCmd records that relays carried the listed sessions' packets
// at NowMs (positive): each known session's LastActiveUnixMs becomes NowMs
// unless it is already later. Unknown ufrags are ignored. Nodes write it in
// batches, for the sessions their relay carried since their last report.
type TouchRTCSessionsCmd struct {
	Ufrags []string `json:"ufrags"`
	NowMs  int64    `json:"now_ms"`
}

// DeleteRTCSessionCmd removes one session; an absent one is not an error.
type DeleteRTCSessionCmd struct {
	Ufrag string `json:"ufrag"`
}

// ExpireRTCSessionsCmd deletes the listed sessions that were still last seen
// (stream.RTCSession.LastSeenUnixMs: created, or carried by a relay) before
// CutoffMs when the command is applied: a session put again or reported
// active meanwhile survives.
type ExpireRTCSessionsCmd struct {
	Ufrags   []string `json:"ufrags"`
	CutoffMs int64    `json:"cutoff_ms"`
}

// Validate reports the error Apply would return for the command's session,
// so that a writer can refuse it before it reaches the log.
func (c PutRTCSessionCmd) Validate() error { return validateRTCSession(c.Session) }

// SetTokenKeyCmd sets the mesh's segment-token key: the HMAC key with which
// every node signs and checks HLS and DASH segment tokens. The leader writes
// one, random, when the mesh has none; the first key applied stays, so a
// second leader's racing write changes nothing. Key is 16 to 64 bytes.
type SetTokenKeyCmd struct {
	Key []byte `json:"key"`
}

// Type implements Command.
func (SetTokenKeyCmd) Type() CmdType { return CmdSetTokenKey }

// Encode renders a command as its type byte and JSON body, the data of a Raft
// log entry.
func Encode(c Command) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(b)+1)
	out = append(out, byte(c.Type()))
	return append(out, b...), nil
}

// Decode parses the data of a Raft log entry into its command body, a pointer
// to one of the *Cmd types. Any malformed, unknown or oversized input fails
// with ErrBadCommand; an unknown type with an *UnknownCommandError, which
// wraps it. Decode never panics.
func Decode(data []byte) (Command, error) {
	if len(data) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadCommand, len(data))
	}
	if len(data) > MaxCommandBytes {
		return nil, fmt.Errorf("%w: %d bytes is too large", ErrBadCommand, len(data))
	}
	t := CmdType(data[0])
	var body Command
	switch t {
	case CmdRegisterOrigin:
		body = new(RegisterOriginCmd)
	case CmdRemoveOrigin:
		body = new(RemoveOriginCmd)
	case CmdSetHealth:
		body = new(SetHealthCmd)
	case CmdSetDraining:
		body = new(SetDrainingCmd)
	case CmdAssign:
		body = new(AssignCmd)
	case CmdTouch:
		body = new(TouchCmd)
	case CmdDeleteAssignments:
		body = new(DeleteAssignmentsCmd)
	case CmdSetTokenKey:
		body = new(SetTokenKeyCmd)
	case CmdPutRTCSession:
		body = new(PutRTCSessionCmd)
	case CmdDeleteRTCSession:
		body = new(DeleteRTCSessionCmd)
	case CmdExpireRTCSessions:
		body = new(ExpireRTCSessionsCmd)
	case CmdTouchRTCSessions:
		body = new(TouchRTCSessionsCmd)
	case CmdMove:
		body = new(MoveCmd)
	case CmdPlanMove:
		body = new(PlanMoveCmd)
	case CmdCompleteMove:
		body = new(CompleteMoveCmd)
	case CmdCancelMove:
		body = new(CancelMoveCmd)
	case CmdSetReplicas:
		body = new(SetReplicasCmd)
	case CmdSetProtocol:
		body = new(SetProtocolCmd)
	default:
		return nil, &UnknownCommandError{Type: t}
	}
	if err := json.Unmarshal(data[1:], body); err != nil {
		return nil, fmt.Errorf("%w: %s body: %v", ErrBadCommand, t, err)
	}
	return body, nil
}

// Result is what applying one command returns (FSM.Apply's value), both to a
// local raft.Apply caller and, as JSON, to a follower that forwarded the
// command. A failed command leaves the state unchanged and sets Code.
type Result struct {
	// Origin is the assigned origin (assign) or the registered one.
	Origin *stream.Origin `json:"origin,omitempty"`
	// Created is true when an assign created or moved the assignment.
	Created bool `json:"created,omitempty"`
	// Index is the Raft log index of the command; a follower that forwarded
	// it waits for its own replica to reach it when the caller needs to
	// read its own write.
	Index uint64 `json:"index,omitempty"`
	// Code and Message describe a failure; Err maps them back to an error.
	Code    string `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
}

// Machine-readable failure codes of Result, mapped back to errors by Err.
const (
	codeNoOrigin      = "no_origin"
	codeUnknownOrigin = "unknown_origin"
	codeBadCommand    = "bad_command"
	codeRefused       = "registration_refused"
	codePlayOnlyFull  = "play_only_full"
	codeRTCTableFull  = "rtc_table_full"
	codeMoveTooSoon   = "move_too_soon"
	codeOriginsFull   = "origins_full"
	codeAssignFull    = "assignments_full"
	codeMovePending   = "move_pending"
	codeHalted        = "halted"
)

func failResult(code string, err error) Result {
	return Result{Code: code, Message: err.Error()}
}

// Err turns a failed result back into an error: nil on success, else an error
// wrapping stream.ErrOriginsFull (which also matches stream.ErrNoOrigin),
// stream.ErrNoOrigin, ErrUnknownOrigin, ErrRegistrationRefused,
// ErrPlayOnlyFull, ErrRTCTableFull, ErrMoveTooSoon, ErrAssignmentsFull or (for any other code) ErrBadCommand,
// with the result's Message.
func (r Result) Err() error {
	switch r.Code {
	case "":
		return nil
	case codeNoOrigin:
		return fmt.Errorf("%w (%s)", stream.ErrNoOrigin, r.Message)
	case codeUnknownOrigin:
		return fmt.Errorf("%w (%s)", ErrUnknownOrigin, r.Message)
	case codeRefused:
		return fmt.Errorf("%w (%s)", ErrRegistrationRefused, r.Message)
	case codePlayOnlyFull:
		return fmt.Errorf("%w (%s)", ErrPlayOnlyFull, r.Message)
	case codeRTCTableFull:
		return fmt.Errorf("%w (%s)", ErrRTCTableFull, r.Message)
	case codeMoveTooSoon:
		return fmt.Errorf("%w (%s)", ErrMoveTooSoon, r.Message)
	case codeOriginsFull:
		return fmt.Errorf("%w (%s)", stream.ErrOriginsFull, r.Message)
	case codeAssignFull:
		return fmt.Errorf("%w (%s)", ErrAssignmentsFull, r.Message)
	case codeMovePending:
		return fmt.Errorf("%w (%s)", ErrMovePending, r.Message)
	case codeHalted:
		return fmt.Errorf("%w (%s)", ErrHalted, r.Message)
	default:
		return fmt.Errorf("%w (%s)", ErrBadCommand, r.Message)
	}
}
