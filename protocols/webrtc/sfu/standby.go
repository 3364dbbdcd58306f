package sfu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	pion "github.com/pion/webrtc/v4"

	"github.com/srs-mesh/srs-mesh/protocols/internal/route"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Backup WHIP publishers (webrtc.Standbys).
//
// The origin is the arbiter of which publisher is active: it refuses a
// second WHIP publish of a stream it holds. A refused publisher of a stream
// that is live (assigned, Config.Assignments, and a WHEP play of it on the
// origin gets media within standbyProbe) is answered by the node itself,
// on the shared WebRTC port as viewers are, and held as the stream's
// standby, on this node at most one per stream (MaxStandbys in all). Its
// RTP is read and dropped. Meanwhile the node plays the stream from its
// origin (the watch). When the watch fails, or carries no media for
// standbyGap (the active publisher left), the standby publishes: the node
// opens a WHIP session at the stream's origin as a client, with one track
// per track of the standby, forwards the standby's RTP to it from then on,
// and asks the standby encoder for a key frame (PLI) at once. The origin's
// PLIs, FIRs and NACKs are passed to the encoder. Players on every node
// ride through with their publisher grace. A standby whose publish the
// origin refuses (the active publisher was only slow) goes on watching and
// tries again, waiting from standbyRetryMin, doubling up to standbyRetryMax
// while the watch stays silent. A stream's standbys on a node take over at
// most maxSwitches times per switchWindow. Once promoted the standby's
// session stays terminated at the node; it ends when either side's
// connection fails, or at a DELETE of its Location (Server.Stop).

// StandbyEvent reports a standby publisher's start or promotion
// (Config.Standbys).
type StandbyEvent struct {
	Key stream.Key
	// Peer is the standby encoder's ICE ufrag (WebRTC has no one address).
	Peer string
	// Kind is StandbyKept or StandbyPromoted.
	Kind string
	// Origin is the origin the standby published to (StandbyPromoted).
	Origin string
	// Gap is the time from the watch's last media to the standby's
	// session at the origin connected (StandbyPromoted).
	Gap time.Duration
}

// Kinds of StandbyEvent, as the RTMP server names them.
const (
	StandbyKept     = "standby"
	StandbyPromoted = "promoted"
)

// ProtoStandby is the protocol under which standby publishers are
// reported to Sessions.Track while they wait, as the RTMP server's.
const ProtoStandby = "standby"

// StandbyObserver is told about standby publishers; it must not block.
type StandbyObserver interface {
	Standby(StandbyEvent)
}

// Assignments tells whether the mesh assigned a stream to an origin: a
// refused publisher of a stream nobody publishes is not a backup encoder.
type Assignments interface {
	Sources(key stream.Key) (stream.Origin, []stream.Origin, bool)
}

// Bounds of backup publishing.
const (
	// MaxStandbys bounds the standby publishers of a node (one per stream).
	MaxStandbys = 256
	// standbyProbe bounds the wait for media on the watch that tells a
	// live stream from a refusal.
	standbyProbe = 2 * time.Second
	// standbyGap is how long the watch may carry no media before the
	// standby tries to publish: longer than a few frame intervals (an
	// origin forwards WebRTC packets as they come, audio every 20 ms),
	// short enough for players to ride through within a second.
	standbyGap = 300 * time.Millisecond
	// standbyRetryMin and standbyRetryMax bound the time between a
	// standby's publishes while the origin refuses them.
	standbyRetryMin = 200 * time.Millisecond
	standbyRetryMax = 2 * time.Second
	// maxSwitches bounds the times one stream's standbys on a node take
	// over within switchWindow; maxSwitchKeys the streams remembered.
	maxSwitches   = 3
	switchWindow  = time.Minute
	maxSwitchKeys = 4096
	// standbyReportInterval is how often a promoted standby's session at
	// the origin sends RTCP sender reports.
	standbyReportInterval = 50 * time.Millisecond
	// standbyTick is how often a waiting standby looks at its watch.
	standbyTick = 25 * time.Millisecond
	// rtpBuf is the buffer each forwarded track reads into.
	rtpBuf = 1500
)

