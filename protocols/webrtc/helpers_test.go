package webrtc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/srs-mesh/srs-mesh/stream"
)

// fakeRouter routes every stream to one origin, or fails with err.
type fakeRouter struct {
	mu     sync.Mutex
	origin stream.Origin
	err    error
	keys   []stream.Key
}

func (f *fakeRouter) Route(_ context.Context, key stream.Key) (stream.Origin, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = append(f.keys, key)
	return f.origin, f.err
}

// RoutePlay is Route: the fake routes players like publishers.
func (f *fakeRouter) RoutePlay(ctx context.Context, key stream.Key) (stream.Origin, error) {
	return f.Route(ctx, key)
}

// quietLogger discards logs unless the test runs with -v.
func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{}

func (testWriter) Write(p []byte) (int, error) { fmt.Print(string(p)); return len(p), nil }

// udpListen opens a UDP socket on 127.0.0.1 closed at the end of the test.
func udpListen(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c net.PacketConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// fakeOrigin is a UDP origin: it answers STUN Binding requests with a
// success response carrying the same transaction id and echoes every other
// packet to its sender. It remembers the last sender.
type fakeOrigin struct {
	conn *net.UDPConn
	mu   sync.Mutex
	last netip.AddrPort
	done chan struct{}
}

func startFakeOrigin(t testing.TB) *fakeOrigin {
	t.Helper()
	o := &fakeOrigin{conn: udpListen(t), done: make(chan struct{})}
	go func() {
		defer close(o.done)
		buf := make([]byte, 2048)
		for {
			n, from, err := o.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			o.mu.Lock()
			o.last = from
			o.mu.Unlock()
			p := buf[:n]
			if _, h, err := STUNUsername(p); err == nil && h.isRequest() {
				m, err := stun.Build(stun.NewTransactionIDSetter(h.TxID), stun.BindingSuccess,
					&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())})
				if err != nil {
					continue
				}
				p = m.Raw
			}
			o.conn.WriteToUDPAddrPort(p, from)
		}
	}()
	t.Cleanup(func() { o.conn.Close(); <-o.done })
	return o
}

func (o *fakeOrigin) lastSender() netip.AddrPort {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

// relayEnv is a Server relaying to a fake origin.
type relayEnv struct {
	srv    *Server
	store  *MemorySessionStore
	origin *fakeOrigin
	addr   netip.AddrPort // the relay's UDP address
}

func startRelay(t testing.TB, store *MemorySessionStore, mod func(*Config)) *relayEnv {
	t.Helper()
	if store == nil {
		store = NewMemorySessionStore()
	}
	pc := udpListen(t)
	cfg := Config{
		Router:    &fakeRouter{err: errors.New("no routes in relay tests")},
		Store:     store,
		Activity:  store,
		Logger:    quietLogger(),
		Candidate: addrOf(pc),
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeUDP(pc) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("ServeUDP: %v", err)
		}
	})
	return &relayEnv{srv: srv, store: store, origin: startFakeOrigin(t), addr: addrOf(pc)}
}

// addSession stores a session whose origin is the fake origin and whose
// ICE password is testPwd.
func (e *relayEnv) addSession(t testing.TB, ufrag string) {
	t.Helper()
	e.addSessionPwd(t, ufrag, testPwd)
}

// addSessionPwd stores a session with the ICE password pwd ("" for a session
// stored by a node that does not record it).
func (e *relayEnv) addSessionPwd(t testing.TB, ufrag, pwd string) {
	t.Helper()
	err := e.store.PutRTCSession(context.Background(), stream.RTCSession{
		Ufrag: ufrag, OriginID: "o1", OriginRTC: addrOf(e.origin.conn).String(),
		Key: "__defaultVhost__/live/s", Pwd: pwd, CreatedUnixMs: time.Now().UnixMilli(),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// exchange sends p from c to the relay and returns the next packet c reads.
func exchange(t testing.TB, c *net.UDPConn, to netip.AddrPort, p []byte) []byte {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(p, to); err != nil {
		t.Fatal(err)
	}
	return readOne(t, c)
}

func readOne(t testing.TB, c *net.UDPConn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf[:n]
}

// rtpPacket is a minimal RTP packet (version 2) with a recognisable payload.
func rtpPacket(seq byte, payload string) []byte {
	return append([]byte{0x80, 96, 0, seq, 0, 0, 0, 1, 0, 0, 0, 2}, payload...)
}

func isBindingSuccess(p []byte) bool {
	m := &stun.Message{Raw: append([]byte(nil), p...)}
	return m.Decode() == nil && m.Type == stun.BindingSuccess
}

func stunTxID(p []byte) [12]byte {
	var id [12]byte
	copy(id[:], p[8:20])
	return id
}
