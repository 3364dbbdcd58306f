package sfu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	pion "github.com/pion/webrtc/v4"

	"github.com/srs-mesh/srs-mesh/protocols/webrtc"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Track kinds, the index of a group's tracks and a viewer's.
const (
	kindVideo = 0
	kindAudio = 1
)

// maxAnswer bounds an origin's WHEP answer.
const maxAnswer = 256 << 10

// group is one upstream (one stream and query) and its viewers. Its run
// goroutine owns the upstream: it attaches it, watches it, and re-attaches
// it until the group has no viewer left.
type group struct {
	s     *Server
	id    string
	key   stream.Key
	query string // the upstream WHEP query

	tracks [2]*track
	// ready is closed once the first upstream negotiated its codecs
	// (codecs, err set before).
	ready  chan struct{}
	codecs [2]*pion.RTPCodecParameters
	err    error

	wakeCh     chan struct{} // re-attach now (Moved) or re-check the viewers
	lastPacket atomic.Int64  // unix nanoseconds

	// The Server's mu guards viewers, reserved, list and ended.
	viewers  map[*viewer]struct{}
	reserved int // viewers admitted, answered or not
	ended    bool
	list     atomic.Pointer[[]*viewer]

	mu     sync.Mutex // guards the fields below
	up     rtcpWriter // the upstream's connection, nil between upstreams
	origin string
	pli    pacer
}

// rtcpWriter sends RTCP upstream; *pion.PeerConnection is one.
type rtcpWriter interface {
	WriteRTCP(pkts []rtcp.Packet) error
}

// track is one kind of media of a group: its timeline and cache. mu is
// held while a packet is fanned out, so that a viewer's cached start and
// the live packets never interleave.
type track struct {
	kind  int
	codec string // lower-case MIME subtype
	mu    sync.Mutex
	tl    timeline
	cache *cache
	// lastKey is the cached sequence number of the newest keyframe start
	// and lastKeyAt when it arrived; keyTS its timestamp.
	lastKey   uint16
	lastKeyAt time.Time
	keyTS     uint32
	hasKey    bool
	ssrc      atomic.Uint32 // the upstream's SSRC, for PLIs
}

func (s *Server) newGroup(id string, key stream.Key, query string) *group {
	g := &group{s: s, id: id, key: key, query: query, ready: make(chan struct{}), wakeCh: make(chan struct{}, 1),
		viewers: map[*viewer]struct{}{}, pli: pacer{interval: s.cfg.KeyframeInterval}}
	for k := range g.tracks {
		g.tracks[k] = &track{kind: k, cache: newCache(s.cfg.CacheSize)}
	}
	empty := []*viewer{}
	g.list.Store(&empty)
	return g
}

// wake makes run look at the group now: re-attach (kick) or end when it
// has no viewer.
func (g *group) wake() {
	select {
	case g.wakeCh <- struct{}{}:
	default:
	}
}

// kick re-attaches the upstream now.
func (g *group) kick() { g.wake() }

func (g *group) originID() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.origin
}

// empty reports whether the group has no viewer, and if so ends it: it
// leaves the Server's table and admits nobody more.
func (g *group) empty() bool {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	if g.reserved > 0 {
		return false
	}
	g.ended = true
	if g.s.groups[g.id] == g {
		delete(g.s.groups, g.id)
	}
	return true
}

