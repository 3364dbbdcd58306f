package mesh

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/srs-mesh/srs-mesh/stream"
)

// A command is one Raft log entry: a type byte followed by a JSON body. Every
// timestamp a command needs travels inside it, so that applying the log is
// deterministic on every replica.
type cmdType uint8

const (
	cmdRegisterOrigin    cmdType = 1
	cmdRemoveOrigin      cmdType = 2
	cmdSetHealth         cmdType = 3
	cmdSetDraining       cmdType = 4
	cmdAssign            cmdType = 5
	cmdTouch             cmdType = 6
	cmdDeleteAssignments cmdType = 7
	cmdPutRTCSession     cmdType = 8
	cmdDeleteRTCSession  cmdType = 9
	cmdExpireRTCSessions cmdType = 10
)

func (t cmdType) String() string {
	switch t {
	case cmdRegisterOrigin:
		return "register_origin"
	case cmdRemoveOrigin:
		return "remove_origin"
	case cmdSetHealth:
		return "set_health"
	case cmdSetDraining:
		return "set_draining"
	case cmdAssign:
		return "assign"
	case cmdTouch:
		return "touch"
	case cmdDeleteAssignments:
		return "delete_assignments"
	case cmdPutRTCSession:
		return "put_rtc_session"
	case cmdDeleteRTCSession:
		return "delete_rtc_session"
	case cmdExpireRTCSessions:
		return "expire_rtc_sessions"
	}
	return fmt.Sprintf("cmd(%d)", uint8(t))
}

// maxCommandBytes bounds one command (and the body of a forwarded write).
const maxCommandBytes = 1 << 20

// Errors of command decoding and application.
var (
	ErrBadCommand    = errors.New("mesh: malformed command")
	ErrUnknownOrigin = errors.New("mesh: unknown origin")
)

// registerOriginCmd upserts an origin. Heartbeat is true for SRS heartbeats and
// API registrations (NowMs becomes the last heartbeat); false for static
// origins registered by the leader.
type registerOriginCmd struct {
	Origin    stream.Origin `json:"origin"`
	Heartbeat bool          `json:"heartbeat,omitempty"`
	NowMs     int64         `json:"now_ms"`
}

type removeOriginCmd struct {
	ID string `json:"id"`
}

// healthChange is one origin's new health as decided by the leader's probes.
type healthChange struct {
	ID      string `json:"id"`
	Healthy bool   `json:"healthy"`
	Reason  string `json:"reason,omitempty"`
	// ProbeMs is the time of the last successful probe (0: unchanged).
	ProbeMs int64 `json:"probe_ms,omitempty"`
}

type setHealthCmd struct {
	Changes []healthChange `json:"changes"`
	NowMs   int64          `json:"now_ms"`
}

type setDrainingCmd struct {
	ID       string `json:"id"`
	Draining bool   `json:"draining"`
}

// assignCmd returns the origin of Key, creating or repairing the assignment
// when it is absent or its origin is unknown, unhealthy or draining.
type assignCmd struct {
	Key   string `json:"key"`
	NowMs int64  `json:"now_ms"`
}

// touchCmd records that the keys were in use at NowMs.
type touchCmd struct {
	Keys  []string `json:"keys"`
	NowMs int64    `json:"now_ms"`
}

// deleteAssignmentsCmd deletes the listed assignments whose last use is still
// older than CutoffMs when the command is applied (a Touch that raced with the
// leader's decision wins).
type deleteAssignmentsCmd struct {
	Keys     []string `json:"keys"`
	CutoffMs int64    `json:"cutoff_ms"`
}

// putRTCSessionCmd stores a WebRTC ICE session, replacing one with the same
// ufrag. The session carries its own creation time.
type putRTCSessionCmd struct {
	Session stream.RTCSession `json:"session"`
}

// deleteRTCSessionCmd removes one session; an absent one is not an error.
type deleteRTCSessionCmd struct {
	Ufrag string `json:"ufrag"`
}

// expireRTCSessionsCmd deletes the listed sessions that were still created
// before CutoffMs when the command is applied (a session put again meanwhile
// survives).
type expireRTCSessionsCmd struct {
	Ufrags   []string `json:"ufrags"`
	CutoffMs int64    `json:"cutoff_ms"`
}

// encodeCommand renders a command as its type byte and JSON body.
func encodeCommand(t cmdType, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(b)+1)
	out = append(out, byte(t))
	return append(out, b...), nil
}

// decodeCommand splits a command into its type and decoded body (a pointer to
// one of the *Cmd types). It never panics on malformed input.
func decodeCommand(data []byte) (cmdType, any, error) {
	if len(data) < 2 {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrBadCommand, len(data))
	}
	if len(data) > maxCommandBytes {
		return 0, nil, fmt.Errorf("%w: %d bytes is too large", ErrBadCommand, len(data))
	}
	t := cmdType(data[0])
	var body any
	switch t {
	case cmdRegisterOrigin:
		body = new(registerOriginCmd)
	case cmdRemoveOrigin:
		body = new(removeOriginCmd)
	case cmdSetHealth:
		body = new(setHealthCmd)
	case cmdSetDraining:
		body = new(setDrainingCmd)
	case cmdAssign:
		body = new(assignCmd)
	case cmdTouch:
		body = new(touchCmd)
	case cmdDeleteAssignments:
		body = new(deleteAssignmentsCmd)
	case cmdPutRTCSession:
		body = new(putRTCSessionCmd)
	case cmdDeleteRTCSession:
		body = new(deleteRTCSessionCmd)
	case cmdExpireRTCSessions:
		body = new(expireRTCSessionsCmd)
	default:
		return t, nil, fmt.Errorf("%w: unknown type %d", ErrBadCommand, data[0])
	}
	if err := json.Unmarshal(data[1:], body); err != nil {
		return t, nil, fmt.Errorf("%w: %s body: %v", ErrBadCommand, t, err)
	}
	return t, body, nil
}

// applyResult is what applying one command returns, both to a local
// raft.Apply caller and, as JSON, to a follower that forwarded the command.
type applyResult struct {
	// Origin is the assigned origin (assign) or the registered one.
	Origin *stream.Origin `json:"origin,omitempty"`
	// Created is true when an assign created or moved the assignment.
	Created bool `json:"created,omitempty"`
	// Index is the Raft log index of the command; a follower that forwarded
	// it waits for its own replica to reach it when the caller needs to
	// read its own write.
	Index uint64 `json:"index,omitempty"`
	// Code and Message describe a failure; Code is one of the errCode values.
	Code    string `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
}

// Machine-readable failure codes of applyResult, mapped back to errors.
const (
	codeNoOrigin      = "no_origin"
	codeUnknownOrigin = "unknown_origin"
	codeBadCommand    = "bad_command"
	codeNotLeader     = "not_leader"
)

func failResult(code string, err error) applyResult {
	return applyResult{Code: code, Message: err.Error()}
}

// err turns a failed result back into an error wrapping the named error.
func (r applyResult) err() error {
	switch r.Code {
	case "":
		return nil
	case codeNoOrigin:
		return fmt.Errorf("%w (%s)", stream.ErrNoOrigin, r.Message)
	case codeUnknownOrigin:
		return fmt.Errorf("%w (%s)", ErrUnknownOrigin, r.Message)
	case codeNotLeader:
		return ErrNotLeader
	default:
		return fmt.Errorf("%w (%s)", ErrBadCommand, r.Message)
	}
}
