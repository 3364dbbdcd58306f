package srt

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/datarhei/gosrt/packet"
)

// Handshakes captured from FFmpeg 5.1 (libsrt 1.5) callers. The conclusions
// carry the cookie 0x55667788 that the capturing listener handed out.
var (
	// ffmpeg -f mpegts 'srt://127.0.0.1:P?streamid=#!::r=live/s,m=publish'
	ffInduction  = mustHex("8000000000000000000000c90000000000000004000000026f01f959000005dc0000200000000001345a9caa000000000100007f000000000000000000000000")
	ffConclusion = mustHex("8000000000000000000002330000000000000005000000056f01f959000005dc00002000ffffffff345a9caa556677880100007f0000000000000000000000000001000300010501000000bf00780000000500063a3a2123696c3d72732f6576703d6d2c696c627500006873")
	// ... plus &passphrase=...&pbkeylen=16, with the streamid URL-encoded in
	// the URL: FFmpeg 5.1 sends it as is, without decoding.
	ffConclusionKM = mustHex("8000000000000000000003d10000000000000005000200075998262c000005dc00002000ffffffff35049b8e556677880100007f0000000000000000000000000001000300010501000000bf007800000005000a253332253325313241332541443325726576696c734632256d43322570443325696c6275000068730003000e122029010000000002000200000004049e01e5b25c67b4639d9bd9b8481be57696bbdffddd2d1f7f4bcf573f0cc7df317f628ea2d2105c3c")
	// ffmpeg -i 'srt://127.0.0.1:P?streamid=#!::h=example.com,r=live/s,m=request'
	ffConclusionPlay = mustHex("8000000000000000000008ab00000000000000050000000507837ca2000005dc00002000ffffffff0b24ea67556677880100007f0000000000000000000000000001000300010501000000bf00780000000500093a3a212378653d686c706d616f632e653d722c6d6576696c6d2c732f7165723d74736575")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestParseHandshakeFFmpeg(t *testing.T) {
	tests := []struct {
		name     string
		pkt      []byte
		typ      packet.HandshakeType
		version  uint32
		socketID uint32
		cookie   uint32
		sid      string
		hasSID   bool
		hasKM    bool
	}{
		{"induction", ffInduction, packet.HSTYPE_INDUCTION, 4, 0x345a9caa, 0, "", false, false},
		{"conclusion publish", ffConclusion, packet.HSTYPE_CONCLUSION, 5, 0x345a9caa, 0x55667788, "#!::r=live/s,m=publish", true, false},
		{"conclusion KMREQ", ffConclusionKM, packet.HSTYPE_CONCLUSION, 5, 0x35049b8e, 0x55667788, "%23%21%3A%3Ar%3Dlive%2Fs%2Cm%3Dpublish", true, true},
		{"conclusion play", ffConclusionPlay, packet.HSTYPE_CONCLUSION, 5, 0x0b24ea67, 0x55667788, "#!::h=example.com,r=live/s,m=request", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs, err := parseHandshake(tt.pkt)
			if err != nil {
				t.Fatal(err)
			}
			if hs.Type != tt.typ || hs.Version != tt.version || hs.SocketID != tt.socketID || hs.Cookie != tt.cookie {
				t.Errorf("got type %v version %d socket %#x cookie %#x", hs.Type, hs.Version, hs.SocketID, hs.Cookie)
			}
			if hs.StreamID != tt.sid || hs.HasSID != tt.hasSID || hs.HasKM != tt.hasKM {
				t.Errorf("got sid %q (%v) km %v, want %q (%v) km %v", hs.StreamID, hs.HasSID, hs.HasKM, tt.sid, tt.hasSID, tt.hasKM)
			}
			if hs.DestID != 0 {
				t.Errorf("dest id %#x", hs.DestID)
			}
		})
	}
}