// run attaches the upstream, and re-attaches it whenever it fails, falls
// silent or the stream moves, until the group has no viewer.
func (g *group) run() {
	s := g.s
	defer s.wg.Done()
	end := func() {}
	if s.cfg.Sessions != nil {
		end = s.cfg.Sessions.Track(g.key, ProtoUpstream, "", nil, nil)
	}
	defer end()
	log := s.log.With("stream", g.key.String())
	backoff := 100 * time.Millisecond
	first := true
	var lost time.Time // since when the group has no upstream (after its first)
	for {
		if s.ctx.Err() != nil || (!first && g.empty()) {
			return
		}
		up, failed, err := g.attach()
		if err != nil {
			s.st.upstreamFailures.Add(1)
			if first {
				g.err = err
				close(g.ready)
				// Waiting viewers fail; run ends once they left.
				for !g.empty() {
					select {
					case <-s.ctx.Done():
						return
					case <-g.wakeCh:
					}
				}
				return
			}
			if lost.IsZero() {
				lost = time.Now()
			}
			if time.Since(lost) > s.cfg.ReattachTimeout {
				// The stream is gone: end its viewers; run ends with
				// the last one.
				log.Warn("upstream lost; ending its viewers", "err", err, "after", s.cfg.ReattachTimeout)
				g.stopViewers("stream lost: " + err.Error())
			} else {
				log.Warn("upstream attach failed; retrying", "err", err, "in", backoff)
			}
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(backoff):
			case <-g.wakeCh:
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		if first {
			close(g.ready)
			first = false
		} else {
			s.st.reattaches.Add(1)
		}
		log.Info("upstream attached", "origin", g.originID())
		g.lastPacket.Store(time.Now().UnixNano())
		g.requestKeyframe(true)
		lost = time.Time{}
		reason, changed := g.watch(up, failed)
		g.detach(up)
		log.Info("upstream detached", "reason", reason)
		if changed != nil {
			// The viewers cannot play the stream any more: they end,
			// and play again from a new upstream with the new codec.
			s.st.codecChanges.Add(1)
			log.Warn("stream's codec changed at its origin; ending its viewers", "err", changed)
			g.retire()
			g.stopViewers(changed.Error() + "; play again")
			for !g.empty() {
				select {
				case <-s.ctx.Done():
					return
				case <-g.wakeCh:
				}
			}
			return
		}
		lost, backoff = time.Now(), 100*time.Millisecond
	}
}

// retire takes the group out of the Server's table, so that new viewers
// of its stream and query get a new group, and admits nobody more.
func (g *group) retire() {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	g.ended = true
	if g.s.groups[g.id] == g {
		delete(g.s.groups, g.id)
	}
}

// ErrCodecChanged is why an upstream is refused when the stream's origin
// answers another codec than the one its viewers play.
var ErrCodecChanged = errors.New("sfu: the stream's codec changed")

// sameCodec reports whether a and b are one codec (MIME type, clock rate,
// audio channels), whatever their payload types and format parameters.
func sameCodec(a, b *pion.RTPCodecParameters) bool {
	ca, cb := a.Channels, b.Channels
	if ca == 0 {
		ca = 1
	}
	if cb == 0 {
		cb = 1
	}
	return strings.EqualFold(a.MimeType, b.MimeType) && a.ClockRate == b.ClockRate && ca == cb
}

// stopViewers ends every viewer of the group.
func (g *group) stopViewers(reason string) {
	for _, v := range *g.list.Load() {
		v.stop(reason)
	}
}

// watch waits until the upstream should end and says why; changed is
// set when it ends because the stream's codec changed (ErrCodecChanged).
func (g *group) watch(up *upstreamSession, failed <-chan struct{}) (reason string, changed error) {
	s := g.s
	tick := time.NewTicker(s.cfg.UpstreamSilence / 3)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return "closed", nil
		case <-failed:
			return "failed", nil
		case err := <-up.changed:
			return "codec changed", err
		case <-g.wakeCh:
			if g.empty() {
				return "no viewers", nil
			}
			// A move: follow at once when the route changed.
			ctx, cancel := context.WithTimeout(s.ctx, s.cfg.OfferTimeout)
			o, err := s.cfg.Router.RoutePlay(ctx, g.key)
			cancel()
			if err == nil && o.ID != up.origin.ID {
				return "moved to " + o.ID, nil
			}
		case now := <-tick.C:
			if time.Duration(now.UnixNano()-g.lastPacket.Load()) > s.cfg.UpstreamSilence {
				return "silent", nil
			}
		}
	}
}

// upstreamSession is one WHEP session of the node at an origin.
type upstreamSession struct {
	pc       *pion.PeerConnection
	origin   stream.Origin
	resource string
	wg       sync.WaitGroup // track readers
	arrived  chan struct{}  // a track arrived
	changed  chan error     // a track's codec is not the viewers' (ErrCodecChanged)
	mu       sync.Mutex
	codecs   [2]*pion.RTPCodecParameters // of the tracks that arrived
}

