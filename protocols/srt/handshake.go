package srt

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	srtnet "github.com/datarhei/gosrt/net"
	"github.com/datarhei/gosrt/packet"
)

// Wire layout of an SRT packet carrying a handshake. Offsets are from the
// start of the UDP payload: a 16-byte packet header, then the 48-byte
// handshake control information field (CIF), then HSv5 extensions.
const (
	headerLen  = 16
	hsCIFLen   = 48
	hsMinLen   = headerLen + hsCIFLen
	maxSIDLen  = 512 // SRT caps the stream id at 512 bytes
	hsv5       = 5
	hsv4       = 4
	srtMagic   = 0x4A17 // extension field of an HSv5 induction response
	udtDgram   = 2      // extension field of an induction request (UDT socket type)
	offDestID  = 12
	offVersion = headerLen + 0
	offEncr    = headerLen + 4
	offExtFld  = headerLen + 6
	offHSType  = headerLen + 20
	offSockID  = headerLen + 24
	offCookie  = headerLen + 28
	offPeerIP  = headerLen + 32
)

// Errors returned by parseHandshake. They say where decoding stopped; the
// server counts them and drops the packet.
var (
	ErrShortPacket  = errors.New("srt: packet shorter than the 16-byte header")
	ErrNotHandshake = errors.New("srt: not a handshake control packet")
	ErrTruncatedHS  = errors.New("srt: handshake shorter than its 48-byte body")
	ErrTruncatedExt = errors.New("srt: handshake extension header truncated")
	ErrExtLength    = errors.New("srt: handshake extension longer than the packet")
	ErrShortSID     = errors.New("srt: stream id extension shorter than 4 bytes")
	ErrLongSID      = errors.New("srt: stream id extension longer than 512 bytes")
)

// Handshake rejection codes. On the wire a rejection is a handshake whose
// Handshake Type is 1000 + reason; reasons below 1000 are SRT's own
// (SRT_REJ_*), reasons from 1000 are application codes (SRT_REJX_*, most of
// them 1000 + an HTTP status), as SRS uses them.
const (
	rejResource   = 3    // SRT_REJ_RESOURCE: session table full
	rejClose      = 7    // SRT_REJ_CLOSE: the server is closing
	rejVersion    = 8    // SRT_REJ_VERSION: not an HSv5 caller
	rejxBadReq    = 1400 // SRT_REJX_BAD_REQUEST: stream id names no valid stream
	rejxUnavail   = 1503 // SRT_REJX_DOWN: no origin serves the stream
	rejxGatewayTO = 1504 // SRT_REJX_GW (timeout): the origin did not answer
	rejxGateway   = 1502 // SRT_REJX_GW: the origin refused the connection
	rejFailBase   = 1000 // URQ_FAILURE_TYPES
)

// handshake is the part of an SRT handshake the proxy routes on. Fixed
// fields come from gosrt's decoder; the extension chain is walked here with
// strict bounds first, because gosrt's walker indexes past the end of a
// truncated chain.
type handshake struct {
	DestID    uint32 // header: destination socket id
	Version   uint32
	ExtField  uint16
	Type      packet.HandshakeType
	SocketID  uint32 // the sender's SRT socket id
	Cookie    uint32
	HasSID    bool
	StreamID  string
	HasKM     bool // a KMREQ or KMRSP extension is present (encryption)
	extOffset int  // start of the extension chain, 0 when there is none
}

// parseHandshake decodes an SRT handshake control packet (header included).
// It never panics and never reads past b; every error wraps one of the
// package's named errors.
func parseHandshake(b []byte) (handshake, error) {
	var hs handshake
	if len(b) < headerLen {
		return hs, ErrShortPacket
	}
	p, err := packet.NewPacketFromData(nil, b)
	if err != nil {
		return hs, fmt.Errorf("%w: %v", ErrShortPacket, err)
	}
	defer p.Decommission()
	h := p.Header()
	if !h.IsControlPacket || h.ControlType != packet.CTRLTYPE_HANDSHAKE {
		return hs, ErrNotHandshake
	}
	if len(b) < hsMinLen {
		return hs, fmt.Errorf("%w: %d bytes", ErrTruncatedHS, len(b))
	}
	hs.DestID = h.DestinationSocketId

	// Bounds-check the extension chain before gosrt walks it.
	var cif packet.CIFHandshake
	hs.Version = binary.BigEndian.Uint32(b[offVersion:])
	hs.ExtField = binary.BigEndian.Uint16(b[offExtFld:])
	hs.Type = packet.HandshakeType(binary.BigEndian.Uint32(b[offHSType:]))
	walk := hs.Type == packet.HSTYPE_CONCLUSION && hs.ExtField != 0 && len(b) > hsMinLen
	if walk {
		hs.extOffset = hsMinLen
		if err := walkExtensions(b[hsMinLen:], &hs); err != nil {
			return handshake{}, err
		}
	}
	// gosrt validates what it understands (key lengths, known extension
	// types); a value it does not understand is for the origin to judge,
	// so its error is not fatal here: the fixed fields are decoded first.
	_ = p.UnmarshalCIF(&cif)
	hs.Version = cif.Version
	hs.ExtField = cif.ExtensionField
	hs.Type = cif.HandshakeType
	hs.SocketID = cif.SRTSocketId
	hs.Cookie = cif.SynCookie
	return hs, nil
}

