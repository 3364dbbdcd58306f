package srt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosrt "github.com/datarhei/gosrt"

	"github.com/srs-mesh/srs-mesh/protocols/internal/route"
	"github.com/srs-mesh/srs-mesh/protocols/internal/udpbatch"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Backup encoders (Config.BackupPublish).
//
// An SRT publisher is relayed end to end to its origin, and SRS accepts
// the SRT handshake of a stream that already has a publisher and only
// then closes the connection: the node cannot learn from the handshake
// that the stream is busy, as it does for RTMP. So before a publish
// session's handshake with the origin, the node asks Config.Live whether
// the stream is live there with an active publisher. When it is (and the
// caller is not encrypted: the node cannot read an encrypted stream), the
// session's destination is the node's own standby listener, a gosrt
// listener on 127.0.0.1 owned by the Server, instead of the origin: the
// caller's SRT connection ends at the node, relayed as any session, and
// the node holds it as the stream's standby, on this node at most one per
// stream (MaxStandbys in all). The standby's MPEG-TS is read while it
// waits, and only its last GOP kept (tsgop.go).
//
// Meanwhile the node plays the stream from its origin over SRT (the
// watch). When the watch ends, or carries no media for standbyGap, the
// standby takes over: the node routes the stream, asks Config.Live again
// (a stream still live there is busy: the active publisher was only
// slow), publishes to the origin as an SRT caller with the standby's own
// stream id, and forwards the standby's TS from then on, its cached GOP
// first, so that the stream starts again at the standby's last key frame
// (without a cached GOP, SRS starts it at the next one). Tries are spaced from
// standbyRetryMin, doubling up to standbyRetryMax while the watch stays
// silent. An origin leg that ends within standbyRefusal of the publish
// was refused (SRS closes a busy stream's publisher right after the
// handshake), one that ends later was lost: either way the standby goes
// back to waiting and watching. A stream takes over at most maxTakeovers
// times a minute on a node, so that two flaky encoders cannot flap.
//
// An active SRT publisher relayed end to end whose caller sends (almost)
// nothing for Config.PublishStall is ended on both sides (a SHUTDOWN to
// the origin and to the caller): SRS would otherwise keep a killed
// encoder's stream for its own idle timeout, 10 s by default, and no
// standby could take over. Within the same per-minute bound as RTMP's.

// StandbyEvent reports a standby publisher's start, promotion, or an
// active publisher's stall (Config.Standbys).
type StandbyEvent struct {
	Key stream.Key
	// Peer is the encoder's address.
	Peer string
	// Kind is StandbyKept, StandbyPromoted or StandbyStalled.
	Kind string
	// Origin is the origin the standby published to (StandbyPromoted), or
	// the stalled publisher's.
	Origin string
	// Gap is the time from the watch's last media to the standby's
	// publish (StandbyPromoted), or how long the publisher was silent
	// (StandbyStalled).
	Gap time.Duration
}

// Kinds of StandbyEvent; the same words as the RTMP server's.
const (
	StandbyKept     = "standby"
	StandbyPromoted = "promoted"
	StandbyStalled  = "stalled"
)

// ProtoStandby is the protocol under which a waiting standby is reported
// to Sessions.Track (kind stream.KindStandby); once it took over it is
// reported as "srt", kind publish.
const ProtoStandby = "standby"

// StandbyObserver is told about standby publishers; it is called from the
// server's goroutines and must not block.
type StandbyObserver interface {
	Standby(StandbyEvent)
}

// LiveFunc reports whether key is live on origin with an active
// publisher. It must answer within ctx (the node's caller is waiting for
// its handshake); an error is read as "not live".
type LiveFunc func(ctx context.Context, key stream.Key, origin stream.Origin) (bool, error)

