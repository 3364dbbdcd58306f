// Package rtmp is srs-mesh's RTMP proxy. It answers a client's connect,
// createStream and the other set-up commands itself, learns the stream from
// publish or play, asks a Router which origin owns the stream, replays the
// session to that origin and then relays messages between the two
// connections, re-chunking them with each connection's own chunk state.
//
// A publisher whose origin fails keeps its connection when the Config has a
// Rerouter: the session is replayed on the stream's new origin
// (see relayPublish).
//
// The package depends on the mesh only through the stream.Router and
// stream.Sessions interfaces and the optional Rerouter and OriginHealth,
// each a Config field; tests use fakes.
package rtmp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/protocols/internal/drain"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Config configures a Server. Zero values select the defaults.
type Config struct {
	// Router picks the origin of a stream. Required. It is called once
	// per client session, after the client named its stream, with a
	// context bounded by HandshakeTimeout.
	Router stream.Router
	// Publisher, when not nil, routes publishes and writes their
	// assignment only once the origin accepted (see stream.Publisher).
	// nil: a publish is routed by Router.Route.
	Publisher stream.Publisher
	// Sessions, when not nil, is told about every relayed session, with
	// its client's byte counters.
	Sessions stream.Sessions
	// Rerouter, when not nil, lets publishers ride through the failure of
	// their origin (see Rerouter and FailoverTimeout). nil: a publisher
	// whose origin leg fails is disconnected.
	Rerouter Rerouter
	// OriginHealth, when not nil and with a Rerouter, moves a publisher
	// off an origin the mesh marks unhealthy before its leg fails. nil:
	// only a failed leg moves a publisher.
	OriginHealth OriginHealth
	// Sources, when not nil, makes publishers feed every origin the mesh
	// wants a live copy of their stream on (warm replicas, a planned
	// move's target), and follow the stream's primary without a break
	// (see SourceSet). nil: a publisher feeds one origin.
	Sources SourceSet
	// Logger receives session logs. The server adds stream, peer and origin
	// attributes; the caller adds its own (such as proto=rtmp). Default:
	// slog.Default() with proto=rtmp.
	Logger *slog.Logger
	// HandshakeTimeout bounds the handshake and the commands up to publish
	// or play, and the call to the Router, so a silent client cannot hold a
	// connection. Default 10s.
	HandshakeTimeout time.Duration
	// DialTimeout bounds opening the origin leg: TCP connect, handshake and
	// replay of the session until the origin accepts publish or play.
	// Default 3s.
	DialTimeout time.Duration
	// IdleTimeout ends a session when the side that sends media has sent
	// nothing for this long, or when a write cannot make progress for this
	// long. Default 30s.
	IdleTimeout time.Duration
	// MaxMessageSize is the largest RTMP message accepted from a client.
	// A longer one is refused before any of it is buffered or relayed: a
	// publisher gets an error onStatus, any client is closed, and the
	// refusal is logged and counted (Stats.OversizedMessages). The default,
	// 1 MiB, is what nginx-rtmp's max_message accepts by default, and SRS
	// accepts it too, so a message the node relays is one its origin
	// takes. Messages from origins may be up to the larger of this and
	// OriginMaxMessageSize. At most 0xffffff (RTMP's length field).
	MaxMessageSize uint32
	// MaxConns is the most client connections served at once; more are
	// closed as soon as they are accepted. Default 10000.
	MaxConns int

	// FanOut, when not nil, serves players from one shared upstream per
	// stream and query on this node (see fanout.StreamKey): the first
	// player's play opens it, later ones get the cached metadata, sequence
	// headers and GOP, then the live messages. Its Config says how long an
	// upstream lingers, how many there may be, and whether players ride
	// through an origin failure (re-attach); its MaxTagSize should be at
	// least the larger of MaxMessageSize and OriginMaxMessageSize, or a
	// larger message ends the upstream. Players whose upstream cannot
	// be shared (the registry is full) are relayed on their own. The
	// registry is the caller's, shared with other protocols' players of the
	// same streams; the caller closes it after the Server. Nil: every
	// player has its own origin leg.
	FanOut *fanout.Registry
	// FailoverTimeout bounds a publisher's failover: from the moment its
	// origin leg is seen to fail until a new origin accepted the replayed
	// session. Past it the client gets an error onStatus and is closed.
	// Failover needs a Rerouter. Default 3s.
	FailoverTimeout time.Duration
	// Failovers, when not nil, is told about every failover.
	Failovers FailoverObserver
	// BackupPublish keeps a second publisher of a live stream as its
	// standby rather than refusing it, and makes the standby publish when
	// the origin ends the stream (see standby.go). False: the origin's
	// refusal reaches the second publisher.
	BackupPublish bool
	// Standbys, when not nil, is told about standby publishers.
	Standbys StandbyObserver
	// StandbyGate, when not nil, is asked before a publisher is kept as a
	// standby (nil: one standby per stream on this node).
	StandbyGate StandbyGate
	// PublisherDrops, when not nil, is told about every publisher whose
	// connection ended without it unpublishing (see PublisherDrop).
	PublisherDrops PublisherDropObserver
	// PublishStall, with BackupPublish, ends a publish whose publisher
	// sent no audio or video for this long (its connection open), so that
	// a standby can take over; a lone publisher so ended finds its
	// players again when it reconnects within their publisher grace.
	// Zero: a silent publisher is ended only by IdleTimeout.
	PublishStall time.Duration
}