// attach routes the stream and opens a WHEP session at its origin. failed
// is closed when the session's connection fails.
func (g *group) attach() (*upstreamSession, <-chan struct{}, error) {
	s := g.s
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.OfferTimeout)
	defer cancel()
	o, err := s.cfg.Router.RoutePlay(ctx, g.key)
	if err != nil {
		return nil, nil, err
	}
	if o.API == "" || o.RTC == "" {
		return nil, nil, fmt.Errorf("%w: origin %s serves no WebRTC", stream.ErrNoOrigin, o.ID)
	}
	rtcAddr, err := resolve(ctx, o.RTC)
	if err != nil {
		return nil, nil, fmt.Errorf("origin %s RTC address: %w", o.ID, err)
	}
	pc, err := s.upstream.NewPeerConnection(pion.Configuration{})
	if err != nil {
		return nil, nil, err
	}
	up := &upstreamSession{pc: pc, origin: o, arrived: make(chan struct{}, 1), changed: make(chan error, 1)}
	ok := false
	defer func() {
		if !ok {
			pc.Close()
			up.wg.Wait()
		}
	}()
	for _, k := range []pion.RTPCodecType{pion.RTPCodecTypeVideo, pion.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, pion.RTPTransceiverInit{Direction: pion.RTPTransceiverDirectionRecvonly}); err != nil {
			return nil, nil, err
		}
	}
	failed := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(st pion.PeerConnectionState) {
		if st == pion.PeerConnectionStateFailed || st == pion.PeerConnectionStateClosed || st == pion.PeerConnectionStateDisconnected {
			once.Do(func() { close(failed) })
		}
	})
	pc.OnTrack(func(tr *pion.TrackRemote, rcv *pion.RTPReceiver) {
		k := kindAudio
		if tr.Kind() == pion.RTPCodecTypeVideo {
			k = kindVideo
		}
		t := g.tracks[k]
		c := tr.Codec()
		if g.readyDone() && g.codecs[k] != nil && !sameCodec(&c, g.codecs[k]) {
			// Viewers negotiated the stream's codecs and cannot be
			// offered others (WHEP has no offer from the server): the
			// upstream is refused and its packets never forwarded.
			// Another payload type for the same codec is fine, as pion
			// writes each viewer's own.
			select {
			case up.changed <- fmt.Errorf("origin %s: %w: viewers play %s/%d, the origin sends %s/%d", o.ID, ErrCodecChanged,
				g.codecs[k].MimeType, g.codecs[k].ClockRate, c.MimeType, c.ClockRate):
			default:
			}
			return
		}
		t.ssrc.Store(uint32(tr.SSRC()))
		_, sub, _ := strings.Cut(c.MimeType, "/")
		t.mu.Lock()
		t.codec, t.tl.clock = strings.ToLower(sub), c.ClockRate
		t.mu.Unlock()
		up.mu.Lock()
		if up.codecs[k] == nil {
			up.codecs[k] = &c
		}
		up.mu.Unlock()
		select {
		case up.arrived <- struct{}{}:
		default:
		}
		up.wg.Add(2)
		go func() {
			defer up.wg.Done()
			for {
				if _, _, err := rcv.ReadRTCP(); err != nil {
					return
				}
			}
		}()
		go func() {
			defer up.wg.Done()
			if k == kindVideo {
				g.requestKeyframe(true)
			}
			for {
				p, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				g.forward(t, p)
			}
		}()
	})
	answer, resource, err := s.signalOrigin(ctx, pc, o, webrtc.PathWHEP, g.query, rtcAddr)
	if err != nil {
		return nil, nil, err
	}
	up.resource = resource
	if _, err := webrtc.ParseSDP(answer); err != nil {
		g.deleteResource(up.resource)
		return nil, nil, fmt.Errorf("origin %s answer: %w", o.ID, err)
	}
	if err := pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		g.deleteResource(up.resource)
		return nil, nil, fmt.Errorf("origin %s answer: %w", o.ID, err)
	}
	if !g.readyDone() {
		// The stream's codecs are those of the tracks that arrive; the
		// answer may list several per kind.
		declared := answerCodecs(answer)
		if declared[kindVideo] == nil && declared[kindAudio] == nil {
			g.deleteResource(up.resource)
			return nil, nil, fmt.Errorf("origin %s: no media in its answer", o.ID)
		}
		wait := time.NewTimer(s.cfg.OfferTimeout / 2)
		defer wait.Stop()
	arrive:
		for {
			up.mu.Lock()
			done := (declared[kindVideo] == nil || up.codecs[kindVideo] != nil) && (declared[kindAudio] == nil || up.codecs[kindAudio] != nil)
			up.mu.Unlock()
			if done {
				break
			}
			select {
			case <-up.arrived:
			case <-wait.C:
				break arrive
			case <-ctx.Done():
				g.deleteResource(up.resource)
				return nil, nil, ctx.Err()
			}
		}
		up.mu.Lock()
		for k := range g.codecs {
			switch {
			case up.codecs[k] != nil:
				g.codecs[k] = up.codecs[k]
			case declared[k] != nil:
				g.codecs[k] = declared[k]
				_, sub, _ := strings.Cut(declared[k].MimeType, "/")
				t := g.tracks[k]
				t.mu.Lock()
				t.codec, t.tl.clock = strings.ToLower(sub), declared[k].ClockRate
				t.mu.Unlock()
			}
		}
		up.mu.Unlock()
	}
	for _, t := range g.tracks {
		t.mu.Lock()
		t.tl.reset()
		t.mu.Unlock()
	}
	g.mu.Lock()
	g.up, g.origin = pc, o.ID
	g.mu.Unlock()
	ok = true
	return up, failed, nil
}

