package handshake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
)

// The complex handshake (introduced with Flash Player 9) signs C1/S1 with an
// HMAC-SHA256 digest hidden at a data-dependent offset, and signs S2 with a
// key derived from the client's digest. Flash-era players and some hardware
// encoders refuse a server whose S1 carries no valid digest; FFmpeg checks
// S1 and S2 when it plays and the server announced a version in S1.
//
// C1/S1 layout after time(4) and version(4): two 764-byte blocks, a key block
// and a digest block, in either order. A digest block starts with four bytes
// whose sum, modulo 728, is the offset of the 32-byte digest after them. The
// digest is HMAC-SHA256 over the 1536 bytes without the digest itself.
//
// The key block carries a Diffie-Hellman public key only for RTMPE (C0 = 6),
// which this package does not speak; it is random here, as in nginx-rtmp.

// serverVersion is the version field of a complex S1 (nginx-rtmp's value).
// Clients only check that it is non-zero.
const serverVersion = 0x0d0e0a0d

const (
	digestLen = sha256.Size
	// s2SignedLen is the part of S2 covered by its signature.
	s2SignedLen = Size - digestLen
)

// keyTail completes both Adobe keys.
var keyTail = []byte{
	0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1, 0x02, 0x9e, 0x7e, 0x57,
	0x6e, 0xec, 0x5d, 0x2d, 0x29, 0x80, 0x6f, 0xab, 0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb, 0x31, 0xae,
}

var (
	// playerKey signs C1 (its first 30 bytes, the text).
	playerKey = append([]byte("Genuine Adobe Flash Player 001"), keyTail...)
	// serverKey signs S1 (its first 36 bytes, the text) and, whole, derives
	// the key that signs S2.
	serverKey = append([]byte("Genuine Adobe Flash Media Server 001"), keyTail...)
)

const (
	playerKeyTextLen = 30
	serverKeyTextLen = 36
)

// layout is where a C1/S1 puts its digest block: the base is the offset of
// the four bytes that locate the digest.
type layout int

const (
	// digestFirst: digest block at 8..771, key block at 772..1535 (what
	// FFmpeg, librtmp and Flash Player send; SRS's "schema1").
	digestFirst layout = 8
	// keyFirst: key block at 8..771, digest block at 772..1535 (SRS's
	// "schema0").
	keyFirst layout = 772
)

// layouts is the order in which a C1 is tried.
var layouts = [...]layout{digestFirst, keyFirst}

// digestOffset returns where the digest of b (1536 bytes) starts under l.
func digestOffset(b []byte, l layout) int {
	p := int(l)
	sum := int(b[p]) + int(b[p+1]) + int(b[p+2]) + int(b[p+3])
	return p + 4 + sum%728
}

// digestAt computes the HMAC-SHA256 of b without its 32 bytes at off, keyed
// with key, and appends it to dst.
func digestAt(dst, b []byte, off int, key []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(b[:off])
	h.Write(b[off+digestLen:])
	return h.Sum(dst)
}

// clientDigest returns the digest of a signed C1 and its layout, or false
// when C1 is unsigned (version zero) or its digest is wrong under both
// layouts.
func clientDigest(c1 []byte) ([]byte, layout, bool) {
	if binary.BigEndian.Uint32(c1[4:8]) == 0 {
		return nil, 0, false
	}
	var buf [digestLen]byte
	for _, l := range layouts {
		off := digestOffset(c1, l)
		if hmac.Equal(digestAt(buf[:0], c1, off, playerKey[:playerKeyTextLen]), c1[off:off+digestLen]) {
			return c1[off : off+digestLen], l, true
		}
	}
	return nil, 0, false
}

// fillComplex answers a signed C1: it writes S1 (signed with the server key
// in the client's layout) and S2 (random, signed with a key derived from the
// client's digest). It reports false, writing nothing, when C1 is not
// signed.
func fillComplex(s1, s2, c1 []byte, epoch uint32) bool {
	cd, l, ok := clientDigest(c1)
	if !ok {
		return false
	}
	fillRandom(s1)
	binary.BigEndian.PutUint32(s1[0:4], epoch)
	binary.BigEndian.PutUint32(s1[4:8], serverVersion)
	off := digestOffset(s1, l)
	var d [digestLen]byte
	copy(s1[off:], digestAt(d[:0], s1, off, serverKey[:serverKeyTextLen]))

	fillRandom(s2)
	key := mac(nil, serverKey, cd)
	copy(s2[s2SignedLen:], mac(d[:0], key, s2[:s2SignedLen]))
	return true
}

// mac appends HMAC-SHA256(key, data) to dst.
func mac(dst, key, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(data)
	return h.Sum(dst)
}

// fillRandom fills b (a multiple of 8 bytes long) with random bytes.
func fillRandom(b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rand.Uint64())
	}
}