// Defaults of Config.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 3 * time.Second
	DefaultIdleTimeout      = 30 * time.Second
	DefaultMaxMessageSize   = 1 << 20
	DefaultMaxConns         = 10000
	DefaultFailoverTimeout  = 3 * time.Second
)

// OriginMaxMessageSize is the least bound of messages read from origins:
// an origin may send players larger messages than the node accepts from
// clients (a publisher that publishes to the origin directly).
const OriginMaxMessageSize = 8 << 20

// originMaxMessage is the bound of messages read from origin legs.
func (c *Config) originMaxMessage() uint32 { return max(c.MaxMessageSize, OriginMaxMessageSize) }

// Errors of the server.
var (
	ErrNoRouter      = errors.New("rtmp: config has no Router")
	ErrBadConfig     = errors.New("rtmp: invalid config")
	ErrServerClosed  = errors.New("rtmp: server closed")
	ErrProtocol      = errors.New("rtmp: protocol error")
	ErrBadStream     = errors.New("rtmp: bad stream name")
	ErrNoOrigin      = errors.New("rtmp: no origin for stream")
	ErrOriginRefused = errors.New("rtmp: origin refused")
	ErrOriginDown    = errors.New("rtmp: origin unreachable")
	// ErrMessageTooLarge is a client's message above Config.MaxMessageSize.
	ErrMessageTooLarge = errors.New("rtmp: message larger than the node accepts")
)

func (c *Config) setDefaults() error {
	if c.Router == nil {
		return ErrNoRouter
	}
	if c.Logger == nil {
		c.Logger = slog.Default().With("proto", "rtmp")
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.FailoverTimeout == 0 {
		c.FailoverTimeout = DefaultFailoverTimeout
	}
	if c.PublishStall < 0 || c.FailoverTimeout < 0 || c.HandshakeTimeout < 0 || c.DialTimeout < 0 || c.IdleTimeout < 0 || c.MaxConns < 0 || c.MaxMessageSize > 0xffffff {
		return ErrBadConfig
	}
	return nil
}

// Server accepts RTMP clients and relays them to their origins.
type Server struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	stats  counters
	bufs   bufPool

	mu        sync.Mutex
	closed    bool
	draining  bool // Drain closed the listeners
	listeners map[net.Listener]struct{}
	wg        sync.WaitGroup
	live      drain.Group      // client connections, for Drain
	hubs      *fanout.Registry // Config.FanOut: shared upstreams, the caller's
	standby   standbys         // standby publishers (Config.BackupPublish)
	stalls    stallBudget      // stall ends per stream (Config.PublishStall)
}

// New validates cfg, fills in defaults and returns a Server that is not yet
// accepting connections.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, listeners: make(map[net.Listener]struct{}), hubs: cfg.FanOut}
	return s, nil
}

// Serve accepts connections on ln until Close, and returns nil then. It
// returns another error if accepting fails for a reason other than Close,
// and ErrServerClosed if the Server was already closed. Serve may be called
// for several listeners at once; Close closes them all.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	if s.draining {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.stopped() {
				return nil
			}
			if isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				select {
				case <-time.After(backoff):
				case <-s.ctx.Done():
					return nil
				}
				continue
			}
			return err
		}
		backoff = 0
		s.accept(nc)
	}
}

// isTemporary reports whether an accept error is worth retrying (a busy
// process out of file descriptors, a timeout).
func isTemporary(err error) bool {
	var ne interface {
		Temporary() bool
		Timeout() bool
	}
	return errors.As(err, &ne) && (ne.Temporary() || ne.Timeout())
}

// stopped reports whether Close or Drain closed the listeners.
func (s *Server) stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed || s.draining
}

