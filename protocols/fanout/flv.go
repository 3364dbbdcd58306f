package fanout

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FLV tag types (FLV 10.1 section E.4.1).
const (
	TagAudio  = 8
	TagVideo  = 9
	TagScript = 18
)

// Sizes of the FLV framing.
const (
	// HeaderSize is the size of the FLV file header as Reader returns it:
	// the 9-byte header and PreviousTagSize0.
	HeaderSize = 13
	// tagHeaderSize is the size of a tag's header (type, size, timestamp,
	// stream ID).
	tagHeaderSize = 11
	// prevSizeLen is the size of the PreviousTagSize that follows a tag.
	prevSizeLen = 4
	// maxHeaderSkip bounds the bytes a header's DataOffset may ask to skip.
	maxHeaderSkip = 1 << 10
	// MaxFLVTagSize is the largest body the 24-bit DataSize can express.
	MaxFLVTagSize = 1<<24 - 1
)

// Reader errors.
var (
	ErrNotFLV      = errors.New("fanout: not an FLV stream")
	ErrTagTooLarge = errors.New("fanout: FLV tag larger than the bound")
)

// Kind classifies a tag for caching and fan-out.
type Kind uint8

const (
	// KindOther is any tag the hub only relays: audio and video frames
	// other than keyframes, script data other than onMetaData, unknown
	// types.
	KindOther Kind = iota
	// KindMetadata is an onMetaData script tag.
	KindMetadata
	// KindVideoSeq is an AVC or HEVC sequence header (legacy codec ID 7 or
	// 12, AVCPacketType 0) or an enhanced-RTMP video SequenceStart.
	KindVideoSeq
	// KindAudioSeq is an AAC sequence header (SoundFormat 10,
	// AACPacketType 0) or an enhanced-RTMP audio SequenceStart.
	KindAudioSeq
	// KindKeyframe is a video tag of FrameType 1 that is not a sequence
	// header: where a GOP starts.
	KindKeyframe
)

// Tag is one FLV tag. Data holds the whole tag as it goes on the wire: the
// 11-byte tag header, the body and the 4-byte PreviousTagSize, so a stream
// is the FLV header followed by tags' Data. Data is never modified once
// Reader returns it: it is shared by every subscriber, not copied.
type Tag struct {
	Type      uint8
	Timestamp uint32 // milliseconds, the extended byte included
	Kind      Kind
	Data      []byte
}

// Body returns the tag's body (without its header and PreviousTagSize).
func (t Tag) Body() []byte { return t.Data[tagHeaderSize : len(t.Data)-prevSizeLen] }

// Reader parses an FLV stream incrementally. A tag whose body is larger
// than its bound is an error (ErrTagTooLarge), so a Reader never allocates
// more than the bound plus 15 bytes at once, whatever its input. Each tag
// gets its own buffer. PreviousTagSize fields are passed through, not
// checked (muxers get them wrong and players ignore them).
type Reader struct {
	r       io.Reader
	maxBody int
	hdr     [tagHeaderSize]byte
	peek    [classifyBytes]byte // SkipTag's start of a body
}

// classifyBytes is how much of a body SkipTag reads to classify a tag:
// more than Classify looks at.
const classifyBytes = 64

// NewReader returns a Reader of r whose tags' bodies are at most maxBody
// bytes (clamped to 1..MaxFLVTagSize).
func NewReader(r io.Reader, maxBody int) *Reader {
	return &Reader{r: r, maxBody: min(max(maxBody, 1), MaxFLVTagSize)}
}

// ReadHeader reads the FLV header and PreviousTagSize0 and returns them
// normalised to HeaderSize bytes (DataOffset 9; any extra header bytes the
// stream had are skipped). It must be called once, before ReadTag.
func (fr *Reader) ReadHeader() ([]byte, error) {
	var h [9]byte
	if _, err := io.ReadFull(fr.r, h[:]); err != nil {
		return nil, err
	}
	if h[0] != 'F' || h[1] != 'L' || h[2] != 'V' {
		return nil, ErrNotFLV
	}
	off := binary.BigEndian.Uint32(h[5:9])
	if off < 9 || off-9 > maxHeaderSkip {
		return nil, fmt.Errorf("%w: DataOffset %d", ErrNotFLV, off)
	}
	if _, err := io.CopyN(io.Discard, fr.r, int64(off-9)+prevSizeLen); err != nil {
		return nil, unexpected(err)
	}
	out := make([]byte, HeaderSize)
	copy(out, h[:5])
	out[8] = 9
	return out, nil
}