// standbyPub is one WHIP publisher held as its stream's standby. Its run
// goroutine owns it: the watch, the publish and the origin session.
type standbyPub struct {
	s     *Server
	id    string
	ufrag string
	// session is the encoder's ICE session in Config.Store, "" when not
	// stored; set once, with the Server's mu held.
	session string
	key     stream.Key
	query   string // the WHIP query sent to the origin
	pc      *pion.PeerConnection
	done    chan struct{} // closed when the standby ends
	once    sync.Once

	mu     sync.Mutex
	remote [2]*pion.TrackRemote // the encoder's tracks, as they arrive
	out    [2]*pion.TrackLocalStaticRTP
	origin *pion.PeerConnection // the promoted standby's session at the origin

	active    atomic.Bool // promoted: RTP is forwarded
	connected atomic.Bool // the encoder's session connected
	wg        sync.WaitGroup
}

// switchBudget remembers, per stream, when its standbys took over,
// bounded in streams (the one whose last switch is oldest forgotten first)
// and in switches per stream.
type switchBudget struct {
	mu sync.Mutex
	by map[stream.Key][]time.Time
}

// spent reports whether key switched maxSwitches times within the window
// before now.
func (b *switchBudget) spent(key stream.Key, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, t := range b.by[key] {
		if now.Sub(t) < switchWindow {
			n++
		}
	}
	return n >= maxSwitches
}

// record remembers a switch of key at now.
func (b *switchBudget) record(key stream.Key, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.by == nil {
		b.by = map[stream.Key][]time.Time{}
	}
	ts, ok := b.by[key]
	if !ok && len(b.by) >= maxSwitchKeys {
		var oldest stream.Key
		var at time.Time
		for k, ts := range b.by {
			if last := ts[len(ts)-1]; at.IsZero() || last.Before(at) {
				oldest, at = k, last
			}
		}
		delete(b.by, oldest)
	}
	recent := ts[:0]
	for _, t := range ts {
		if now.Sub(t) < switchWindow {
			recent = append(recent, t)
		}
	}
	if len(recent) >= maxSwitches {
		recent = recent[1:]
	}
	b.by[key] = append(recent, now)
}

// StandbyGate decides whether this node may keep a standby publisher of
// a stream. The mesh keeps at most one standby of a stream, whichever node
// and protocol holds it, so that a stream key has at most two publishers;
// false refuses the publisher as the origin would. It is asked once the
// node found the stream live, and may take a few hundred milliseconds.
type StandbyGate interface {
	MayHoldStandby(ctx context.Context, key stream.Key) bool
}

