package handshake

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// The test side of the complex handshake is written independently of
// complex.go, after librtmp's handshake.h: the keys as librtmp spells them,
// a client that signs C1, and the client's verification of S1 and S2.

var (
	testPlayerKey = mustHex("" +
		"47656e75696e652041646f626520466c61736820506c6179657220303031" + // Genuine Adobe Flash Player 001
		"f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
	testServerKey = mustHex("" +
		"47656e75696e652041646f626520466c617368204d6564696120536572766572203030" + // Genuine Adobe Flash Media Server 00
		"31" + // 1
		"f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func hmacSHA256(key []byte, data ...[]byte) []byte {
	h := hmac.New(sha256.New, key)
	for _, d := range data {
		h.Write(d)
	}
	return h.Sum(nil)
}

// testOffset is librtmp's GetDigestOffset1 (base 8) and GetDigestOffset2
// (base 772).
func testOffset(b []byte, base int) int {
	return (int(b[base])+int(b[base+1])+int(b[base+2])+int(b[base+3]))%728 + base + 4
}

// signC1 writes the client digest into c1 with the digest block at base
// (8 or 772), as a Flash Player client does, and returns the digest.
func signC1(c1 []byte, base int) []byte {
	off := testOffset(c1, base)
	d := hmacSHA256(testPlayerKey[:30], c1[:off], c1[off+32:])
	copy(c1[off:], d)
	return d
}

// signedC0C1 returns C0 and a deterministic C1 signed with its digest
// block at base, with FFmpeg's client version (9.0.124.2).
func signedC0C1(base layout) []byte {
	r := rand.New(rand.NewPCG(uint64(base), 1))
	b := make([]byte, 1+Size)
	b[0] = Version
	for i := range b[1:] {
		b[1+i] = byte(r.Uint32())
	}
	c1 := b[1:]
	binary.BigEndian.PutUint32(c1[0:4], 1234)
	binary.BigEndian.PutUint32(c1[4:8], 0x09007c02)
	signC1(c1, int(base))
	return b
}

// testClientDigest finds the digest of a signed C1 as a server does.
func testClientDigest(c1 []byte) ([]byte, int, bool) {
	if binary.BigEndian.Uint32(c1[4:8]) == 0 {
		return nil, 0, false
	}
	for _, base := range []int{8, 772} {
		off := testOffset(c1, base)
		if bytes.Equal(hmacSHA256(testPlayerKey[:30], c1[:off], c1[off+32:]), c1[off:off+32]) {
			return c1[off : off+32], base, true
		}
	}
	return nil, 0, false
}

// verifyServer checks S1 and S2 as librtmp's client does after sending a C1
// whose digest is clientDigest, and returns the base of S1's digest block.
func verifyServer(s1, s2, clientDigest []byte) (int, error) {
	if binary.BigEndian.Uint32(s1[4:8]) == 0 {
		return 0, errors.New("S1 has a zero version")
	}
	base := 0
	for _, b := range []int{8, 772} {
		off := testOffset(s1, b)
		if bytes.Equal(hmacSHA256(testServerKey[:36], s1[:off], s1[off+32:]), s1[off:off+32]) {
			base = b
			break
		}
	}
	if base == 0 {
		return 0, errors.New("S1 digest does not verify")
	}
	digestResp := hmacSHA256(testServerKey, clientDigest)
	signature := hmacSHA256(digestResp, s2[:Size-32])
	if !bytes.Equal(signature, s2[Size-32:]) {
		return 0, errors.New("S2 signature does not verify")
	}
	return base, nil
}

// TestDigestVectors checks the three HMACs of the complex handshake against
// values computed with OpenSSL (openssl dgst -sha256 -mac HMAC) over the
// C1 whose byte i is i*7.
func TestDigestVectors(t *testing.T) {
	c1 := make([]byte, Size)
	for i := range c1 {
		c1[i] = byte(i * 7)
	}
	tests := []struct {
		l                    layout
		off                  int
		player, server, sig2 string
	}{
		{digestFirst, 278,
			"10a19074a5ce4699edbd7bb14b4519762d742302d4e639d6d47f48fff3ad56f2",
			"13023b51d9b70e26a2ce1ca0c6ec64e63b3e6b6870328af2969571460c9c60fc",
			"3b4bc7bfec34c932defd24dcdd8d970942fde19b5000f59ec52658e7f067d1fe"},
		{keyFirst, 930,
			"c1f8a653abd40fa9c64fd1409605c2605cd0a5f092e8e12fcdbeed20c143cb81",
			"0aa533153820fa417b970333160112c6e0a3926eab6600608c4ffcd5c5a25278",
			""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(int(tt.l)), func(t *testing.T) {
			off := digestOffset(c1, tt.l)
			if off != tt.off || testOffset(c1, int(tt.l)) != tt.off {
				t.Fatalf("offset %d (test %d), want %d", off, testOffset(c1, int(tt.l)), tt.off)
			}
			player := digestAt(nil, c1, off, playerKey[:playerKeyTextLen])
			if got := hex.EncodeToString(player); got != tt.player {
				t.Errorf("player digest %s, want %s", got, tt.player)
			}
			signed := bytes.Clone(c1)
			if got := hex.EncodeToString(signC1(signed, int(tt.l))); got != tt.player {
				t.Errorf("test client digest %s, want %s", got, tt.player)
			}
			if got := hex.EncodeToString(digestAt(nil, c1, off, serverKey[:serverKeyTextLen])); got != tt.server {
				t.Errorf("server digest %s, want %s", got, tt.server)
			}
			if tt.sig2 != "" {
				sig := mac(nil, mac(nil, serverKey, player), c1[:s2SignedLen])
				if got := hex.EncodeToString(sig); got != tt.sig2 {
					t.Errorf("S2 signature %s, want %s", got, tt.sig2)
				}
			}
		})
	}
}

func TestServerComplex(t *testing.T) {
	for _, l := range layouts {
		t.Run(fmt.Sprint(int(l)), func(t *testing.T) {
			in := signedC0C1(l)
			cd, base, ok := testClientDigest(in[1:])
			if !ok || base != int(l) {
				t.Fatalf("test C1 does not verify (%v, %d)", ok, base)
			}
			in = append(in, bytes.Repeat([]byte{0x55}, Size)...) // any C2
			p := &rw{in: bytes.NewReader(in)}
			kind, err := Server(p, 42)
			if err != nil || kind != Complex {
				t.Fatalf("%v handshake, err %v; want complex", kind, err)
			}
			out := p.out.Bytes()
			if len(out) != 1+2*Size || out[0] != Version {
				t.Fatalf("wrote %d bytes, S0 %#x", len(out), out[0])
			}
			s1, s2 := out[1:1+Size], out[1+Size:]
			if binary.BigEndian.Uint32(s1[0:4]) != 42 {
				t.Errorf("S1 time %d, want 42", binary.BigEndian.Uint32(s1[0:4]))
			}
			sbase, err := verifyServer(s1, s2, cd)
			if err != nil {
				t.Fatal(err)
			}
			if sbase != int(l) {
				t.Errorf("S1 digest block at %d, want the client's %d", sbase, l)
			}
		})
	}
}

// TestServerFallback: a C1 that is not properly signed gets the simple
// handshake, as it always did.
func TestServerFallback(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(c1 []byte)
	}{
		{"digest byte", func(c1 []byte) { c1[testOffset(c1, 8)+5] ^= 1 }},
		{"data byte", func(c1 []byte) { c1[1500] ^= 1 }},
		{"time", func(c1 []byte) { c1[0] ^= 0x80 }},
		{"version zero", func(c1 []byte) {
			clear(c1[4:8])
			signC1(c1, 8) // correctly signed, but version 0 asks for simple
		}},
		{"signed with the server key", func(c1 []byte) {
			off := testOffset(c1, 8)
			copy(c1[off:], hmacSHA256(testServerKey[:36], c1[:off], c1[off+32:]))
		}},
		{"full player key", func(c1 []byte) {
			off := testOffset(c1, 8)
			copy(c1[off:], hmacSHA256(testPlayerKey, c1[:off], c1[off+32:]))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := signedC0C1(digestFirst)
			tt.tamper(in[1:])
			c1 := bytes.Clone(in[1:])
			in = append(in, make([]byte, Size)...)
			p := &rw{in: bytes.NewReader(in)}
			kind, err := Server(p, 7)
			if err != nil || kind != Simple {
				t.Fatalf("%v handshake, err %v; want simple", kind, err)
			}
			out := p.out.Bytes()
			if !bytes.Equal(out[5:9], []byte{0, 0, 0, 0}) {
				t.Fatalf("S1 version field %x, want zero", out[5:9])
			}
			if !bytes.Equal(out[1+Size:], c1) {
				t.Fatal("S2 does not echo C1")
			}
		})
	}
}

func BenchmarkServerComplex(b *testing.B) {
	in := append(signedC0C1(digestFirst), make([]byte, Size)...)
	r := bytes.NewReader(in)
	p := &rw{in: r}
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(in)
		p.out.Reset()
		if kind, err := Server(p, 0); err != nil || kind != Complex {
			b.Fatal(kind, err)
		}
	}
}
