package sfu

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	pion "github.com/pion/webrtc/v4"

	"github.com/srs-mesh/srs-mesh/protocols/webrtc"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Kicking: a viewer whose queue overflows kickStrikes times, each within
// kickWindow of the previous, is ended.
const (
	kickStrikes = 3
	kickWindow  = 3 * time.Second
)

// viewer is one PeerConnection answered at the node. Its run goroutine
// owns it; a writer goroutine drains its send queue into pion.
type viewer struct {
	g      *group
	id     string
	ufrag  string
	pc     *pion.PeerConnection
	tracks [2]*pion.TrackLocalStaticRTP // nil for a kind the stream lacks
	q      chan queued
	done   chan struct{}
	once   sync.Once
	reason atomic.Value   // string: why it stopped
	out    *atomic.Uint64 // bytes written to the viewer
	shard  *shard         // writes the viewer's queue; nil in tests
	// session is the viewer's ICE session in Config.Store, "" when not
	// stored.
	session string

	mu      sync.Mutex
	active  bool      // connected: packets are queued
	waitKey bool      // video skips to the next keyframe
	skipped [2]uint16 // output = cache sequence number - skipped
	strikes int
	lastHit time.Time
	rate    bucket // the viewer's bitrate cap (Config.ViewerBitrate)
	// qbytes are the bytes in q (Config.QueueBytes). Queueing adds under
	// mu; the shard's flush subtracts.
	qbytes atomic.Int64
}

// queued is one packet for a viewer, with its sequence number.
type queued struct {
	p    *packet
	seq  uint16
	kind uint8
}

// bucket is a token bucket of bytes: rate bytes a second, up to burst.
// A zero rate lets everything through. It is not safe for concurrent use.
type bucket struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

func newBucket(bitsPerSecond int64, burst int) bucket {
	return bucket{rate: float64(bitsPerSecond) / 8, burst: float64(burst), tokens: float64(burst)}
}

// take reports whether n bytes may go at now, and if so takes them.
func (b *bucket) take(n int, now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	if !b.last.IsZero() {
		if d := now.Sub(b.last); d > 0 {
			b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		}
	}
	b.last = now
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}

// enqueue queues p as seq unless that would exceed the queue's packets or
// bytes, or the viewer's bitrate; it reports whether it did and, if not,
// whether the bitrate was the cause. v.mu is held.
func (v *viewer) enqueue(k int, p *packet, seq uint16, now time.Time) (ok, overRate bool) {
	cfg := &v.g.s.cfg
	if v.qbytes.Load()+int64(p.size) > int64(cfg.QueueBytes) || len(v.q) == cap(v.q) {
		return false, false
	}
	if !v.rate.take(p.size, now) {
		return false, true
	}
	select {
	case v.q <- queued{p: p, seq: seq, kind: uint8(k)}:
		v.qbytes.Add(int64(p.size))
		return true, false
	default:
		return false, false
	}
}

