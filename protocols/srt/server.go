// Package srt is srs-mesh's SRT proxy. It listens on one UDP socket, reads
// the stream id from each caller's handshake, asks a Router for the origin
// that owns the stream, and relays the caller's SRT session to that origin
// transparently: the SRT connection terminates at the origin, so latency
// buffers are not doubled and encryption (KMREQ/KMRSP) stays end to end.
//
// The package owns the UDP listener loop, the per-session state machines and
// their upstream sockets. It reads no flags or environment and imports no
// other srs-mesh package but stream.
package srt

import (
	"context"
	"crypto/rand"
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
	"time"

	"github.com/datarhei/gosrt/packet"

	"github.com/srs-mesh/srs-mesh/protocols/internal/drain"
	"github.com/srs-mesh/srs-mesh/protocols/internal/udpbatch"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Config configures a Server. Zero durations and sizes take the defaults
// documented on each field.
type Config struct {
	// Router resolves stream keys to origins. Required. It may block (it
	// may ask the mesh leader); the server calls it from the session's
	// goroutine with a context bounded by HandshakeTimeout, never from the
	// listener loop.
	Router stream.Router
	// Publisher, when not nil, routes publishes and writes their
	// assignment only once the origin accepted (see stream.Publisher).
	// nil: a publish is routed by Router.Route.
	Publisher stream.Publisher
	// Sessions, if not nil, is told about established sessions (proto
	// "srt"), with the bytes relayed from and to the caller.
	Sessions stream.Sessions
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// HandshakeTimeout bounds routing plus the handshake with the origin;
	// a caller whose origin does not answer in time is rejected. Default 3s
	// (libsrt callers give up after 3s by default).
	HandshakeTimeout time.Duration
	// IdleTimeout reclaims a session when no packet went either way for
	// that long. Default 30s.
	IdleTimeout time.Duration
	// MaxSessions bounds the session table, handshaking sessions included;
	// callers beyond it are rejected with SRT_REJ_RESOURCE. Default 4096.
	MaxSessions int
	// SocketBuffer is the receive and send buffer (SO_RCVBUF, SO_SNDBUF)
	// asked for the listener socket and every session's upstream socket,
	// in bytes. A contribution feed at tens of Mbit/s fills the usual
	// 208 KiB default in a few tens of milliseconds of scheduling delay.
	// The kernel caps it at net.core.rmem_max and net.core.wmem_max; the
	// server logs once when it got less. 0 leaves the system default.
	SocketBuffer int
	// BackupPublish, with Live set, holds a second publisher of a live
	// stream as the stream's standby on this node instead of relaying it
	// to the origin, which would close it, and has it take over when the
	// active publisher leaves (see standby.go).
	BackupPublish bool
	// Live tells whether a stream is live on an origin with an active
	// publisher (BackupPublish); asked before a publish's handshake,
	// within 700 ms.
	Live LiveFunc
	// PublishStall, with BackupPublish, ends an active publish session
	// whose caller sent no media for that long, so that a standby can
	// take over. 0: never.
	PublishStall time.Duration
	// Standbys, if not nil, is told about standby publishers and stalls.
	Standbys StandbyObserver
	// StandbyGate, if not nil, is asked before a publisher is held as a
	// standby (nil: one standby per stream on this node).
	StandbyGate StandbyGate
}

// Defaults.
const (
	DefaultHandshakeTimeout = 3 * time.Second
	DefaultIdleTimeout      = 30 * time.Second
	DefaultMaxSessions      = 4096
)

// Batch sizes: datagrams per recvmmsg/sendmmsg. The listener's buffers
// (listenBatch × maxPacket, or udpbatch's bounded 1 MiB of GRO buffers
// where the kernel coalesces) exist once per server; a session's
// (sessionBatch × maxPacket) once per established session.
const (
	listenBatch  = 64
	sessionBatch = 16
)

// Errors returned by New and Serve.
var (
	ErrNoRouter      = errors.New("srt: config has no Router")
	ErrServerClosed  = errors.New("srt: server closed")
	ErrAlreadyServed = errors.New("srt: Serve called twice")
)

// Reject reasons, the keys of Stats.Rejects.
const (
	RejectBadStreamID   = "bad_streamid"    // stream id names no valid stream
	RejectNoOrigin      = "no_origin"       // Router returned an error
	RejectOriginTimeout = "origin_timeout"  // origin did not finish the handshake in time
	RejectOriginRefused = "origin_refused"  // origin port unreachable or bad origin address
	RejectOriginRejects = "origin_rejected" // origin answered with a rejection (relayed as is)
	RejectTableFull     = "table_full"      // MaxSessions reached
	RejectVersion       = "version"         // caller is not HSv5
	RejectClosing       = "closing"         // server is shutting down
	RejectBadCookie     = "bad_cookie"      // conclusion with a stale or forged cookie (dropped)
)

// Stats is a snapshot of the server's counters. In and out count what was
// relayed from callers (to origins) and to callers (from origins), after
// the handshake started: the same naming as stream.Sessions' counters and
// the other protocols' Stats.
type Stats struct {
	Sessions    int // sessions in the table (handshaking, established or lingering after a reject)
	Established int // sessions relaying data
	PacketsIn   uint64
	BytesIn     uint64
	PacketsOut  uint64
	BytesOut    uint64
	Malformed   uint64 // packets dropped because they did not parse
	NoSession   uint64 // packets dropped because no session matched
	// SendErrors counts packets the node failed to send to an origin or
	// a caller (the socket refused them, e.g. after an ICMP error).
	SendErrors uint64
	// Overflow counts packets the kernel dropped because a socket of the
	// node (the listener or a session's upstream) had a full receive
	// buffer: loss the node caused, not the network. See SocketBuffer.
	Overflow uint64
	// Streams are the node's drops by stream, for the streams of sessions
	// in the table that dropped any (drops of the listener socket and of
	// unknown peers belong to no stream).
	Streams          []StreamDrops
	Rejects          map[string]uint64 // handshakes refused, by reason
	HandshakesServed uint64            // induction responses sent
	// NoGSO counts sessions whose upstream socket sent without UDP GSO:
	// the kernel has none, or refused a segmented send (the session then
	// sends its packets one datagram each, in batches).
	NoGSO uint64
}

// StreamDrops is one stream's packets the node dropped, over its sessions
// in the table.
type StreamDrops struct {
	Stream     string // stream key
	SendErrors uint64 // packets of the stream the node failed to send
	Overflow   uint64 // packets from the origin the kernel dropped on a full session socket
}

// Server is an SRT proxy. Create it with New, run it with Serve, stop it
// with Close.
type Server struct {
	cfg        Config
	log        *slog.Logger
	secret     [32]byte
	listenerID uint32
	now        func() time.Time // replaced in tests

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // session goroutines and the janitor
	live   drain.Group    // established sessions, for Drain

	mu          sync.RWMutex
	conn        packetConn           // set by Serve
	byCaller    map[sessKey]*session // (caller addr, caller socket id)
	byPeer      map[sessKey]*session // (caller addr, origin socket id), established only
	closed      bool
	serving     bool
	serveDone   chan struct{}
	established int

	stats counters
	// scratch is the listener loop's buffer for handshake replies.
	scratch [hsMinLen]byte
	// toOrigins is the listener loop's batch of caller packets, sent per
	// session once the batch is dispatched.
	toOrigins originBatch
	// lastKey and lastSess are the listener loop's last session lookup
	// in the current batch: a feed's packets mostly come in runs.
	lastKey  sessKey
	lastSess *session
	// bufferWarned is set once a socket got less buffer than asked.
	bufferWarned atomic.Bool
	// gsoWarned is set once a session's upstream sent without GSO.
	gsoWarned atomic.Bool
	// standbys is the standby listener and its standbys (BackupPublish).
	standbys *standbys
}

type sessKey struct {
	addr netip.AddrPort
	id   uint32
}

type counters struct {
	pktIn, bytesIn       atomic.Uint64
	pktOut, bytesOut     atomic.Uint64
	malformed, noSession atomic.Uint64
	sendErrors           atomic.Uint64
	listenOverflow       atomic.Uint64 // the listener socket's, as last read
	upOverflow           atomic.Uint64 // every session socket's
	inductions           atomic.Uint64
	noGSO                atomic.Uint64
	rejMu                sync.Mutex
	rejects              map[string]uint64
}

func (c *counters) reject(reason string) {
	c.rejMu.Lock()
	c.rejects[reason]++
	c.rejMu.Unlock()
}

// New validates cfg, applies defaults and returns a server that is not yet
// serving.
func New(cfg Config) (*Server, error) {
	if cfg.Router == nil {
		return nil, ErrNoRouter
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		log:       log.With("proto", "srt"),
		now:       time.Now,
		byCaller:  make(map[sessKey]*session),
		byPeer:    make(map[sessKey]*session),
		serveDone: make(chan struct{}),
	}
	s.stats.rejects = make(map[string]uint64)
	s.toOrigins.init(listenBatch)
	if _, err := rand.Read(s.secret[:]); err != nil {
		return nil, fmt.Errorf("srt: cookie secret: %w", err)
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("srt: listener id: %w", err)
	}
	s.listenerID = binary.BigEndian.Uint32(id[:])&0x3fffffff | 1
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if cfg.BackupPublish && cfg.Live != nil {
		if err := s.startStandbys(); err != nil {
			s.cancel()
			return nil, err
		}
	}
	return s, nil
}

// packetConn is the listener socket as the server uses it: *net.UDPConn
// satisfies it without allocating per packet; other net.PacketConns are
// adapted (and allocate an address per packet).
type packetConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	SetReadDeadline(t time.Time) error
	Close() error
}

