// Package webrtc is the WebRTC proxy of srs-mesh: the WHIP/WHEP and SRS
// /rtc/v1/ signalling proxy on the HTTP API listener, and the UDP media relay
// on the WebRTC port.
//
// Signalling forwards each offer to the origin that holds the stream, rewrites
// the answer's candidates to the node's own UDP address, and records the ICE
// session ("answerUfrag:offerUfrag" -> origin) in a SessionStore that the mesh
// replicates. The relay identifies a new UDP flow by the USERNAME of its first
// STUN Binding request, looks the session up in the store, checks the
// request's MESSAGE-INTEGRITY with the origin's ICE password recorded at
// signalling, and from then on copies packets between the client and one upstream socket connected to the
// origin. Any node can therefore relay any session, whichever node answered
// the offer.
//
// Signalling URLs, on the HTTP API listener (Handler, mounted on /rtc/v1/):
//
//	POST /rtc/v1/whip/?app=&stream=       WHIP publish, body application/sdp
//	POST /rtc/v1/whep/?app=&stream=       WHEP play (also /rtc/v1/whip-play/)
//	POST /rtc/v1/publish/, /rtc/v1/play/  SRS's JSON API {"sdp","streamurl",...}
//	DELETE <Location>                     end a WHIP/WHEP session
//	OPTIONS *                             CORS preflight
//
// Each offer is forwarded to http://<origin API><same path and query>. The
// origin's Location is resolved against the origin and stored as the
// session's Resource; the client gets a Location relative to the node: the
// origin's path and query when the path is under /rtc/v1/ (SRS's
// "/rtc/v1/whip/?action=delete&token=...&app=...&stream=...") or PathSession
// otherwise, plus "mesh_session=<answerUfrag:offerUfrag>". A DELETE with that
// parameter finds the session in the replicated store on any node; without
// it, a Location that names app and stream is routed by its stream key.
//
// Sessions are keyed by the full ICE username of the client's Binding
// requests, "answerUfrag:offerUfrag" (the ICE-lite origin's ufrag first).
package webrtc

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/internal/drain"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Config configures a Server. Zero values take the defaults below.
type Config struct {
	// Router is required.
	Router stream.Router
	// Publisher, when not nil, routes publishes and writes their
	// assignment only once the origin accepted (see stream.Publisher).
	// nil: a publish is routed by Router.Route.
	Publisher stream.Publisher
	// Store is required; it is shared (replicated) by every node of a mesh.
	Store SessionStore
	// Activity, when not nil, is told which sessions the relay carries
	// (see SessionActivity); it is usually the Store. nil: nobody is told.
	Activity SessionActivity
	// Sessions, when not nil, is told about every relayed session, with
	// the bytes relayed from and to its client.
	Sessions stream.Sessions
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Candidate is the address announced in every answer candidate (IP and
	// port): where clients send their media. Required.
	Candidate netip.AddrPort
	// IdleTimeout reclaims a relayed session that carried no packet for this
	// long. ICE consent checks keep a live session busy every few seconds.
	// Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxSessions bounds the relay's session table. Default DefaultMaxSessions.
	MaxSessions int
	// HTTPClient carries signalling to origins. Redirects are not followed.
	// Default: a client with a DefaultHTTPTimeout timeout.
	HTTPClient *http.Client
	// SweepInterval is how often idle sessions, and sessions deleted through
	// another node, are reclaimed. Default IdleTimeout/10, within [10ms, 1s].
	SweepInterval time.Duration
	// OfferRate is how many offers (POSTs of WHIP, WHEP and SRS's publish
	// and play API; not DELETEs) per second one client may make on average,
	// and OfferBurst how many at once. A client is the TCP peer address of
	// the request: an IPv4 address, or an IPv6 /64 (behind an HTTP proxy,
	// the proxy). Beyond them an offer is refused with 429 and a
	// Retry-After header, before it reaches an origin or the session store.
	// Defaults DefaultOfferRate and DefaultOfferBurst; a negative OfferRate
	// disables the limit.
	OfferRate  float64
	OfferBurst int
	// MaxOfferClients bounds the clients whose offer rate is tracked at once
	// (see OfferRate); clients beyond it share one client's rate until
	// tracked clients go idle for a minute. Default DefaultMaxOfferClients.
	MaxOfferClients int
	// SocketBuffer is the receive and send buffer (SO_RCVBUF, SO_SNDBUF)
	// asked for the relay's socket and every session's upstream socket, in
	// bytes. The kernel caps it at net.core.rmem_max and
	// net.core.wmem_max; the server logs once when it got less. 0 leaves
	// the system default.
	SocketBuffer int
	// Viewers, when not nil, answers play offers (WHEP, SRS's play) at
	// the node: viewers are fanned out from one upstream per stream
	// instead of relayed to the origin. Publishes are relayed either way.
	Viewers Viewers
	// Standbys, when not nil, keeps a WHIP publisher that the origin
	// refused while its stream is live there as the stream's standby
	// (backup encoders); nil: the origin's refusal is passed on. Its
	// peers' UDP flows must reach the Tap.
	Standbys Standbys
	// Tap, when not nil, takes the UDP flows of the Viewers' peers off
	// the relay's port: the relay offers it every Binding request before
	// looking its session up, and every packet from an address it does
	// not relay.
	Tap Tap
}

// Defaults for Config.
const (
	DefaultIdleTimeout = 30 * time.Second
	DefaultMaxSessions = 4096
	DefaultHTTPTimeout = 5 * time.Second
	// A WebRTC client makes one offer per session, and a page that
	// reconnects a few more; 5 a second with bursts of 20 leaves room for
	// pages that open several streams at once, while one address needs
	// over five hours to fill the mesh's 100,000-session table.
	DefaultOfferRate       = 5
	DefaultOfferBurst      = 20
	DefaultMaxOfferClients = 10_000
)

// Configuration and lifecycle errors.
var (
	ErrNoRouter    = errors.New("webrtc: Config.Router is required")
	ErrNoStore     = errors.New("webrtc: Config.Store is required")
	ErrNoCandidate = errors.New("webrtc: Config.Candidate is required")
	ErrClosed      = errors.New("webrtc: server closed")
	ErrServing     = errors.New("webrtc: ServeUDP already running")
)

func (c *Config) setDefaults() error {
	if c.Router == nil {
		return ErrNoRouter
	}
	if c.Store == nil {
		return ErrNoStore
	}
	if !c.Candidate.IsValid() || c.Candidate.Port() == 0 || c.Candidate.Addr().IsUnspecified() {
		return ErrNoCandidate
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = min(max(c.IdleTimeout/10, 10*time.Millisecond), time.Second)
	}
	if c.OfferRate == 0 {
		c.OfferRate = DefaultOfferRate
	}
	if c.OfferBurst <= 0 {
		c.OfferBurst = DefaultOfferBurst
	}
	if c.MaxOfferClients <= 0 {
		c.MaxOfferClients = DefaultMaxOfferClients
	}
	return nil
}

// Server is one node's WebRTC proxy. Create it with New, mount Handler on the
// HTTP API listener, run ServeUDP on the WebRTC port, and Close it.
type Server struct {
	cfg        Config
	activity   SessionActivity // cfg.Activity
	offerLimit *offerLimiter   // nil without a limit
	log        *slog.Logger
	httpClient *http.Client
	ownClient  bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	live   drain.Group // relay sessions, for Drain

	mu       sync.RWMutex
	closed   bool
	pc       udpConn // set by ServeUDP
	byAddr   map[netip.AddrPort]*relaySession
	byUfrag  map[string]*relaySession
	resolves map[string]bool // ufrags whose origin address is being resolved

	// toOrigins is the listener's batch of client packets; batchMu makes
	// dispatching and flushing a batch exclusive (the listener goroutine,
	// or a test standing in for it).
	batchMu   sync.Mutex
	toOrigins originBatch
	// bufferWarned is set once a socket got less buffer than asked.
	bufferWarned atomic.Bool

	// now is a coarse clock (unix nanoseconds) the sweeper advances; the hot
	// path stamps sessions with it instead of reading the clock.
	now atomic.Int64

	st counters
}

// counters are the Server's statistics, updated atomically.
type counters struct {
	packetsIn, bytesIn   atomic.Uint64
	packetsOut, bytesOut atomic.Uint64

	malformed, unknownUfrag, noSession, tableFull,
	upstream, oversize, badOrigin, integrity atomic.Uint64
	listenOverflow, upOverflow atomic.Uint64

	offers, answers, deletes, signallingErrors, offersLimited atomic.Uint64
}

// Stats is a snapshot of a Server's counters.
type Stats struct {
	// Sessions is the number of sessions the relay carries now.
	Sessions int
	// *In count packets relayed from clients (to origins), *Out those
	// relayed to clients (from origins): the same naming as
	// stream.Sessions' counters and the other protocols' Stats.
	PacketsIn, BytesIn   uint64
	PacketsOut, BytesOut uint64
	// Dropped packets, by reason.
	DroppedMalformed    uint64 // not STUN/DTLS/RTP by first byte, or bad STUN
	DroppedUnknownUfrag uint64 // STUN Binding request for no known session
	DroppedNoSession    uint64 // other packet from an address with no session
	DroppedTableFull    uint64 // new session refused: MaxSessions reached
	DroppedUpstream     uint64 // write to, or read from, the origin failed
	DroppedOversize     uint64 // packet larger than the relay buffer
	DroppedBadOrigin    uint64 // session names an origin address that does not resolve
	DroppedIntegrity    uint64 // Binding request from a new address without a valid MESSAGE-INTEGRITY
	DroppedOverflow     uint64 // dropped by the kernel: a relay socket's receive buffer was full (see Config.SocketBuffer)
	// Streams are the relay's own drops (failed sends, overflowing session
	// sockets) by stream, for the streams of sessions it carries now that
	// dropped any. Drops before a session is known belong to no stream.
	Streams []StreamDrops
	// Signalling. Offers counts the offers the rate limit let through,
	// OffersLimited the ones it refused (429), which are not counted as
	// SignallingErrors.
	Offers, Answers, Deletes, SignallingErrors uint64
	OffersLimited                              uint64
}

// Dropped is the total of dropped packets.
func (s Stats) Dropped() uint64 {
	return s.DroppedMalformed + s.DroppedUnknownUfrag + s.DroppedNoSession + s.DroppedTableFull +
		s.DroppedUpstream + s.DroppedOversize + s.DroppedBadOrigin + s.DroppedIntegrity + s.DroppedOverflow
}

// StreamDrops is one stream's packets the relay dropped, over the sessions
// it carries.
type StreamDrops struct {
	Stream     string // stream key
	SendErrors uint64 // packets of the stream the relay failed to send, either way
	Overflow   uint64 // packets from the origin the kernel dropped on a full session socket
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger.With("proto", "webrtc"),
		httpClient: cfg.HTTPClient,
		byAddr:     make(map[netip.AddrPort]*relaySession),
		byUfrag:    make(map[string]*relaySession),
		resolves:   make(map[string]bool),
	}
	s.toOrigins.init(listenBatch)
	s.activity = cfg.Activity
	if cfg.OfferRate > 0 {
		s.offerLimit = newOfferLimiter(cfg.OfferRate, cfg.OfferBurst, cfg.MaxOfferClients)
	}
	if s.httpClient == nil {
		s.httpClient = &http.Client{Timeout: DefaultHTTPTimeout}
		s.ownClient = true
	}
	if s.httpClient.CheckRedirect == nil {
		c := *s.httpClient
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		s.httpClient = &c
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.now.Store(time.Now().UnixNano())
	return s, nil
}

// Close stops the relay (closing the socket given to ServeUDP), ends every
// session the relay carries, and waits for every goroutine the Server started.
// Sessions stay in the Store: another node may be relaying them. Close is
// idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	pc := s.pc
	sessions := make([]*relaySession, 0, len(s.byUfrag))
	for _, rs := range s.byUfrag {
		sessions = append(sessions, rs)
	}
	s.mu.Unlock()
	s.cancel()
	if pc != nil {
		pc.Close()
	}
	for _, rs := range sessions {
		s.reclaim(rs, "server closed")
	}
	s.wg.Wait()
	if s.ownClient {
		s.httpClient.CloseIdleConnections()
	}
	return nil
}