// ReadTag reads the next tag. It returns io.EOF at a clean end (between
// tags) and io.ErrUnexpectedEOF inside one.
func (fr *Reader) ReadTag() (Tag, error) {
	t, size, err := fr.readTagHeader()
	if err != nil {
		return Tag{}, err
	}
	t.Data = make([]byte, tagHeaderSize+size+prevSizeLen)
	copy(t.Data, fr.hdr[:])
	if _, err := io.ReadFull(fr.r, t.Data[tagHeaderSize:]); err != nil {
		return Tag{}, unexpected(err)
	}
	t.Kind = Classify(t.Type, t.Body())
	return t, nil
}

// readTagHeader reads a tag's header into fr.hdr and returns its type and
// timestamp, and its body's size once it is within the bound.
func (fr *Reader) readTagHeader() (Tag, int, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return Tag{}, 0, err
	}
	h := fr.hdr
	size := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	if size > fr.maxBody {
		return Tag{}, 0, fmt.Errorf("%w: %d > %d bytes", ErrTagTooLarge, size, fr.maxBody)
	}
	return Tag{Type: h[0] & 0x1f, Timestamp: uint32(h[7])<<24 | uint32(h[4])<<16 | uint32(h[5])<<8 | uint32(h[6])}, size, nil
}

// SkipTag reads the next tag as ReadTag does, but keeps only its type,
// timestamp and kind: the body is read past, not kept (Data is nil), so a
// reader that only counts media allocates nothing. A body larger than the
// bound is an error here too.
func (fr *Reader) SkipTag() (Tag, error) {
	t, size, err := fr.readTagHeader()
	if err != nil {
		return Tag{}, err
	}
	peek := fr.peek[:min(size, len(fr.peek))]
	if _, err := io.ReadFull(fr.r, peek); err != nil {
		return Tag{}, unexpected(err)
	}
	if _, err := io.CopyN(io.Discard, fr.r, int64(size-len(peek)+prevSizeLen)); err != nil {
		return Tag{}, unexpected(err)
	}
	t.Kind = Classify(t.Type, peek)
	return t, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Legacy video codec IDs and audio formats that carry sequence headers.
const (
	codecAVC         = 7
	codecHEVC        = 12 // the de facto FLV extension (Chinese CDNs, SRS)
	soundAAC         = 10
	soundExHeader    = 9 // enhanced RTMP: ExAudioHeader
	exSequenceStart  = 0 // enhanced RTMP PacketTypeSequenceStart
	frameTypeKey     = 1
	avcPacketSeqHead = 0
)

// Classify returns the Kind of a tag of type typ with body b.
func Classify(typ uint8, b []byte) Kind {
	switch typ {
	case TagVideo:
		if len(b) < 1 {
			return KindOther
		}
		if b[0]&0x80 != 0 { // enhanced RTMP: IsExHeader, FrameType, PacketType, FourCC
			frame, pkt := (b[0]>>4)&0x07, b[0]&0x0f
			switch {
			case len(b) < 5:
				return KindOther
			case pkt == exSequenceStart:
				return KindVideoSeq
			case frame == frameTypeKey:
				return KindKeyframe
			}
			return KindOther
		}
		frame, codec := b[0]>>4, b[0]&0x0f
		if (codec == codecAVC || codec == codecHEVC) && len(b) >= 2 && b[1] == avcPacketSeqHead {
			return KindVideoSeq
		}
		if frame == frameTypeKey {
			return KindKeyframe
		}
	case TagAudio:
		if len(b) < 2 {
			return KindOther
		}
		switch b[0] >> 4 {
		case soundAAC:
			if b[1] == avcPacketSeqHead {
				return KindAudioSeq
			}
		case soundExHeader:
			if b[0]&0x0f == exSequenceStart {
				return KindAudioSeq
			}
		}
	case TagScript:
		if isMetadata(b) {
			return KindMetadata
		}
	}
	return KindOther
}

// isMetadata reports whether a script tag's body starts with the AMF0
// string "onMetaData" (or "@setDataFrame" followed by it).
func isMetadata(b []byte) bool {
	name, rest, ok := amfString(b)
	if ok && bytes.Equal(name, []byte("@setDataFrame")) {
		name, _, ok = amfString(rest)
	}
	return ok && bytes.Equal(name, []byte("onMetaData"))
}

// amfString reads an AMF0 string (marker 2, 16-bit length) from b.
func amfString(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 3 || b[0] != 2 {
		return nil, nil, false
	}
	n := int(b[1])<<8 | int(b[2])
	if len(b) < 3+n {
		return nil, nil, false
	}
	return b[3 : 3+n], b[3+n:], true
}
