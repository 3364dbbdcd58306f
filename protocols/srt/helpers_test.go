package srt

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/datarhei/gosrt/packet"

	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/harness"
)

// routerFunc is a Router made of a function.
type routerFunc func(ctx context.Context, key stream.Key) (stream.Origin, error)

func (f routerFunc) Route(ctx context.Context, key stream.Key) (stream.Origin, error) {
	return f(ctx, key)
}

var _ Router = routerFunc(nil)

// staticRouter routes every stream to one SRT endpoint.
func staticRouter(addr string) Router {
	return routerFunc(func(context.Context, stream.Key) (stream.Origin, error) {
		return stream.Origin{ID: "origin-" + addr, SRT: addr}, nil
	})
}

// fakeSessions records Track calls; it is a MeteredSessions and keeps the
// last session's byte counters.
type fakeSessions struct {
	mu      sync.Mutex
	active  map[stream.Key]int
	total   int
	in, out *atomic.Uint64
}

func (f *fakeSessions) TrackMetered(key stream.Key, proto string, in, out *atomic.Uint64) func() {
	f.mu.Lock()
	f.in, f.out = in, out
	f.mu.Unlock()
	return f.Track(key, proto)
}

// bytes returns the last metered session's counts.
func (f *fakeSessions) bytes() (in, out uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.in == nil {
		return 0, 0
	}
	return f.in.Load(), f.out.Load()
}

func (f *fakeSessions) Track(key stream.Key, proto string) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.active == nil {
		f.active = make(map[stream.Key]int)
	}
	f.active[key]++
	f.total++
	return func() {
		f.mu.Lock()
		f.active[key]--
		f.mu.Unlock()
	}
}

func (f *fakeSessions) count(key stream.Key) (active, total int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active[key], f.total
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
