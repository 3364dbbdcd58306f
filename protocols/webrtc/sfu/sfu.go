// Package sfu fans WebRTC viewers out at the node: a WHEP (or SRS
// /rtc/v1/play/) viewer's offer is answered by the node itself, and the
// node holds one upstream per stream, a WHEP session to the stream's
// origin, whose RTP it forwards to every local viewer.
//
// Viewers terminate at the node (ICE-lite, DTLS-SRTP) on the node's WebRTC
// UDP port, shared with the relay of package webrtc: the relay hands the
// viewers' flows to the Server (webrtc.Tap) and the Server writes through
// the relay's socket, so the node's one announced candidate serves both.
//
// Per stream, each track's packets are put on one continuous timeline
// (sequence numbers and timestamps that go on across upstream changes) and
// kept in a bounded cache; pion rewrites SSRC and payload type per viewer.
// Viewers' NACKs are answered from the cache, their PLIs and FIRs are
// aggregated into at most one keyframe request upstream per
// Config.KeyframeInterval, and a new viewer starts at a keyframe: the
// cached one when it is recent, else the next one, requested at once.
// Each viewer has a bounded send queue; a viewer that overflows it skips
// video to the next keyframe, and one that overflows it again and again is
// kicked. When the stream moves (Moved) or its upstream fails, the upstream
// re-attaches to the stream's origin while viewers' sessions stay up.
package sfu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/logging"
	pion "github.com/pion/webrtc/v4"

	"github.com/srs-mesh/srs-mesh/protocols/internal/drain"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc"
	"github.com/srs-mesh/srs-mesh/stream"
)

// ProtoUpstream is the protocol under which the Server tracks its
// upstreams in stream.Sessions (one per stream and query), which srs-mesh's
// /mesh/v1/streams reports as the stream's WebRTC fan-out on the node;
// viewers are tracked as "webrtc".
const ProtoUpstream = "rtc-upstream"