// Bounds of backup publishing.
const (
	// MaxStandbys bounds the standby publishers of a node (one per stream).
	MaxStandbys = 256
	// liveTimeout bounds Config.Live before a publish's handshake: the
	// caller resends its conclusion and gives up after about 3 s.
	liveTimeout = 700 * time.Millisecond
	// standbyGap is how long the watch may get no media before the
	// standby tries to publish: longer than a frame interval (SRS sends
	// an SRT play its packets as they come), short enough for players to
	// ride through. A try first asks the origin's API, so a silence that
	// was not the publisher leaving costs an API read, not a publish.
	standbyGap = 250 * time.Millisecond
	// standbyRetryMin and standbyRetryMax space a standby's tries while
	// the watch stays silent.
	standbyRetryMin = 200 * time.Millisecond
	standbyRetryMax = 2 * time.Second
	// standbyRefusal: an origin leg that ends this soon after the
	// publish was refused, not lost.
	standbyRefusal = 2 * time.Second
	// liveRetry spaces a standby's tries that only the origin's API
	// refused, for liveRetryFor of the watch's silence (a stalled
	// publisher's node ends it after PublishStall); then the wait
	// doubles as for any refusal.
	liveRetry    = 100 * time.Millisecond
	liveRetryFor = 3 * time.Second
	// standbyTick is how often a standby checks its watch.
	standbyTick = 50 * time.Millisecond
	// maxTakeovers bounds the take-overs of one stream on a node within
	// budgetWindow; maxStallEnds the stall ends.
	maxTakeovers = 3
	maxStallEnds = 3
	budgetWindow = time.Minute
	// maxBudgetKeys bounds the streams a budget remembers.
	maxBudgetKeys = 4096
	// minStandbyIdle is the least peer idle timeout of a standby's legs
	// (any packet counts, keepalives too, which SRT sends every second
	// when idle); a took-over standby that stalls is ended on its media
	// after PublishStall.
	minStandbyIdle = 3 * time.Second
)

// errBusy says the origin still has an active publisher; errLive that its
// API said so, before any publish.
var (
	errBusy = errors.New("srt: the stream's publisher still holds it")
	errLive = fmt.Errorf("%w (the origin's API lists it live)", errBusy)
)

// standbys is a server's standby listener and the standbys it holds.
type standbys struct {
	srv  *Server
	ln   gosrt.Listener
	addr netip.AddrPort

	mu     sync.Mutex
	byKey  map[stream.Key]*standby
	byPeer map[netip.AddrPort]*standby // the session's upstream address, once dialled

	takeovers, stalls budget
}

// startStandbys opens the standby listener and starts its accept loop,
// owned by s.wg; it ends when s.ctx does.
func (s *Server) startStandbys() error {
	cfg := gosrt.DefaultConfig()
	cfg.PeerIdleTimeout = max(s.cfg.PublishStall, minStandbyIdle)
	ln, err := gosrt.Listen("srt", "127.0.0.1:0", cfg)
	if err != nil {
		return fmt.Errorf("srt: standby listener: %w", err)
	}
	ap, err := netip.ParseAddrPort(ln.Addr().String())
	if err != nil {
		ln.Close()
		return fmt.Errorf("srt: standby listener address: %w", err)
	}
	sb := &standbys{srv: s, ln: ln, addr: ap, byKey: map[stream.Key]*standby{}, byPeer: map[netip.AddrPort]*standby{}}
	sb.takeovers.max, sb.stalls.max = maxTakeovers, maxStallEnds
	s.standbys = sb
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		<-s.ctx.Done()
		ln.Close()
	}()
	go func() {
		defer s.wg.Done()
		sb.accept()
	}()
	return nil
}

// accept takes the connections of held sessions, and only those: a
// connection from any other address (the listener is on the loopback,
// reachable by local processes only) or with another stream id is
// rejected.
func (sb *standbys) accept() {
	for {
		req, err := sb.ln.Accept2()
		if err != nil {
			return
		}
		from, _ := netip.ParseAddrPort(req.RemoteAddr().String())
		sb.mu.Lock()
		h := sb.byPeer[from]
		sb.mu.Unlock()
		if h == nil || h.streamID != req.StreamId() || req.IsEncrypted() || h.started {
			req.Reject(gosrt.REJ_PEER)
			continue
		}
		conn, err := req.Accept()
		if err != nil {
			continue
		}
		h.started = true // only this goroutine reads or writes it
		sb.srv.wg.Add(1)
		go func() {
			defer sb.srv.wg.Done()
			h.run(conn)
		}()
	}
}