// Drain refuses new offers (503) while DELETEs and the relay go on, and
// waits until this node relays no session, or ctx ends (then it returns
// ctx.Err() and the sessions keep running until Close). A client whose
// session was answered before the drain may still start its flow here.
func (s *Server) Drain(ctx context.Context) error {
	return s.live.Drain(ctx)
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.RLock()
	n := len(s.byUfrag)
	var byStream map[string]*StreamDrops
	for _, rs := range s.byUfrag {
		sendErrs, overflow := rs.sendErrors.Load(), rs.overflow.Load()
		if sendErrs == 0 && overflow == 0 {
			continue
		}
		if byStream == nil {
			byStream = make(map[string]*StreamDrops)
		}
		d := byStream[rs.rec.Key]
		if d == nil {
			d = &StreamDrops{Stream: rs.rec.Key}
			byStream[rs.rec.Key] = d
		}
		d.SendErrors += sendErrs
		d.Overflow += overflow
	}
	s.mu.RUnlock()
	var streams []StreamDrops
	for _, d := range byStream {
		streams = append(streams, *d)
	}
	slices.SortFunc(streams, func(a, b StreamDrops) int { return strings.Compare(a.Stream, b.Stream) })
	c := &s.st
	return Stats{
		Streams:             streams,
		DroppedOverflow:     c.listenOverflow.Load() + c.upOverflow.Load(),
		Sessions:            n,
		PacketsIn:           c.packetsIn.Load(),
		BytesIn:             c.bytesIn.Load(),
		PacketsOut:          c.packetsOut.Load(),
		BytesOut:            c.bytesOut.Load(),
		DroppedMalformed:    c.malformed.Load(),
		DroppedUnknownUfrag: c.unknownUfrag.Load(),
		DroppedNoSession:    c.noSession.Load(),
		DroppedTableFull:    c.tableFull.Load(),
		DroppedUpstream:     c.upstream.Load(),
		DroppedOversize:     c.oversize.Load(),
		DroppedBadOrigin:    c.badOrigin.Load(),
		DroppedIntegrity:    c.integrity.Load(),
		Offers:              c.offers.Load(),
		Answers:             c.answers.Load(),
		Deletes:             c.deletes.Load(),
		SignallingErrors:    c.signallingErrors.Load(),
		OffersLimited:       c.offersLimited.Load(),
	}
}

// udpConn is the part of *net.UDPConn the relay uses; it reads and writes
// without allocating an address per packet.
type udpConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	Close() error
}

// packetConnAdapter lets any net.PacketConn serve, at the cost of an address
// allocation per packet.
type packetConnAdapter struct{ net.PacketConn }

func (a packetConnAdapter) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, addr, err := a.ReadFrom(b)
	if err != nil {
		return n, netip.AddrPort{}, err
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return n, netip.AddrPort{}, nil
	}
	return n, ua.AddrPort(), nil
}

func (a packetConnAdapter) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return a.WriteTo(b, net.UDPAddrFromAddrPort(addr))
}