// Config configures a Server. Zero values take the defaults below.
type Config struct {
	// Router is required: RoutePlay finds a stream's origin.
	Router stream.Router
	// Candidate is the address announced in answers. Required.
	Candidate netip.AddrPort
	// LocalAddr is the shared UDP port's local address. Required.
	LocalAddr netip.AddrPort
	// Write sends a packet from the shared UDP port (the relay's
	// webrtc.Server.WriteToUDPAddrPort). Required.
	Write func(p []byte, to netip.AddrPort) (int, error)
	// Conn, when not nil, is the shared UDP port's socket: the Server
	// then writes to it itself, many packets per system call (sendmmsg on
	// Linux) from one goroutine, and Write is not used.
	Conn *net.UDPConn
	// TCP, when not nil, is a listener for viewers whose networks block
	// UDP (ICE-TCP, RFC 6544): answers then also carry TCPCandidate, a
	// passive TCP host candidate. Anyone may connect, as to the UDP port;
	// a connection is handed to a viewer only by a STUN Binding request
	// naming that viewer's ICE ufrag, and is closed when none comes within
	// TCPHandshakeTimeout. MaxTCPConns caps the connections at a time
	// (more are closed at once). The Server closes TCP on Close.
	TCP                 net.Listener
	TCPCandidate        netip.AddrPort
	MaxTCPConns         int
	TCPHandshakeTimeout time.Duration
	// Sessions, when not nil, is told about every viewer and upstream.
	Sessions stream.Sessions
	// Store, when not nil, is the mesh's ICE session table: each viewer's
	// session is stored there with this node (NodeID, NodeRTC: the
	// node's WebRTC port as other nodes reach it) as its origin, so that
	// a node the viewer's UDP reaches relays it here, and with a Resource
	// on NodeAPI (this node's signalling as other nodes reach it, when
	// set) so that a DELETE through another node is forwarded here. The
	// session is deleted when the viewer ends.
	Store  webrtc.SessionStore
	NodeID string
	// Activity, when not nil, is told every TouchInterval which stored
	// viewer sessions are live, so that the mesh neither expires nor
	// evicts them while their UDP goes straight to this node.
	Activity      webrtc.SessionActivity
	TouchInterval time.Duration
	NodeRTC       netip.AddrPort
	NodeAPI       string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// HTTPClient carries WHEP signalling to origins. Default: a client
	// with webrtc.DefaultHTTPTimeout.
	HTTPClient *http.Client
	// MaxViewers bounds the node's viewers, MaxViewersPerStream those of
	// one upstream, MaxUpstreams the upstreams. Beyond them offers get
	// webrtc.ErrViewerLimit.
	MaxViewers, MaxViewersPerStream, MaxUpstreams int
	// QueueLen is each viewer's send queue, in packets, and QueueBytes
	// in bytes.
	QueueLen   int
	QueueBytes int
	// ViewerBitrate caps what the node sends one viewer, in bits a
	// second, retransmissions included, with bursts of up to half a
	// second of it (at least minBurst bytes). A viewer beyond it is treated
	// as one whose queue overflowed: its video skips to the next
	// keyframe, and one that keeps exceeding it is kicked. Negative: no
	// cap.
	ViewerBitrate int64
	// CacheSize is the packets cached per track of a stream, for NACKs
	// and a new viewer's start.
	CacheSize int
	// KeyframeInterval is the least time between two keyframe requests
	// upstream.
	KeyframeInterval time.Duration
	// CachedStart is the age up to which a new viewer starts at the cached
	// keyframe; an older one makes it wait for the next.
	CachedStart time.Duration
	// UpstreamSilence re-attaches an upstream that carried no packet for
	// this long.
	UpstreamSilence time.Duration
	// ReattachTimeout is how long viewers stay connected while their
	// stream has no upstream (its origin failed and no origin serves it
	// yet, or its publisher left); then they are ended.
	ReattachTimeout time.Duration
	// ConnectTimeout ends a viewer that did not connect in time.
	ConnectTimeout time.Duration
	// OfferTimeout bounds the upstream's signalling and the wait for the
	// stream's codecs when a viewer's offer needs a new upstream.
	OfferTimeout time.Duration

	// Backup WHIP publishers (Server.Standby, see standby.go). Publisher,
	// when not nil, routes a promoted standby's publish and records it
	// once the origin accepted (nil: Router.Route). Assignments, when not
	// nil, keeps standbys only of streams the mesh assigned. Standbys,
	// when not nil, is told about standby publishers.
	Publisher   stream.Publisher
	Assignments Assignments
	Standbys    StandbyObserver
	// StandbyGate, when not nil, is asked before a publisher is kept as a
	// standby (nil: one standby per stream on this node).
	StandbyGate StandbyGate
}

// Defaults for Config.
const (
	DefaultMaxViewers          = 2000
	DefaultMaxViewersPerStream = 1000
	DefaultMaxUpstreams        = 256
	DefaultQueueLen            = 1024
	DefaultQueueBytes          = 2 << 20
	DefaultViewerBitrate       = 50_000_000
	DefaultCacheSize           = 1024
	DefaultKeyframeInterval    = 500 * time.Millisecond
	DefaultCachedStart         = 2 * time.Second
	DefaultUpstreamSilence     = 1500 * time.Millisecond
	DefaultReattachTimeout     = 10 * time.Second
	DefaultConnectTimeout      = 20 * time.Second
	DefaultOfferTimeout        = 8 * time.Second
	DefaultTouchInterval       = 5 * time.Second
	DefaultTCPHandshakeTimeout = 10 * time.Second
)

// Configuration errors.
var (
	ErrNoRouter    = errors.New("sfu: Config.Router is required")
	ErrNoCandidate = errors.New("sfu: Config.Candidate, LocalAddr and Write or Conn are required")
	ErrClosed      = errors.New("sfu: server closed")

	ErrNoTCPCandidate = errors.New("sfu: Config.TCPCandidate is required with Config.TCP")
)

