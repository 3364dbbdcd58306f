package srt

import "encoding/binary"

// MPEG-TS, as far as a standby needs it: a held SRT publisher's TS is
// cached from its last video key frame on, with the latest PAT and PMT,
// so that when it takes over the origin starts the stream at once instead
// of at the standby's next key frame.
//
// A key frame starts at a packet of the video stream (the PMT's first
// H.264, H.265 or MPEG-2/4 video stream) that starts a PES (payload unit
// start) and whose adaptation field has the random access indicator set,
// as FFmpeg and other encoders mark them. A payload that is not whole TS
// packets, or a stream with no such mark, caches nothing.

const (
	tsPacket = 188
	tsSync   = 0x47
	// maxGOPBytes bounds a standby's cached GOP: the replay is written to
	// the origin leg at once, and gosrt queues at most 1,024 packets of
	// 1,316 bytes. Past it the GOP is dropped until the next key frame.
	maxGOPBytes = 1 << 20
)

// Stream types of video the cache starts at (ISO/IEC 13818-1 table 2-34).
var tsVideoTypes = map[byte]bool{
	0x01: true, // MPEG-1 video
	0x02: true, // MPEG-2 video
	0x10: true, // MPEG-4 part 2
	0x1b: true, // H.264
	0x24: true, // H.265
}

// gopCache is a standby's cached TS. It is used by one goroutine.
type gopCache struct {
	pmtPID   uint16 // 0: no PAT seen
	videoPID uint16 // 0: no PMT with video seen
	pat, pmt []byte // the latest PAT and PMT packets
	gop      []byte // whole TS packets from the last key frame on
	inGOP    bool   // a key frame was seen and the GOP is within its bound
}

// write caches the TS packets of one SRT payload.
func (g *gopCache) write(p []byte) {
	if len(p) == 0 || len(p)%tsPacket != 0 {
		g.drop()
		return
	}
	for off := 0; off < len(p); off += tsPacket {
		g.packet(p[off : off+tsPacket])
	}
}

func (g *gopCache) drop() {
	g.gop = g.gop[:0]
	g.inGOP = false
}

func (g *gopCache) packet(b []byte) {
	if b[0] != tsSync {
		g.drop()
		return
	}
	pid := binary.BigEndian.Uint16(b[1:3]) & 0x1fff
	pusi := b[1]&0x40 != 0
	switch {
	case pid == 0:
		if pusi {
			if pmt, ok := parsePAT(tsPayload(b)); ok {
				g.pmtPID = pmt
				g.pat = append(g.pat[:0], b...)
			}
		}
		return
	case pid == g.pmtPID && g.pmtPID != 0:
		if pusi {
			if v, ok := parsePMT(tsPayload(b)); ok {
				g.videoPID = v
				g.pmt = append(g.pmt[:0], b...)
			}
		}
		return
	}
	if pid == g.videoPID && g.videoPID != 0 && pusi && randomAccess(b) {
		g.gop = g.gop[:0]
		g.inGOP = true
	}
	if !g.inGOP {
		return
	}
	if len(g.gop)+tsPacket > maxGOPBytes {
		g.drop()
		return
	}
	g.gop = append(g.gop, b...)
}

// replay returns the cached PAT, PMT and GOP as SRT payloads of whole TS
// packets (at most 7 each), or nothing when no GOP is cached, and forgets
// the GOP.
func (g *gopCache) replay() [][]byte {
	if !g.inGOP || len(g.gop) == 0 || g.pat == nil || g.pmt == nil {
		g.drop()
		return nil
	}
	const per = 7 * tsPacket
	all := make([]byte, 0, 2*tsPacket+len(g.gop))
	all = append(append(append(all, g.pat...), g.pmt...), g.gop...)
	out := make([][]byte, 0, len(all)/per+1)
	for len(all) > 0 {
		n := min(per, len(all))
		out = append(out, all[:n:n])
		all = all[n:]
	}
	g.drop()
	return out
}

// tsPayload returns the payload of a 188-byte TS packet, after any
// adaptation field; nil when it has none.
func tsPayload(b []byte) []byte {
	afc := b[3] >> 4 & 3
	off := 4
	if afc == 2 || afc == 3 {
		off += 1 + int(b[4])
	}
	if afc == 0 || afc == 2 || off >= len(b) {
		return nil
	}
	return b[off:]
}

// randomAccess reports whether a TS packet's adaptation field has the
// random access indicator set.
func randomAccess(b []byte) bool {
	afc := b[3] >> 4 & 3
	return (afc == 2 || afc == 3) && b[4] > 0 && b[5]&0x40 != 0
}

// section returns the PSI section that starts a payload (after its
// pointer field), bounded by its section_length and the payload; false
// when it does not fit in one packet or is not tableID.
func section(p []byte, tableID byte) ([]byte, bool) {
	if len(p) < 1 {
		return nil, false
	}
	off := 1 + int(p[0])
	if off+3 > len(p) || p[off] != tableID {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(p[off+1:]) & 0x0fff)
	end := off + 3 + n
	if n < 9 || end > len(p) {
		return nil, false
	}
	// Without the 5 bytes after the length and the CRC.
	return p[off+8 : end-4], true
}

// parsePAT returns the PMT PID of the first program of a PAT payload.
func parsePAT(p []byte) (uint16, bool) {
	s, ok := section(p, 0x00)
	if !ok {
		return 0, false
	}
	for ; len(s) >= 4; s = s[4:] {
		if binary.BigEndian.Uint16(s) != 0 { // 0 is the network PID
			return binary.BigEndian.Uint16(s[2:]) & 0x1fff, true
		}
	}
	return 0, false
}

// parsePMT returns the PID of the first video stream of a PMT payload.
func parsePMT(p []byte) (uint16, bool) {
	s, ok := section(p, 0x02)
	if !ok || len(s) < 4 {
		return 0, false
	}
	info := int(binary.BigEndian.Uint16(s[2:]) & 0x0fff)
	if 4+info > len(s) {
		return 0, false
	}
	for s = s[4+info:]; len(s) >= 5; {
		typ, pid := s[0], binary.BigEndian.Uint16(s[1:])&0x1fff
		es := int(binary.BigEndian.Uint16(s[3:]) & 0x0fff)
		if tsVideoTypes[typ] {
			return pid, true
		}
		if 5+es > len(s) {
			break
		}
		s = s[5+es:]
	}
	return 0, false
}
