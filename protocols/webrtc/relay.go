package webrtc

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/internal/udpbatch"
	"github.com/srs-mesh/srs-mesh/stream"
)

const (
	// relayBufSize is the largest packet the relay carries. WebRTC keeps
	// packets under the path MTU; a packet that fills the buffer is dropped
	// as oversized rather than forwarded truncated.
	relayBufSize = 8192
	// maxClientAddrs bounds the client addresses (ICE candidates, NAT
	// rebindings) one session remembers.
	maxClientAddrs = 4
	// txRing is how many Binding request transaction ids a session remembers
	// to route the origin's responses back to the address that asked.
	txRing = 8
	// resolveTimeout bounds resolving an origin's RTC host name.
	resolveTimeout = 2 * time.Second
	// listenBatch and sessionBatch are the datagrams per recvmmsg and
	// sendmmsg: on the relay socket (listenBatch × relayBufSize of buffers,
	// once) and on each session's upstream socket (sessionBatch ×
	// relayBufSize per session).
	listenBatch  = 32
	sessionBatch = 8
)

// relaySession is one relayed ICE session: one upstream socket connected to
// the origin, one reader goroutine copying origin -> client.
type relaySession struct {
	rec      stream.RTCSession
	upstream *net.UDPConn
	// upW writes batches to the origin; it is used under Server.batchMu.
	upW *udpbatch.Writer
	end func()
	// lastActive is a coarse unix-nanosecond stamp (Server.now).
	lastActive atomic.Int64
	// clientIn and clientOut count the bytes relayed from and to the
	// client, for Sessions.
	clientIn, clientOut *atomic.Uint64
	// sendErrors and overflow count the session's packets the relay
	// dropped: sends that failed either way, and packets from the origin
	// the kernel dropped on the upstream socket's full receive buffer.
	sendErrors, overflow atomic.Uint64

	mu     sync.Mutex
	client netip.AddrPort                 // where origin packets go
	addrs  [maxClientAddrs]netip.AddrPort // every address mapped to this session
	naddrs int
	tx     [txRing]struct {
		id   [12]byte
		addr netip.AddrPort
	}
	txNext int
	closed bool
}

// ServeUDP runs the media relay on pc until Close, which closes pc. With a
// *net.UDPConn the relay allocates nothing per packet. It returns nil after
// Close and ErrServing if called twice.
func (s *Server) ServeUDP(pc net.PacketConn) error {
	uc, ok := pc.(udpConn)
	if !ok {
		uc = packetConnAdapter{pc}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		pc.Close()
		return ErrClosed
	}
	if s.pc != nil {
		s.mu.Unlock()
		return ErrServing
	}
	s.pc = uc
	s.wg.Add(1)
	s.mu.Unlock()
	if u, ok := pc.(*net.UDPConn); ok {
		s.sizeBuffers(u, "relay")
	}
	go s.sweep()
	r := udpbatch.NewReader(uc, listenBatch, relayBufSize)
	for {
		ms, err := r.Read()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// ICMP errors surface on some platforms as read errors; the
			// socket is still usable.
			continue
		}
		s.batchMu.Lock()
		for i := range ms {
			if ms[i].N == len(ms[i].Buf) {
				s.st.oversize.Add(1)
				continue
			}
			s.relayPacket(ms[i].Payload(), ms[i].Addr)
		}
		s.toOrigins.flush(s)
		s.batchMu.Unlock()
		s.st.listenOverflow.Store(r.Dropped())
	}
}

// sizeBuffers applies Config.SocketBuffer to a socket, and logs once per
// server when the kernel granted less.
func (s *Server) sizeBuffers(uc *net.UDPConn, which string) {
	want := s.cfg.SocketBuffer
	if want <= 0 {
		return
	}
	rcv, snd, err := udpbatch.SetBuffers(uc, want)
	if (err != nil || rcv < want || snd < want) && s.bufferWarned.CompareAndSwap(false, true) {
		s.log.Warn("webrtc socket buffers smaller than asked; raise net.core.rmem_max and net.core.wmem_max",
			"socket", which, "want", want, "receive", rcv, "send", snd, "err", err)
	}
}

// handlePacket relays one packet from a client, as a batch of one; the
// listener goroutine dispatches whole batches. On an established session
// it allocates nothing.
func (s *Server) handlePacket(p []byte, from netip.AddrPort) {
	s.batchMu.Lock()
	s.relayPacket(p, from)
	s.toOrigins.flush(s)
	s.batchMu.Unlock()
}