func (g *group) readyDone() bool {
	select {
	case <-g.ready:
		return true
	default:
		return false
	}
}

// detach ends an upstream session: its connection, its readers, and its
// resource at the origin (best effort, in the background).
func (g *group) detach(up *upstreamSession) {
	g.mu.Lock()
	if g.up == rtcpWriter(up.pc) {
		g.up = nil
	}
	g.mu.Unlock()
	up.pc.Close()
	up.wg.Wait()
	g.deleteResource(up.resource)
}

func (g *group) deleteResource(resource string) { g.s.deleteResource(resource) }

// deleteResource ends a WHIP or WHEP resource at an origin, best effort,
// in the background (owned by the Server's wait group).
func (s *Server) deleteResource(resource string) {
	if resource == "" {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), webrtc.DefaultHTTPTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, resource, nil)
		if err != nil {
			return
		}
		if resp, err := s.cfg.HTTPClient.Do(req); err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
			resp.Body.Close()
		}
	}()
}

// resolve turns an origin's "host:port" RTC address into an address.
func resolve(ctx context.Context, hostport string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, errors.New("no address for " + host)
	}
	ap, err := netip.ParseAddrPort(netip.AddrPortFrom(ips[0].Unmap(), 0).Addr().String() + ":" + port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return ap, nil
}

// requestKeyframe asks the upstream for a keyframe, at most once per
// Config.KeyframeInterval unless force (a new upstream).
func (g *group) requestKeyframe(force bool) {
	g.s.st.keyframeRequests.Add(1)
	now := time.Now()
	g.mu.Lock()
	pc := g.up
	if pc == nil || (!g.pli.allow(now) && !force) {
		g.mu.Unlock()
		return
	}
	if force {
		g.pli.last = now
	}
	g.mu.Unlock()
	ssrc := g.tracks[kindVideo].ssrc.Load()
	if ssrc == 0 {
		return
	}
	if err := pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err == nil {
		g.s.st.plisUpstream.Add(1)
	}
}