type genericConn struct{ pc net.PacketConn }

func (g genericConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, a, err := g.pc.ReadFrom(b)
	if err != nil {
		return n, netip.AddrPort{}, err
	}
	if ua, ok := a.(*net.UDPAddr); ok {
		return n, ua.AddrPort(), nil
	}
	ap, perr := netip.ParseAddrPort(a.String())
	if perr != nil {
		return 0, netip.AddrPort{}, nil // unusable peer: read as an empty packet
	}
	return n, ap, nil
}

func (g genericConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return g.pc.WriteTo(b, net.UDPAddrFromAddrPort(addr))
}

func (g genericConn) SetReadDeadline(t time.Time) error { return g.pc.SetReadDeadline(t) }

func (g genericConn) Close() error { return g.pc.Close() }

// Serve reads SRT packets from pc until Close is called or pc fails. The
// server owns pc from then on and closes it. Serve returns nil after Close,
// ErrServerClosed if Close came first, and the read error otherwise (after
// closing every session).
func (s *Server) Serve(pc net.PacketConn) error {
	var c packetConn
	if u, ok := pc.(*net.UDPConn); ok {
		c = u
		s.sizeBuffers(u, "listener")
	} else {
		c = genericConn{pc}
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		pc.Close()
		return ErrServerClosed
	case s.serving:
		s.mu.Unlock()
		return ErrAlreadyServed
	}
	s.serving = true
	s.conn = c
	s.mu.Unlock()
	defer close(s.serveDone)

	s.wg.Add(1)
	go s.janitor()

	err := s.readLoop(c)

	// Sessions say goodbye through the listener socket, so it is closed
	// last.
	s.mu.Lock()
	closing := s.closed
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.closeAll()
	s.wg.Wait()
	c.Close()
	if closing {
		return nil
	}
	return err
}