// relayPacket handles one packet of a batch from a client: a packet of a
// known flow joins the batch to its origin (p must stay valid until the
// batch is flushed). It never blocks on the network. Called with batchMu
// held.
func (s *Server) relayPacket(p []byte, from netip.AddrPort) {
	if classify(p) == classOther {
		s.st.malformed.Add(1)
		return
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if p[0] <= 3 {
		user, h, err := STUNUsername(p)
		switch {
		case err == nil && h.Type == stunBindingRequest:
			if s.cfg.Tap != nil && s.cfg.Tap.ClaimBinding(p, user, from) {
				return
			}
			if !s.learn(p, user, h, from) {
				return
			}
		case errors.Is(err, ErrSTUNNoUsername):
			// Indications and responses carry no USERNAME: forward them
			// on a known flow only.
		case err != nil:
			s.st.malformed.Add(1)
			return
		}
	}
	s.mu.RLock()
	rs := s.byAddr[from]
	s.mu.RUnlock()
	if rs == nil {
		if s.cfg.Tap == nil || !s.cfg.Tap.Take(p, from) {
			s.st.noSession.Add(1)
		}
		return
	}
	s.toOrigins.add(s, rs, p)
}

// toOrigin relays a batch of client packets to the origin with one write.
// Called with batchMu held; it does not allocate.
func (rs *relaySession) toOrigin(s *Server, ms []udpbatch.Msg) {
	rs.lastActive.Store(s.now.Load())
	sent, n, _ := rs.upW.Write(ms)
	s.st.packetsIn.Add(uint64(sent))
	s.st.bytesIn.Add(uint64(n))
	rs.clientIn.Add(uint64(n))
	if failed := uint64(len(ms) - sent); failed > 0 {
		s.st.upstream.Add(failed)
		rs.sendErrors.Add(failed)
	}
}

// learn handles a STUN Binding request p with a USERNAME from a client: it
// maps from to the session that username names (opening the session on its
// first request) and records where the origin's response must go. It reports
// whether the packet should be forwarded.
//
// Knowing the username is not enough to take a session's media: a request
// that would open the session or map a new address to it (a new candidate, a
// NAT rebinding) must carry a MESSAGE-INTEGRITY made with the session's Pwd,
// which only the client, the origin and the mesh know; otherwise it is
// dropped and counted, and the session keeps its addresses. Requests from an
// address already mapped to the session skip the check: that address proved
// itself when it was mapped, and the per-packet path stays allocation-free.
// A session stored without a Pwd (by an older node) is relayed without the
// check.
func (s *Server) learn(p, user []byte, h stunHeader, from netip.AddrPort) bool {
	s.mu.RLock()
	rs := s.byUfrag[string(user)]
	mapped := rs != nil && s.byAddr[from] == rs
	s.mu.RUnlock()
	if rs == nil {
		rec, ok := s.cfg.Store.LookupRTCSession(string(user))
		if !ok {
			s.st.unknownUfrag.Add(1)
			return false
		}
		if !s.verified(p, rec.Pwd) {
			return false
		}
		rs = s.open(rec, from)
		if rs == nil {
			return false
		}
		mapped = true
	}
	if !mapped {
		if !s.verified(p, rs.rec.Pwd) {
			return false
		}
		s.mapAddr(rs, from)
	}
	rs.mu.Lock()
	rs.client = from
	t := &rs.tx[rs.txNext]
	t.id, t.addr = h.TxID, from
	rs.txNext = (rs.txNext + 1) % txRing
	rs.mu.Unlock()
	return true
}

// verified reports whether the Binding request p carries a valid
// MESSAGE-INTEGRITY for a session whose origin's ICE password is pwd, and
// counts it as dropped when not. An empty pwd (a session stored by an older
// node) is not checked.
func (s *Server) verified(p []byte, pwd string) bool {
	if pwd == "" {
		return true
	}
	if err := STUNCheckIntegrity(p, []byte(pwd)); err != nil {
		s.st.integrity.Add(1)
		return false
	}
	return true
}

// mapAddr points from at rs: a new candidate of the client or a NAT
// rebinding. The session keeps its last maxClientAddrs addresses.
func (s *Server) mapAddr(rs *relaySession, from netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byUfrag[rs.rec.Ufrag] != rs {
		return // reclaimed meanwhile
	}
	if old := s.byAddr[from]; old != nil && old != rs {
		old.forget(from)
	}
	s.byAddr[from] = rs
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.naddrs == maxClientAddrs {
		if s.byAddr[rs.addrs[0]] == rs {
			delete(s.byAddr, rs.addrs[0])
		}
		copy(rs.addrs[:], rs.addrs[1:])
		rs.naddrs--
	}
	rs.addrs[rs.naddrs] = from
	rs.naddrs++
}

// forget removes addr from the session's address list (the address now
// belongs to another session). Called with Server.mu held.
func (rs *relaySession) forget(addr netip.AddrPort) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for i := 0; i < rs.naddrs; i++ {
		if rs.addrs[i] == addr {
			copy(rs.addrs[i:], rs.addrs[i+1:rs.naddrs])
			rs.naddrs--
			return
		}
	}
}

