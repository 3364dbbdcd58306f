package srt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datarhei/gosrt/packet"

	"github.com/srs-mesh/srs-mesh/protocols/internal/protocoltest"
	"github.com/srs-mesh/srs-mesh/protocols/internal/udpbatch"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

const (
	fakeOriginCookie = 0x0c0ffee0
	fakeOriginSocket = 0x0a0b0c0d
)

// fakeOrigin is an SRT listener that speaks just enough of the handshake:
// it answers inductions with its cookie, conclusions with a conclusion
// response (or a rejection), and records everything else.
type fakeOrigin struct {
	pc        *net.UDPConn
	silent    bool          // never answer
	reject    uint32        // if non-zero, reject conclusions with this reason
	countOnly bool          // count data packets instead of keeping them (benchmarks)
	credit    chan struct{} // with countOnly: one token per data packet, if there is room
	wg        sync.WaitGroup

	mu          sync.Mutex
	conclusions [][]byte
	data        [][]byte
	proxy       netip.AddrPort // where the last conclusion came from
	received    atomic.Int64
	dataCount   atomic.Int64
}

func newFakeOrigin(t testing.TB, silent bool, reject uint32) *fakeOrigin {
	return startFakeOrigin(t, &fakeOrigin{silent: silent, reject: reject})
}

func startFakeOrigin(t testing.TB, o *fakeOrigin) *fakeOrigin {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	o.pc = pc
	o.wg.Add(1)
	go o.serve()
	t.Cleanup(func() { pc.Close(); o.wg.Wait() })
	return o
}

func (o *fakeOrigin) addr() string { return o.pc.LocalAddr().String() }

func (o *fakeOrigin) serve() {
	defer o.wg.Done()
	buf := make([]byte, maxPacket)
	for {
		n, from, err := o.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		o.received.Add(1)
		b := buf[:n]
		if o.silent {
			continue
		}
		if o.countOnly && n > 0 && b[0]&0x80 == 0 {
			// A data packet: count it without parsing (benchmarks).
			o.dataCount.Add(1)
			select {
			case o.credit <- struct{}{}:
			default:
			}
			continue
		}
		hs, err := parseHandshake(b)
		if err != nil {
			o.mu.Lock()
			o.data = append(o.data, append([]byte(nil), b...))
			o.mu.Unlock()
			continue
		}
		switch hs.Type {
		case packet.HSTYPE_INDUCTION:
			o.pc.WriteToUDPAddrPort(appendInductionResponse(nil, b, fakeOriginSocket, fakeOriginCookie, from), from)
		case packet.HSTYPE_CONCLUSION:
			if hs.Cookie != fakeOriginCookie {
				continue
			}
			o.mu.Lock()
			o.conclusions = append(o.conclusions, append([]byte(nil), b...))
			o.proxy = from
			o.mu.Unlock()
			if o.reject != 0 {
				o.pc.WriteToUDPAddrPort(appendRejection(nil, b, fakeOriginSocket, o.reject), from)
				continue
			}
			resp := append([]byte(nil), b...)
			binary.BigEndian.PutUint32(resp[offDestID:], hs.SocketID)
			binary.BigEndian.PutUint32(resp[offSockID:], fakeOriginSocket)
			o.pc.WriteToUDPAddrPort(resp, from)
		}
	}
}

func (o *fakeOrigin) snapshot() (conclusions, data [][]byte, proxy netip.AddrPort) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([][]byte(nil), o.conclusions...), append([][]byte(nil), o.data...), o.proxy
}

// caller is a hand-driven SRT caller.
type caller struct {
	t   testing.TB
	c   *net.UDPConn
	sid uint32
	buf []byte
}

func newCaller(t testing.TB, proxy netip.AddrPort, socketID uint32) *caller {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(proxy))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &caller{t: t, c: c, sid: socketID, buf: make([]byte, maxPacket)}
}