// walkExtensions checks that ext is an exact chain of (type, length in
// 32-bit words, body) blocks and extracts the stream id and the presence of
// key material.
func walkExtensions(ext []byte, hs *handshake) error {
	off := hsMinLen
	for len(ext) > 0 {
		if len(ext) < 4 {
			return fmt.Errorf("%w: %d bytes at offset %d", ErrTruncatedExt, len(ext), off)
		}
		typ := packet.CtrlSubType(binary.BigEndian.Uint16(ext[0:]))
		n := int(binary.BigEndian.Uint16(ext[2:])) * 4
		body := ext[4:]
		if n > len(body) {
			return fmt.Errorf("%w: %s claims %d bytes, %d left at offset %d", ErrExtLength, typ, n, len(body), off)
		}
		body = body[:n]
		switch typ {
		case packet.EXTTYPE_SID:
			if n < 4 {
				return fmt.Errorf("%w: at offset %d", ErrShortSID, off)
			}
			if n > maxSIDLen {
				return fmt.Errorf("%w: %d bytes at offset %d", ErrLongSID, n, off)
			}
			hs.HasSID = true
			hs.StreamID = decodeSID(body)
		case packet.EXTTYPE_KMREQ, packet.EXTTYPE_KMRSP:
			hs.HasKM = true
		}
		ext = ext[4+n:]
		off += 4 + n
	}
	return nil
}

// decodeSID undoes SRT's stream id encoding: the string is stored as 32-bit
// little-endian words, so each 4-byte group is byte-reversed, and the last
// group is padded with NULs. len(w) is a multiple of 4.
func decodeSID(w []byte) string {
	s := make([]byte, len(w))
	for i := 0; i+3 < len(w); i += 4 {
		s[i], s[i+1], s[i+2], s[i+3] = w[i+3], w[i+2], w[i+1], w[i]
	}
	for len(s) > 0 && s[len(s)-1] == 0 {
		s = s[:len(s)-1]
	}
	return string(s)
}

// encodeSID is the inverse of decodeSID; tests use it to build handshakes.
func encodeSID(sid string) []byte {
	n := (len(sid) + 3) &^ 3
	w := make([]byte, n)
	copy(w, sid)
	for i := 0; i < n; i += 4 {
		w[i], w[i+1], w[i+2], w[i+3] = w[i+3], w[i+2], w[i+1], w[i]
	}
	return w
}

// isControl reports whether b (at least headerLen bytes) is a control
// packet of the given type.
func isControl(b []byte, t packet.CtrlType) bool {
	return b[0]&0x80 != 0 && binary.BigEndian.Uint16(b[0:])&0x7fff == uint16(t)
}

// destID returns the destination socket id of a packet of at least
// headerLen bytes.
func destID(b []byte) uint32 { return binary.BigEndian.Uint32(b[offDestID:]) }