// Every prefix of a real handshake either parses (when it ends exactly on
// an extension boundary) or fails with a named error; none panics.
func TestParseHandshakeTruncatedAtEveryLength(t *testing.T) {
	for _, full := range [][]byte{ffInduction, ffConclusion, ffConclusionKM, ffConclusionPlay} {
		boundaries := map[int]bool{hsMinLen: true, len(full): true}
		for off := hsMinLen; off+4 <= len(full); {
			off += 4 + 4*int(full[off+2])<<8 + 4*int(full[off+3])
			boundaries[off] = true
		}
		for n := 0; n < len(full); n++ {
			_, err := parseHandshake(append([]byte(nil), full[:n]...))
			switch {
			case n < headerLen:
				if !errors.Is(err, ErrShortPacket) {
					t.Errorf("len %d: %v, want ErrShortPacket", n, err)
				}
			case n < hsMinLen:
				if !errors.Is(err, ErrTruncatedHS) {
					t.Errorf("len %d: %v, want ErrTruncatedHS", n, err)
				}
			case boundaries[n]:
				if err != nil && full[offHSType+3] == 0xff {
					t.Errorf("len %d (extension boundary): %v", n, err)
				}
			default:
				if !errors.Is(err, ErrTruncatedExt) && !errors.Is(err, ErrExtLength) {
					t.Errorf("len %d: %v, want a truncation error", n, err)
				}
			}
		}
	}
}

func TestParseHandshakeExtensions(t *testing.T) {
	concl := func(exts ...ext) []byte {
		return hsPacket(0, hsv5, packet.HSTYPE_CONCLUSION, 7, 9, exts...)
	}
	tests := []struct {
		name string
		pkt  []byte
		err  error
		sid  string
	}{
		{"no extensions", concl(), nil, ""},
		{"HSREQ and SID", concl(hsreqExt(), sidExt("live/a")), nil, "live/a"},
		{"SID of 4 bytes", concl(sidExt("abcd")), nil, "abcd"},
		{"SID of 5 bytes", concl(sidExt("abcde")), nil, "abcde"},
		{"SID of 512 bytes", concl(sidExt(strings.Repeat("x", 512))), nil, strings.Repeat("x", 512)},
		{"SID of 516 bytes", concl(sidExt(strings.Repeat("x", 516))), ErrLongSID, ""},
		{"SID length 0", concl(ext{packet.EXTTYPE_SID, nil, 0}), ErrShortSID, ""},
		{"SID length 1 word, 1 byte present", concl(ext{packet.EXTTYPE_SID, []byte{'a'}, 1}), ErrExtLength, ""},
		{"SID length 1 word, 3 bytes present", concl(ext{packet.EXTTYPE_SID, []byte("abc"), 1}), ErrExtLength, ""},
		{"SID length 0, 3 bytes follow", concl(ext{packet.EXTTYPE_SID, []byte("abc"), 0}), ErrShortSID, ""},
		{"bogus length 0xffff", concl(ext{packet.EXTTYPE_SID, []byte("abcd"), 0xffff}), ErrExtLength, ""},
		{"bogus HSREQ length", concl(ext{packet.EXTTYPE_HSREQ, make([]byte, 8), 200}), ErrExtLength, ""},
		{"trailing 1 byte", append(concl(sidExt("live/a")), 0), ErrTruncatedExt, ""},
		{"trailing 3 bytes", append(concl(hsreqExt()), 0, 5, 0), ErrTruncatedExt, ""},
		{"unknown extension type passes", concl(ext{packet.CtrlSubType(42), make([]byte, 8), -1}, sidExt("a/b")), nil, "a/b"},
		{"short HSREQ passes (origin decides)", concl(ext{packet.EXTTYPE_HSREQ, make([]byte, 4), -1}, sidExt("a/b")), nil, "a/b"},
		{"data packet", append([]byte{0, 0, 0, 1}, make([]byte, 60)...), ErrNotHandshake, ""},
		{"keepalive", append([]byte{0x80, 1, 0, 0}, make([]byte, 60)...), ErrNotHandshake, ""},
		{"empty", nil, ErrShortPacket, ""},
		{"header only", append([]byte{0x80, 0, 0, 0}, make([]byte, 12)...), ErrTruncatedHS, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs, err := parseHandshake(tt.pkt)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if err == nil && hs.StreamID != tt.sid {
				t.Errorf("sid %q, want %q", hs.StreamID, tt.sid)
			}
		})
	}
}

// Extensions are only walked on HSv5 conclusions that flag them, as libsrt
// and gosrt do; garbage after an induction is ignored.
func TestParseHandshakeIgnoresTailOfInduction(t *testing.T) {
	pkt := append(append([]byte(nil), ffInduction...), 0xff, 0xff, 0xff)
	hs, err := parseHandshake(pkt)
	if err != nil || hs.Type != packet.HSTYPE_INDUCTION {
		t.Fatalf("%+v %v", hs, err)
	}
}