func (c *caller) send(b []byte) {
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next packet, or nil after d.
func (c *caller) read(d time.Duration) []byte {
	c.c.SetReadDeadline(time.Now().Add(d))
	n, err := c.c.Read(c.buf)
	if err != nil {
		return nil
	}
	return append([]byte(nil), c.buf[:n]...)
}

// induct performs the induction phase and returns the proxy's cookie.
func (c *caller) induct() uint32 {
	c.t.Helper()
	c.send(hsPacket(0, hsv4, packet.HSTYPE_INDUCTION, c.sid, 0))
	b := c.read(2 * time.Second)
	hs, err := parseHandshake(b)
	if err != nil || hs.Type != packet.HSTYPE_INDUCTION || hs.ExtField != srtMagic || hs.Version != 5 || hs.DestID != c.sid {
		c.t.Fatalf("induction response %+v %v", hs, err)
	}
	return hs.Cookie
}

func (c *caller) conclusion(cookie uint32, exts ...ext) []byte {
	return hsPacket(0, hsv5, packet.HSTYPE_CONCLUSION, c.sid, cookie, exts...)
}

// dataPacket is an SRT data packet for the given destination socket.
func dataPacket(dest, seq uint32, payload int) []byte {
	b := make([]byte, headerLen+payload)
	binary.BigEndian.PutUint32(b[0:], seq&0x7fffffff)
	binary.BigEndian.PutUint32(b[4:], 0xc0000001)
	binary.BigEndian.PutUint32(b[offDestID:], dest)
	for i := headerLen; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

func kmreqExt() ext {
	// The KMREQ body from the FFmpeg capture.
	return ext{packet.EXTTYPE_KMREQ, ffConclusionKM[len(ffConclusionKM)-56:], -1}
}

func TestRelayEndToEnd(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	origin := newFakeOrigin(t, false, 0)
	var routes atomic.Int32
	router := protocoltest.RouterFunc(func(_ context.Context, key stream.Key) (stream.Origin, error) {
		routes.Add(1)
		if key.String() != "__defaultVhost__/live/cam" {
			t.Errorf("key %s", key)
		}
		return stream.Origin{ID: "o1", SRT: origin.addr()}, nil
	})
	sessions := &protocoltest.Sessions{}
	srv, proxy := startServer(t, Config{Router: router, Sessions: sessions})
	c := newCaller(t, proxy, 0x11111111)

	cookie := c.induct()
	if again := c.induct(); again != cookie {
		t.Fatalf("retransmitted induction got cookie %#x, then %#x", cookie, again)
	}
	concl := c.conclusion(cookie, hsreqExt(), kmreqExt(), sidExt("#!::r=live/cam,m=publish,secret=abc"))
	c.send(concl)
	resp := c.read(3 * time.Second)
	hs, err := parseHandshake(resp)
	if err != nil || hs.Type != packet.HSTYPE_CONCLUSION || hs.SocketID != fakeOriginSocket || hs.DestID != c.sid {
		t.Fatalf("conclusion response %+v %v", hs, err)
	}

	// The origin saw the caller's conclusion byte for byte, but for the cookie.
	got, _, _ := origin.snapshot()
	if len(got) != 1 {
		t.Fatalf("origin got %d conclusions", len(got))
	}
	want := append([]byte(nil), concl...)
	setCookie(want, fakeOriginCookie)
	if !bytes.Equal(got[0], want) {
		t.Fatalf("origin got a different conclusion:\n got %x\nwant %x", got[0], want)
	}

	// A retransmitted conclusion gets the cached answer and is not routed again.
	c.send(concl)
	if again := c.read(2 * time.Second); !bytes.Equal(again, resp) {
		t.Fatalf("retransmitted conclusion answered with %x", again)
	}
	if n := routes.Load(); n != 1 {
		t.Errorf("routed %d times", n)
	}

	// Data both ways, verbatim.
	up := dataPacket(fakeOriginSocket, 1, 1316)
	c.send(up)
	testkit.WaitFor(t, 2*time.Second, "data at origin", func() bool {
		_, data, _ := origin.snapshot()
		return len(data) == 1 && bytes.Equal(data[0], up)
	})
	_, _, proxyLeg := origin.snapshot()
	down := dataPacket(c.sid, 7, 100)
	origin.pc.WriteToUDPAddrPort(down, proxyLeg)
	if b := c.read(2 * time.Second); !bytes.Equal(b, down) {
		t.Fatalf("caller got %x", b)
	}
	key := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "cam"}
	if a, _ := sessions.Count(key, "srt"); a != 1 {
		t.Errorf("tracked %d sessions", a)
	}
	if all := sessions.All(); len(all) != 1 || all[0].Kind != stream.KindPublish {
		t.Errorf("tracked %+v, want one publisher (m=publish)", all)
	}
	// The session counts a packet once it is sent, so the caller may read
	// it before the counters move: wait for them.
	if err := testkit.Poll(2*time.Second, func() error {
		if in, out := sessions.Bytes(); in != uint64(len(up)) || out != uint64(len(down)) {
			return fmt.Errorf("metered %d bytes in, %d out; want %d, %d", in, out, len(up), len(down))
		}
		if st := srv.Stats(); st.Established != 1 || st.PacketsIn != 1 || st.PacketsOut != 1 || st.BytesIn != uint64(len(up)) {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	// SHUTDOWN from the caller is relayed and reclaims the session.
	c.send(shutdownPacket(fakeOriginSocket))
	testkit.WaitFor(t, 2*time.Second, "session reclaimed", func() bool { return srv.Stats().Sessions == 0 })
	if a, total := sessions.Count(key, "srt"); a != 0 || total != 1 {
		t.Errorf("sessions active %d total %d", a, total)
	}
	// Packets for the gone session are counted and dropped.
	c.send(dataPacket(fakeOriginSocket, 2, 10))
	testkit.WaitFor(t, 2*time.Second, "no-session drop counted", func() bool { return srv.Stats().NoSession == 1 })
}

func TestOriginShutdownReclaimsSession(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	origin := newFakeOrigin(t, false, 0)
	srv, proxy := startServer(t, Config{Router: staticRouter(origin.addr())})
	c := newCaller(t, proxy, 0x2222)
	c.send(c.conclusion(c.induct(), sidExt("live/x")))
	if c.read(3*time.Second) == nil {
		t.Fatal("no conclusion response")
	}
	_, _, leg := origin.snapshot()
	origin.pc.WriteToUDPAddrPort(shutdownPacket(c.sid), leg)
	if b := c.read(2 * time.Second); b == nil || !isControl(b, packet.CTRLTYPE_SHUTDOWN) {
		t.Fatalf("caller got %x, want SHUTDOWN", b)
	}
	testkit.WaitFor(t, 2*time.Second, "session reclaimed", func() bool { return srv.Stats().Sessions == 0 })
}

func TestIdleSessionReclaimed(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	origin := newFakeOrigin(t, false, 0)
	srv, proxy := startServer(t, Config{Router: staticRouter(origin.addr()), IdleTimeout: 300 * time.Millisecond})
	c := newCaller(t, proxy, 0x3333)
	c.send(c.conclusion(c.induct(), sidExt("live/x")))
	if c.read(3*time.Second) == nil {
		t.Fatal("no conclusion response")
	}
	if srv.Stats().Established != 1 {
		t.Fatalf("stats %+v", srv.Stats())
	}
	testkit.WaitFor(t, 3*time.Second, "idle session reclaimed", func() bool { return srv.Stats().Sessions == 0 })
}

// rejection reads the caller's next packet and returns its rejection
// reason.
func (c *caller) rejection(d time.Duration) uint32 {
	c.t.Helper()
	b := c.read(d)
	hs, err := parseHandshake(b)
	if err != nil {
		c.t.Fatalf("no rejection: %x %v", b, err)
	}
	r, ok := rejectionReason(hs.Type)
	if !ok || hs.DestID != c.sid {
		c.t.Fatalf("not a rejection for us: %+v", hs)
	}
	return r
}

func TestRouterErrorRejectsImmediately(t *testing.T) { routerErrorRejects(t, stream.ErrNoOrigin) }

// Every origin full (stream.ErrOriginsFull) is refused like no origin.
func TestOriginsFullRejectsImmediately(t *testing.T) {
	routerErrorRejects(t, fmt.Errorf("%w (no room)", stream.ErrOriginsFull))
}

func routerErrorRejects(t *testing.T, routeErr error) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	router := protocoltest.RouterFunc(func(context.Context, stream.Key) (stream.Origin, error) {
		return stream.Origin{}, routeErr
	})
	// HandshakeTimeout is far beyond the read below: a rejection that
	// waited for it would not arrive in time.
	srv, proxy := startServer(t, Config{Router: router, HandshakeTimeout: time.Minute})
	c := newCaller(t, proxy, 0x4444)
	c.send(c.conclusion(c.induct(), sidExt("live/x")))
	if r := c.rejection(10 * time.Second); r != rejxUnavail {
		t.Errorf("reason %d", r)
	}
	if srv.Stats().Rejects[RejectNoOrigin] != 1 {
		t.Errorf("rejects %+v", srv.Stats().Rejects)
	}
}

func TestBadStreamIDRejected(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	srv, proxy := startServer(t, Config{Router: staticRouter("127.0.0.1:1")})
	for i, sid := range []string{"#!::r=live/a b,m=publish", "#!::r=live/s,m=bogus", "#!::r=../x"} {
		c := newCaller(t, proxy, uint32(0x5000+i))
		c.send(c.conclusion(c.induct(), sidExt(sid)))
		if r := c.rejection(time.Second); r != rejxBadReq {
			t.Errorf("%q: reason %d", sid, r)
		}
	}
	if got := srv.Stats().Rejects[RejectBadStreamID]; got != 3 {
		t.Errorf("rejects %+v", srv.Stats().Rejects)
	}
}

func TestOriginRejectionRelayed(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	origin := newFakeOrigin(t, false, 10) // SRT_REJ_BADSECRET
	srv, proxy := startServer(t, Config{Router: staticRouter(origin.addr())})
	c := newCaller(t, proxy, 0x6666)
	cookie := c.induct()
	c.send(c.conclusion(cookie, sidExt("live/x")))
	if r := c.rejection(2 * time.Second); r != 10 {
		t.Errorf("reason %d", r)
	}
	// A retransmitted conclusion gets the same rejection, not a new route.
	c.send(c.conclusion(cookie, sidExt("live/x")))
	if r := c.rejection(time.Second); r != 10 {
		t.Errorf("retransmit: reason %d", r)
	}
	if got, _, _ := origin.snapshot(); len(got) != 1 {
		t.Errorf("origin got %d conclusions", len(got))
	}
	if srv.Stats().Rejects[RejectOriginRejects] != 1 {
		t.Errorf("rejects %+v", srv.Stats().Rejects)
	}
}

// An origin that swallows packets (no ICMP) keeps its session handshaking
// (the induction is resent to it) while the listener serves other callers:
// a healthy caller is answered before the stuck one hears anything.
func TestSilentOriginDoesNotBlockOthers(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	silent := newFakeOrigin(t, true, 0)
	healthy := newFakeOrigin(t, false, 0)
	router := protocoltest.RouterFunc(func(_ context.Context, key stream.Key) (stream.Origin, error) {
		if key.Stream == "silent" {
			return stream.Origin{SRT: silent.addr()}, nil
		}
		return stream.Origin{SRT: healthy.addr()}, nil
	})
	// The stuck session cannot time out during the test: it ends only
	// when the server closes.
	srv, proxy := startServer(t, Config{Router: router, HandshakeTimeout: time.Minute})

	stuck := newCaller(t, proxy, 0x7001)
	stuck.send(stuck.conclusion(stuck.induct(), sidExt("live/silent")))
	testkit.WaitFor(t, 5*time.Second, "silent origin tried", func() bool { return silent.received.Load() > 0 })

	ok := newCaller(t, proxy, 0x7002)
	ok.send(ok.conclusion(ok.induct(), sidExt("live/ok")))
	if b := ok.read(10 * time.Second); b == nil {
		t.Fatal("healthy caller blocked behind the silent origin")
	}
	if st := srv.Stats(); st.Sessions != 2 || len(st.Rejects) != 0 {
		t.Errorf("with the healthy caller answered: stats %+v, want the stuck session still handshaking", st)
	}
	testkit.WaitFor(t, 10*time.Second, "induction resent to the silent origin", func() bool { return silent.received.Load() >= 3 })
	if b := stuck.read(50 * time.Millisecond); b != nil {
		t.Fatalf("stuck caller answered while its origin is silent: %x", b)
	}

	srv.Close()
	if r := stuck.rejection(5 * time.Second); r != rejClose {
		t.Errorf("stuck caller at close: reason %d, want %d", r, rejClose)
	}
}

// A session whose origin stays silent is rejected with SRT_REJX_GATEWAY_TO
// once HandshakeTimeout has passed, not before.
func TestSilentOriginTimesOut(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	silent := newFakeOrigin(t, true, 0)
	const timeout = 300 * time.Millisecond
	srv, proxy := startServer(t, Config{Router: staticRouter(silent.addr()), HandshakeTimeout: timeout})

	stuck := newCaller(t, proxy, 0x7003)
	concl := stuck.conclusion(stuck.induct(), sidExt("live/silent"))
	start := time.Now() // before the session exists, so before its deadline is set
	stuck.send(concl)
	if r := stuck.rejection(10 * time.Second); r != rejxGatewayTO {
		t.Errorf("reason %d", r)
	}
	// A lower bound only: a slow machine can make the rejection later, never
	// earlier.
	if took := time.Since(start); took < timeout {
		t.Errorf("rejected after %v, before HandshakeTimeout %v", took, timeout)
	}
	if silent.received.Load() == 0 {
		t.Errorf("the silent origin was never tried")
	}
	if srv.Stats().Rejects[RejectOriginTimeout] != 1 {
		t.Errorf("rejects %+v", srv.Stats().Rejects)
	}
}

func TestConclusionRetransmittedWhileRoutingIsNotRerouted(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	origin := newFakeOrigin(t, false, 0)
	release := make(chan struct{})
	var routes atomic.Int32
	router := protocoltest.RouterFunc(func(ctx context.Context, _ stream.Key) (stream.Origin, error) {
		routes.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return stream.Origin{}, ctx.Err()
		}
		return stream.Origin{SRT: origin.addr()}, nil
	})
	_, proxy := startServer(t, Config{Router: router})
	c := newCaller(t, proxy, 0x8888)
	concl := c.conclusion(c.induct(), sidExt("live/x"))
	for range 3 {
		c.send(concl)
		if b := c.read(100 * time.Millisecond); b != nil {
			t.Fatalf("answered before routing finished: %x", b)
		}
	}
	close(release)
	if b := c.read(2 * time.Second); b == nil {
		t.Fatal("no conclusion response")
	}
	if n := routes.Load(); n != 1 {
		t.Errorf("routed %d times", n)
	}
}

func TestSessionTableBounded(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	release := make(chan struct{})
	router := protocoltest.RouterFunc(func(ctx context.Context, _ stream.Key) (stream.Origin, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return stream.Origin{}, errors.New("released")
	})
	srv, proxy := startServer(t, Config{Router: router, MaxSessions: 2})
	defer close(release)
	for i := range 2 {
		c := newCaller(t, proxy, uint32(0x9000+i))
		c.send(c.conclusion(c.induct(), sidExt("live/x")))
	}
	testkit.WaitFor(t, time.Second, "two sessions", func() bool { return srv.Stats().Sessions == 2 })
	c := newCaller(t, proxy, 0x9100)
	c.send(c.conclusion(c.induct(), sidExt("live/x")))
	if r := c.rejection(time.Second); r != rejResource {
		t.Errorf("reason %d", r)
	}
	if srv.Stats().Sessions != 2 || srv.Stats().Rejects[RejectTableFull] != 1 {
		t.Errorf("stats %+v", srv.Stats())
	}
}

func TestConclusionChecks(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	srv, proxy := startServer(t, Config{Router: staticRouter("127.0.0.1:1")})

	// A forged or stale cookie is dropped without an answer.
	c := newCaller(t, proxy, 0xa001)
	cookie := c.induct()
	c.send(c.conclusion(cookie+1, sidExt("live/x")))
	if b := c.read(200 * time.Millisecond); b != nil {
		t.Errorf("bad cookie answered: %x", b)
	}
	if srv.Stats().Rejects[RejectBadCookie] != 1 {
		t.Errorf("rejects %+v", srv.Stats().Rejects)
	}

	// An HSv4 conclusion is refused with SRT_REJ_VERSION.
	c.send(hsPacket(0, hsv4, packet.HSTYPE_CONCLUSION, c.sid, cookie))
	if r := c.rejection(time.Second); r != rejVersion {
		t.Errorf("reason %d", r)
	}

	// Malformed packets are counted and dropped.
	for _, b := range [][]byte{{1}, make([]byte, 15), append([]byte{0x80, 0, 0, 0}, make([]byte, 30)...),
		hsPacket(0, hsv5, packet.HSTYPE_CONCLUSION, 1, cookie, ext{packet.EXTTYPE_SID, []byte("ab"), 1})} {
		c.send(b)
	}
	testkit.WaitFor(t, time.Second, "malformed counted", func() bool { return srv.Stats().Malformed == 4 })
}

// Refused origins (nothing listening; the kernel answers with ICMP) are
// reported at once, not after HandshakeTimeout.
func TestRefusedOriginRejectedFast(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	dead := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(testkit.FreeUDPPort(t)))
	// HandshakeTimeout is far beyond the read below, and a timeout would be
	// SRT_REJX_GATEWAY_TO: SRT_REJX_GATEWAY says the refusal was seen.
	srv, proxy := startServer(t, Config{Router: staticRouter(dead.String()), HandshakeTimeout: time.Minute})
	c := newCaller(t, proxy, 0xb001)
	c.send(c.conclusion(c.induct(), sidExt("live/x")))
	if r := c.rejection(10 * time.Second); r != rejxGateway {
		t.Errorf("reason %d", r)
	}
	if srv.Stats().Rejects[RejectOriginRefused] != 1 {
		t.Errorf("rejects %+v", srv.Stats().Rejects)
	}
}

func TestLifecycle(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	if _, err := New(Config{}); !errors.Is(err, ErrNoRouter) {
		t.Fatalf("New without router: %v", err)
	}
	s, err := New(Config{Router: staticRouter("127.0.0.1:1")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(pc); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}

	// Close while sessions are handshaking: every goroutine is waited for.
	origin := newFakeOrigin(t, true, 0)
	s, proxy := startServer(t, Config{Router: staticRouter(origin.addr()), HandshakeTimeout: time.Minute})
	c := newCaller(t, proxy, 0xc001)
	c.send(c.conclusion(c.induct(), sidExt("live/x")))
	testkit.WaitFor(t, time.Second, "handshaking", func() bool { return origin.received.Load() > 0 })
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second): // HandshakeTimeout is a minute
		t.Fatal("Close waits for the handshake to time out")
	}
	if r := c.rejection(time.Second); r != rejClose {
		t.Errorf("reason %d", r)
	}
}