// open starts relaying rec for a client at from. When the origin's address
// is a host name it is resolved in the background and the client's next
// retransmission finds the session; open then returns nil.
func (s *Server) open(rec stream.RTCSession, from netip.AddrPort) *relaySession {
	origin, err := netip.ParseAddrPort(rec.OriginRTC)
	if err == nil {
		return s.start(rec, origin, from)
	}
	s.mu.Lock()
	if s.closed || s.resolves[rec.Ufrag] || len(s.resolves) >= s.cfg.MaxSessions {
		s.mu.Unlock()
		return nil
	}
	s.resolves[rec.Ufrag] = true
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.resolves, rec.Ufrag)
			s.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(s.ctx, resolveTimeout)
		defer cancel()
		ua, err := net.DefaultResolver.LookupNetIP(ctx, "ip", hostOf(rec.OriginRTC))
		port, perr := portOf(rec.OriginRTC)
		if err != nil || perr != nil || len(ua) == 0 {
			s.st.badOrigin.Add(1)
			s.log.Warn("cannot resolve origin RTC address", "origin", rec.OriginID, "rtc", rec.OriginRTC, "err", err)
			return
		}
		s.start(rec, netip.AddrPortFrom(ua[0].Unmap(), port), from)
	}()
	return nil
}

// start opens the upstream socket and the reader goroutine of a session.
func (s *Server) start(rec stream.RTCSession, origin netip.AddrPort, from netip.AddrPort) *relaySession {
	end := func() {}
	in, out := new(atomic.Uint64), new(atomic.Uint64)
	if key, err := stream.ParseKey(rec.Key); err == nil {
		if s.cfg.Sessions != nil {
			end = s.cfg.Sessions.Track(key, "webrtc", stream.KindSession, in, out)
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		end()
		return nil
	}
	if rs := s.byUfrag[rec.Ufrag]; rs != nil {
		s.mu.Unlock()
		end()
		return rs
	}
	if len(s.byUfrag) >= s.cfg.MaxSessions {
		s.mu.Unlock()
		end()
		s.st.tableFull.Add(1)
		return nil
	}
	up, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(origin))
	if err != nil {
		s.mu.Unlock()
		end()
		s.st.badOrigin.Add(1)
		s.log.Warn("cannot open upstream socket", "origin", rec.OriginID, "rtc", origin, "err", err)
		return nil
	}
	s.sizeBuffers(up, "upstream")
	rs := &relaySession{rec: rec, upstream: up, upW: udpbatch.NewWriter(up, listenBatch),
		client: from, end: end, clientIn: in, clientOut: out}
	rs.addrs[0], rs.naddrs = from, 1
	rs.lastActive.Store(s.now.Load())
	if old := s.byAddr[from]; old != nil {
		old.forget(from)
	}
	s.byAddr[from] = rs
	s.byUfrag[rec.Ufrag] = rs
	s.live.Join()
	pc := s.pc
	s.wg.Add(1)
	s.mu.Unlock()

	s.log.Info("relay session started", "stream", rec.Key, "origin", rec.OriginID,
		"rtc", origin, "peer", from, "ufrag", rec.Ufrag)
	go s.readOrigin(rs, pc)
	return rs
}