func (c *Config) setDefaults() error {
	if c.Router == nil {
		return ErrNoRouter
	}
	if !c.Candidate.IsValid() || !c.LocalAddr.IsValid() || (c.Write == nil && c.Conn == nil) {
		return ErrNoCandidate
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: webrtc.DefaultHTTPTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxViewers, DefaultMaxViewers)
	def(&c.MaxViewersPerStream, DefaultMaxViewersPerStream)
	def(&c.MaxUpstreams, DefaultMaxUpstreams)
	def(&c.QueueLen, DefaultQueueLen)
	def(&c.CacheSize, DefaultCacheSize)
	def(&c.QueueBytes, DefaultQueueBytes)
	if c.ViewerBitrate == 0 {
		c.ViewerBitrate = DefaultViewerBitrate
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defd(&c.KeyframeInterval, DefaultKeyframeInterval)
	defd(&c.CachedStart, DefaultCachedStart)
	defd(&c.UpstreamSilence, DefaultUpstreamSilence)
	defd(&c.ReattachTimeout, DefaultReattachTimeout)
	defd(&c.ConnectTimeout, DefaultConnectTimeout)
	defd(&c.OfferTimeout, DefaultOfferTimeout)
	defd(&c.TouchInterval, DefaultTouchInterval)
	defd(&c.TCPHandshakeTimeout, DefaultTCPHandshakeTimeout)
	def(&c.MaxTCPConns, c.MaxViewers)
	if c.TCP != nil && !c.TCPCandidate.IsValid() {
		return ErrNoTCPCandidate
	}
	return nil
}

// tcpWriteBuffer bounds what pion buffers for one ICE-TCP connection
// whose peer reads slowly; beyond, packets are dropped.
const tcpWriteBuffer = 512 << 10

// minBurst is the least burst of a viewer's bitrate cap, in bytes: a
// keyframe's first packets go at once.
const minBurst = 64 << 10

// viewerBurst is the bytes a viewer may be sent at once beyond its
// bitrate: half a second of it, at least minBurst.
func (c *Config) viewerBurst() int {
	return int(max(c.ViewerBitrate/16, minBurst))
}

// Server is one node's WebRTC fan-out. It implements webrtc.Viewers and
// webrtc.Tap. Create it with New and Close it.
type Server struct {
	cfg      Config
	log      *slog.Logger
	port     *port
	send     *sender // nil without Config.Conn
	mux      ice.UDPMux
	tcp      *capListener // nil without Config.TCP
	tcpMux   ice.TCPMux
	viewers  *pion.API // ICE-lite on the shared port, no NACK responder
	upstream *pion.API // full ICE, NACK generator
	publish  *pion.API // full ICE, frequent sender reports (standby.go)
	live     drain.Group

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	groups map[string]*group
	byID   map[string]*viewer
	// standbys are the WHIP publishers held as their stream's standby,
	// one per stream; switches their promotions.
	standbys map[stream.Key]*standbyPub
	promoted map[string]*standbyPub // by id, until they end
	switches switchBudget
	nViewer  int // viewers admitted, connected or not
	// shards write the viewers' queues, one goroutine per CPU; a viewer
	// gets the next one.
	shards    []*shard
	nextShard int
	// ended remembers the ids of the latest maxEnded viewers that ended,
	// so that a DELETE after the client closed its connection still
	// succeeds.
	ended     map[string]struct{}
	endedRing []string
	endedNext int

	st counters
}

var (
	_ webrtc.Viewers  = (*Server)(nil)
	_ webrtc.Tap      = (*Server)(nil)
	_ webrtc.Standbys = (*Server)(nil)
)

type counters struct {
	viewersTotal, kicked, skipped, queueDrops, rateDrops,
	nacks, nacksServed, nacksMissed, keyframeRequests, plisUpstream,
	reattaches, upstreamFailures, codecChanges, refused, packetsIn, packetsOut, bytesOut atomic.Uint64
}

// Stats is a snapshot of a Server's counters.
type Stats struct {
	// Viewers and Upstreams now; Ratio is viewers per upstream.
	Viewers, Upstreams int
	Ratio              float64
	// ViewersTotal counts every viewer answered; Refused the offers the
	// limits refused.
	ViewersTotal, Refused uint64
	// Skipped counts the times a viewer's queue overflowed and its video
	// skipped to the next keyframe, Kicked the viewers ended for it,
	// QueueDrops the packets dropped for a full queue, RateDrops those
	// (and retransmissions) beyond a viewer's bitrate.
	Skipped, Kicked, QueueDrops, RateDrops uint64
	// NACKs: sequence numbers viewers asked for, the ones the cache
	// served, the ones it no longer held.
	NACKs, NACKsServed, NACKsMissed uint64
	// KeyframeRequests are viewers' PLIs and FIRs and new viewers' needs;
	// PLIsUpstream those that reached an upstream.
	KeyframeRequests, PLIsUpstream uint64
	// Reattaches counts upstreams re-attached (moves, failures);
	// UpstreamFailures the attempts that failed; CodecChanges the
	// upstreams whose viewers were ended because the stream's new origin
	// answered another codec.
	Reattaches, UpstreamFailures, CodecChanges uint64
	// PacketsIn are RTP packets from upstreams; PacketsOut and BytesOut
	// RTP sent to viewers.
	PacketsIn, PacketsOut, BytesOut uint64
	// PortDrops are packets of viewers dropped on the shared port;
	// Integrity the Binding requests from a new address that failed the
	// MESSAGE-INTEGRITY check.
	PortDrops, Integrity uint64
	// TCPConns are the ICE-TCP connections open now, TCPRefused those
	// closed at once for Config.MaxTCPConns.
	TCPConns   int
	TCPRefused uint64
	// SendErrors are packets to viewers the socket refused (Config.Conn).
	SendErrors uint64
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("proto", "webrtc", "fanout", true),
		groups: map[string]*group{}, byID: map[string]*viewer{}, standbys: map[stream.Key]*standbyPub{}, promoted: map[string]*standbyPub{}, ended: map[string]struct{}{}, endedRing: make([]string, maxEnded)}
	write := cfg.Write
	if cfg.Conn != nil {
		s.send = newSender(cfg.Conn)
		write = s.send.send
	}
	s.port = newPort(net.UDPAddrFromAddrPort(cfg.LocalAddr), write)
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	s.mux = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: s.port, Logger: lf.NewLogger("mux")})

	var me pion.MediaEngine
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	var vse pion.SettingEngine
	vse.LoggerFactory = lf
	vse.SetLite(true)
	vse.SetICEUDPMux(s.mux)
	vse.SetNetworkTypes([]pion.NetworkType{pion.NetworkTypeUDP4, pion.NetworkTypeUDP6})
	if cfg.TCP != nil {
		s.tcp = &capListener{Listener: cfg.TCP, max: int64(cfg.MaxTCPConns)}
		s.tcpMux = ice.NewTCPMuxDefault(ice.TCPMuxParams{Listener: s.tcp, Logger: lf.NewLogger("tcpmux"),
			ReadBufferSize: 32, WriteBufferSize: tcpWriteBuffer,
			FirstStunBindTimeout: cfg.TCPHandshakeTimeout, AliveDurationForConnFromStun: cfg.TCPHandshakeTimeout})
		vse.SetICETCPMux(s.tcpMux)
		vse.SetNetworkTypes([]pion.NetworkType{pion.NetworkTypeUDP4, pion.NetworkTypeUDP6, pion.NetworkTypeTCP4, pion.NetworkTypeTCP6})
	}
	vse.SetIncludeLoopbackCandidate(true)
	vse.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	vir := &interceptor.Registry{}
	if err := pion.ConfigureRTCPReports(vir); err != nil {
		return nil, err
	}
	s.viewers = pion.NewAPI(pion.WithMediaEngine(&me), pion.WithSettingEngine(vse), pion.WithInterceptorRegistry(vir))

	var ume pion.MediaEngine
	if err := ume.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	var use pion.SettingEngine
	use.LoggerFactory = lf
	use.SetNetworkTypes([]pion.NetworkType{pion.NetworkTypeUDP4, pion.NetworkTypeUDP6})
	use.SetIncludeLoopbackCandidate(true)
	use.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	use.SetICETimeouts(cfg.UpstreamSilence, 2*cfg.UpstreamSilence, 500*time.Millisecond)
	uir := &interceptor.Registry{}
	if err := pion.RegisterDefaultInterceptors(&ume, uir); err != nil {
		return nil, err
	}
	s.upstream = pion.NewAPI(pion.WithMediaEngine(&ume), pion.WithSettingEngine(use), pion.WithInterceptorRegistry(uir))

	// A promoted standby publishes to its origin as a client: sender
	// reports come often, since an origin bridging WebRTC to RTMP (SRS)
	// starts a publish's frames only once sender reports timed its
	// tracks; NACKs are passed to the encoder, not answered here.
	var pme pion.MediaEngine
	if err := pme.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	pir := &interceptor.Registry{}
	sr, err := report.NewSenderInterceptor(report.SenderInterval(standbyReportInterval))
	if err != nil {
		return nil, err
	}
	rr, err := report.NewReceiverInterceptor()
	if err != nil {
		return nil, err
	}
	pir.Add(sr)
	pir.Add(rr)
	s.publish = pion.NewAPI(pion.WithMediaEngine(&pme), pion.WithSettingEngine(use), pion.WithInterceptorRegistry(pir))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.send != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.send.run(s.ctx.Done())
		}()
	}
	for range max(runtime.GOMAXPROCS(0), 1) {
		sh := newShard()
		s.shards = append(s.shards, sh)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sh.run(s.ctx.Done(), &s.st)
		}()
	}
	if cfg.Activity != nil && cfg.Store != nil {
		s.wg.Add(1)
		go s.touch()
	}
	return s, nil
}