// The listener path for an established session does not allocate: one
// packet dispatched alone, or a batch of them sent with one write. The
// server is not serving, so the test stands in for its listener goroutine.
func TestDispatchDoesNotAllocate(t *testing.T) {
	origin := startFakeOrigin(t, &fakeOrigin{countOnly: true})
	srv, err := New(Config{Router: staticRouter(origin.addr())})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1_700_000_000, 0)
	srv.now = func() time.Time { return clock }
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv.conn = pc
	t.Cleanup(func() {
		srv.Close()
		pc.Close()
	})
	from := netip.MustParseAddrPort("127.0.0.1:9")
	srv.dispatch(hsPacket(0, hsv5, packet.HSTYPE_CONCLUSION, 0xd001, srv.cookie(from, 0), hsreqExt(), sidExt("live/x")), from)
	testkit.WaitFor(t, 3*time.Second, "session established", func() bool { return srv.Stats().Established == 1 })

	pkt := dataPacket(fakeOriginSocket, 1, 1316)
	// AllocsPerRun counts the whole process; the least of a few runs is
	// the relay's own figure.
	allocs := func(f func()) float64 {
		least := testing.AllocsPerRun(200, f)
		for i := 0; i < 4 && least > 0; i++ {
			least = min(least, testing.AllocsPerRun(200, f))
		}
		return least
	}
	if n := allocs(func() { srv.dispatch(pkt, from) }); n != 0 {
		t.Errorf("%v allocations per packet", n)
	}
	if n := allocs(func() {
		for range listenBatch {
			srv.route(pkt, from)
		}
		srv.toOrigins.flush(srv)
	}); n != 0 {
		t.Errorf("%v allocations per batch of %d packets", n, listenBatch)
	}
	sent := uint64(1 + 5*200*(1+listenBatch)) // upper bound: AllocsPerRun runs once more to warm up
	if st := srv.Stats(); st.PacketsIn == 0 || st.PacketsIn > sent || st.SendErrors != 0 {
		t.Errorf("stats after the runs: %+v", st)
	}
}