// claim records ss as its stream's standby; false when the stream has one
// on this node or MaxStandbys are held.
func (sb *standbys) claim(ss *session, streamID string, origin stream.Origin) bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if _, ok := sb.byKey[ss.info.Key]; ok || len(sb.byKey) >= MaxStandbys {
		return false
	}
	h := &standby{sbs: sb, ss: ss, streamID: streamID, origin: origin}
	h.ctx, h.cancel = context.WithCancel(ss.srv.ctx)
	sb.byKey[ss.info.Key] = h
	ss.standby = h
	return true
}

// expect makes the standby listener take the connection from the
// session's upstream socket.
func (sb *standbys) expect(h *standby, from netip.AddrPort) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	h.peer = from
	sb.byPeer[from] = h
}

func (sb *standbys) release(h *standby) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.byKey[h.ss.info.Key] == h {
		delete(sb.byKey, h.ss.info.Key)
	}
	if h.peer.IsValid() && sb.byPeer[h.peer] == h {
		delete(sb.byPeer, h.peer)
	}
}

// releaseKey frees the stream's standby slot of a standby that took over.
func (sb *standbys) releaseKey(h *standby) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.byKey[h.ss.info.Key] == h {
		delete(sb.byKey, h.ss.info.Key)
	}
}

// reclaim takes the stream's standby slot again for h; false when another
// standby holds it or MaxStandbys are held.
func (sb *standbys) reclaim(h *standby) bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if cur, ok := sb.byKey[h.ss.info.Key]; ok {
		return cur == h
	}
	if len(sb.byKey) >= MaxStandbys {
		return false
	}
	sb.byKey[h.ss.info.Key] = h
	return true
}

// count returns the standbys held.
func (sb *standbys) count() int {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return len(sb.byKey)
}

// StandbyGate decides whether this node may keep a standby publisher of
// a stream. The mesh keeps at most one standby of a stream, whichever node
// and protocol holds it, so that a stream key has at most two publishers;
// false refuses the publisher as the origin would. It is asked once the
// node found the stream live, and may take a few hundred milliseconds.
type StandbyGate interface {
	MayHoldStandby(ctx context.Context, key stream.Key) bool
}

// holdAsStandby decides, before a publish session's handshake, whether
// the session is held as its stream's standby: backup publishing is on,
// the caller is not encrypted, the stream is live on origin, and the node
// holds no standby of it yet. It claims the slot when so.
func (ss *session) holdAsStandby(ctx context.Context, origin stream.Origin) bool {
	s := ss.srv
	if s.standbys == nil || ss.info.Mode != stream.SRTPublish {
		return false
	}
	hs, err := parseHandshake(ss.conclusion)
	if err != nil || hs.HasKM {
		return false
	}
	lctx, cancel := context.WithTimeout(ctx, liveTimeout)
	live, err := s.cfg.Live(lctx, ss.info.Key, origin)
	cancel()
	if err != nil {
		ss.log.Debug("cannot tell whether the stream is live; publishing", "origin", origin.ID, "err", err)
		return false
	}
	if !live {
		return false
	}
	if g := s.cfg.StandbyGate; g != nil {
		gctx, cancel := context.WithTimeout(ctx, liveTimeout)
		may := g.MayHoldStandby(gctx, ss.info.Key)
		cancel()
		if !may {
			ss.log.Info("the stream is live and has a standby publisher elsewhere in the mesh; publishing", "origin", origin.ID)
			return false
		}
	}
	if !s.standbys.claim(ss, hs.StreamID, origin) {
		ss.log.Info("the stream is live and has a standby on this node (or the node holds its most); publishing", "origin", origin.ID)
		return false
	}
	return true
}

