package webrtc

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"errors"
)

// STUN decoding errors. Each names where decoding stopped.
var (
	ErrSTUNShort       = errors.New("webrtc: stun: shorter than a header")
	ErrSTUNNotSTUN     = errors.New("webrtc: stun: first two bits are not zero")
	ErrSTUNCookie      = errors.New("webrtc: stun: wrong magic cookie")
	ErrSTUNLength      = errors.New("webrtc: stun: message length is not a multiple of 4 or exceeds the packet")
	ErrSTUNAttrTrunc   = errors.New("webrtc: stun: attribute header or value truncated")
	ErrSTUNNoUsername  = errors.New("webrtc: stun: no USERNAME attribute")
	ErrSTUNBadUsername = errors.New("webrtc: stun: USERNAME is empty or too long")
	ErrSTUNNoIntegrity = errors.New("webrtc: stun: no MESSAGE-INTEGRITY attribute")
	ErrSTUNIntegrity   = errors.New("webrtc: stun: MESSAGE-INTEGRITY does not match")
)

// STUN constants (RFC 5389).
const (
	stunHeaderLen    = 20
	stunMagicCookie  = 0x2112A442
	stunAttrUsername = 0x0006
	// stunAttrIntegrity is MESSAGE-INTEGRITY, an HMAC-SHA1 (RFC 5389 §15.4).
	stunAttrIntegrity = 0x0008
	stunIntegrityLen  = sha1.Size
	// stunBindingRequest is the message type of a Binding request.
	stunBindingRequest = 0x0001
	// stunMaxUsername is the RFC 5389 limit on USERNAME (513 bytes).
	stunMaxUsername = 513
)

// stunHeader is the part of a STUN message the relay needs.
type stunHeader struct {
	Type uint16
	// TxID is the 96-bit transaction id.
	TxID [12]byte
}

// isRequest reports whether the message class is a request (C1=0, C0=0).
func (h stunHeader) isRequest() bool { return h.Type&0x0110 == 0 }

// isResponse reports whether the class is a success or error response.
func (h stunHeader) isResponse() bool { return h.Type&0x0100 != 0 }

// parseSTUNHeader validates the fixed header of a STUN message in p: the top
// two bits, the magic cookie, and a length that is a multiple of 4 and fits in
// p. Trailing bytes after the message are tolerated (and ignored).
func parseSTUNHeader(p []byte) (stunHeader, []byte, error) {
	var h stunHeader
	if len(p) < stunHeaderLen {
		return h, nil, ErrSTUNShort
	}
	if p[0]&0xC0 != 0 {
		return h, nil, ErrSTUNNotSTUN
	}
	if binary.BigEndian.Uint32(p[4:8]) != stunMagicCookie {
		return h, nil, ErrSTUNCookie
	}
	n := int(binary.BigEndian.Uint16(p[2:4]))
	if n%4 != 0 || stunHeaderLen+n > len(p) {
		return h, nil, ErrSTUNLength
	}
	h.Type = binary.BigEndian.Uint16(p[0:2])
	copy(h.TxID[:], p[8:20])
	return h, p[stunHeaderLen : stunHeaderLen+n], nil
}

// STUNUsername returns the USERNAME attribute of the STUN message in p, as a
// sub-slice of p (no copy, no allocation), together with the header. It checks
// every bound before reading: a packet that lies about its lengths returns an
// error, never a panic. For ICE the username is "answerUfrag:offerUfrag" on
// requests from the client to the ICE-lite origin.
func STUNUsername(p []byte) (user []byte, h stunHeader, err error) {
	h, attrs, err := parseSTUNHeader(p)
	if err != nil {
		return nil, h, err
	}
	for len(attrs) > 0 {
		if len(attrs) < 4 {
			return nil, h, ErrSTUNAttrTrunc
		}
		typ := binary.BigEndian.Uint16(attrs[0:2])
		n := int(binary.BigEndian.Uint16(attrs[2:4]))
		padded := (n + 3) &^ 3
		if 4+padded > len(attrs) {
			return nil, h, ErrSTUNAttrTrunc
		}
		if typ == stunAttrUsername {
			if n == 0 || n > stunMaxUsername {
				return nil, h, ErrSTUNBadUsername
			}
			return attrs[4 : 4+n], h, nil
		}
		attrs = attrs[4+padded:]
	}
	return nil, h, ErrSTUNNoUsername
}

// STUNCheckIntegrity verifies the MESSAGE-INTEGRITY attribute of the STUN
// message in p with the ICE short-term credential key, the password of the
// agent the request is sent to (RFC 5389 §15.4; ICE passwords are ASCII, so
// SASLprep leaves them unchanged). The HMAC-SHA1 covers the message up to the
// attribute, with the header's length field counting up to and including it;
// attributes after it (FINGERPRINT) are ignored. A message without the
// attribute returns ErrSTUNNoIntegrity, a wrong one ErrSTUNIntegrity. p is
// not modified. It allocates (the HMAC state), so the relay calls it only for
// requests that would open a session or map a new client address.
func STUNCheckIntegrity(p []byte, key []byte) error {
	_, attrs, err := parseSTUNHeader(p)
	if err != nil {
		return err
	}
	off := stunHeaderLen
	for len(attrs) > 0 {
		if len(attrs) < 4 {
			return ErrSTUNAttrTrunc
		}
		typ := binary.BigEndian.Uint16(attrs[0:2])
		n := int(binary.BigEndian.Uint16(attrs[2:4]))
		padded := (n + 3) &^ 3
		if 4+padded > len(attrs) {
			return ErrSTUNAttrTrunc
		}
		if typ == stunAttrIntegrity {
			if n != stunIntegrityLen {
				return ErrSTUNIntegrity
			}
			var hdr [4]byte
			copy(hdr[:2], p[:2])
			binary.BigEndian.PutUint16(hdr[2:4], uint16(off+4+n-stunHeaderLen))
			mac := hmac.New(sha1.New, key)
			mac.Write(hdr[:])
			mac.Write(p[4:off])
			var sum [sha1.Size]byte
			if !hmac.Equal(mac.Sum(sum[:0]), attrs[4:4+n]) {
				return ErrSTUNIntegrity
			}
			return nil
		}
		attrs = attrs[4+padded:]
		off += 4 + padded
	}
	return ErrSTUNNoIntegrity
}

// Packet classes by first byte (RFC 7983).
type packetClass uint8

const (
	classOther packetClass = iota
	classSTUN
	classDTLS
	classRTP
)

// classify demultiplexes a packet by its first byte as RFC 7983 describes:
// 0-3 STUN, 20-63 DTLS, 128-191 RTP/RTCP. Everything else (including TURN
// channel data, which the relay does not carry) is classOther.
func classify(p []byte) packetClass {
	if len(p) == 0 {
		return classOther
	}
	switch b := p[0]; {
	case b <= 3:
		return classSTUN
	case b >= 20 && b <= 63:
		return classDTLS
	case b >= 128 && b <= 191:
		return classRTP
	}
	return classOther
}