// answer creates a viewer of g for offer and returns its answer.
func (s *Server) answer(ctx context.Context, g *group, offer []byte) (*viewer, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OfferTimeout)
	defer cancel()
	select {
	case <-g.ready:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("upstream of %s not ready: %w", g.key, ctx.Err())
	}
	if g.err != nil {
		return nil, nil, g.err
	}
	pc, err := s.viewers.NewPeerConnection(pion.Configuration{})
	if err != nil {
		return nil, nil, err
	}
	v := &viewer{g: g, id: newID(), pc: pc, q: make(chan queued, s.cfg.QueueLen), done: make(chan struct{}), out: new(atomic.Uint64),
		rate: newBucket(s.cfg.ViewerBitrate, s.cfg.viewerBurst())}
	fail := func(err error) (*viewer, []byte, error) {
		pc.Close()
		if v.ufrag != "" {
			s.port.remove(v.ufrag)
		}
		if v.session != "" {
			s.cfg.Store.DeleteRTCSession(context.WithoutCancel(ctx), v.session)
		}
		return nil, nil, err
	}
	if err := pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeOffer, SDP: string(offer)}); err != nil {
		return fail(fmt.Errorf("%w: %v", webrtc.ErrBadOffer, err))
	}
	var senders [2]*pion.RTPSender
	for k, c := range g.codecs {
		if c == nil {
			continue
		}
		kind := "audio"
		if k == kindVideo {
			kind = "video"
		}
		tr, err := pion.NewTrackLocalStaticRTP(c.RTPCodecCapability, kind, "mesh-"+g.key.Stream)
		if err != nil {
			return fail(err)
		}
		snd, err := pc.AddTrack(tr)
		if err != nil {
			return fail(fmt.Errorf("%w: %v", webrtc.ErrBadOffer, err))
		}
		v.tracks[k], senders[k] = tr, snd
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
	if v.ufrag, err = webrtc.ParseSDP(local); err != nil {
		return fail(err)
	}
	s.port.add(v.ufrag, webrtc.ICEPwd(local))
	answer := webrtc.RewriteSDP(local, s.cfg.Candidate)
	if s.tcp != nil {
		answer = addTCPCandidate(answer, s.cfg.TCPCandidate)
	}
	if s.cfg.Store != nil && s.cfg.NodeRTC.IsValid() {
		if peer, err := webrtc.ParseSDP(offer); err == nil {
			rec := stream.RTCSession{Ufrag: v.ufrag + ":" + peer, OriginID: "node:" + s.cfg.NodeID, OriginRTC: s.cfg.NodeRTC.String(),
				Key: g.key.String(), Pwd: webrtc.ICEPwd(local), CreatedUnixMs: time.Now().UnixMilli()}
			if s.cfg.NodeAPI != "" {
				rec.Resource = "http://" + s.cfg.NodeAPI + webrtc.PathSession + "?" + webrtc.ViewerParam + "=" + v.id
			}
			if err := s.cfg.Store.PutRTCSession(ctx, rec); err != nil {
				s.log.Warn("viewer's session not stored: its UDP must reach this node", "stream", g.key.String(), "err", err)
			} else {
				v.session = rec.Ufrag
			}
		}
	}

	connected := make(chan struct{})
	var connOnce sync.Once
	pc.OnConnectionStateChange(func(st pion.PeerConnectionState) {
		switch st {
		case pion.PeerConnectionStateConnected:
			connOnce.Do(func() { close(connected) })
		case pion.PeerConnectionStateFailed, pion.PeerConnectionStateClosed:
			v.stop("connection " + st.String())
		}
	})
	s.mu.Lock()
	if s.closed || g.ended {
		s.mu.Unlock()
		return fail(ErrClosed)
	}
	s.byID[v.id] = v
	v.shard = s.shards[s.nextShard%len(s.shards)]
	s.nextShard++
	v.shard.add(v)
	g.viewers[v] = struct{}{}
	g.publish()
	s.live.Join()
	s.wg.Add(1)
	s.mu.Unlock()
	go v.run(connected, senders)
	return v, answer, nil
}

// publish refreshes the list forward reads. s.mu is held.
func (g *group) publish() {
	l := make([]*viewer, 0, len(g.viewers))
	for v := range g.viewers {
		l = append(l, v)
	}
	g.list.Store(&l)
}

// stop ends the viewer (its run goroutine cleans up). It never blocks.
func (v *viewer) stop(reason string) {
	v.once.Do(func() {
		v.reason.Store(reason)
		close(v.done)
	})
}

// run owns the viewer: it starts its writer and RTCP readers, activates it
// once connected, and tears it down when it stops.
func (v *viewer) run(connected <-chan struct{}, senders [2]*pion.RTPSender) {
	g, s := v.g, v.g.s
	defer s.wg.Done()
	var end func()
	if s.cfg.Sessions != nil {
		end = s.cfg.Sessions.Track(g.key, "webrtc", stream.KindPlay, new(atomic.Uint64), v.out)
	}
	var wg sync.WaitGroup
	for k, snd := range senders {
		if snd == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.readRTCP(k, snd)
		}()
	}
	timer := time.NewTimer(s.cfg.ConnectTimeout)
	select {
	case <-connected:
		timer.Stop()
		wait := false
		for k := range v.tracks {
			if v.tracks[k] != nil && g.start(g.tracks[k], v) && k == kindVideo {
				wait = true
			}
		}
		if wait {
			g.requestKeyframe(false)
		}
		<-v.done
	case <-timer.C:
		v.stop("not connected in time")
	case <-v.done:
		timer.Stop()
	}
	s.mu.Lock()
	s.forget(v.id)
	delete(g.viewers, v)
	g.reserved--
	s.nViewer--
	g.publish()
	s.mu.Unlock()
	g.wake()
	if v.shard != nil {
		v.shard.remove(v)
	}
	s.port.remove(v.ufrag)
	v.pc.Close()
	wg.Wait()
	if v.session != "" {
		ctx, cancel := context.WithTimeout(context.Background(), webrtc.DefaultHTTPTimeout)
		if err := s.cfg.Store.DeleteRTCSession(ctx, v.session); err != nil {
			s.log.Warn("viewer's session not deleted", "viewer", v.id, "err", err)
		}
		cancel()
	}
	if end != nil {
		end()
	}
	s.live.Leave()
	s.log.Info("viewer ended", "stream", g.key.String(), "viewer", v.id, "reason", v.reason.Load())
}