// readLoop is the listener loop: it reads a batch, parses just enough to
// dispatch each packet, sends the batch's packets on with one call per
// session, and never waits on an origin.
func (s *Server) readLoop(c packetConn) error {
	r := udpbatch.NewReaderGRO(c, listenBatch, maxPacket)
	if r.Batched() && !r.Coalescing() {
		s.log.Info("srt listener reads without UDP GRO: the kernel has no UDP_GRO")
	}
	handle := func(ms []udpbatch.Msg) bool {
		for i := range ms {
			s.route(ms[i].Payload(), ms[i].Addr)
		}
		s.flush()
		s.stats.listenOverflow.Store(r.Dropped())
		return true
	}
	for {
		err := r.ReadEach(handle)
		if s.ctx.Err() != nil {
			return ErrServerClosed
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		return err
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
		s.log.Warn("srt socket buffers smaller than asked; raise net.core.rmem_max and net.core.wmem_max",
			"socket", which, "want", want, "receive", rcv, "send", snd, "err", err)
	}
}

// noteNoGSO counts a session whose upstream socket sends without UDP GSO
// (each packet its own datagram within a batch), and logs the first.
func (s *Server) noteNoGSO(why string) {
	s.stats.noGSO.Add(1)
	if s.gsoWarned.CompareAndSwap(false, true) {
		s.log.Info("srt upstream sends without UDP GSO", "reason", why)
	}
}

// maxPacket is the size of every receive buffer. SRT packets are at most
// one MTU (1500 bytes); anything larger is not SRT.
const maxPacket = 2048

// dispatch handles one datagram from a caller, as a batch of one. It is
// called only from the listener goroutine (and from tests and fuzzers
// standing in for it): the scratch buffer and the batch need no lock. It
// does not allocate for packets of an established session.
func (s *Server) dispatch(b []byte, from netip.AddrPort) {
	s.route(b, from)
	s.flush()
}

// flush sends the batch's packets on and forgets the batch's last lookup.
func (s *Server) flush() {
	s.toOrigins.flush(s)
	s.lastKey, s.lastSess = sessKey{}, nil
}

// route handles one datagram of a batch from a caller: a packet of an
// established session joins the batch to its origin (b must stay valid
// until the batch is flushed); handshakes are answered at once.
func (s *Server) route(b []byte, from netip.AddrPort) {
	if len(b) < headerLen || !from.IsValid() {
		s.stats.malformed.Add(1)
		return
	}
	dest := destID(b)
	hsPkt := isControl(b, packet.CTRLTYPE_HANDSHAKE)
	if !hsPkt || (dest != 0 && dest != s.listenerID) {
		key := sessKey{from, dest}
		ss := s.lastSess
		if ss == nil || s.lastKey != key {
			s.mu.RLock()
			ss = s.byPeer[key]
			s.mu.RUnlock()
			s.lastKey, s.lastSess = key, ss
		}
		if ss != nil {
			s.toOrigins.add(ss, b)
			return
		}
		if !hsPkt {
			s.stats.noSession.Add(1)
			return
		}
	}
	s.handleHandshake(b, from)
}

// handleHandshake answers inductions itself, and turns a conclusion into a
// session (or a rejection). Retransmitted handshakes are idempotent: the
// cookie is a function of the caller address, and a conclusion from a known
// (address, socket id) goes to its existing session.
func (s *Server) handleHandshake(b []byte, from netip.AddrPort) {
	hs, err := parseHandshake(b)
	if err != nil {
		s.stats.malformed.Add(1)
		s.log.Debug("malformed handshake", "peer", from, "err", err)
		return
	}
	switch hs.Type {
	case packet.HSTYPE_INDUCTION:
		s.stats.inductions.Add(1)
		resp := appendInductionResponse(s.scratch[:0], b, s.listenerID, s.cookie(from, 0), from)
		s.write(resp, from)
		return
	case packet.HSTYPE_CONCLUSION:
	default:
		// WAVEHAND/AGREEMENT are rendezvous; rejections from a caller
		// mean nothing to a listener.
		s.stats.noSession.Add(1)
		return
	}

	key := sessKey{from, hs.SocketID}
	s.mu.RLock()
	ss := s.byCaller[key]
	s.mu.RUnlock()
	if ss != nil {
		ss.retransmittedConclusion()
		return
	}
	if hs.Cookie != s.cookie(from, 0) && hs.Cookie != s.cookie(from, -1) {
		s.stats.reject(RejectBadCookie)
		return
	}
	if hs.Version != hsv5 {
		s.rejectNow(b, from, rejVersion, RejectVersion, nil)
		return
	}
	info, err := stream.FromSRTStreamID(hs.StreamID)
	if err != nil {
		s.rejectNow(b, from, rejxBadReq, RejectBadStreamID, err)
		return
	}

	s.mu.Lock()
	switch {
	case s.closed || s.live.Draining():
		s.mu.Unlock()
		s.rejectNow(b, from, rejClose, RejectClosing, nil)
		return
	case len(s.byCaller) >= s.cfg.MaxSessions:
		s.mu.Unlock()
		s.rejectNow(b, from, rejResource, RejectTableFull, nil)
		return
	}
	ss = newSession(s, key, info, b)
	s.byCaller[key] = ss
	s.wg.Add(1)
	s.mu.Unlock()
	go ss.run()
}

// rejectNow sends a rejection from the listener loop.
func (s *Server) rejectNow(req []byte, to netip.AddrPort, code uint32, reason string, err error) {
	s.stats.reject(reason)
	s.log.Info("srt caller rejected", "peer", to, "reason", reason, "code", code, "err", err)
	s.write(appendRejection(s.scratch[:0], req, s.listenerID, code), to)
}

// write sends b to a caller through the listener socket. Safe for
// concurrent use.
func (s *Server) write(b []byte, to netip.AddrPort) bool {
	s.mu.RLock()
	c := s.conn
	s.mu.RUnlock()
	if c == nil {
		return false
	}
	_, err := c.WriteToUDPAddrPort(b, to)
	return err == nil
}

// cookie is the SYN cookie for a caller address in the current minute
// (delta 0) or the previous one (delta -1).
func (s *Server) cookie(addr netip.AddrPort, delta int64) uint32 {
	return cookieFor(&s.secret, addr, s.now().Unix()/60+delta)
}

// janitor reclaims idle sessions.
func (s *Server) janitor() {
	defer s.wg.Done()
	tick := min(s.cfg.IdleTimeout/4, time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	var idle []*session
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		cutoff := s.now().Add(-s.cfg.IdleTimeout).UnixNano()
		idle = idle[:0]
		s.mu.RLock()
		for _, ss := range s.byCaller {
			if ss.lastSeen.Load() < cutoff {
				idle = append(idle, ss)
			}
		}
		s.mu.RUnlock()
		for _, ss := range idle {
			ss.close("idle")
		}
	}
}

// closeAll closes every session; their goroutines remove themselves.
func (s *Server) closeAll() {
	s.mu.RLock()
	all := make([]*session, 0, len(s.byCaller))
	for _, ss := range s.byCaller {
		all = append(all, ss)
	}
	s.mu.RUnlock()
	for _, ss := range all {
		ss.close("server closed")
	}
}

// Close stops the listener, closes every session and its upstream socket,
// and waits for all of the server's goroutines. It is safe to call more
// than once and before Serve.
func (s *Server) Close() error {
	s.mu.Lock()
	wasClosed := s.closed
	s.closed = true
	serving := s.serving
	c := s.conn
	s.mu.Unlock()
	s.cancel()
	if serving {
		if !wasClosed {
			// Unblock the listener loop; Serve closes the socket once
			// every session is gone.
			c.SetReadDeadline(time.Unix(1, 0))
		}
		<-s.serveDone
		return nil
	}
	s.closeAll()
	s.wg.Wait()
	return nil
}

// Drain refuses new callers (SRT_REJ_CLOSE) while established sessions go
// on, and waits until every established session has ended, or ctx ends
// (then it returns ctx.Err() and the sessions keep running until Close).
func (s *Server) Drain(ctx context.Context) error {
	return s.live.Drain(ctx)
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		SendErrors:       s.stats.sendErrors.Load(),
		Overflow:         s.stats.listenOverflow.Load() + s.stats.upOverflow.Load(),
		PacketsIn:        s.stats.pktIn.Load(),
		BytesIn:          s.stats.bytesIn.Load(),
		PacketsOut:       s.stats.pktOut.Load(),
		BytesOut:         s.stats.bytesOut.Load(),
		Malformed:        s.stats.malformed.Load(),
		NoSession:        s.stats.noSession.Load(),
		HandshakesServed: s.stats.inductions.Load(),
		NoGSO:            s.stats.noGSO.Load(),
		Rejects:          make(map[string]uint64),
	}
	s.mu.RLock()
	st.Sessions = len(s.byCaller)
	st.Established = s.established
	var byStream map[string]*StreamDrops
	for _, ss := range s.byCaller {
		sendErrs, overflow := ss.sendErrors.Load(), ss.overflow.Load()
		if sendErrs == 0 && overflow == 0 {
			continue
		}
		if byStream == nil {
			byStream = make(map[string]*StreamDrops)
		}
		key := ss.info.Key.String()
		d := byStream[key]
		if d == nil {
			d = &StreamDrops{Stream: key}
			byStream[key] = d
		}
		d.SendErrors += sendErrs
		d.Overflow += overflow
	}
	s.mu.RUnlock()
	for _, d := range byStream {
		st.Streams = append(st.Streams, *d)
	}
	slices.SortFunc(st.Streams, func(a, b StreamDrops) int { return strings.Compare(a.Stream, b.Stream) })
	s.stats.rejMu.Lock()
	for k, v := range s.stats.rejects {
		st.Rejects[k] = v
	}
	s.stats.rejMu.Unlock()
	return st
}

// remove drops a finished session from the tables.
func (s *Server) remove(ss *session) {
	s.mu.Lock()
	if s.byCaller[ss.key] == ss {
		delete(s.byCaller, ss.key)
	}
	if ss.peerKey.addr.IsValid() && s.byPeer[ss.peerKey] == ss {
		delete(s.byPeer, ss.peerKey)
		s.established--
		s.live.Leave()
	}
	s.mu.Unlock()
}

// establish makes the session reachable by the socket id the caller will
// address (the origin's), before the origin's conclusion is relayed.
func (s *Server) establish(ss *session, originID uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	ss.peerKey = sessKey{ss.key.addr, originID}
	if old := s.byPeer[ss.peerKey]; old != nil && old != ss {
		// A caller reused an address and the origin reused a socket id:
		// the newer session wins, the old one is reclaimed.
		old.close("superseded")
		s.established--
		s.live.Leave()
	}
	s.byPeer[ss.peerKey] = ss
	s.established++
	s.live.Join() // a caller admitted before a drain still gets its session
	return true
}
