package rtmp

import (
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
)

// FLV tag body fields the publish path looks at (FLV specification 10.1,
// annex E; enhanced RTMP v1 for the ex-header forms).
const (
	flvVideoKeyframe      = 1    // frame type of a key frame
	flvVideoExHeader      = 0x80 // enhanced RTMP: the low nibble is a packet type
	flvCodecAVC           = 7
	flvCodecHEVC          = 12 // HEVC as SRS, FFmpeg and OBS tag it without the ex-header
	flvAVCSequenceHeader  = 0  // AVCPacketType of a decoder configuration record
	flvExSequenceStart    = 0  // enhanced RTMP PacketTypeSequenceStart
	flvExCodedFrames      = 1  // enhanced RTMP PacketTypeCodedFrames
	flvExCodedFramesX     = 3  // enhanced RTMP PacketTypeCodedFramesX
	flvAudioAAC           = 10
	flvAudioExHeader      = 9 // enhanced RTMP audio: the low nibble is a packet type
	flvAACSequenceHeader  = 0 // AACPacketType of an AudioSpecificConfig
	maxCachedMessageBytes = 1 << 20
)

// isKeyframe reports whether m is a video message carrying a key frame (not a
// sequence header): a point where a decoder can start.
func isKeyframe(m *chunk.Message) bool {
	if m.Type != chunk.TypeVideo || len(m.Payload) < 2 {
		return false
	}
	b := m.Payload[0]
	if b&flvVideoExHeader != 0 {
		pt := b & 0x0f
		return (b>>4)&7 == flvVideoKeyframe && (pt == flvExCodedFrames || pt == flvExCodedFramesX)
	}
	return b>>4 == flvVideoKeyframe && !isVideoSequenceHeader(m)
}

// isVideoSequenceHeader reports whether m is an AVC or HEVC decoder
// configuration record, in the legacy or the enhanced RTMP form.
func isVideoSequenceHeader(m *chunk.Message) bool {
	if m.Type != chunk.TypeVideo || len(m.Payload) < 2 {
		return false
	}
	b := m.Payload[0]
	if b&flvVideoExHeader != 0 {
		return b&0x0f == flvExSequenceStart
	}
	codec := b & 0x0f
	return (codec == flvCodecAVC || codec == flvCodecHEVC) && m.Payload[1] == flvAVCSequenceHeader
}

// isAudioSequenceHeader reports whether m is an AAC AudioSpecificConfig, or
// an enhanced RTMP audio sequence start.
func isAudioSequenceHeader(m *chunk.Message) bool {
	if m.Type != chunk.TypeAudio || len(m.Payload) < 2 {
		return false
	}
	switch m.Payload[0] >> 4 {
	case flvAudioAAC:
		return m.Payload[1] == flvAACSequenceHeader
	case flvAudioExHeader:
		return m.Payload[0]&0x0f == flvExSequenceStart
	}
	return false
}

// isMetadata reports whether m is a data message "@setDataFrame" or
// "onMetaData" (AMF0, or AMF3 data whose body is AMF0 after a format byte).
func isMetadata(m *chunk.Message) bool {
	p := m.Payload
	switch m.Type {
	case chunk.TypeDataAMF0:
	case chunk.TypeDataAMF3:
		if len(p) == 0 || p[0] != 0 {
			return false
		}
		p = p[1:]
	default:
		return false
	}
	if len(p) < 3 || p[0] != 0x02 { // AMF0 string marker
		return false
	}
	n := int(p[1])<<8 | int(p[2])
	if len(p) < 3+n {
		return false
	}
	name := p[3 : 3+n]
	return string(name) == "@setDataFrame" || string(name) == "onMetaData"
}

// isCodecConfig reports whether m is metadata or a sequence header: what a
// decoder needs before frames, never dropped while waiting for a key frame.
func isCodecConfig(m *chunk.Message) bool {
	return isVideoSequenceHeader(m) || isAudioSequenceHeader(m) || isMetadata(m)
}

// mediaCache keeps the last metadata and sequence headers a publisher sent,
// which a new origin leg needs before any frame. It belongs to the
// goroutine that reads the publisher. Each entry is a copy, bounded by
// maxCachedMessageBytes (larger ones are not kept); its buffer is reused, so
// a publisher resending its headers does not allocate each time.
type mediaCache struct {
	meta, video, audio cachedMessage
	// sawVideo is set once any video message passed: the stream then
	// resumes only at a key frame.
	sawVideo bool
}

type cachedMessage struct {
	m   chunk.Message
	buf []byte
	ok  bool
}

func (c *cachedMessage) set(m *chunk.Message) {
	if len(m.Payload) > maxCachedMessageBytes {
		return
	}
	c.buf = append(c.buf[:0], m.Payload...)
	c.m = *m
	c.m.Payload = c.buf
	c.ok = true
}

// observe records m when it is metadata or a sequence header.
func (c *mediaCache) observe(m *chunk.Message) {
	switch m.Type {
	case chunk.TypeVideo:
		c.sawVideo = true
		if isVideoSequenceHeader(m) {
			c.video.set(m)
		}
	case chunk.TypeAudio:
		if isAudioSequenceHeader(m) {
			c.audio.set(m)
		}
	case chunk.TypeDataAMF0, chunk.TypeDataAMF3:
		if isMetadata(m) {
			c.meta.set(m)
		}
	}
}

// messages returns the cached messages in the order a new leg needs them:
// metadata, video then audio sequence header. The messages alias the
// cache's buffers.
func (c *mediaCache) messages() []*chunk.Message {
	var out []*chunk.Message
	for _, e := range []*cachedMessage{&c.meta, &c.video, &c.audio} {
		if e.ok {
			out = append(out, &e.m)
		}
	}
	return out
}

// resumePoint reports whether a stream interrupted before m may continue
// with m: a key frame, or any audio or video message of a stream without
// video.
func (c *mediaCache) resumePoint(m *chunk.Message) bool {
	if c.sawVideo {
		return isKeyframe(m)
	}
	return m.Type == chunk.TypeAudio
}