// Closing the server tells both ends of every established session, so
// that callers reconnect at once instead of waiting for SRT's peer timeout.
func TestCloseSendsShutdownBothWays(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	origin := newFakeOrigin(t, false, 0)
	srv, proxy := startServer(t, Config{Router: staticRouter(origin.addr())})
	c := newCaller(t, proxy, 0xe001)
	c.send(c.conclusion(c.induct(), sidExt("live/x")))
	if c.read(3*time.Second) == nil {
		t.Fatal("no conclusion response")
	}
	srv.Close()
	if b := c.read(time.Second); b == nil || !isControl(b, packet.CTRLTYPE_SHUTDOWN) || destID(b) != c.sid {
		t.Fatalf("caller got %x, want SHUTDOWN", b)
	}
	testkit.WaitFor(t, time.Second, "SHUTDOWN at origin", func() bool {
		_, data, _ := origin.snapshot()
		return len(data) == 1 && isControl(data[0], packet.CTRLTYPE_SHUTDOWN) && destID(data[0]) == fakeOriginSocket
	})
}

// TestDrain: while draining, a new caller is rejected with SRT_REJ_CLOSE and
// an established session keeps relaying; Drain returns once that session
// ends.
func TestDrain(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	origin := newFakeOrigin(t, false, 0)
	srv, proxy := startServer(t, Config{Router: staticRouter(origin.addr())})
	c := newCaller(t, proxy, 0xd001)
	c.send(c.conclusion(c.induct(), sidExt("live/x")))
	if c.read(3*time.Second) == nil {
		t.Fatal("no conclusion response")
	}
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Drain(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain with an expired context = %v", err)
	}

	late := newCaller(t, proxy, 0xd002)
	late.send(late.conclusion(late.induct(), sidExt("live/y")))
	if r := late.rejection(3 * time.Second); r != rejClose {
		t.Errorf("caller during drain: reason %d, want %d", r, rejClose)
	}
	up := dataPacket(fakeOriginSocket, 1, 100)
	c.send(up)
	testkit.WaitFor(t, 2*time.Second, "data at origin during drain", func() bool {
		_, data, _ := origin.snapshot()
		return len(data) == 1
	})

	done := make(chan error, 1)
	go func() { done <- srv.Drain(context.Background()) }()
	c.send(shutdownPacket(fakeOriginSocket))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return after the session ended")
	}
}

