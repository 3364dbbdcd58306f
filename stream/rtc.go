package stream

import (
	"errors"
	"fmt"
)

// RTCSession is one WebRTC ICE session: enough for any node of the mesh to
// relay the session's UDP flow to its origin and to end it. The mesh
// replicates it, because a load balancer does not keep a client's HTTP offer
// and its UDP flow on the same node.
//
// The JSON form is stored in the mesh's Raft log and snapshots: field names
// never change, and fields are only ever added (as optional ones), so that
// entries written by older nodes still decode.
type RTCSession struct {
	// Ufrag is the session key: the full ICE username of the client's STUN
	// Binding requests, "answerUfrag:offerUfrag" (the origin's ufrag first).
	Ufrag string `json:"ufrag"`
	// OriginID is the id of the origin that answered the offer.
	OriginID string `json:"origin"`
	// OriginRTC is the origin's WebRTC UDP endpoint, "host:port".
	OriginRTC string `json:"origin_rtc"`
	// Key is the stream key, Key.String().
	Key string `json:"key"`
	// Resource is the absolute URL of the origin's WHIP/WHEP resource (its
	// Location resolved against the origin's API address), the target of a
	// DELETE. Empty for SRS's JSON API, which has no resource.
	Resource string `json:"resource,omitempty"`
	// Pwd is the origin's ICE password from the answer (a=ice-pwd), with
	// which the relay checks the MESSAGE-INTEGRITY of the client's Binding
	// requests; the relay maps a client address to the session only after
	// that check. Empty when the answer had none, or when the session was
	// stored by a node that predates the field (commands and snapshots
	// written before it existed decode with Pwd empty); such a session is
	// relayed unchecked. It is a secret: it never appears in logs or in the
	// status API.
	Pwd string `json:"pwd,omitempty"`
	// CreatedUnixMs is when the offer was answered, in unix milliseconds.
	CreatedUnixMs int64 `json:"created_unix_ms"`
	// LastActiveUnixMs is the last time, in unix milliseconds, a relay of
	// the mesh reported carrying the session's packets; 0 for a session no
	// relay has carried yet (and for sessions written before the field
	// existed). The mesh sets it from the relays' reports, never from an
	// offer. A session's age, by which a full table evicts and the mesh
	// garbage-collects, is the later of CreatedUnixMs and LastActiveUnixMs.
	LastActiveUnixMs int64 `json:"last_active_unix_ms,omitempty"`
}

// LastSeenUnixMs is the later of CreatedUnixMs and LastActiveUnixMs: when the
// session was last known to be in use.
func (s RTCSession) LastSeenUnixMs() int64 { return max(s.CreatedUnixMs, s.LastActiveUnixMs) }

// Size limits of a session's fields, checked by Validate. An ICE ufrag is at
// most 256 characters (RFC 8839), so a username "a:b" at most 513; an ICE
// password is at most 256 characters.
const (
	MaxRTCUfragBytes    = 520
	MaxRTCFieldBytes    = 1024
	MaxRTCResourceBytes = 4096
	MaxRTCPwdBytes      = 256
)

// ErrBadRTCSession is wrapped by every error of RTCSession.Validate. Its text
// is "rtc session", so those errors read "rtc session without ufrag" and the
// like.
var ErrBadRTCSession = errors.New("rtc session")

// Validate reports whether the session can be stored: it has a Ufrag and
// every field is within its limit. It reads nothing but s.
func (s RTCSession) Validate() error {
	switch {
	case s.Ufrag == "":
		return fmt.Errorf("%w without ufrag", ErrBadRTCSession)
	case len(s.Ufrag) > MaxRTCUfragBytes:
		return fmt.Errorf("%w ufrag longer than %d bytes", ErrBadRTCSession, MaxRTCUfragBytes)
	case len(s.OriginID) > MaxRTCFieldBytes, len(s.OriginRTC) > MaxRTCFieldBytes, len(s.Key) > MaxRTCFieldBytes:
		return fmt.Errorf("%w field longer than %d bytes", ErrBadRTCSession, MaxRTCFieldBytes)
	case len(s.Resource) > MaxRTCResourceBytes:
		return fmt.Errorf("%w resource longer than %d bytes", ErrBadRTCSession, MaxRTCResourceBytes)
	case len(s.Pwd) > MaxRTCPwdBytes:
		return fmt.Errorf("%w pwd longer than %d bytes", ErrBadRTCSession, MaxRTCPwdBytes)
	}
	return nil
}
