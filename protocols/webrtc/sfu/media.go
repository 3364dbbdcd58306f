package sfu

import (
	"time"

	"github.com/pion/rtp"
)

// packet is one RTP packet of a stream's track on the stream's continuous
// timeline (see timeline): its header carries the rewritten sequence number
// and timestamp, its payload is shared read-only by every viewer.
type packet struct {
	hdr      rtp.Header
	payload  []byte
	keyframe bool // the first packet of a keyframe (video only)
	size     int  // bytes on the wire before SRTP: header and payload
}

// timeline maps the RTP sequence numbers and timestamps of one track of a
// stream's upstream onto one continuous timeline that survives changes of
// upstream (another origin, a new SSRC): the first packet after a change
// continues one sequence number after the last one sent, and at a
// timestamp advanced by the wall-clock time elapsed since. Viewers
// therefore see one RTP stream from the node, however often the upstream
// changed. It is not safe for concurrent use.
type timeline struct {
	clock   uint32 // clock rate, Hz
	started bool
	rebase  bool // the next packet starts a new mapping
	ssrc    uint32
	seqOff  uint16
	tsOff   uint32
	// lastSeq and lastTS are the newest output values, lastWall when lastTS
	// was output.
	lastSeq  uint16
	lastTS   uint32
	lastWall time.Time
}

// reset makes the next packet start a new mapping even if it keeps the
// previous upstream's SSRC (a new upstream session).
func (t *timeline) reset() { t.rebase = true }

// rewrite returns the output sequence number and timestamp of an upstream
// packet with header h that arrived at now.
func (t *timeline) rewrite(h *rtp.Header, now time.Time) (uint16, uint32) {
	switch {
	case !t.started:
		t.started = true
		t.ssrc, t.seqOff, t.tsOff = h.SSRC, 0, 0
		t.lastSeq, t.lastTS, t.lastWall = h.SequenceNumber-1, h.Timestamp, now
	case t.rebase || h.SSRC != t.ssrc:
		t.rebase, t.ssrc = false, h.SSRC
		t.seqOff = t.lastSeq + 1 - h.SequenceNumber
		ticks := uint32(1)
		if d := now.Sub(t.lastWall); d > 0 && t.clock > 0 {
			ticks = max(uint32(d.Seconds()*float64(t.clock)), 1)
		}
		t.tsOff = t.lastTS + ticks - h.Timestamp
	}
	seq, ts := h.SequenceNumber+t.seqOff, h.Timestamp+t.tsOff
	if seqNewer(seq, t.lastSeq) {
		t.lastSeq = seq
	}
	if tsNewer(ts, t.lastTS) || ts == t.lastTS {
		t.lastTS, t.lastWall = ts, now
	}
	return seq, ts
}

// seqNewer reports whether RTP sequence number a comes after b (RFC 3550
// arithmetic modulo 2^16).
func seqNewer(a, b uint16) bool { return a != b && a-b < 1<<15 }

// tsNewer reports whether RTP timestamp a comes after b (modulo 2^32).
func tsNewer(a, b uint32) bool { return a != b && a-b < 1<<31 }

// cache holds a track's latest packets by output sequence number, to answer
// viewers' NACKs: a ring of a power-of-two number of slots, so that it is
// bounded in entries, and in bytes by the largest packet the upstream reads
// (maxPacket). It is not safe for concurrent use.
type cache struct {
	slots []cacheSlot
	mask  uint16
}

type cacheSlot struct {
	p   *packet
	seq uint16
}

// newCache returns a cache of size slots, rounded up to a power of two in
// [16, 32768].
func newCache(size int) *cache {
	n := 16
	for n < size && n < 1<<15 {
		n <<= 1
	}
	return &cache{slots: make([]cacheSlot, n), mask: uint16(n - 1)}
}

// put stores p, replacing the packet a full ring held in its slot.
func (c *cache) put(p *packet) {
	s := &c.slots[p.hdr.SequenceNumber&c.mask]
	s.p, s.seq = p, p.hdr.SequenceNumber
}

// get returns the packet of output sequence number seq, if the cache still
// holds it.
func (c *cache) get(seq uint16) *packet {
	s := &c.slots[seq&c.mask]
	if s.p == nil || s.seq != seq {
		return nil
	}
	return s.p
}

// len is the number of slots.
func (c *cache) len() int { return len(c.slots) }

// isKeyframe reports whether an RTP payload of the given codec (a MIME
// type's lower-case subtype: "h264", "vp8") carries the start of a
// keyframe: an H.264 IDR slice or SPS (single NAL, in a STAP-A, or the
// first fragment of an FU-A), or a VP8 key frame's first partition start.
// Other codecs report false. It never fails on malformed input.
func isKeyframe(codec string, p []byte) bool {
	switch codec {
	case "h264":
		return h264Keyframe(p)
	case "vp8":
		return vp8Keyframe(p)
	}
	return false
}

func h264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	key := func(nal byte) bool { t := nal & 0x1f; return t == 5 || t == 7 }
	switch t := p[0] & 0x1f; {
	case t >= 1 && t <= 23:
		return key(p[0])
	case t == 24: // STAP-A: 16-bit size, NAL unit, ...
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i >= len(p) {
				return false
			}
			if key(p[i]) {
				return true
			}
			i += size
		}
	case t == 28: // FU-A: indicator, header (S bit, type)
		return len(p) >= 2 && p[1]&0x80 != 0 && key(p[1])
	}
	return false
}

func vp8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	x, s, pid := p[0]&0x80 != 0, p[0]&0x10 != 0, p[0]&0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(p) < 2 {
			return false
		}
		ext := p[1]
		i = 2
		if ext&0x80 != 0 { // I: picture id
			if i >= len(p) {
				return false
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/KEYIDX
			i++
		}
	}
	return i < len(p) && p[i]&0x01 == 0
}

// pacer lets an event through at most once per interval: the aggregation of
// viewers' keyframe requests into requests to the upstream. It is not safe
// for concurrent use.
type pacer struct {
	interval time.Duration
	last     time.Time
}

// allow reports whether an event at now may go through, and if so records
// it.
func (p *pacer) allow(now time.Time) bool {
	if !p.last.IsZero() && now.Sub(p.last) < p.interval {
		return false
	}
	p.last = now
	return true
}