// releaseStandby ends the session's standby, if it has one. Run when the
// session ends.
func (ss *session) releaseStandby() {
	if h := ss.standby; h != nil {
		h.cancel()
		ss.srv.standbys.release(h)
	}
}

// standby is a publisher held as its stream's standby. Its goroutine (run)
// owns its legs: the standby's connection at the standby listener, the
// watch and, once it took over, the origin leg.
type standby struct {
	sbs      *standbys
	ss       *session
	streamID string
	origin   stream.Origin
	peer     netip.AddrPort
	started  bool // accepted by the listener; used by the accept loop only
	ctx      context.Context
	cancel   context.CancelFunc

	watchMedia atomic.Int64 // when the watch last got media, Unix nanoseconds
	media      atomic.Int64 // when the standby last sent media, Unix nanoseconds
	fwd        atomic.Pointer[originLeg]
}

// originLeg is a took-over standby's publish to its origin.
type originLeg struct {
	conn   gosrt.Conn
	failed chan struct{} // closed once the leg ended
	once   sync.Once
}

func (l *originLeg) fail() { l.once.Do(func() { close(l.failed) }) }

func (h *standby) observe(kind, origin string, gap time.Duration) {
	if ob := h.ss.srv.cfg.Standbys; ob != nil {
		ob.Standby(StandbyEvent{Key: h.ss.info.Key, Peer: h.ss.key.addr.String(), Kind: kind, Origin: origin, Gap: gap})
	}
}

// track reports the standby to Config.Sessions as proto/kind until the
// returned func is called.
func (h *standby) track(proto, kind string) func() {
	if t := h.ss.srv.cfg.Sessions; t != nil {
		if end := t.Track(h.ss.info.Key, proto, kind, &h.ss.clientIn, &h.ss.clientOut); end != nil {
			return end
		}
	}
	return func() {}
}

// run holds the standby until its connection or its session ends.
func (h *standby) run(conn gosrt.Conn) {
	log := h.ss.log
	defer h.sbs.release(h)
	defer conn.Close()
	defer h.cancel()
	// The reader: the standby's TS, cached from its last key frame while
	// it waits, forwarded to the origin leg once it took over, the cache
	// first.
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer h.cancel()
		buf := make([]byte, maxPacket)
		var gop gopCache
		var cur *originLeg
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			h.media.Store(time.Now().UnixNano()) // gosrt reads data packets only
			l := h.fwd.Load()
			if l == nil {
				cur = nil
				gop.write(buf[:n])
				continue
			}
			// gosrt refuses a write when its send queue is full or
			// the leg closed; the leg's reader tells which.
			if l != cur {
				cur = l
				var sent int
				for _, p := range gop.replay() {
					l.conn.Write(p)
					sent += len(p)
				}
				h.ss.log.Debug("the standby's cached GOP sent first", "bytes", sent)
			}
			l.conn.Write(buf[:n])
		}
	}()
	defer func() { <-readDone }()
	defer conn.Close() // unblocks the reader

	log.Info("publisher kept as the stream's standby", "origin", h.origin.ID)
	h.observe(StandbyKept, h.origin.ID, 0)
	for h.ctx.Err() == nil {
		end := h.track(ProtoStandby, stream.KindStandby)
		leg, origin, err := h.wait()
		end()
		if err != nil {
			return
		}
		// The active publisher now: the stream's standby slot on this
		// node is free for another encoder.
		h.sbs.releaseKey(h)
		end = h.track("srt", stream.KindPublish)
		err = h.forward(leg, origin)
		end()
		if h.ctx.Err() != nil {
			return
		}
		if !h.sbs.reclaim(h) {
			log.Info("the standby's origin leg ended, and the stream has another standby on this node: ending", "origin", origin.ID, "err", err)
			return
		}
		log.Info("the standby's origin leg ended; waiting as the standby again", "origin", origin.ID, "err", err)
	}
}