// begin activates the viewer's kind k, queueing pks first (a cached
// start); video without pks waits for the next keyframe.
func (v *viewer) begin(k int, pks []*packet) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.active = true
	if k == kindVideo {
		v.waitKey = len(pks) == 0
	}
	now := time.Now()
	for _, p := range pks {
		v.enqueue(k, p, p.hdr.SequenceNumber-v.skipped[k], now)
	}
	v.signal()
}

// signal tells the viewer's shard that packets are queued.
func (v *viewer) signal() {
	if v.shard != nil {
		v.shard.signal()
	}
}

// push queues a live packet of kind k that arrived at now. It runs on the
// upstream's reader and never blocks: a full queue (in packets or bytes)
// or a packet beyond the viewer's bitrate makes video skip to the next
// keyframe, and a viewer that keeps overflowing is kicked.
func (v *viewer) push(k int, p *packet, now time.Time) {
	v.mu.Lock()
	if !v.active {
		v.mu.Unlock()
		return
	}
	if k == kindVideo && v.waitKey {
		if !p.keyframe {
			v.skipped[k]++
			v.mu.Unlock()
			return
		}
		v.waitKey = false
	}
	ok, overRate := v.enqueue(k, p, p.hdr.SequenceNumber-v.skipped[k], now)
	if ok {
		v.mu.Unlock()
		v.signal()
		return
	}
	st := &v.g.s.st
	if overRate {
		st.rateDrops.Add(1)
	} else {
		st.queueDrops.Add(1)
	}
	v.skipped[k]++
	if k != kindVideo {
		v.mu.Unlock()
		return
	}
	if now.Sub(v.lastHit) > kickWindow {
		v.strikes = 0
	}
	v.strikes++
	v.lastHit = now
	v.waitKey = true
	kick := v.strikes >= kickStrikes
	if kick {
		v.active = false // nothing more is queued for it
	}
	v.mu.Unlock()
	st.skipped.Add(1)
	if kick {
		st.kicked.Add(1)
		v.stop("too slow")
		return
	}
	v.g.requestKeyframe(false)
}

// offset is what the viewer's sequence numbers of kind k lag the cache's.
func (v *viewer) offset(k int) uint16 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.skipped[k]
}

// resend queues a retransmission of p as the viewer's seq; false when the
// queue is full or the viewer is at its bitrate (a retransmission counts
// against it like any packet, so NACKs cannot make the node send a viewer
// more than its cap).
func (v *viewer) resend(k int, p *packet, seq uint16) bool {
	v.mu.Lock()
	ok, overRate := v.enqueue(k, p, seq, time.Now())
	v.mu.Unlock()
	if overRate {
		v.g.s.st.rateDrops.Add(1)
	}
	if ok {
		v.signal()
	}
	return ok
}

// readRTCP handles the viewer's feedback on the sender of kind k: NACKs
// from the cache, PLIs and FIRs aggregated upstream.
func (v *viewer) readRTCP(k int, snd *pion.RTPSender) {
	for {
		pkts, _, err := snd.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.TransportLayerNack:
				for _, pair := range p.Nacks {
					for _, seq := range pair.PacketList() {
						v.g.resend(v, k, seq)
					}
				}
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				v.g.requestKeyframe(false)
			}
		}
	}
}