// Standby implements webrtc.Standbys.
func (s *Server) Standby(ctx context.Context, key stream.Key, q url.Values, offer []byte) (webrtc.ViewerAnswer, error) {
	if as := s.cfg.Assignments; as != nil {
		if _, _, ok := as.Sources(key); !ok {
			return webrtc.ViewerAnswer{}, fmt.Errorf("%w: stream %s is not assigned", webrtc.ErrNotStandby, key)
		}
	}
	_, uq := groupID(key, q)
	if len(uq) > MaxQuery {
		return webrtc.ViewerAnswer{}, fmt.Errorf("%w: query longer than %d bytes", webrtc.ErrNotStandby, MaxQuery)
	}
	sb := &standbyPub{s: s, id: newID(), key: key, query: uq, done: make(chan struct{})}
	s.mu.Lock()
	switch {
	case s.closed || s.live.Draining():
		s.mu.Unlock()
		return webrtc.ViewerAnswer{}, ErrClosed
	case s.standbys[key] != nil:
		s.mu.Unlock()
		return webrtc.ViewerAnswer{}, fmt.Errorf("%w: stream %s has a standby on this node", webrtc.ErrNotStandby, key)
	case len(s.standbys) >= MaxStandbys:
		s.mu.Unlock()
		return webrtc.ViewerAnswer{}, fmt.Errorf("%w: %d standbys kept", webrtc.ErrNotStandby, MaxStandbys)
	}
	s.standbys[key] = sb
	s.mu.Unlock()
	ok := false
	defer func() {
		if !ok {
			s.mu.Lock()
			if s.standbys[key] == sb {
				delete(s.standbys, key)
			}
			s.mu.Unlock()
		}
	}()
	pctx, cancel := context.WithTimeout(ctx, s.cfg.OfferTimeout)
	defer cancel()
	w, err := s.openWatch(pctx, key, uq)
	if err != nil {
		return webrtc.ViewerAnswer{}, fmt.Errorf("%w: %v", webrtc.ErrNotStandby, err)
	}
	if !w.probe(pctx, standbyProbe) {
		w.close()
		return webrtc.ViewerAnswer{}, fmt.Errorf("%w: stream %s carries no media at origin %s", webrtc.ErrNotStandby, key, w.origin.ID)
	}
	if g := s.cfg.StandbyGate; g != nil && !g.MayHoldStandby(pctx, key) {
		w.close()
		return webrtc.ViewerAnswer{}, fmt.Errorf("%w: stream %s has a standby publisher elsewhere in the mesh", webrtc.ErrNotStandby, key)
	}
	ans, err := sb.answer(pctx, offer)
	if err != nil {
		w.close()
		return webrtc.ViewerAnswer{}, err
	}
	ok = true
	s.wg.Add(1)
	go sb.run(w)
	return webrtc.ViewerAnswer{SDP: ans, ID: sb.id, Session: sb.session}, nil
}

// stopStandby ends the standby id and reports whether this node had it.
func (s *Server) stopStandby(id string) bool {
	s.mu.Lock()
	sb := s.promoted[id]
	for _, c := range s.standbys {
		if c.id == id {
			sb = c
		}
	}
	s.mu.Unlock()
	if sb == nil {
		return false
	}
	sb.stop()
	return true
}

// Standbys returns the standby publishers the node holds (not counting
// the promoted ones, which publish).
func (s *Server) Standbys() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.standbys)
}

func (sb *standbyPub) stop() { sb.once.Do(func() { close(sb.done) }) }

