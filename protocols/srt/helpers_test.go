package srt

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/datarhei/gosrt/packet"

	"github.com/srs-mesh/srs-mesh/protocols/internal/protocoltest"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/harness"
)

// staticRouter routes every stream to one SRT endpoint.
func staticRouter(addr string) stream.Router {
	return protocoltest.RouteTo(stream.Origin{ID: "origin-" + addr, SRT: addr})
}

// startServer runs a server on a fresh 127.0.0.1 port until the test ends.
func startServer(t testing.TB, cfg Config) (*Server, netip.AddrPort) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(pc) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// hsPacket builds an SRT handshake packet: header, CIF, then extensions
// given as (type, body) pairs.
func hsPacket(dest uint32, version uint32, typ packet.HandshakeType, socketID, cookie uint32, exts ...ext) []byte {
	b := make([]byte, hsMinLen)
	binary.BigEndian.PutUint16(b[0:], 0x8000) // control, HANDSHAKE
	binary.BigEndian.PutUint32(b[offDestID:], dest)
	binary.BigEndian.PutUint32(b[offVersion:], version)
	var extField uint16
	for _, e := range exts {
		switch e.typ {
		case packet.EXTTYPE_HSREQ, packet.EXTTYPE_HSRSP:
			extField |= 1
		case packet.EXTTYPE_KMREQ, packet.EXTTYPE_KMRSP:
			extField |= 2
		default:
			extField |= 4
		}
	}
	if version == hsv4 {
		extField = udtDgram
	}
	binary.BigEndian.PutUint16(b[offExtFld:], extField)
	binary.BigEndian.PutUint32(b[headerLen+8:], 0x1234) // ISN
	binary.BigEndian.PutUint32(b[headerLen+12:], 1500)  // MTU
	binary.BigEndian.PutUint32(b[headerLen+16:], 8192)  // flow window
	binary.BigEndian.PutUint32(b[offHSType:], uint32(typ))
	binary.BigEndian.PutUint32(b[offSockID:], socketID)
	binary.BigEndian.PutUint32(b[offCookie:], cookie)
	for _, e := range exts {
		var h [4]byte
		binary.BigEndian.PutUint16(h[0:], uint16(e.typ))
		words := len(e.body) / 4
		if e.words >= 0 {
			words = e.words
		}
		binary.BigEndian.PutUint16(h[2:], uint16(words))
		b = append(b, h[:]...)
		b = append(b, e.body...)
	}
	return b
}

type ext struct {
	typ   packet.CtrlSubType
	body  []byte
	words int // length field; -1 means len(body)/4
}

func sidExt(sid string) ext { return ext{packet.EXTTYPE_SID, encodeSID(sid), -1} }

func hsreqExt() ext {
	body := make([]byte, 12)
	binary.BigEndian.PutUint32(body[0:], 0x010501)
	binary.BigEndian.PutUint32(body[4:], 0xbf)
	binary.BigEndian.PutUint16(body[8:], 120)
	binary.BigEndian.PutUint16(body[10:], 120)
	return ext{packet.EXTTYPE_HSREQ, body, -1}
}

// needSRT skips the test in -short mode or unless FFmpeg was built with SRT.
func needSRT(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts FFmpeg")
	}
	harness.NeedFFmpegSRT(t)
}
