// Package chunk reads and writes the RTMP chunk stream: messages split into
// chunks of a negotiated size, interleaved over chunk stream ids, with
// headers compressed against the previous chunk of the same chunk stream.
//
// A Reader and a Writer each keep the state of one direction of one
// connection (the chunk size and the last header per chunk stream id), which
// is why a proxy re-chunks messages rather than copying chunks from one
// connection to another. The Reader adopts SetChunkSize and applies Abort
// itself; everything else is returned to the caller. Neither allocates per
// message once its buffers have grown to the largest message seen.
package chunk

import (
	"errors"
	"fmt"
)

// Message type ids (RTMP specification, sections 5.4 and 7.1).
const (
	TypeSetChunkSize     = 1
	TypeAbort            = 2
	TypeAck              = 3
	TypeUserControl      = 4
	TypeWindowAckSize    = 5
	TypeSetPeerBandwidth = 6
	TypeAudio            = 8
	TypeVideo            = 9
	TypeDataAMF3         = 15
	TypeSharedObjectAMF3 = 16
	TypeCommandAMF3      = 17
	TypeDataAMF0         = 18
	TypeSharedObjectAMF0 = 19
	TypeCommandAMF0      = 20
	TypeAggregate        = 22
)

// User control event types (RTMP specification, section 7.1.7).
const (
	EventStreamBegin      = 0
	EventStreamEOF        = 1
	EventStreamDry        = 2
	EventSetBufferLength  = 3
	EventStreamIsRecorded = 4
	EventPingRequest      = 6
	EventPingResponse     = 7
)

// Chunk stream ids and sizes.
const (
	// ControlCSID is the chunk stream of protocol control messages.
	ControlCSID = 2
	// MaxCSID is the largest chunk stream id a 3-byte basic header encodes.
	MaxCSID = 65599
	// DefaultChunkSize is the chunk size of both directions until a
	// SetChunkSize message changes it.
	DefaultChunkSize = 128
	// MaxChunkSize is the largest chunk size accepted or set. The protocol
	// allows 0x7fffffff; nothing legitimate uses more than a few KiB and
	// larger values only serve to defeat limits.
	MaxChunkSize = 16 << 20
	// MaxChunkStreams bounds the chunk streams one Reader tracks. Encoders
	// use a handful.
	MaxChunkStreams = 256
	// extendedTimestamp in a 3-byte timestamp field says that a 32-bit
	// extended timestamp follows the message header.
	extendedTimestamp = 0xffffff
)

// Errors of the chunk layer. Reader errors are wrapped with the chunk
// stream id and the byte offset at which they were detected.
var (
	ErrBadChunkSize       = errors.New("chunk: chunk size out of range")
	ErrMessageTooLarge    = errors.New("chunk: message length above limit")
	ErrNoPreviousHeader   = errors.New("chunk: compressed header on a chunk stream without a previous header")
	ErrHeaderMidMessage   = errors.New("chunk: new message header before the previous message was complete")
	ErrTooManyChunkStream = errors.New("chunk: too many chunk streams")
	ErrBadCSID            = errors.New("chunk: chunk stream id out of range")
	ErrShortControl       = errors.New("chunk: protocol control message too short")
	ErrSetChunkSize       = errors.New("chunk: SetChunkSize must be written with Writer.SetChunkSize")
)

// Message is one RTMP message. Payload is owned by whoever produced the
// message: for a Reader it is valid until the next ReadMessage call.
type Message struct {
	// CSID is the chunk stream the message arrived on or is written to.
	CSID      uint32
	Type      uint8
	StreamID  uint32
	Timestamp uint32
	Payload   []byte
}

func (m *Message) String() string {
	return fmt.Sprintf("message{csid=%d type=%d stream=%d ts=%d len=%d}", m.CSID, m.Type, m.StreamID, m.Timestamp, len(m.Payload))
}

// appendBasicHeader appends the basic header for fmt and csid (2..MaxCSID).
func appendBasicHeader(b []byte, format uint8, csid uint32) []byte {
	switch {
	case csid < 64:
		return append(b, format<<6|byte(csid))
	case csid < 320:
		return append(b, format<<6, byte(csid-64))
	default:
		c := csid - 64
		return append(b, format<<6|1, byte(c), byte(c>>8))
	}
}