// answer answers the encoder's offer on the shared port and starts the
// readers of its tracks.
func (sb *standbyPub) answer(ctx context.Context, offer []byte) ([]byte, error) {
	s := sb.s
	pc, err := s.viewers.NewPeerConnection(pion.Configuration{})
	if err != nil {
		return nil, err
	}
	fail := func(err error) ([]byte, error) {
		pc.Close()
		sb.wg.Wait()
		if sb.ufrag != "" {
			s.port.remove(sb.ufrag)
		}
		return nil, err
	}
	sb.pc = pc
	pc.OnConnectionStateChange(func(st pion.PeerConnectionState) {
		switch st {
		case pion.PeerConnectionStateConnected:
			sb.connected.Store(true)
		case pion.PeerConnectionStateFailed, pion.PeerConnectionStateClosed:
			sb.stop()
		}
	})
	pc.OnTrack(func(tr *pion.TrackRemote, rcv *pion.RTPReceiver) {
		k := kindAudio
		if tr.Kind() == pion.RTPCodecTypeVideo {
			k = kindVideo
		}
		sb.mu.Lock()
		if sb.remote[k] != nil {
			sb.mu.Unlock()
			return // one track per kind is forwarded
		}
		sb.remote[k] = tr
		sb.mu.Unlock()
		sb.wg.Add(2)
		go func() {
			defer sb.wg.Done()
			for {
				if _, _, err := rcv.ReadRTCP(); err != nil {
					return
				}
			}
		}()
		go func() {
			defer sb.wg.Done()
			sb.forward(k, tr)
		}()
	})
	if err := pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeOffer, SDP: string(offer)}); err != nil {
		return fail(fmt.Errorf("%w: %v", webrtc.ErrBadOffer, err))
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(fmt.Errorf("%w: %v", webrtc.ErrBadOffer, err))
	}
	gathered := pion.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return fail(fmt.Errorf("%w: %v", webrtc.ErrBadOffer, err))
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	local := []byte(pc.LocalDescription().SDP)
	if sb.ufrag, err = webrtc.ParseSDP(local); err != nil {
		return fail(err)
	}
	s.port.add(sb.ufrag, webrtc.ICEPwd(local))
	if s.cfg.Store != nil && s.cfg.NodeRTC.IsValid() {
		// As a viewer's: a node the encoder's UDP reaches relays it here,
		// and a DELETE through another node is forwarded here.
		if peer, err := webrtc.ParseSDP(offer); err == nil {
			rec := stream.RTCSession{Ufrag: sb.ufrag + ":" + peer, OriginID: "node:" + s.cfg.NodeID, OriginRTC: s.cfg.NodeRTC.String(),
				Key: sb.key.String(), Pwd: webrtc.ICEPwd(local), CreatedUnixMs: time.Now().UnixMilli()}
			if s.cfg.NodeAPI != "" {
				rec.Resource = "http://" + s.cfg.NodeAPI + webrtc.PathSession + "?" + webrtc.ViewerParam + "=" + sb.id
			}
			if err := s.cfg.Store.PutRTCSession(ctx, rec); err != nil {
				s.log.Warn("standby's session not stored: its UDP must reach this node", "stream", sb.key.String(), "err", err)
			} else {
				s.mu.Lock() // touch reads it
				sb.session = rec.Ufrag
				s.mu.Unlock()
			}
		}
	}
	return webrtc.RewriteSDP(local, s.cfg.Candidate), nil
}

// forward reads the encoder's track k into one buffer and, once the
// standby is promoted, writes each packet to its track at the origin
// (pion rewrites SSRC and payload type, without allocating per packet).
// Before, packets are dropped. It returns when the track ends.
func (sb *standbyPub) forward(k int, tr *pion.TrackRemote) {
	buf := make([]byte, rtpBuf)
	var out *pion.TrackLocalStaticRTP
	for {
		n, _, err := tr.Read(buf)
		if errors.Is(err, io.ErrShortBuffer) {
			continue // larger than any path's MTU: dropped
		}
		if err != nil {
			return
		}
		if !sb.active.Load() {
			continue
		}
		if out == nil {
			sb.mu.Lock()
			out = sb.out[k]
			sb.mu.Unlock()
			if out == nil {
				continue
			}
		}
		if _, err := out.Write(buf[:n]); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			sb.s.log.Debug("standby forward failed", "stream", sb.key.String(), "err", err)
		}
	}
}

// keyframe asks the encoder for a key frame now.
func (sb *standbyPub) keyframe() {
	sb.mu.Lock()
	tr := sb.remote[kindVideo]
	sb.mu.Unlock()
	if tr == nil {
		return
	}
	if err := sb.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}}); err == nil {
		sb.s.st.plisUpstream.Add(1)
	}
}

func (sb *standbyPub) observe(kind, origin string, gap time.Duration) {
	if ob := sb.s.cfg.Standbys; ob != nil {
		ob.Standby(StandbyEvent{Key: sb.key, Peer: sb.ufrag, Kind: kind, Origin: origin, Gap: gap})
	}
}