// touch reports the stored sessions of live viewers to Config.Activity
// every TouchInterval until Close.
func (s *Server) touch() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.TouchInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		var live []string
		s.mu.Lock()
		for _, v := range s.byID {
			if v.session != "" {
				live = append(live, v.session)
			}
		}
		for _, sb := range s.standbys {
			if sb.session != "" {
				live = append(live, sb.session)
			}
		}
		for _, sb := range s.promoted {
			if sb.session != "" {
				live = append(live, sb.session)
			}
		}
		s.mu.Unlock()
		if len(live) > 0 {
			s.cfg.Activity.TouchRTCSessions(live)
		}
	}
}

// ClaimBinding implements webrtc.Tap.
func (s *Server) ClaimBinding(p, user []byte, from netip.AddrPort) bool {
	return s.port.ClaimBinding(p, user, from)
}

// Take implements webrtc.Tap.
func (s *Server) Take(p []byte, from netip.AddrPort) bool { return s.port.Take(p, from) }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	v, u := len(s.byID), len(s.groups)
	s.mu.Unlock()
	c := &s.st
	st := Stats{Viewers: v, Upstreams: u,
		ViewersTotal: c.viewersTotal.Load(), Refused: c.refused.Load(),
		Skipped: c.skipped.Load(), Kicked: c.kicked.Load(), QueueDrops: c.queueDrops.Load(), RateDrops: c.rateDrops.Load(),
		NACKs: c.nacks.Load(), NACKsServed: c.nacksServed.Load(), NACKsMissed: c.nacksMissed.Load(),
		KeyframeRequests: c.keyframeRequests.Load(), PLIsUpstream: c.plisUpstream.Load(),
		Reattaches: c.reattaches.Load(), UpstreamFailures: c.upstreamFailures.Load(), CodecChanges: c.codecChanges.Load(),
		PacketsIn: c.packetsIn.Load(), PacketsOut: c.packetsOut.Load(), BytesOut: c.bytesOut.Load(),
		PortDrops: s.port.dropped.Load(), Integrity: s.port.integrity.Load()}
	if s.tcp != nil {
		st.TCPConns, st.TCPRefused = int(s.tcp.open.Load()), s.tcp.refused.Load()
	}
	if s.send != nil {
		st.SendErrors = s.send.failed.Load()
	}
	if u > 0 {
		st.Ratio = float64(v) / float64(u)
	}
	return st
}