// wait watches the stream until the standby took it over, returning the
// origin leg, or until the standby ends (an error).
func (h *standby) wait() (*originLeg, stream.Origin, error) {
	log := h.ss.log
	var watch *watch
	defer func() {
		if watch != nil {
			watch.stop()
		}
	}()
	t := time.NewTicker(standbyTick)
	defer t.Stop()
	var lastTry time.Time
	retry := standbyRetryMin
	h.watchMedia.Store(time.Now().UnixNano())
	for {
		if watch == nil {
			watch = h.startWatch(h.origin)
		}
		select {
		case <-h.ctx.Done():
			return nil, h.origin, h.ctx.Err()
		case <-t.C:
		}
		now := time.Now()
		last := time.Unix(0, h.watchMedia.Load())
		ended := watch.ended()
		if !ended && now.Sub(last) < standbyGap || now.Sub(lastTry) < retry {
			continue
		}
		if last.After(lastTry) {
			retry = standbyRetryMin
		} else {
			retry = min(2*retry, standbyRetryMax)
		}
		lastTry = now
		if !h.sbs.takeovers.allow(h.ss.info.Key, now) {
			log.Warn("the stream's publisher left, but its take-overs this minute are spent; the standby keeps waiting", "per_minute", maxTakeovers)
			retry = standbyRetryMax
			continue
		}
		leg, origin, err := h.publish()
		if err == nil {
			gap := time.Since(last)
			log.Info("standby publisher takes over the stream", "origin", origin.ID, "after", gap.Round(time.Millisecond), "watch_ended", ended)
			h.observe(StandbyPromoted, origin.ID, gap)
			return leg, origin, nil
		}
		h.sbs.takeovers.refund(h.ss.info.Key, now)
		if h.ctx.Err() != nil {
			return nil, h.origin, h.ctx.Err()
		}
		if errors.Is(err, errLive) && now.Sub(last) < liveRetryFor {
			// Only the API was asked, not the origin's publish (nor
			// its on_publish hook): ask again soon while the active
			// publisher's node may be ending its stall.
			retry = liveRetry
		}
		log.Debug("standby publish refused; the stream's publisher holds it", "err", err, "silent", now.Sub(last).Round(time.Millisecond))
		if ended {
			watch.stop()
			watch = nil
		}
	}
}