// run waits, watching, until the standby publishes, then holds the
// session until either side ends. It owns w.
func (sb *standbyPub) run(w *watch) {
	s := sb.s
	defer s.wg.Done()
	log := s.log.With("stream", sb.key.String(), "standby", sb.id)
	var pub *originSession
	defer func() {
		if w != nil {
			w.close()
		}
		sb.active.Store(false)
		sb.pc.Close()
		sb.wg.Wait()
		if pub != nil {
			pub.close(s)
		}
		s.port.remove(sb.ufrag)
		if sb.session != "" {
			ctx, cancel := context.WithTimeout(context.Background(), webrtc.DefaultHTTPTimeout)
			if err := s.cfg.Store.DeleteRTCSession(ctx, sb.session); err != nil {
				log.Warn("standby's session not deleted from the store", "err", err)
			}
			cancel()
		}
		s.mu.Lock()
		if s.standbys[sb.key] == sb {
			delete(s.standbys, sb.key)
		}
		delete(s.promoted, sb.id)
		s.mu.Unlock()
	}()
	end := func() {}
	if s.cfg.Sessions != nil {
		end = s.cfg.Sessions.Track(sb.key, ProtoStandby, stream.KindStandby, nil, nil)
	}
	log.Info("WHIP publisher kept as the stream's standby", "origin", w.origin.ID)
	sb.observe(StandbyKept, w.origin.ID, 0)

	tick := time.NewTicker(standbyTick)
	defer tick.Stop()
	var lastTry time.Time
	retry := standbyRetryMin
	held := false
	start := time.Now()
	for pub == nil {
		select {
		case <-s.ctx.Done():
			end()
			return
		case <-sb.done:
			end()
			log.Info("standby publisher ended while waiting")
			return
		case <-tick.C:
		}
		now := time.Now()
		if !sb.connected.Load() && now.Sub(start) > s.cfg.ConnectTimeout {
			end()
			log.Info("standby publisher did not connect", "after", s.cfg.ConnectTimeout)
			return
		}
		last := w.last()
		if w.live() && now.Sub(last) < standbyGap || now.Sub(lastTry) < retry {
			continue
		}
		if s.switches.spent(sb.key, now) {
			if !held {
				log.Warn("the stream's publisher left, but the stream switched too often: the standby waits", "per_minute", maxSwitches)
				held = true
			}
			continue
		}
		held = false
		if last.After(lastTry) {
			retry = standbyRetryMin
		} else {
			retry = min(2*retry, standbyRetryMax)
		}
		lastTry = now
		p, err := sb.publish()
		if err != nil {
			log.Debug("standby publish refused; the stream's publisher holds it", "err", err, "silent", now.Sub(last).Round(time.Millisecond))
			if !w.live() {
				w.close()
				ctx, cancel := context.WithTimeout(s.ctx, s.cfg.OfferTimeout)
				if nw, err := s.openWatch(ctx, sb.key, sb.query); err == nil {
					w = nw
				} else {
					w.failed = true
				}
				cancel()
			}
			continue
		}
		pub = p
		s.switches.record(sb.key, now)
		// No longer the stream's standby: another refused publisher
		// through this node may be.
		s.mu.Lock()
		if s.standbys[sb.key] == sb {
			delete(s.standbys, sb.key)
		}
		s.promoted[sb.id] = sb
		s.mu.Unlock()
		gap := time.Since(last)
		end()
		w.close()
		w = nil
		log.Info("the stream's publisher left; the WHIP standby publishes", "origin", p.origin.ID, "gap", gap.Round(time.Millisecond))
		sb.observe(StandbyPromoted, p.origin.ID, gap)
	}
	if s.cfg.Sessions != nil {
		// From now on the node publishes the stream for the encoder.
		defer s.cfg.Sessions.Track(sb.key, "webrtc", stream.KindPublish, nil, nil)()
	}
	select {
	case <-s.ctx.Done():
	case <-sb.done:
		log.Info("promoted standby publisher ended")
	case <-pub.failed:
		log.Warn("promoted standby's session at the origin failed; ending the publisher")
	}
}

// originSession is a promoted standby's WHIP session at the origin.
type originSession struct {
	pc       *pion.PeerConnection
	origin   stream.Origin
	resource string
	failed   chan struct{}
	wg       sync.WaitGroup
}

func (o *originSession) close(s *Server) {
	o.pc.Close()
	o.wg.Wait()
	s.deleteResource(o.resource)
}