// readOrigin copies the origin's packets to the client, a batch per read
// and write, until the session's upstream socket is closed. Its buffers
// are made once; nothing is allocated per packet.
func (s *Server) readOrigin(rs *relaySession, pc udpConn) {
	defer s.wg.Done()
	r := udpbatch.NewReader(rs.upstream, sessionBatch, relayBufSize)
	w := udpbatch.NewWriter(pc, sessionBatch)
	out := make([]udpbatch.Msg, 0, sessionBatch)
	var overflow uint64
	for {
		ms, err := r.Read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ECONNREFUSED from an ICMP error: the origin's port is
			// closed for now. Keep reading; idleness reclaims us.
			s.st.upstream.Add(1)
			if s.ctx.Err() != nil {
				return
			}
			continue
		}
		rs.lastActive.Store(s.now.Load())
		out = out[:0]
		rs.mu.Lock()
		for i := range ms {
			if ms[i].N == len(ms[i].Buf) {
				s.st.oversize.Add(1)
				continue
			}
			m := ms[i]
			m.Addr = rs.destination(m.Payload())
			out = append(out, m)
		}
		rs.mu.Unlock()
		sent, n, _ := w.Write(out)
		s.st.packetsOut.Add(uint64(sent))
		s.st.bytesOut.Add(uint64(n))
		rs.clientOut.Add(uint64(n))
		if failed := uint64(len(out) - sent); failed > 0 {
			s.st.upstream.Add(failed)
			rs.sendErrors.Add(failed)
		}
		if d := r.Dropped(); d > overflow {
			rs.overflow.Add(d - overflow)
			s.st.upOverflow.Add(d - overflow)
			overflow = d
		}
	}
}

// destination is where an origin packet goes: a STUN response goes to the
// address that sent the matching request, everything else to the address of
// the client's latest Binding request. Called with rs.mu held.
func (rs *relaySession) destination(p []byte) netip.AddrPort {
	if len(p) >= stunHeaderLen && p[0] <= 3 {
		if h, _, err := parseSTUNHeader(p); err == nil && h.isResponse() {
			for i := range rs.tx {
				if rs.tx[i].id == h.TxID && rs.tx[i].addr.IsValid() {
					return rs.tx[i].addr
				}
			}
		}
	}
	return rs.client
}

// sweep advances the coarse clock, reports the sessions that carried packets
// since the previous sweep to the store (when it is a SessionActivity), and
// reclaims idle sessions and sessions that were deleted from the store (a
// DELETE through another node, or an eviction).
func (s *Server) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			// Packets since the previous sweep were stamped with its time.
			since := s.now.Swap(now.UnixNano())
			idleBefore := now.Add(-s.cfg.IdleTimeout).UnixNano()
			var idle, gone []*relaySession
			var active []string
			s.mu.RLock()
			for u, rs := range s.byUfrag {
				last := rs.lastActive.Load()
				if last < idleBefore {
					idle = append(idle, rs)
				} else if _, ok := s.cfg.Store.LookupRTCSession(u); !ok {
					gone = append(gone, rs)
				} else if last >= since && s.activity != nil {
					active = append(active, u)
				}
			}
			s.mu.RUnlock()
			if len(active) > 0 {
				s.activity.TouchRTCSessions(active)
			}
			// An idle flow is reclaimed here only: the client may have
			// moved to another node (a NAT rebinding that a load balancer
			// hashed elsewhere), which still relays it from the store. The
			// store entry ends with a DELETE or the mesh's session TTL.
			for _, rs := range idle {
				s.reclaim(rs, "idle")
			}
			for _, rs := range gone {
				s.reclaim(rs, "deleted")
			}
		}
	}
}

// dropSession reclaims the local relay of a session, if any (after a DELETE).
func (s *Server) dropSession(ufrag string) {
	s.mu.RLock()
	rs := s.byUfrag[ufrag]
	s.mu.RUnlock()
	if rs != nil {
		s.reclaim(rs, "deleted")
	}
}

// reclaim removes a session from this node's tables and closes its upstream
// socket, which ends its reader. The stored session is left alone: only a
// DELETE or the store's own expiry ends it for every node.
func (s *Server) reclaim(rs *relaySession, reason string) {
	s.mu.Lock()
	if s.byUfrag[rs.rec.Ufrag] == rs {
		delete(s.byUfrag, rs.rec.Ufrag)
	}
	rs.mu.Lock()
	already := rs.closed
	rs.closed = true
	for i := 0; i < rs.naddrs; i++ {
		if s.byAddr[rs.addrs[i]] == rs {
			delete(s.byAddr, rs.addrs[i])
		}
	}
	rs.mu.Unlock()
	s.mu.Unlock()
	if already {
		return
	}
	rs.upstream.Close()
	rs.end()
	s.live.Leave()
	s.log.Info("relay session ended", "stream", rs.rec.Key, "origin", rs.rec.OriginID,
		"ufrag", rs.rec.Ufrag, "reason", reason)
}

// hostOf and portOf split "host:port".
func hostOf(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	return h
}

func portOf(hostport string) (uint16, error) {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0, err
	}
	ap, err := netip.ParseAddrPort("0.0.0.0:" + p)
	if err != nil {
		return 0, err
	}
	return ap.Port(), nil
}