// publishRouter routes every stream to origin and records the publishes
// reported accepted (a stream.Publisher).
type publishRouter struct {
	origin, assign stream.Origin
	mu             sync.Mutex
	accepted       []string
}

func (p *publishRouter) Route(context.Context, stream.Key) (stream.Origin, error) {
	return p.origin, nil
}

func (p *publishRouter) RoutePlay(context.Context, stream.Key) (stream.Origin, error) {
	return p.origin, nil
}

func (p *publishRouter) RoutePublish(context.Context, stream.Key) (stream.Origin, error) {
	return p.origin, nil
}

func (p *publishRouter) PublishAccepted(_ context.Context, key stream.Key, o stream.Origin) (stream.Origin, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accepted = append(p.accepted, key.Stream+"@"+o.ID)
	if p.assign.ID != "" {
		return p.assign, nil
	}
	return o, nil
}

func (p *publishRouter) acceptedNow() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.accepted...)
}

// An SRT publish is reported accepted, which writes the stream's
// assignment, only once the origin answered the conclusion: a rejected one
// leaves nothing, a play reports nothing, and a publish whose stream was
// assigned elsewhere meanwhile is rejected.
func TestPublishAcceptedOnlyAfterTheOrigin(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	rejecting, accepting := newFakeOrigin(t, false, 10), newFakeOrigin(t, false, 0)
	for _, tc := range []struct {
		name, sid string
		origin    *fakeOrigin
		assign    string
		want      []string
		rejected  bool
	}{
		{"rejected", "#!::r=live/a,m=publish", rejecting, "", nil, true},
		{"play", "#!::r=live/b,m=request", accepting, "", nil, false},
		{"accepted", "#!::r=live/c,m=publish", accepting, "", []string{"c@o1"}, false},
		{"assigned elsewhere", "#!::r=live/d,m=publish", accepting, "o2", []string{"d@o1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &publishRouter{origin: stream.Origin{ID: "o1", SRT: tc.origin.addr()}, assign: stream.Origin{ID: tc.assign}}
			_, proxy := startServer(t, Config{Router: r, Publisher: r})
			c := newCaller(t, proxy, 0x7777)
			cookie := c.induct()
			c.send(c.conclusion(cookie, hsreqExt(), sidExt(tc.sid)))
			resp := c.read(3 * time.Second)
			hs, err := parseHandshake(resp)
			if err != nil {
				t.Fatal(err)
			}
			if _, rejected := rejectionReason(hs.Type); rejected != tc.rejected {
				t.Fatalf("answer %v, want rejected %v", hs.Type, tc.rejected)
			}
			if got := r.acceptedNow(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("accepted %v, want %v", got, tc.want)
			}
		})
	}
}

