package webrtc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/internal/protocoltest"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

func TestRelayForwardsBothWays(t *testing.T) {
	testkit.CheckGoroutines(t)
	sessions := &protocoltest.Sessions{}
	liveS := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "s"}
	e := startRelay(t, nil, func(c *Config) { c.Sessions = sessions })
	e.addSession(t, "ans1:off1")
	client := udpListen(t)

	req := bindingRequest(t, "ans1:off1")
	resp := exchange(t, client, e.addr, req)
	if !isBindingSuccess(resp) || stunTxID(resp) != stunTxID(req) {
		t.Fatalf("no binding success through the relay: %x", resp)
	}
	if up := e.origin.lastSender(); up == addrOf(client) || !up.IsValid() {
		t.Fatalf("origin saw %v: the packet did not go through an upstream socket", up)
	}
	for i := range 10 {
		p := rtpPacket(byte(i), "media")
		if got := exchange(t, client, e.addr, p); !bytes.Equal(got, p) {
			t.Fatalf("echo %d: %x", i, got)
		}
	}
	// The relay counts a packet to the client after writing it, so the
	// client may read the last echo a moment before it is counted.
	testkit.Eventually(t, 2*time.Second, func() error {
		if st := e.srv.Stats(); st.Sessions != 1 || st.PacketsIn != 11 || st.PacketsOut != 11 || st.Dropped() != 0 {
			return fmt.Errorf("stats: %+v", st)
		}
		return nil
	})
	if n, _ := sessions.Count(liveS, "webrtc"); n != 1 {
		t.Fatalf("tracked sessions: %d", n)
	}
	// The session's own counters, for its stream's bit rates.
	media := uint64(10 * len(rtpPacket(0, "media")))
	testkit.Eventually(t, 2*time.Second, func() error {
		if in, out := sessions.Bytes(); in != uint64(len(req))+media || out != uint64(len(resp))+media {
			return fmt.Errorf("metered %d bytes in, %d out; want %d, %d", in, out, uint64(len(req))+media, uint64(len(resp))+media)
		}
		return nil
	})
	e.srv.Close()
	if n, _ := sessions.Count(liveS, "webrtc"); n != 0 {
		t.Fatalf("tracked sessions after Close: %d", n)
	}
	if e.store.Len() != 1 {
		t.Fatal("Close removed the session from the store; another node may relay it")
	}
}

func TestRelayDropsBadPackets(t *testing.T) {
	testkit.CheckGoroutines(t)
	e := startRelay(t, nil, nil)
	e.addSession(t, "ans1:off1")
	client := udpListen(t)

	send := func(p []byte) {
		t.Helper()
		if _, err := client.WriteToUDPAddrPort(p, e.addr); err != nil {
			t.Fatal(err)
		}
	}
	send(truncated22)                                    // crashes SRS's proxy
	send([]byte{0x00})                                   // one-byte "STUN"
	send([]byte{0xff, 0xff})                             // not in any RFC 7983 range
	send([]byte{0x40, 1, 2, 3})                          // TURN channel: not relayed
	send(rtpPacket(1, "x"))                              // media before any STUN
	send(bindingRequest(t, "nosuch:off1"))               // unknown session
	send(append(bindingRequest(t, "ans1:off1"), 0)[:19]) // short header
	want := Stats{DroppedMalformed: 4, DroppedNoSession: 1, DroppedUnknownUfrag: 1}
	testkit.Eventually(t, 2*time.Second, func() error {
		st := e.srv.Stats()
		if st.DroppedMalformed != want.DroppedMalformed+1 || st.DroppedNoSession != want.DroppedNoSession ||
			st.DroppedUnknownUfrag != want.DroppedUnknownUfrag {
			return fmt.Errorf("stats: %+v", st)
		}
		return nil
	})
	// The relay still works.
	if resp := exchange(t, client, e.addr, bindingRequest(t, "ans1:off1")); !isBindingSuccess(resp) {
		t.Fatalf("relay broken after bad packets: %x", resp)
	}
	// The relay counts a forwarded packet after writing it, so the answer
	// can come back before the count.
	testkit.Eventually(t, 2*time.Second, func() error {
		if st := e.srv.Stats(); st.Sessions != 1 || st.PacketsIn != 1 {
			return fmt.Errorf("stats: %+v", st)
		}
		return nil
	})
}