// accept starts serving one client connection, or refuses it when the
// server is full or closed.
func (s *Server) accept(nc net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if !s.live.Enter() {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if s.stats.connsOpen.Load() >= int64(s.cfg.MaxConns) {
		s.live.Leave()
		s.mu.Unlock()
		s.stats.connsRefused.Add(1)
		peer := nc
		if u, ok := nc.(interface{ RawConn() net.Conn }); ok {
			peer = u.RawConn() // never wait for a PROXY protocol header here
		}
		s.log.Warn("connection refused: too many connections", "peer", peer.RemoteAddr().String(), "max", s.cfg.MaxConns)
		nc.Close()
		return
	}
	s.stats.connsOpen.Add(1)
	s.stats.connsAccepted.Add(1)
	s.wg.Add(1)
	s.mu.Unlock()
	go s.serveConn(nc)
}

// serveConn runs the session of nc, counted in s.wg, s.live and
// connsOpen until it ends. A fan-out player's play runs on a goroutine of
// its own, started once the set-up is over: the set-up (handshake, AMF0,
// routing) grows a goroutine's stack to several times what a player
// parked between writes uses, and Go shrinks a stack only by half per
// collection, which a node with little garbage runs seldom; a new
// goroutine starts at the minimum.
func (s *Server) serveConn(nc net.Conn) {
	leave := func() {
		s.stats.connsOpen.Add(-1)
		s.live.Leave()
		s.wg.Done()
	}
	c := newConn(s, nc)
	c.serve(s.ctx)
	if c.play == nil {
		leave()
		return
	}
	// This goroutine's count in s.wg is handed to the player: Close and
	// Drain wait for its end as they waited for this goroutine.
	c.play(leave)
}

// Drain stops accepting (every Serve returns nil) and waits until every
// client connection has ended by itself, or ctx ends; then it returns
// ctx.Err() and the connections keep running until Close.
func (s *Server) Drain(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	return s.live.Drain(ctx)
}

// Close stops accepting, closes every client and origin connection and
// waits until every goroutine of the Server has ended. It is safe to call
// more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	// ConnsOpen is the number of client connections being served.
	ConnsOpen int64
	// ConnsAccepted counts client connections served since New.
	ConnsAccepted uint64
	// ConnsRefused counts connections closed because MaxConns was reached.
	ConnsRefused uint64
	// Publishers and Players are the sessions relaying now.
	Publishers int64
	Players    int64
	// Standbys are the publishers kept as their stream's standby
	// (Config.BackupPublish), not counted in Publishers.
	Standbys int64
	// Stalled counts publishes ended by Config.PublishStall.
	Stalled uint64
	// BytesIn and BytesOut count bytes read from and written to clients
	// (the same naming as stream.Sessions' counters and the other
	// protocols' Stats); OriginBytesIn and OriginBytesOut the same for
	// origins.
	BytesIn        uint64
	BytesOut       uint64
	OriginBytesIn  uint64
	OriginBytesOut uint64
	// ComplexHandshakes counts clients that signed their C1 and got the
	// complex (Flash Player 9) handshake; the others got the simple one.
	ComplexHandshakes uint64
	// ClientFailures counts sessions that ended during handshake or set-up
	// because of the client (timeout, garbage, protocol error, bad name).
	ClientFailures uint64
	// RouteFailures counts sessions the Router found no origin for.
	RouteFailures uint64
	// OriginFailures counts sessions whose origin was down or refused.
	OriginFailures uint64
	// OversizedMessages counts sessions ended because their client sent a
	// message larger than Config.MaxMessageSize (none of it was relayed);
	// they are not counted in ClientFailures.
	OversizedMessages uint64
}

type counters struct {
	connsOpen         atomic.Int64
	connsAccepted     atomic.Uint64
	connsRefused      atomic.Uint64
	publishers        atomic.Int64
	players           atomic.Int64
	standbys          atomic.Int64
	stalled           atomic.Uint64
	bytesIn           atomic.Uint64
	bytesOut          atomic.Uint64
	originBytesIn     atomic.Uint64
	originBytesOut    atomic.Uint64
	complexHandshakes atomic.Uint64
	clientFailures    atomic.Uint64
	routeFailures     atomic.Uint64
	originFailures    atomic.Uint64
	oversized         atomic.Uint64
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		ConnsOpen:         c.connsOpen.Load(),
		ConnsAccepted:     c.connsAccepted.Load(),
		ConnsRefused:      c.connsRefused.Load(),
		Publishers:        c.publishers.Load(),
		Players:           c.players.Load(),
		Standbys:          c.standbys.Load(),
		Stalled:           c.stalled.Load(),
		BytesIn:           c.bytesIn.Load(),
		BytesOut:          c.bytesOut.Load(),
		OriginBytesIn:     c.originBytesIn.Load(),
		OriginBytesOut:    c.originBytesOut.Load(),
		ComplexHandshakes: c.complexHandshakes.Load(),
		ClientFailures:    c.clientFailures.Load(),
		RouteFailures:     c.routeFailures.Load(),
		OriginFailures:    c.originFailures.Load(),
		OversizedMessages: c.oversized.Load(),
	}
}