// StreamStats is one upstream's fan-out.
type StreamStats struct {
	Key     string
	Origin  string
	Viewers int
}

// Streams lists the upstreams and their viewers.
func (s *Server) Streams() []StreamStats {
	s.mu.Lock()
	out := make([]StreamStats, 0, len(s.groups))
	for _, g := range s.groups {
		out = append(out, StreamStats{Key: g.key.String(), Origin: g.originID(), Viewers: len(g.viewers)})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Moved re-attaches the upstreams of key to the stream's origin now (the
// mesh moved it); viewers stay connected. It never blocks.
func (s *Server) Moved(key stream.Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		if g.key == key {
			g.kick()
		}
	}
}

// groupID is the upstream a viewer of key with query shares: the key and
// the query without the parameters that name the stream.
func groupID(key stream.Key, q url.Values) (id string, upstreamQuery string) {
	u := url.Values{}
	for k, vs := range q {
		switch strings.ToLower(k) {
		case "app", "stream", "vhost", "action", webrtc.SessionParam, webrtc.ViewerParam:
			continue
		}
		u[k] = vs
	}
	extra := u.Encode()
	u.Set("app", key.App)
	u.Set("stream", key.Stream)
	if key.Vhost != "" && key.Vhost != stream.DefaultVhost {
		u.Set("vhost", key.Vhost)
	}
	return key.String() + "?" + extra, u.Encode()
}

// MaxQuery bounds the query a viewer's upstream is keyed by (and sends to
// the origin), so that the upstream table is bounded in bytes.
const MaxQuery = 4 << 10

// Play implements webrtc.Viewers.
func (s *Server) Play(ctx context.Context, key stream.Key, q url.Values, offer []byte) (webrtc.ViewerAnswer, error) {
	gid, uq := groupID(key, q)
	if len(uq) > MaxQuery {
		s.st.refused.Add(1)
		return webrtc.ViewerAnswer{}, fmt.Errorf("%w: query longer than %d bytes", webrtc.ErrBadOffer, MaxQuery)
	}
	s.mu.Lock()
	if s.closed || s.live.Draining() {
		s.mu.Unlock()
		return webrtc.ViewerAnswer{}, ErrClosed
	}
	g := s.groups[gid]
	switch {
	case s.nViewer >= s.cfg.MaxViewers:
		s.mu.Unlock()
		s.st.refused.Add(1)
		return webrtc.ViewerAnswer{}, webrtc.ErrViewerLimit
	case g == nil && len(s.groups) >= s.cfg.MaxUpstreams:
		s.mu.Unlock()
		s.st.refused.Add(1)
		return webrtc.ViewerAnswer{}, webrtc.ErrViewerLimit
	case g != nil && g.reserved >= s.cfg.MaxViewersPerStream:
		s.mu.Unlock()
		s.st.refused.Add(1)
		return webrtc.ViewerAnswer{}, webrtc.ErrViewerLimit
	}
	if g == nil {
		g = s.newGroup(gid, key, uq)
		s.groups[gid] = g
		s.wg.Add(1)
		go g.run()
	}
	g.reserved++
	s.nViewer++
	s.mu.Unlock()

	v, ans, err := s.answer(ctx, g, offer)
	if err != nil {
		s.mu.Lock()
		g.reserved--
		s.nViewer--
		s.mu.Unlock()
		g.wake()
		return webrtc.ViewerAnswer{}, err
	}
	s.st.viewersTotal.Add(1)
	return webrtc.ViewerAnswer{SDP: ans, ID: v.id, Session: v.session}, nil
}

// maxEnded bounds the ids of ended viewers the Server remembers.
const maxEnded = 4096

// forget moves a viewer's id to the ended ones. s.mu is held.
func (s *Server) forget(id string) {
	delete(s.byID, id)
	if old := s.endedRing[s.endedNext]; old != "" {
		delete(s.ended, old)
	}
	s.endedRing[s.endedNext] = id
	s.ended[id] = struct{}{}
	s.endedNext = (s.endedNext + 1) % len(s.endedRing)
}

// Stop implements webrtc.Viewers. A viewer that ended shortly before (its
// client closed the connection first) counts as this node's. It ends a
// standby publisher (Standby) of that id as well.
func (s *Server) Stop(id string) bool {
	if s.stopStandby(id) {
		return true
	}
	s.mu.Lock()
	v := s.byID[id]
	_, ended := s.ended[id]
	s.mu.Unlock()
	if v == nil {
		return ended
	}
	v.stop("deleted")
	return true
}

// Drain refuses new viewers and waits until the node has none, or ctx
// ends.
func (s *Server) Drain(ctx context.Context) error { return s.live.Drain(ctx) }

// Close ends every viewer and upstream and waits for every goroutine the
// Server started. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	vs := make([]*viewer, 0, len(s.byID))
	for _, v := range s.byID {
		vs = append(vs, v)
	}
	s.mu.Unlock()
	s.cancel()
	for _, v := range vs {
		v.stop("server closed")
	}
	s.wg.Wait()
	s.mux.Close()
	if s.tcpMux != nil {
		s.tcpMux.Close() // closes the listener
	}
	s.port.Close()
	return nil
}

// newID is a random viewer id.
func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