func TestSIDRoundTrip(t *testing.T) {
	for _, sid := range []string{"a", "ab", "abc", "abcd", "abcde", "#!::r=live/livestream,m=publish", "#!::h=v.example,r=app/nested/s,m=request,secret=x"} {
		w := encodeSID(sid)
		if len(w)%4 != 0 {
			t.Fatalf("%q: %d bytes", sid, len(w))
		}
		if got := decodeSID(w); got != sid {
			t.Errorf("decode(encode(%q)) = %q", sid, got)
		}
		hs, err := parseHandshake(hsPacket(0, hsv5, packet.HSTYPE_CONCLUSION, 1, 2, sidExt(sid)))
		if err != nil || hs.StreamID != sid {
			t.Errorf("%q: parsed %q, %v", sid, hs.StreamID, err)
		}
	}
}

func TestInductionResponse(t *testing.T) {
	peer := netip.MustParseAddrPort("10.1.2.3:4567")
	resp := appendInductionResponse(nil, ffInduction, 0x1111, 0xc00c1e, peer)
	hs, err := parseHandshake(resp)
	if err != nil {
		t.Fatal(err)
	}
	if hs.Type != packet.HSTYPE_INDUCTION || hs.Version != 5 || hs.ExtField != srtMagic || hs.Cookie != 0xc00c1e || hs.SocketID != 0x1111 {
		t.Errorf("%+v", hs)
	}
	if hs.DestID != 0x345a9caa {
		t.Errorf("dest %#x, want the caller's socket id", hs.DestID)
	}
	var cif packet.CIFHandshake
	if err := cif.Unmarshal(resp[headerLen:]); err != nil {
		t.Fatal(err)
	}
	if cif.PeerIP.String() != "10.1.2.3" {
		t.Errorf("peer ip %s", cif.PeerIP)
	}
}

func TestRejection(t *testing.T) {
	rej := appendRejection(nil, ffConclusionKM, 0x2222, rejxUnavail)
	if len(rej) != hsMinLen {
		t.Fatalf("%d bytes, want no extensions", len(rej))
	}
	hs, err := parseHandshake(rej)
	if err != nil {
		t.Fatal(err)
	}
	if !hs.Type.IsRejection() || uint32(hs.Type) != 1000+1503 {
		t.Errorf("type %d", uint32(hs.Type))
	}
	if r, ok := rejectionReason(hs.Type); !ok || r != rejxUnavail {
		t.Errorf("reason %d %v", r, ok)
	}
	if hs.DestID != 0x35049b8e {
		t.Errorf("dest %#x, want the caller's socket id", hs.DestID)
	}
	if _, ok := rejectionReason(packet.HSTYPE_CONCLUSION); ok {
		t.Error("conclusion is not a rejection")
	}
}

func TestInductionRequestFromConclusion(t *testing.T) {
	req := appendInductionRequest(nil, ffConclusionKM, netip.MustParseAddr("192.0.2.1"))
	hs, err := parseHandshake(req)
	if err != nil {
		t.Fatal(err)
	}
	if hs.Type != packet.HSTYPE_INDUCTION || hs.Version != 4 || hs.ExtField != udtDgram || hs.Cookie != 0 || hs.SocketID != 0x35049b8e || hs.DestID != 0 {
		t.Errorf("%+v", hs)
	}
}

func TestSetCookieTouchesOnlyTheCookie(t *testing.T) {
	b := append([]byte(nil), ffConclusionKM...)
	setCookie(b, 0xdeadbeef)
	for i := range b {
		if (i < offCookie || i >= offCookie+4) && b[i] != ffConclusionKM[i] {
			t.Fatalf("byte %d changed", i)
		}
	}
	if hs, _ := parseHandshake(b); hs.Cookie != 0xdeadbeef {
		t.Errorf("cookie %#x", hs.Cookie)
	}
}

func TestCookie(t *testing.T) {
	var secret [32]byte
	a := netip.MustParseAddrPort("127.0.0.1:5000")
	b := netip.MustParseAddrPort("127.0.0.1:5001")
	if cookieFor(&secret, a, 7) != cookieFor(&secret, a, 7) {
		t.Error("cookie not deterministic")
	}
	if cookieFor(&secret, a, 7) == cookieFor(&secret, b, 7) {
		t.Error("cookie ignores the port")
	}
	if cookieFor(&secret, a, 7) == cookieFor(&secret, a, 8) {
		t.Error("cookie ignores time")
	}
	other := secret
	other[0] = 1
	if cookieFor(&secret, a, 7) == cookieFor(&other, a, 7) {
		t.Error("cookie ignores the secret")
	}
}