// A packet the node fails to send is counted as the node's drop, for the
// session's stream and in total. (The socket is closed under the session:
// a refused send cannot be caused on purpose, because the session's reader
// takes the ICMP error first.)
func TestSendErrorsCountedPerStream(t *testing.T) {
	srv, err := New(Config{Router: staticRouter("127.0.0.1:1")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	up, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9})
	if err != nil {
		t.Fatal(err)
	}
	up.Close()
	info, err := stream.FromSRTStreamID("#!::r=live/lossy,m=publish")
	if err != nil {
		t.Fatal(err)
	}
	key := sessKey{netip.MustParseAddrPort("127.0.0.1:9"), 0xf001}
	ss := newSession(srv, key, info, nil)
	ss.upW = udpbatch.NewWriter(up, listenBatch)
	srv.byCaller[key] = ss
	pkt := dataPacket(fakeOriginSocket, 1, 1316)
	for range 3 {
		srv.toOrigins.add(ss, pkt)
	}
	srv.toOrigins.flush(srv)
	st := srv.Stats()
	want := []StreamDrops{{Stream: "__defaultVhost__/live/lossy", SendErrors: 3}}
	if st.SendErrors != 3 || !slices.Equal(st.Streams, want) || st.PacketsIn != 0 {
		t.Errorf("stats: %+v, want streams %+v", st, want)
	}
	delete(srv.byCaller, key)
}

// lockedBuffer is a log destination safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Asking for more socket buffer than the kernel grants (net.core.rmem_max
// caps it) is logged once, naming the sysctls; a size it grants is not.
func TestSocketBufferWarning(t *testing.T) {
	for _, tc := range []struct {
		size int
		warn bool
	}{{64 << 10, false}, {1 << 30, true}} {
		var logs lockedBuffer
		origin := newFakeOrigin(t, false, 0)
		_, proxy := startServer(t, Config{Router: staticRouter(origin.addr()), SocketBuffer: tc.size,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		c := newCaller(t, proxy, 0xa001)
		c.send(c.conclusion(c.induct(), sidExt("live/x")))
		if c.read(3*time.Second) == nil {
			t.Fatal("no conclusion response")
		}
		got := logs.String()
		if warned := strings.Contains(got, "net.core.rmem_max"); warned != tc.warn {
			t.Errorf("SocketBuffer %d: warned %v, want %v; logs:\n%s", tc.size, warned, tc.warn, got)
		}
		if n := strings.Count(got, "smaller than asked"); n > 1 {
			t.Errorf("SocketBuffer %d: warned %d times", tc.size, n)
		}
	}
}