// appendInductionResponse appends the listener's answer to an induction
// request req (at least hsMinLen bytes): HSv5, the SRT magic in the
// extension field, our SYN cookie and socket id, addressed to the caller's
// socket id. Initial sequence number, MTU and flow window are echoed.
func appendInductionResponse(dst, req []byte, listenerID, cookie uint32, peer netip.AddrPort) []byte {
	start := len(dst)
	dst = append(dst, req[:hsMinLen]...)
	r := dst[start:]
	binary.BigEndian.PutUint32(r[4:], 0)                                                // type-specific
	binary.BigEndian.PutUint32(r[offDestID:], binary.BigEndian.Uint32(req[offSockID:])) // to the caller's socket
	binary.BigEndian.PutUint32(r[offVersion:], hsv5)
	binary.BigEndian.PutUint16(r[offEncr:], 0) // no cipher advertised: the origin decides
	binary.BigEndian.PutUint16(r[offExtFld:], srtMagic)
	binary.BigEndian.PutUint32(r[offHSType:], uint32(packet.HSTYPE_INDUCTION))
	binary.BigEndian.PutUint32(r[offSockID:], listenerID)
	binary.BigEndian.PutUint32(r[offCookie:], cookie)
	putPeerIP(r[offPeerIP:offPeerIP+16], peer.Addr())
	return dst
}

// appendInductionRequest appends the induction request the proxy sends to
// the origin on behalf of a caller, built from the caller's conclusion:
// same socket id, sequence number, MTU and flow window.
func appendInductionRequest(dst, conclusion []byte, origin netip.Addr) []byte {
	start := len(dst)
	dst = append(dst, conclusion[:hsMinLen]...)
	r := dst[start:]
	binary.BigEndian.PutUint32(r[4:], 0)
	binary.BigEndian.PutUint32(r[8:], 0) // timestamp
	binary.BigEndian.PutUint32(r[offDestID:], 0)
	binary.BigEndian.PutUint32(r[offVersion:], hsv4)
	binary.BigEndian.PutUint16(r[offEncr:], 0)
	binary.BigEndian.PutUint16(r[offExtFld:], udtDgram)
	binary.BigEndian.PutUint32(r[offHSType:], uint32(packet.HSTYPE_INDUCTION))
	binary.BigEndian.PutUint32(r[offCookie:], 0)
	putPeerIP(r[offPeerIP:offPeerIP+16], origin)
	return dst
}

// appendRejection appends a rejection of the caller's handshake req (at
// least hsMinLen bytes): the fixed part of req with the Handshake Type set
// to 1000 + reason, addressed to the caller's socket id, with no extensions.
func appendRejection(dst, req []byte, listenerID uint32, reason uint32) []byte {
	start := len(dst)
	dst = append(dst, req[:hsMinLen]...)
	r := dst[start:]
	binary.BigEndian.PutUint32(r[4:], 0)
	binary.BigEndian.PutUint32(r[offDestID:], binary.BigEndian.Uint32(req[offSockID:]))
	binary.BigEndian.PutUint32(r[offVersion:], hsv5)
	binary.BigEndian.PutUint16(r[offEncr:], 0)
	binary.BigEndian.PutUint16(r[offExtFld:], 0)
	binary.BigEndian.PutUint32(r[offHSType:], rejFailBase+reason)
	binary.BigEndian.PutUint32(r[offSockID:], listenerID)
	return dst
}

// setCookie rewrites the SYN cookie of a handshake packet in place. The
// cookie sits at a fixed offset, so the rest of the packet (extensions, key
// material, stream id) is forwarded byte for byte.
func setCookie(b []byte, cookie uint32) { binary.BigEndian.PutUint32(b[offCookie:], cookie) }

// rejectionReason returns the reason carried by a handshake rejection
// (Handshake Type 1000 + reason), and false for any other handshake type.
func rejectionReason(t packet.HandshakeType) (uint32, bool) {
	if t.IsHandshake() || uint32(t) < rejFailBase {
		return 0, false
	}
	return uint32(t) - rejFailBase, true
}

func putPeerIP(dst []byte, a netip.Addr) {
	var ip srtnet.IP
	if a.IsValid() {
		ip.FromNetIP(net.IP(a.Unmap().AsSlice()))
	} else {
		ip.FromNetIP(net.IPv4zero)
	}
	ip.Marshal(dst)
}

// cookieFor derives the SYN cookie for a caller address from the server
// secret and a coarse time bucket (one minute), so that the listener keeps
// no state for callers that never finish the handshake.
func cookieFor(secret *[32]byte, addr netip.AddrPort, bucket int64) uint32 {
	var in [32 + 16 + 2 + 8]byte
	copy(in[:32], secret[:])
	a16 := addr.Addr().As16()
	copy(in[32:48], a16[:])
	binary.BigEndian.PutUint16(in[48:], addr.Port())
	binary.BigEndian.PutUint64(in[50:], uint64(bucket))
	sum := sha256.Sum256(in[:])
	return binary.BigEndian.Uint32(sum[:4])
}