// publish routes the stream, opens the standby's WHIP session at the
// origin and, once it connected, starts forwarding.
func (sb *standbyPub) publish() (*originSession, error) {
	s := sb.s
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.OfferTimeout)
	defer cancel()
	o, err := route.Publish(s.cfg.Router, s.cfg.Publisher)(ctx, sb.key)
	if err != nil {
		return nil, err
	}
	if o.API == "" || o.RTC == "" {
		return nil, fmt.Errorf("%w: origin %s serves no WebRTC", stream.ErrNoOrigin, o.ID)
	}
	rtcAddr, err := resolve(ctx, o.RTC)
	if err != nil {
		return nil, fmt.Errorf("origin %s RTC address: %w", o.ID, err)
	}
	pc, err := s.publish.NewPeerConnection(pion.Configuration{})
	if err != nil {
		return nil, err
	}
	up := &originSession{pc: pc, origin: o, failed: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			pc.Close()
			up.wg.Wait()
		}
	}()
	sb.mu.Lock()
	remote := sb.remote
	sb.mu.Unlock()
	var out [2]*pion.TrackLocalStaticRTP
	for k, tr := range remote {
		if tr == nil {
			continue
		}
		c := tr.Codec()
		kind := "audio"
		if k == kindVideo {
			kind = "video"
		}
		lt, err := pion.NewTrackLocalStaticRTP(c.RTPCodecCapability, kind, "mesh-"+sb.key.Stream)
		if err != nil {
			return nil, err
		}
		tx, err := pc.AddTransceiverFromTrack(lt, pion.RTPTransceiverInit{Direction: pion.RTPTransceiverDirectionSendonly})
		if err != nil {
			return nil, err
		}
		out[k] = lt
		snd, src := tx.Sender(), uint32(tr.SSRC())
		up.wg.Add(1)
		go func() {
			defer up.wg.Done()
			sb.relayRTCP(snd, src)
		}()
	}
	if out[kindVideo] == nil && out[kindAudio] == nil {
		return nil, errors.New("the standby sent no track yet")
	}
	connected := make(chan struct{})
	var conOnce, failOnce sync.Once
	pc.OnConnectionStateChange(func(st pion.PeerConnectionState) {
		switch st {
		case pion.PeerConnectionStateConnected:
			conOnce.Do(func() { close(connected) })
		case pion.PeerConnectionStateFailed, pion.PeerConnectionStateClosed, pion.PeerConnectionStateDisconnected:
			failOnce.Do(func() { close(up.failed) })
		}
	})
	answer, resource, err := s.signalOrigin(ctx, pc, o, webrtc.PathWHIP, sb.query, rtcAddr)
	if err != nil {
		return nil, err
	}
	up.resource = resource
	if _, err := route.Accepted(ctx, s.cfg.Publisher, sb.key, o); err != nil {
		s.deleteResource(up.resource)
		return nil, fmt.Errorf("publish not recorded: %w", err)
	}
	if err := pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		s.deleteResource(up.resource)
		return nil, fmt.Errorf("origin %s answer: %w", o.ID, err)
	}
	select {
	case <-connected:
	case <-up.failed:
		s.deleteResource(up.resource)
		return nil, fmt.Errorf("origin %s: session failed", o.ID)
	case <-ctx.Done():
		s.deleteResource(up.resource)
		return nil, fmt.Errorf("origin %s: session not connected: %w", o.ID, ctx.Err())
	}
	sb.mu.Lock()
	sb.out, sb.origin = out, pc
	sb.mu.Unlock()
	sb.active.Store(true)
	sb.keyframe()
	ok = true
	return up, nil
}

// relayRTCP reads the origin's RTCP for one sender and passes its key
// frame requests and NACKs to the encoder's track of SSRC src. It returns
// when the sender ends.
func (sb *standbyPub) relayRTCP(snd *pion.RTPSender, src uint32) {
	buf := make([]byte, rtpBuf)
	for {
		n, _, err := snd.Read(buf)
		if errors.Is(err, io.ErrShortBuffer) {
			continue
		}
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				sb.keyframe()
			case *rtcp.TransportLayerNack:
				p.MediaSSRC = src
				sb.pc.WriteRTCP([]rtcp.Packet{p})
			}
		}
	}
}