// forward puts an upstream packet on the track's timeline and cache and
// queues it for every viewer.
func (g *group) forward(t *track, p *rtp.Packet) {
	now := time.Now()
	g.lastPacket.Store(now.UnixNano())
	g.s.st.packetsIn.Add(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	seq, ts := t.tl.rewrite(&p.Header, now)
	pk := &packet{hdr: p.Header, payload: p.Payload}
	pk.hdr.SequenceNumber, pk.hdr.Timestamp = seq, ts
	pk.hdr.Extension, pk.hdr.Extensions, pk.hdr.ExtensionProfile = false, nil, 0
	pk.hdr.Padding, pk.hdr.PaddingSize, pk.hdr.CSRC = false, 0, nil
	pk.size = pk.hdr.MarshalSize() + len(pk.payload)
	if t.kind == kindVideo && isKeyframe(t.codec, p.Payload) && (!t.hasKey || ts != t.keyTS) {
		pk.keyframe = true
		t.lastKey, t.lastKeyAt, t.keyTS, t.hasKey = seq, now, ts, true
	}
	t.cache.put(pk)
	for _, v := range *g.list.Load() {
		v.push(t.kind, pk, now)
	}
}

// start queues a newly connected viewer's first packets of t: from the
// cached keyframe when it is recent enough and the cache still holds
// everything since, else nothing, and the viewer waits for the next one,
// requested now. It reports whether the viewer needs that keyframe.
func (g *group) start(t *track, v *viewer) (wait bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.hasKey && time.Since(t.lastKeyAt) <= g.s.cfg.CachedStart {
		n := int(t.tl.lastSeq - t.lastKey + 1)
		if n > 0 && n <= t.cache.len() && n <= g.s.cfg.QueueLen/2 {
			pks := make([]*packet, 0, n)
			for i := 0; i < n; i++ {
				p := t.cache.get(t.lastKey + uint16(i))
				if p == nil {
					pks = nil
					break
				}
				pks = append(pks, p)
			}
			if pks != nil {
				v.begin(t.kind, pks)
				return false
			}
		}
	}
	v.begin(t.kind, nil)
	return true
}

// resend answers a viewer's NACK of one of its sequence numbers from the
// cache.
func (g *group) resend(v *viewer, kind int, seq uint16) {
	g.s.st.nacks.Add(1)
	t := g.tracks[kind]
	t.mu.Lock()
	p := t.cache.get(seq + v.offset(kind))
	t.mu.Unlock()
	if p == nil {
		g.s.st.nacksMissed.Add(1)
		return
	}
	if v.resend(kind, p, seq) {
		g.s.st.nacksServed.Add(1)
	}
}

// answerCodecs is the codec an origin's answer chose for video and for
// audio: the first payload type of each kind's first accepted media
// section, nil for a kind it lacks.
func answerCodecs(answer []byte) [2]*pion.RTPCodecParameters {
	var out [2]*pion.RTPCodecParameters
	var sd sdp.SessionDescription
	if sd.Unmarshal(answer) != nil {
		return out
	}
	codecs := sd.GetCodecMap()
	for _, md := range sd.MediaDescriptions {
		k := kindAudio
		switch md.MediaName.Media {
		case "video":
			k = kindVideo
		case "audio":
		default:
			continue
		}
		if out[k] != nil || md.MediaName.Port.Value == 0 || len(md.MediaName.Formats) == 0 {
			continue
		}
		pt, err := strconv.ParseUint(md.MediaName.Formats[0], 10, 8)
		if err != nil {
			continue
		}
		c, ok := codecs[uint8(pt)]
		if !ok || c.Name == "" || c.ClockRate == 0 {
			continue
		}
		p := &pion.RTPCodecParameters{PayloadType: pion.PayloadType(pt), RTPCodecCapability: pion.RTPCodecCapability{
			MimeType: md.MediaName.Media + "/" + c.Name, ClockRate: c.ClockRate, SDPFmtpLine: c.Fmtp}}
		if ch, err := strconv.ParseUint(c.EncodingParameters, 10, 16); err == nil {
			p.Channels = uint16(ch)
		}
		if k == kindVideo {
			p.RTCPFeedback = []pion.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
		}
		out[k] = p
	}
	return out
}

// signalOrigin offers pc's media to origin o over WHIP or WHEP (path, with
// query), after gathering its candidates, and returns the origin's answer,
// its media address rewritten to rtcAddr (the one the mesh knows, whatever
// the candidates say, as for relayed sessions), and the session's resource
// URL at the origin ("" when it gave none). A 404 is webrtc.ErrNoStream;
// an answer over maxAnswer bytes is refused. The caller sets the answer.
func (s *Server) signalOrigin(ctx context.Context, pc *pion.PeerConnection, o stream.Origin, path, query string, rtcAddr netip.AddrPort) (answer []byte, resource string, err error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, "", err
	}
	gathered := pion.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
	u := "http://" + o.API + path + "?" + query
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	resp.Body.Close()
	switch {
	case err != nil:
		return nil, "", err
	case resp.StatusCode == http.StatusNotFound:
		return nil, "", fmt.Errorf("%w: origin %s: %s", webrtc.ErrNoStream, o.ID, bytes.TrimSpace(body))
	case resp.StatusCode/100 != 2:
		return nil, "", fmt.Errorf("origin %s answered %d: %s", o.ID, resp.StatusCode, bytes.TrimSpace(body))
	case len(body) > maxAnswer:
		return nil, "", fmt.Errorf("origin %s answer larger than %d bytes", o.ID, maxAnswer)
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		if ref, err := url.Parse(loc); err == nil {
			resource = req.URL.ResolveReference(ref).String()
		}
	}
	return webrtc.RewriteSDP(body, rtcAddr), resource, nil
}