// publish routes the stream and publishes to its origin with the
// standby's stream id, unless the origin says the stream is still live.
func (h *standby) publish() (*originLeg, stream.Origin, error) {
	s := h.ss.srv
	ctx, cancel := context.WithTimeout(h.ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	origin, err := route.Publish(s.cfg.Router, s.cfg.Publisher)(ctx, h.ss.info.Key)
	if err != nil {
		return nil, h.origin, err
	}
	h.origin = origin
	if origin.SRT == "" {
		return nil, origin, fmt.Errorf("%w: origin %s serves no SRT", ErrBadOrigin, origin.ID)
	}
	lctx, lcancel := context.WithTimeout(ctx, liveTimeout)
	live, err := s.cfg.Live(lctx, h.ss.info.Key, origin)
	lcancel()
	if err == nil && live {
		return nil, origin, errLive
	}
	conn, err := h.dial(ctx, origin.SRT, h.streamID)
	if err != nil {
		return nil, origin, err
	}
	assigned, err := route.Accepted(ctx, s.cfg.Publisher, h.ss.info.Key, origin)
	if err == nil && assigned.ID != origin.ID {
		err = fmt.Errorf("%w: %s was assigned to origin %s meanwhile", ErrOriginRefused, h.ss.info.Key, assigned.ID)
	}
	if err != nil {
		conn.Close()
		return nil, origin, err
	}
	return &originLeg{conn: conn, failed: make(chan struct{})}, origin, nil
}

// dial connects to an origin as an SRT caller with streamID, within ctx.
func (h *standby) dial(ctx context.Context, addr, streamID string) (gosrt.Conn, error) {
	cfg := gosrt.DefaultConfig()
	cfg.StreamId = streamID
	cfg.PeerIdleTimeout = max(h.ss.srv.cfg.PublishStall, minStandbyIdle)
	if dl, ok := ctx.Deadline(); ok {
		cfg.ConnectionTimeout = max(time.Until(dl), 100*time.Millisecond)
	}
	type result struct {
		c   gosrt.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := gosrt.Dial("srt", addr, cfg)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.c, r.err
	case <-ctx.Done():
		// The dial ends within its ConnectionTimeout; the server waits
		// for it (its caller, a server goroutine, still counts).
		h.ss.srv.wg.Add(1)
		go func() {
			defer h.ss.srv.wg.Done()
			if r := <-done; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// forward has the reader send the standby's TS to the origin leg until
// the leg ends or the standby does.
func (h *standby) forward(leg *originLeg, origin stream.Origin) error {
	start := time.Now()
	// The leg's reader notices the origin closing it (a SHUTDOWN, or its
	// idle timeout).
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer leg.fail()
		buf := make([]byte, maxPacket)
		for {
			if _, err := leg.conn.Read(buf); err != nil {
				return
			}
		}
	}()
	h.fwd.Store(leg)
	defer func() {
		h.fwd.Store(nil)
		leg.conn.Close()
		<-readDone
	}()
	// A took-over standby that stalls is ended as an active publisher
	// is (watchStall), its connection with it.
	stall := h.ss.srv.cfg.PublishStall
	var tick <-chan time.Time
	if stall > 0 {
		t := time.NewTicker(max(stall/4, 10*time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	h.media.Store(time.Now().UnixNano())
wait:
	for {
		select {
		case <-h.ctx.Done():
			return h.ctx.Err()
		case <-leg.failed:
			break wait
		case <-tick:
		}
		silent := time.Since(time.Unix(0, h.media.Load()))
		if silent < stall || !h.sbs.stalls.allow(h.ss.info.Key, time.Now()) {
			continue
		}
		h.ss.log.Warn("publisher stalled: no media; ending its publish so that a standby can take over", "silent", silent.Round(time.Millisecond))
		h.observe(StandbyStalled, origin.ID, silent)
		h.cancel()
		return errors.New("srt: the standby stalled after it took over")
	}
	if time.Since(start) < standbyRefusal {
		return fmt.Errorf("%w: origin %s closed the publish after %v", errBusy, origin.ID, time.Since(start).Round(time.Millisecond))
	}
	return errors.New("srt: the origin closed the standby's publish")
}

// watch is a play of the stream on its origin whose media the standby
// times.
type watch struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (w *watch) ended() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

func (w *watch) stop() {
	w.cancel()
	<-w.done
}

// startWatch starts a goroutine that plays the stream from the standby's
// origin and stamps watchMedia at every packet of media.
func (h *standby) startWatch(origin stream.Origin) *watch {
	ctx, cancel := context.WithCancel(h.ctx)
	w := &watch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		if origin.SRT == "" {
			return
		}
		dctx, dcancel := context.WithTimeout(ctx, h.ss.srv.cfg.HandshakeTimeout)
		conn, err := h.dial(dctx, origin.SRT, playStreamID(h.ss.info))
		dcancel()
		if err != nil {
			h.ss.log.Debug("standby watch failed", "origin", origin.ID, "err", err)
			return
		}
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		defer stop()
		defer conn.Close()
		buf := make([]byte, maxPacket)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
			h.watchMedia.Store(time.Now().UnixNano())
		}
	}()
	return w
}

// playStreamID is the stream id of a play of info's stream, with the
// publisher's other parameters (an auth token) kept.
func playStreamID(info stream.SRTRequestInfo) string {
	var b strings.Builder
	b.WriteString("#!::")
	if v := info.Key.Vhost; v != "" && v != stream.DefaultVhost {
		b.WriteString("h=" + v + ",")
	}
	b.WriteString("r=" + info.Key.App + "/" + info.Key.Stream + ",m=request")
	for _, p := range info.Params {
		b.WriteString("," + p[0] + "=" + p[1])
	}
	return b.String()
}

// watchStall starts, for an active publish session relayed to its origin,
// the goroutine that ends the session once the caller sent no data packet
// (media: control packets such as keepalives and acknowledgements do not
// count) for Config.PublishStall: SHUTDOWN to the origin (the stream ends
// there, and a standby anywhere can take over) and to the caller.
// The returned func stops it and waits for it.
func (ss *session) watchStall(originSocket uint32) (stop func()) {
	s := ss.srv
	stall := s.cfg.PublishStall
	if s.standbys == nil || stall <= 0 || ss.info.Mode != stream.SRTPublish || ss.standby != nil {
		return func() {}
	}
	ss.media.Store(time.Now().UnixNano())
	ss.stallWatch.Store(true)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(max(stall/4, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ss.ctx.Done():
				return
			case <-t.C:
			}
			now := time.Now()
			silent := now.Sub(time.Unix(0, ss.media.Load()))
			if silent < stall {
				continue
			}
			if !s.standbys.stalls.allow(ss.info.Key, now) {
				ss.log.Warn("publisher stalled: no media; left publishing, the stream's stall budget is spent", "silent", silent.Round(time.Millisecond), "per_minute", maxStallEnds)
				return
			}
			ss.log.Warn("publisher stalled: no media; ending its publish so that a standby can take over", "silent", silent.Round(time.Millisecond))
			if ob := s.cfg.Standbys; ob != nil {
				ob.Standby(StandbyEvent{Key: ss.info.Key, Peer: ss.key.addr.String(), Kind: StandbyStalled, Origin: ss.origin, Gap: silent})
			}
			ss.up.Write(shutdownPacket(originSocket))
			ss.send(shutdownPacket(ss.key.id))
			ss.close("stalled")
			return
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// noteMedia stamps the session's media time when a batch from the
// caller holds a data packet; only for sessions watched for a stall.
// Called by the listener loop.
func (ss *session) noteMedia(ms []udpbatch.Msg) {
	if !ss.stallWatch.Load() {
		return
	}
	for i := range ms {
		if ms[i].N >= headerLen && ms[i].Buf[0]&0x80 == 0 {
			ss.media.Store(ss.srv.now().UnixNano())
			return
		}
	}
}

// budget remembers, per stream, the times of an event within
// budgetWindow, bounded in streams (the stalest forgotten first).
type budget struct {
	mu  sync.Mutex
	max int
	by  map[stream.Key][]time.Time
}

// allow reports whether key may have one more event at now (fewer than
// max in the window), and records it when so.
func (b *budget) allow(key stream.Key, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.by == nil {
		b.by = map[stream.Key][]time.Time{}
	}
	recent := b.by[key][:0]
	for _, t := range b.by[key] {
		if now.Sub(t) < budgetWindow {
			recent = append(recent, t)
		}
	}
	if len(recent) >= b.max {
		b.by[key] = recent
		return false
	}
	if _, ok := b.by[key]; !ok && len(b.by) >= maxBudgetKeys {
		b.evict(now)
	}
	b.by[key] = append(recent, now)
	return true
}

// refund forgets the event allow recorded for key at at (a try that did
// not take over costs nothing).
func (b *budget) refund(key stream.Key, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ts := b.by[key]
	for i := len(ts) - 1; i >= 0; i-- {
		if ts[i].Equal(at) {
			b.by[key] = append(ts[:i], ts[i+1:]...)
			return
		}
	}
}

// evict forgets the streams whose last event is past the window or, when
// none is, the one whose last event is oldest. Called with mu held.
func (b *budget) evict(now time.Time) {
	var oldest stream.Key
	var at time.Time
	for k, ts := range b.by {
		if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= budgetWindow {
			delete(b.by, k)
			continue
		}
		if last := ts[len(ts)-1]; at.IsZero() || last.Before(at) {
			oldest, at = k, last
		}
	}
	if len(b.by) >= maxBudgetKeys {
		delete(b.by, oldest)
	}
}

// upstreamAddr is the local address of a session's upstream socket, as
// the standby listener sees it.
func upstreamAddr(up *net.UDPConn) netip.AddrPort {
	if ua, ok := up.LocalAddr().(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