// A NAT rebinding: the client's port changes mid-session. The next Binding
// request from the new port moves the session there; the origin sees no
// change (same upstream socket).
func TestRelayNATRebinding(t *testing.T) {
	testkit.CheckGoroutines(t)
	e := startRelay(t, nil, nil)
	e.addSession(t, "ans1:off1")
	a, b := udpListen(t), udpListen(t)

	exchange(t, a, e.addr, bindingRequest(t, "ans1:off1"))
	up := e.origin.lastSender()
	exchange(t, a, e.addr, rtpPacket(1, "from a"))

	// Media from the new port alone is not trusted.
	if _, err := b.WriteToUDPAddrPort(rtpPacket(2, "b before stun"), e.addr); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Second, func() error {
		if e.srv.Stats().DroppedNoSession != 1 {
			return fmt.Errorf("stats: %+v", e.srv.Stats())
		}
		return nil
	})
	if resp := exchange(t, b, e.addr, bindingRequest(t, "ans1:off1")); !isBindingSuccess(resp) {
		t.Fatalf("binding from new port: %x", resp)
	}
	if got := e.origin.lastSender(); got != up {
		t.Fatalf("origin saw a new address %v (was %v)", got, up)
	}
	// Packets the origin sends on its own now reach the new port.
	p := rtpPacket(3, "to b")
	if _, err := e.origin.conn.WriteToUDPAddrPort(p, up); err != nil {
		t.Fatal(err)
	}
	if got := readOne(t, b); !bytes.Equal(got, p) {
		t.Fatalf("b got %x", got)
	}
	if st := e.srv.Stats(); st.Sessions != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

// Knowing a session's username is not enough to take its media: a Binding
// request from a new address must be signed with the origin's ICE password.
// One that is not is dropped and counted, and the session stays where it was.
func TestRelayRequiresIntegrityFromNewAddresses(t *testing.T) {
	testkit.CheckGoroutines(t)
	e := startRelay(t, nil, nil)
	e.addSession(t, "ans1:off1")
	e.addSession(t, "ans2:off2")
	a, attacker := udpListen(t), udpListen(t)

	// A session is not opened by an unsigned or wrongly signed request.
	attacker.WriteToUDPAddrPort(bindingRequestPwd(t, "ans2:off2", "guess"), e.addr)
	attacker.WriteToUDPAddrPort(bindingRequestPwd(t, "ans2:off2", ""), e.addr)
	testkit.Eventually(t, time.Second, func() error {
		if st := e.srv.Stats(); st.DroppedIntegrity != 2 || st.Sessions != 0 {
			return fmt.Errorf("stats: %+v", st)
		}
		return nil
	})

	if resp := exchange(t, a, e.addr, bindingRequest(t, "ans1:off1")); !isBindingSuccess(resp) {
		t.Fatalf("signed binding: %x", resp)
	}
	up := e.origin.lastSender()

	// Nor is it moved to the attacker's address.
	for _, req := range [][]byte{
		bindingRequestPwd(t, "ans1:off1", "guess"),
		bindingRequestPwd(t, "ans1:off1", ""),
		rfc5769Request, // signed, but for another session
	} {
		if _, err := attacker.WriteToUDPAddrPort(req, e.addr); err != nil {
			t.Fatal(err)
		}
	}
	attacker.WriteToUDPAddrPort(rtpPacket(9, "injected"), e.addr)
	testkit.Eventually(t, time.Second, func() error {
		st := e.srv.Stats()
		if st.DroppedIntegrity != 4 || st.DroppedUnknownUfrag != 1 || st.DroppedNoSession != 1 {
			return fmt.Errorf("stats: %+v", st)
		}
		return nil
	})
	p := rtpPacket(3, "still to a")
	if _, err := e.origin.conn.WriteToUDPAddrPort(p, up); err != nil {
		t.Fatal(err)
	}
	if got := readOne(t, a); !bytes.Equal(got, p) {
		t.Fatalf("a got %x", got)
	}
	if got := exchange(t, a, e.addr, rtpPacket(4, "a")); !bytes.Equal(got, rtpPacket(4, "a")) {
		t.Fatalf("echo to a: %x", got)
	}
	attacker.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := attacker.Read(make([]byte, 2048)); err == nil {
		t.Fatalf("attacker received %d bytes", n)
	}
	if st := e.srv.Stats(); st.Sessions != 1 || st.PacketsIn != 2 {
		t.Fatalf("stats: %+v", st)
	}
}

