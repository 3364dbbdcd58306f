package srt

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/datarhei/gosrt/packet"

	"github.com/srs-mesh/srs-mesh/protocols/internal/protocoltest"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// handshakeSeeds are real and synthetic handshakes, valid and broken.
func handshakeSeeds() [][]byte {
	return [][]byte{
		ffInduction, ffConclusion, ffConclusionKM, ffConclusionPlay,
		hsPacket(0, hsv5, packet.HSTYPE_CONCLUSION, 1, 2, ext{packet.EXTTYPE_SID, nil, 0}),
		hsPacket(0, hsv5, packet.HSTYPE_CONCLUSION, 1, 2, ext{packet.EXTTYPE_SID, []byte("abc"), 1}),
		hsPacket(0, hsv5, packet.HSTYPE_CONCLUSION, 1, 2, ext{packet.EXTTYPE_KMREQ, make([]byte, 16), 0xffff}),
		append(hsPacket(0, hsv5, packet.HSTYPE_CONCLUSION, 1, 2, hsreqExt()), 1, 2),
		ffConclusionKM[:len(ffConclusionKM)-3],
		ffConclusion[:hsMinLen+2],
		{0x80},
	}
}

func FuzzParseHandshake(f *testing.F) {
	for _, b := range handshakeSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		hs, err := parseHandshake(b)
		if err != nil {
			return
		}
		if len(b) < hsMinLen {
			t.Fatalf("accepted a %d-byte handshake", len(b))
		}
		if len(hs.StreamID) > maxSIDLen {
			t.Fatalf("stream id of %d bytes", len(hs.StreamID))
		}
		if hs.HasSID && hs.Type != packet.HSTYPE_CONCLUSION {
			t.Fatalf("stream id on a %s", hs.Type)
		}
	})
}

// FuzzHandlePacket feeds raw datagrams from one caller address to the
// listener's dispatch, with a fixed cookie secret and clock so that seeds
// can carry a valid cookie and reach routing, the origin handshake and an
// established session. Nothing may panic, the table stays bounded, and every
// goroutine is gone after Close.
func FuzzHandlePacket(f *testing.F) {
	testkit.CheckOwnGoroutines(f, "protocols/srt.")
	origin := newFakeOrigin(f, false, 0)
	router := protocoltest.RouterFunc(func(_ context.Context, key stream.Key) (stream.Origin, error) {
		switch key.Stream {
		case "none":
			return stream.Origin{}, stream.ErrNoOrigin
		case "dead":
			return stream.Origin{SRT: "127.0.0.1:1"}, nil
		case "bad":
			return stream.Origin{SRT: "not an address"}, nil
		}
		return stream.Origin{SRT: origin.addr()}, nil
	})
	const maxSessions = 8
	s, err := New(Config{Router: router, MaxSessions: maxSessions, HandshakeTimeout: 200 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	clock := time.Unix(1_700_000_000, 0)
	s.now = func() time.Time { return clock }
	s.secret = [32]byte{}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	s.conn = pc
	f.Cleanup(func() {
		s.Close()
		pc.Close()
	})
	peer := netip.MustParseAddrPort("127.0.0.1:9")
	cookie := s.cookie(peer, 0)

	// One established session, so that data and control packets from the
	// peer reach the forwarding path.
	s.dispatch(hsPacket(0, hsv5, packet.HSTYPE_CONCLUSION, 0x5eed, cookie, hsreqExt(), sidExt("live/est")), peer)
	testkit.WaitFor(f, 3*time.Second, "seed session established", func() bool { return s.Stats().Established == 1 })

	for _, b := range handshakeSeeds() {
		f.Add(b)
	}
	withCookie := func(b []byte) []byte {
		b = append([]byte(nil), b...)
		setCookie(b, cookie)
		return b
	}
	f.Add(withCookie(ffConclusion))
	f.Add(withCookie(ffConclusionKM))
	for _, sid := range []string{"live/none", "live/dead", "live/bad", "#!::r=live/a b", "#!::r=x/y,m=publish"} {
		f.Add(hsPacket(0, hsv5, packet.HSTYPE_CONCLUSION, 0x77, cookie, sidExt(sid)))
	}
	f.Add(hsPacket(0, hsv4, packet.HSTYPE_CONCLUSION, 0x78, cookie))
	f.Add(hsPacket(0, hsv4, packet.HSTYPE_INDUCTION, 0x79, 0))
	f.Add(hsPacket(fakeOriginSocket, hsv5, packet.HSTYPE_CONCLUSION, 0x5eed, cookie))
	f.Add(dataPacket(fakeOriginSocket, 1, 1316))
	f.Add(dataPacket(0x12345, 1, 10))
	f.Add(shutdownPacket(fakeOriginSocket))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, b []byte) {
		s.dispatch(b, peer)
		if n := s.Stats().Sessions; n > maxSessions {
			t.Fatalf("%d sessions, table bounded at %d", n, maxSessions)
		}
	})
}