// watch is a WHEP play of a stream at its origin that tells whether the
// stream carries media.
type watch struct {
	pc     *pion.PeerConnection
	origin stream.Origin
	res    string
	s      *Server
	media  atomic.Int64  // Unix nanoseconds of the last RTP packet
	got    chan struct{} // the first packet arrived
	ended  chan struct{} // the connection failed
	gotO   sync.Once
	endO   sync.Once
	wg     sync.WaitGroup
	failed bool // no watch could be opened: treat as ended
}

// openWatch routes key's play and opens a WHEP session at its origin.
func (s *Server) openWatch(ctx context.Context, key stream.Key, query string) (*watch, error) {
	o, err := s.cfg.Router.RoutePlay(ctx, key)
	if err != nil {
		return nil, err
	}
	if o.API == "" || o.RTC == "" {
		return nil, fmt.Errorf("%w: origin %s serves no WebRTC", stream.ErrNoOrigin, o.ID)
	}
	rtcAddr, err := resolve(ctx, o.RTC)
	if err != nil {
		return nil, err
	}
	pc, err := s.upstream.NewPeerConnection(pion.Configuration{})
	if err != nil {
		return nil, err
	}
	w := &watch{pc: pc, origin: o, s: s, got: make(chan struct{}), ended: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			pc.Close()
			w.wg.Wait()
		}
	}()
	for _, k := range []pion.RTPCodecType{pion.RTPCodecTypeVideo, pion.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, pion.RTPTransceiverInit{Direction: pion.RTPTransceiverDirectionRecvonly}); err != nil {
			return nil, err
		}
	}
	pc.OnConnectionStateChange(func(st pion.PeerConnectionState) {
		if st == pion.PeerConnectionStateFailed || st == pion.PeerConnectionStateClosed || st == pion.PeerConnectionStateDisconnected {
			w.endO.Do(func() { close(w.ended) })
		}
	})
	pc.OnTrack(func(tr *pion.TrackRemote, rcv *pion.RTPReceiver) {
		w.wg.Add(2)
		go func() {
			defer w.wg.Done()
			for {
				if _, _, err := rcv.ReadRTCP(); err != nil {
					return
				}
			}
		}()
		go func() {
			defer w.wg.Done()
			buf := make([]byte, rtpBuf)
			for {
				if _, _, err := tr.Read(buf); err != nil && !errors.Is(err, io.ErrShortBuffer) {
					return
				}
				w.media.Store(time.Now().UnixNano())
				w.gotO.Do(func() { close(w.got) })
			}
		}()
	})
	answer, resource, err := s.signalOrigin(ctx, pc, o, webrtc.PathWHEP, query, rtcAddr)
	if err != nil {
		return nil, err
	}
	w.res = resource
	if err := pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		s.deleteResource(w.res)
		return nil, err
	}
	w.media.Store(time.Now().UnixNano())
	ok = true
	return w, nil
}

// probe waits up to d for the watch's first packet.
func (w *watch) probe(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.got:
		return true
	case <-t.C:
	case <-ctx.Done():
	case <-w.ended:
	}
	return false
}

// live reports whether the watch's connection is up.
func (w *watch) live() bool {
	if w.failed {
		return false
	}
	select {
	case <-w.ended:
		return false
	default:
		return true
	}
}

// last is when the watch last got media.
func (w *watch) last() time.Time { return time.Unix(0, w.media.Load()) }

// close ends the watch, its readers and its resource at the origin.
func (w *watch) close() {
	if w.pc == nil {
		return
	}
	w.pc.Close()
	w.wg.Wait()
	w.s.deleteResource(w.res)
	w.pc = nil
}