// A session stored without a password (by a node that predates it) is
// relayed as before: a Binding request needs no MESSAGE-INTEGRITY.
func TestRelaySessionWithoutPwdIsNotChecked(t *testing.T) {
	testkit.CheckGoroutines(t)
	e := startRelay(t, nil, nil)
	e.addSessionPwd(t, "ans1:off1", "")
	a, b := udpListen(t), udpListen(t)
	if resp := exchange(t, a, e.addr, bindingRequestPwd(t, "ans1:off1", "")); !isBindingSuccess(resp) {
		t.Fatalf("unsigned binding: %x", resp)
	}
	if resp := exchange(t, b, e.addr, bindingRequestPwd(t, "ans1:off1", "any")); !isBindingSuccess(resp) {
		t.Fatalf("binding from a new address: %x", resp)
	}
	if st := e.srv.Stats(); st.Sessions != 1 || st.DroppedIntegrity != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// Binding responses go back to the address whose request they answer, even
// when requests from two client candidates interleave.
func TestRelayRoutesSTUNResponsesByTransaction(t *testing.T) {
	testkit.CheckGoroutines(t)
	e := startRelay(t, nil, nil)
	e.addSession(t, "ans1:off1")
	a, b := udpListen(t), udpListen(t)
	ra, rb := bindingRequest(t, "ans1:off1"), bindingRequest(t, "ans1:off1")
	// Send both requests before reading either response.
	a.WriteToUDPAddrPort(ra, e.addr)
	testkit.Eventually(t, time.Second, func() error {
		if e.srv.Stats().PacketsOut != 1 {
			return fmt.Errorf("no response relayed yet")
		}
		return nil
	})
	b.WriteToUDPAddrPort(rb, e.addr)
	if got := readOne(t, a); stunTxID(got) != stunTxID(ra) {
		t.Fatal("a got the wrong response")
	}
	if got := readOne(t, b); stunTxID(got) != stunTxID(rb) {
		t.Fatal("b got the wrong response")
	}
}

func TestRelayReclaimsIdleSessions(t *testing.T) {
	testkit.CheckGoroutines(t)
	e := startRelay(t, nil, func(c *Config) { c.IdleTimeout = 100 * time.Millisecond })
	e.addSession(t, "ans1:off1")
	client := udpListen(t)
	exchange(t, client, e.addr, bindingRequest(t, "ans1:off1"))
	// The relay is reclaimed; the stored session stays for other nodes.
	testkit.Eventually(t, 3*time.Second, func() error {
		if st := e.srv.Stats(); st.Sessions != 0 || e.store.Len() != 1 {
			return fmt.Errorf("sessions %d, stored %d", st.Sessions, e.store.Len())
		}
		return nil
	})
	// Media on the reclaimed flow is dropped.
	client.WriteToUDPAddrPort(rtpPacket(1, "late"), e.addr)
	testkit.Eventually(t, time.Second, func() error {
		if e.srv.Stats().DroppedNoSession != 1 {
			return fmt.Errorf("stats: %+v", e.srv.Stats())
		}
		return nil
	})
	// A validated Binding request opens the flow again.
	exchange(t, client, e.addr, bindingRequest(t, "ans1:off1"))
	if st := e.srv.Stats(); st.Sessions != 1 {
		t.Fatalf("session not reopened: %+v", st)
	}
}

// A client whose NAT binding changes may reach another node (a load
// balancer hashes the new address elsewhere). The first node's flow goes
// idle; reclaiming it must not end the session the second node relays.
func TestRelayIdleElsewhereKeepsMovedFlow(t *testing.T) {
	testkit.CheckGoroutines(t)
	store := NewMemorySessionStore()
	a := startRelay(t, store, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
	b := startRelay(t, store, func(c *Config) {
		c.IdleTimeout = 5 * time.Second
		c.SweepInterval = 10 * time.Millisecond
	})
	a.addSession(t, "ans1:off1")
	first, moved := udpListen(t), udpListen(t)
	exchange(t, first, a.addr, bindingRequest(t, "ans1:off1"))
	exchange(t, moved, b.addr, bindingRequest(t, "ans1:off1"))
	testkit.Eventually(t, 3*time.Second, func() error {
		if st := a.srv.Stats(); st.Sessions != 0 {
			return fmt.Errorf("node a still relays: %+v", st)
		}
		return nil
	})
	// Across many of b's sweeps after a's reclaim, b still relays the
	// moved flow.
	for i := 0; i < 20; i++ {
		exchange(t, moved, b.addr, rtpPacket(byte(i+1), "still here"))
		time.Sleep(10 * time.Millisecond)
	}
	if st := b.srv.Stats(); st.Sessions != 1 || store.Len() != 1 {
		t.Fatalf("moved flow ended: sessions %d, stored %d", st.Sessions, store.Len())
	}
}

// A DELETE handled by another node removes the session from the shared
// store; the node relaying it notices and reclaims its socket.
func TestRelayReclaimsSessionsDeletedElsewhere(t *testing.T) {
	testkit.CheckGoroutines(t)
	e := startRelay(t, nil, func(c *Config) { c.SweepInterval = 10 * time.Millisecond })
	e.addSession(t, "ans1:off1")
	client := udpListen(t)
	exchange(t, client, e.addr, bindingRequest(t, "ans1:off1"))
	if e.srv.Stats().Sessions != 1 {
		t.Fatal("no session")
	}
	e.store.DeleteRTCSession(context.Background(), "ans1:off1")
	testkit.Eventually(t, 2*time.Second, func() error {
		if n := e.srv.Stats().Sessions; n != 0 {
			return fmt.Errorf("%d sessions", n)
		}
		return nil
	})
}

// The relay reports the sessions that carry packets to a store that keeps
// their activity, and only while they do.
func TestRelayReportsActivity(t *testing.T) {
	testkit.CheckGoroutines(t)
	e := startRelay(t, nil, func(c *Config) { c.SweepInterval = 10 * time.Millisecond })
	e.addSession(t, "ans1:off1")
	e.addSession(t, "ans2:off2")
	client := udpListen(t)
	exchange(t, client, e.addr, bindingRequest(t, "ans1:off1"))
	lastActive := func(u string) int64 {
		s, _ := e.store.LookupRTCSession(u)
		return s.LastActiveUnixMs
	}
	testkit.Eventually(t, 2*time.Second, func() error {
		if lastActive("ans1:off1") == 0 {
			return errors.New("carried session not reported")
		}
		return nil
	})
	// Without packets the session is not reported again.
	time.Sleep(50 * time.Millisecond)
	quiet := lastActive("ans1:off1")
	time.Sleep(100 * time.Millisecond)
	if got := lastActive("ans1:off1"); got != quiet {
		t.Fatalf("reported without packets: %d after %d", got, quiet)
	}
	exchange(t, client, e.addr, rtpPacket(1, "media"))
	testkit.Eventually(t, 2*time.Second, func() error {
		if lastActive("ans1:off1") <= quiet {
			return errors.New("media not reported")
		}
		return nil
	})
	if lastActive("ans2:off2") != 0 {
		t.Fatal("a session the relay never carried was reported")
	}
}

func TestRelaySessionTableIsBounded(t *testing.T) {
	testkit.CheckGoroutines(t)
	e := startRelay(t, nil, func(c *Config) { c.MaxSessions = 1 })
	e.addSession(t, "ans1:off1")
	e.addSession(t, "ans2:off2")
	a, b := udpListen(t), udpListen(t)
	exchange(t, a, e.addr, bindingRequest(t, "ans1:off1"))
	b.WriteToUDPAddrPort(bindingRequest(t, "ans2:off2"), e.addr)
	testkit.Eventually(t, time.Second, func() error {
		if st := e.srv.Stats(); st.DroppedTableFull != 1 || st.Sessions != 1 {
			return fmt.Errorf("stats: %+v", st)
		}
		return nil
	})
}

// The per-packet path allocates nothing once a session is established.
func TestHandlePacketAllocs(t *testing.T) {
	e := startRelay(t, nil, nil)
	e.addSession(t, "ans1:off1")
	client := udpListen(t)
	exchange(t, client, e.addr, bindingRequest(t, "ans1:off1"))
	from := addrOf(client)
	rtp := rtpPacket(1, "media payload")
	req := bindingRequest(t, "ans1:off1")
	// AllocsPerRun counts the whole process, and the fake origin's reader
	// (test code) allocates while it answers forwarded packets; the least
	// of a few runs is the relay's own figure.
	allocs := func(f func()) float64 {
		least := testing.AllocsPerRun(200, f)
		for i := 0; i < 4 && least > 0; i++ {
			least = min(least, testing.AllocsPerRun(200, f))
		}
		return least
	}
	if n := allocs(func() { e.srv.handlePacket(rtp, from) }); n != 0 {
		t.Errorf("RTP: %v allocs per packet", n)
	}
	if n := allocs(func() { e.srv.handlePacket(req, from) }); n != 0 {
		t.Errorf("STUN on an established flow: %v allocs per packet", n)
	}
	bad := truncated22
	if n := allocs(func() { e.srv.handlePacket(bad, from) }); n != 0 {
		t.Errorf("malformed: %v allocs per packet", n)
	}
	// A whole batch, sent to the origin with one write.
	if n := allocs(func() {
		e.srv.batchMu.Lock()
		for range listenBatch {
			e.srv.relayPacket(rtp, from)
		}
		e.srv.toOrigins.flush(e.srv)
		e.srv.batchMu.Unlock()
	}); n != 0 {
		t.Errorf("RTP: %v allocs per batch of %d", n, listenBatch)
	}
}

// A packet the relay fails to send to the origin is the relay's drop,
// counted for the session's stream and in total. (The upstream socket is
// closed under the session: a refused send cannot be caused on purpose,
// because the session's reader takes the ICMP error first.)
func TestSendErrorsCountedPerStream(t *testing.T) {
	e := startRelay(t, nil, func(c *Config) { c.SocketBuffer = 1 << 20 })
	e.addSession(t, "ans1:off1")
	client := udpListen(t)
	exchange(t, client, e.addr, bindingRequest(t, "ans1:off1"))
	e.srv.mu.RLock()
	rs := e.srv.byUfrag["ans1:off1"]
	e.srv.mu.RUnlock()
	if rs == nil {
		t.Fatal("no session")
	}
	rs.upstream.Close()
	for range 3 {
		e.srv.handlePacket(rtpPacket(1, "lost"), addrOf(client))
	}
	st := e.srv.Stats()
	want := []StreamDrops{{Stream: "__defaultVhost__/live/s", SendErrors: 3}}
	if !slices.Equal(st.Streams, want) || st.DroppedUpstream < 3 {
		t.Errorf("stats: %+v, want streams %+v", st, want)
	}
}

func FuzzHandlePacket(f *testing.F) {
	f.Add(bindingRequest(f, "ans1:off1"), uint16(1))
	f.Add(truncated22, uint16(1))
	f.Add(rtpPacket(1, "x"), uint16(1))
	f.Add([]byte{22, 254, 253, 0, 0}, uint16(2)) // DTLS record header
	f.Add([]byte{}, uint16(3))
	f.Add(bindingRequestPwd(f, "ans1:off1", "guess"), uint16(4))
	f.Add(bindingRequestPwd(f, "ans2:off2", ""), uint16(5))
	e := startRelay(f, nil, nil)
	e.addSession(f, "ans1:off1")
	e.addSessionPwd(f, "ans2:off2", "")
	f.Fuzz(func(t *testing.T, p []byte, port uint16) {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port|1)
		e.srv.handlePacket(p, from)
		if n := e.srv.Stats().Sessions; n > 2 {
			t.Fatalf("%d sessions from two stored sessions", n)
		}
	})
}

// BenchmarkRelay measures one packet round trip client -> origin -> client,
// directly and through an established relay session, in the same run.
func BenchmarkRelay(b *testing.B) {
	payload := rtpPacket(1, string(make([]byte, 1000)))
	run := func(b *testing.B, client *net.UDPConn, to netip.AddrPort) {
		buf := make([]byte, 2048)
		client.SetReadDeadline(time.Time{})
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		b.ResetTimer()
		start, cpu0 := time.Now(), processCPU()
		for i := 0; i < b.N; i++ {
			if _, err := client.WriteToUDPAddrPort(payload, to); err != nil {
				b.Fatal(err)
			}
			if _, err := client.Read(buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "roundtrips/s")
		// CPU of the whole process (client, fake origin and, when relayed,
		// the relay) per round trip; the difference is the relay's cost for
		// two packets.
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/roundtrip")
	}
	b.Run("direct", func(b *testing.B) {
		o := startFakeOrigin(b)
		run(b, udpListen(b), addrOf(o.conn))
	})
	b.Run("relay", func(b *testing.B) {
		e := startRelay(b, nil, nil)
		e.addSession(b, "ans1:off1")
		client := udpListen(b)
		exchange(b, client, e.addr, bindingRequest(b, "ans1:off1"))
		run(b, client, e.addr)
	})
	// The same with window packets in flight: the client sends window
	// packets, then reads their echoes. One op is still one packet's round
	// trip.
	const window = 32
	runWindow := func(b *testing.B, client *net.UDPConn, to netip.AddrPort) {
		buf := make([]byte, 2048)
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		b.ResetTimer()
		start, cpu0 := time.Now(), processCPU()
		for i := 0; i < b.N; i += window {
			n := min(window, b.N-i)
			for range n {
				if _, err := client.WriteToUDPAddrPort(payload, to); err != nil {
					b.Fatal(err)
				}
			}
			client.SetReadDeadline(time.Now().Add(time.Second))
			for range n {
				if _, err := client.Read(buf); err != nil {
					b.Fatalf("echo lost: %v", err)
				}
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "roundtrips/s")
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/roundtrip")
	}
	b.Run("direct-window32", func(b *testing.B) {
		o := startFakeOrigin(b)
		runWindow(b, udpListen(b), addrOf(o.conn))
	})
	b.Run("relay-window32", func(b *testing.B) {
		e := startRelay(b, nil, nil)
		e.addSession(b, "ans1:off1")
		client := udpListen(b)
		exchange(b, client, e.addr, bindingRequest(b, "ans1:off1"))
		runWindow(b, client, e.addr)
	})
}

// processCPU is the user+system CPU time of this process in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// TestDrain: while draining, new offers get 503 and the relay keeps
// carrying its session; Drain returns once that session is gone.
func TestDrain(t *testing.T) {
	testkit.CheckGoroutines(t)
	e := startRelay(t, nil, func(c *Config) { c.SweepInterval = 10 * time.Millisecond })
	e.addSession(t, "ans1:off1")
	client := udpListen(t)
	exchange(t, client, e.addr, bindingRequest(t, "ans1:off1"))

	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.srv.Drain(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain with an expired context = %v", err)
	}
	w := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/rtc/v1/whep/?app=live&stream=s", strings.NewReader("v=0\r\n")))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"code":503`) {
		t.Fatalf("offer while draining: %d %s", w.Code, w.Body)
	}
	p := rtpPacket(1, "media")
	if got := exchange(t, client, e.addr, p); !bytes.Equal(got, p) {
		t.Fatalf("relay while draining: %x", got)
	}

	done := make(chan error, 1)
	go func() { done <- e.srv.Drain(context.Background()) }()
	e.store.DeleteRTCSession(context.Background(), "ans1:off1")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return after the session ended")
	}
}
