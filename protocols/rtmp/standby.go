package rtmp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/protocols/internal/route"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Backup encoders (Config.BackupPublish).
//
// A stream has one publisher at a time: its origin holds the stream and
// refuses a second publish (SRS closes the connection: "stream is busy").
// The origin is the arbiter of which publisher is active, so two nodes
// never disagree about it and a standby can never take over a healthy
// active publisher: it publishes only once the origin ended the stream.
//
// A publisher whose origin refused the publish while the stream is live
// there (it is assigned, Config.Sources, and a play of it on the origin
// gets media within standbyProbe) is kept as the stream's standby, on this node at most one per stream
// (MaxStandbys in all): it is told that publishing started, and the node
// reads it, caching its metadata, sequence headers and current GOP
// (bounded by standbyGOPBytes and maxHeldMessages), forwarding nothing.
// Meanwhile the node plays the stream from its origin (the watch). When
// the origin ends that play, or it carries no media for standbyGap (the
// active publisher left, or its node dropped it; SRS keeps a play open
// across publishes), the standby publishes: the node routes the stream, replays
// the standby's session on the origin, and sends it the cached metadata,
// sequence headers and GOP, so that the stream starts again at the
// standby's last key frame without waiting for the next one. Players on
// every node ride through with their publisher grace (fanout
// Config.PublishGrace): they see the old publish end and the new one
// begin, with timestamps continuous. A standby whose publish the origin
// refuses (the active publisher was only slow) goes on watching and tries
// again, waiting from standbyRetryMin, doubling up to standbyRetryMax while
// the watch stays silent. A second publisher of a stream
// that is not live is refused as any publisher is. An encoder that comes
// back after it was replaced is the new standby; nothing switches back.
// A stream's standbys on a node take over at most maxSwitches times per
// stallWindow, whatever ended the active publisher (it disconnected, or
// its node ended it for a stall): past that, the standby waits, still
// read, until the window frees a switch.

// StandbyEvent reports a standby publisher's start or promotion
// (Config.Standbys).
type StandbyEvent struct {
	Key stream.Key
	// Peer is the standby encoder's address.
	Peer string
	// Kind is StandbyKept, StandbyPromoted or StandbyStalled.
	Kind string
	// Origin is the origin the standby published to (StandbyPromoted).
	Origin string
	// Gap is the time from the watch seeing the active publisher's end to
	// the standby's media reaching the origin (StandbyPromoted).
	Gap time.Duration
}

// ProtoStandby is the protocol under which standby publishers are
// reported to Sessions.Track (not as clients of a protocol: they are
// forwarded nowhere), one per standby while it waits.
const ProtoStandby = "standby"

// Kinds of StandbyEvent.
const (
	// StandbyKept: a second publisher is kept as the stream's standby.
	StandbyKept = "standby"
	// StandbyPromoted: the standby took over the stream.
	StandbyPromoted = "promoted"
	// StandbyStalled: an active publisher sent no media for
	// Config.PublishStall and was ended (Gap: how long it was silent).
	StandbyStalled = "stalled"
)

// StandbyGate decides whether this node may keep a standby publisher of
// a stream. The mesh keeps at most one standby of a stream, whichever node
// and protocol holds it, so that a stream key has at most two publishers;
// false refuses the publisher as the origin would. It is asked once the
// node found the stream live, and may take a few hundred milliseconds.
type StandbyGate interface {
	MayHoldStandby(ctx context.Context, key stream.Key) bool
}

// StandbyObserver is told about standby publishers; it is called from the
// session's goroutines and must not block.
type StandbyObserver interface {
	Standby(StandbyEvent)
}

// Bounds of backup publishing.
const (
	// MaxStandbys bounds the standby publishers of a node (one per stream).
	MaxStandbys = 256
	// standbyGOPBytes bounds a standby's cached GOP; past it, the GOP is
	// dropped and caching starts again at the next key frame.
	standbyGOPBytes = 4 << 20
	// standbyProbe bounds the wait for media on the play that tells a
	// live stream (a second publisher) from a refusal.
	standbyProbe = 2 * time.Second
	// standbyGap is how long the watch may get no media before the
	// standby tries to publish: longer than an origin's merged writes
	// (SRS's mw_latency, 350 ms by default) and a frame interval, short
	// enough for players to ride through within a second.
	standbyGap = 500 * time.Millisecond
	// standbyRetryMin and standbyRetryMax bound the time between a
	// standby's publishes: an origin whose active publisher is only slow
	// refuses them, each costing it a refused publish (and its on_publish
	// hook). The wait doubles while the watch stays silent and starts
	// again at the least once it got media.
	standbyRetryMin = 200 * time.Millisecond
	standbyRetryMax = 2 * time.Second
)

// errNotStandby says a refused publisher is not kept as a standby.
var errNotStandby = errors.New("rtmp: not kept as a standby")

// standbys are a server's standby publishers, one per stream, and the
// switches they made.
type standbys struct {
	mu sync.Mutex
	by map[stream.Key]*conn
	// switches remembers the promotions of each stream's standbys on
	// this node (maxSwitches per stallWindow), whatever ended the active
	// publisher: a disconnect as well as a stall end.
	switches keyBudget
}

// claim records c as key's standby; false when key has one on this node
// or MaxStandbys are kept.
func (s *standbys) claim(key stream.Key, c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by == nil {
		s.by = map[stream.Key]*conn{}
	}
	if _, ok := s.by[key]; ok || len(s.by) >= MaxStandbys {
		return false
	}
	s.by[key] = c
	return true
}

func (s *standbys) release(key stream.Key, c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by[key] == c {
		delete(s.by, key)
	}
}

// count returns the standbys kept.
func (s *standbys) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.by)
}

// standby is a publisher kept as its stream's standby: the session's
// goroutine reads it (wait), and one goroutine at a time plays the stream
// from its origin (the watch), owned by wait.
type standby struct {
	c      *conn
	origin stream.Origin
	cache  mediaCache
	gop    heldMessages
	waitKF bool // the GOP went past its bound: wait for the next key frame

	wg     sync.WaitGroup
	ended  chan error // the watch's end; nil while no watch runs
	cancel context.CancelFunc
	media  atomic.Int64 // when the watch last got media, in Unix nanoseconds
	endAt  time.Time    // the active publisher's last media the watch saw
}

// keepStandby decides whether c, a publisher whose origin refused the
// publish (dialErr), is kept as the standby of a live stream. It returns
// the standby, watching, or errNotStandby when the publisher is to be
// refused as before.
func (c *conn) keepStandby(ctx context.Context, origin stream.Origin, dialErr error) (*standby, error) {
	s := c.s
	if !s.cfg.BackupPublish || errors.Is(dialErr, ErrMessageTooLarge) {
		return nil, errNotStandby
	}
	if ss := s.cfg.Sources; ss != nil {
		// A stream the mesh has no assignment for was never published:
		// its refusal is not a busy one, and costs no play of the origin.
		if _, _, ok := ss.Sources(c.req.Key); !ok {
			return nil, errNotStandby
		}
	}
	if !s.standby.claim(c.req.Key, c) {
		return nil, errNotStandby
	}
	sb := &standby{c: c, origin: origin}
	live, err := sb.watch(ctx, true)
	if err == nil && live && s.cfg.StandbyGate != nil && !s.cfg.StandbyGate.MayHoldStandby(ctx, c.req.Key) {
		c.log.Info("the stream has a standby publisher elsewhere in the mesh; refusing another")
		sb.stopWatch()
		live = false
	}
	if err != nil || !live {
		s.standby.release(c.req.Key, c)
		return nil, errNotStandby
	}
	return sb, nil
}

// watch opens a play of the stream on its origin and starts the goroutine
// that reads it until it ends (sb.ended). With probe, it first waits up to
// standbyProbe for media, and reports false (the play closed) when none
// came: the stream is not live there.
func (sb *standby) watch(ctx context.Context, probe bool) (bool, error) {
	c := sb.c
	wctx, cancel := context.WithCancel(ctx)
	// The play replays the standby's own connect (its tcUrl, with any
	// vhost and query) and stream name, as a player's.
	w := c.detached()
	name, _ := c.streamCmd.arg(0).(string)
	w.streamCmd = command{Name: "play", Args: []any{name}}
	src, err := c.s.openUpstream(wctx, w, sb.origin, false)
	if err != nil {
		cancel()
		return false, err
	}
	if probe {
		got := make(chan error, 1)
		go func() {
			for {
				t, err := src.ReadTag()
				if err != nil || t.Type == fanout.TagVideo || t.Type == fanout.TagAudio {
					got <- err
					return
				}
			}
		}()
		t := time.NewTimer(standbyProbe)
		var perr error
		select {
		case perr = <-got:
		case <-t.C:
			perr = errNotStandby
		}
		t.Stop()
		if perr != nil {
			src.Close()
			cancel()
			if perr == errNotStandby {
				<-got
			}
			return false, nil
		}
	}
	sb.ended = make(chan error, 1)
	sb.cancel = func() { cancel(); src.Close() }
	sb.media.Store(time.Now().UnixNano())
	sb.wg.Add(1)
	go func() {
		defer sb.wg.Done()
		for {
			t, err := src.ReadTag()
			if err != nil {
				sb.ended <- err
				return
			}
			if t.Type == fanout.TagVideo || t.Type == fanout.TagAudio {
				sb.media.Store(time.Now().UnixNano())
			}
		}
	}()
	return true, nil
}

// stopWatch ends the watch and waits for its goroutine.
func (sb *standby) stopWatch() {
	if sb.cancel != nil {
		sb.cancel()
		sb.cancel = nil
	}
	sb.wg.Wait()
}

// wait reads the standby publisher, caching, until the origin accepted
// its publish: it returns the leg and the origin. It tries when the watch
// ended, or got no media for standbyGap (SRS keeps a play across the
// publisher's leaving: it just stops sending), waiting between tries
// (standbyRetryMin, doubling while the watch stays silent); the origin
// refuses while the active publisher holds the stream. Any error ends the session (the client was told when that
// matters). Run by the session's goroutine.
func (sb *standby) wait(ctx context.Context) (*originLeg, stream.Origin, error) {
	c := sb.c
	cl := c.client
	defer sb.stopWatch()
	var lastTry time.Time
	retry := standbyRetryMin
	held := false // the switch budget held the standby back; logged once
	for {
		m, err := cl.r.ReadMessage()
		if err != nil {
			return nil, sb.origin, clientReadErr(err)
		}
		if err := cl.maybeAck(); err != nil {
			return nil, sb.origin, err
		}
		if m.Type <= chunk.TypeSetPeerBandwidth {
			handled, err := cl.handleControl(&m)
			if err != nil {
				return nil, sb.origin, err
			}
			if handled {
				continue
			}
		}
		sb.cache.observe(&m)
		sb.hold(&m)
		now := time.Now()
		var werr error
		watching := sb.ended != nil
		if watching {
			select {
			case werr = <-sb.ended:
				sb.stopWatch()
				sb.ended, watching = nil, false
			default:
			}
		}
		last := time.Unix(0, sb.media.Load())
		if watching && now.Sub(last) < standbyGap || now.Sub(lastTry) < retry {
			continue
		}
		if last.After(lastTry) {
			retry = standbyRetryMin // media since the last try: the publisher was there
		} else {
			retry = min(2*retry, standbyRetryMax)
		}
		if !sb.switchAllowed(now) {
			if !held {
				c.log.Warn("the stream's publisher left, but the stream switched too often: the standby waits", "per_minute", maxSwitches)
				held = true
			}
			continue
		}
		held = false
		lastTry = now
		o, origin, err := sb.publish(ctx)
		if err == nil {
			c.s.standby.switches.record(c.req.Key, now)
			sb.endAt = last
			c.log.Info("the stream's publisher left; the standby publishes", "silent", now.Sub(last).Round(time.Millisecond), "watch", werr)
			return o, origin, nil
		}
		if ctx.Err() != nil {
			return nil, sb.origin, ctx.Err()
		}
		c.log.Debug("standby publish refused; the stream's publisher holds it", "err", err, "silent", now.Sub(last).Round(time.Millisecond))
		if !watching {
			if _, err := sb.watch(ctx, false); err != nil {
				c.log.Debug("standby watch failed", "err", err)
			}
		}
	}
}

// switchAllowed reports whether the stream's switch budget on this node
// lets the standby try to take over at now (Config.BackupPublish): at most
// maxSwitches promotions per stallWindow, whatever ended the active
// publisher. A held-back standby keeps reading and tries once the window
// frees a switch; players meanwhile ride on their publisher grace, and end
// as without a standby when it runs out.
func (sb *standby) switchAllowed(now time.Time) bool {
	return !sb.c.s.standby.switches.spent(sb.c.req.Key, now, maxSwitches)
}

// publish routes the stream and opens the standby's origin leg.
func (sb *standby) publish(ctx context.Context) (*originLeg, stream.Origin, error) {
	c := sb.c
	rctx, cancel := context.WithTimeout(ctx, c.s.cfg.HandshakeTimeout)
	origin, err := route.Publish(c.s.cfg.Router, c.s.cfg.Publisher)(rctx, c.req.Key)
	cancel()
	if err != nil {
		return nil, sb.origin, err
	}
	if origin.RTMP == "" {
		return nil, origin, fmt.Errorf("%w: origin %s of %s serves no RTMP", ErrNoOrigin, origin.ID, c.req.Key)
	}
	sb.origin = origin
	o, err := c.dialOrigin(ctx, origin.RTMP)
	if err != nil {
		c.origin = nil
		return nil, origin, err
	}
	return o, origin, nil
}

// hold caches m in the current GOP, from a key frame on, bounded. A
// stream without video needs no GOP: any audio frame starts it.
func (sb *standby) hold(m *chunk.Message) {
	if m.Type != chunk.TypeVideo && m.Type != chunk.TypeAudio || isCodecConfig(m) || !sb.cache.sawVideo {
		return
	}
	if isKeyframe(m) {
		sb.gop.reset()
		sb.waitKF = false
	} else if sb.waitKF || len(sb.gop.msgs) == 0 {
		return
	}
	if len(sb.gop.buf)+len(m.Payload) > standbyGOPBytes || !sb.gop.add(m) {
		sb.gop.reset()
		sb.waitKF = true
	}
}

// replay sends a promoted standby's new leg its cached metadata, sequence
// headers and GOP, and reports whether it sent media.
func (p *publisher) replayStandby(sb *standby) (bool, error) {
	for _, m := range p.cache.messages() {
		cp := *m
		if err := p.send(&cp, false); err != nil {
			return false, err
		}
	}
	for i := range sb.gop.msgs {
		m := sb.gop.message(i)
		if err := p.send(&m, false); err != nil {
			return false, err
		}
	}
	media := len(sb.gop.msgs) > 0
	sb.gop.release()
	return media, p.cur.flush()
}

func (c *conn) observeStandby(kind string, origin string, gap time.Duration) {
	if ob := c.s.cfg.Standbys; ob != nil {
		ob.Standby(StandbyEvent{Key: c.req.Key, Peer: c.nc.RemoteAddr().String(), Kind: kind, Origin: origin, Gap: gap})
	}
}

// serveStandby runs the session of a publisher kept as its stream's
// standby: it waits (counted as a standby session) until the standby
// takes over, then relays it as any publisher.
func (c *conn) serveStandby(ctx context.Context, sb *standby) {
	defer c.s.standby.release(c.req.Key, c)
	c.nc.SetDeadline(time.Time{})
	idle := c.s.cfg.IdleTimeout
	c.client.conn.writeIdle, c.client.conn.readIdle = idle, idle
	if err := c.sendStatus(levelStatus, codePublishStart, "Started publishing stream."); err != nil {
		sb.stopWatch()
		return
	}
	var end func()
	if c.s.cfg.Sessions != nil {
		c.client.conn.sessIn, c.client.conn.sessOut = &c.clientIn, &c.clientOut
		end = c.s.cfg.Sessions.Track(c.req.Key, ProtoStandby, stream.KindStandby, &c.clientIn, &c.clientOut)
	}
	c.s.stats.standbys.Add(1)
	c.log.Info("publisher kept as the stream's standby")
	c.observeStandby(StandbyKept, sb.origin.ID, 0)
	o, origin, err := sb.wait(ctx)
	c.s.stats.standbys.Add(-1)
	if end != nil {
		end()
	}
	c.s.standby.release(c.req.Key, c)
	if err == nil {
		o, origin, err = c.accepted(ctx, o, origin)
	}
	if err != nil {
		c.log.Info("standby publisher ended", "err", err, "in", c.client.r.BytesRead())
		if !isClosedErr(err) {
			c.refuse(err.Error())
		}
		return
	}
	c.nc.SetDeadline(time.Time{})
	c.log.Info("standby publisher takes over the stream", "origin", origin.ID, "after", time.Since(sb.endAt).Round(time.Millisecond))
	c.serveRelay(ctx, o, origin, sb)
}

// Bounds of stall ends and switches.
const (
	// maxStallEnds bounds the publishes of one stream a node ends for a
	// stall within stallWindow: two encoders that both stall now and then
	// would otherwise switch back and forth.
	maxStallEnds = 3
	// maxSwitches bounds the times one stream's standbys on a node take
	// over within stallWindow, whatever the cause (the active publisher
	// disconnected, stalled, or was ended by its node): two encoders that
	// drop in turn would otherwise flap.
	maxSwitches = 3
	stallWindow = time.Minute
	// maxStallKeys bounds the streams whose stall ends (and, apart,
	// switches) are remembered.
	maxStallKeys = 4096
	// maxBudgetTimes bounds the times remembered per stream, above every
	// limit asked.
	maxBudgetTimes = 16
)

// stallBudget remembers, per stream, when a node ended its publishes for
// stalls (maxStallEnds per stallWindow).
type stallBudget struct{ keyBudget }

// allow reports whether key's publisher may be ended for a stall at now,
// and records it when so.
func (b *stallBudget) allow(key stream.Key, now time.Time) bool {
	return b.keyBudget.allow(key, now, maxStallEnds)
}

// keyBudget remembers, per stream, when something happened within the
// last stallWindow, bounded in streams (maxStallKeys; the oldest forgotten
// first) and in times per stream (the limit asked).
type keyBudget struct {
	mu sync.Mutex
	by map[stream.Key][]time.Time
}

// recent drops key's times past the window and returns the rest. Called
// with mu held.
func (b *keyBudget) recent(key stream.Key, now time.Time) []time.Time {
	ts, ok := b.by[key]
	if !ok {
		return nil
	}
	recent := ts[:0]
	for _, t := range ts {
		if now.Sub(t) < stallWindow {
			recent = append(recent, t)
		}
	}
	if len(recent) == 0 {
		delete(b.by, key)
		return nil
	}
	b.by[key] = recent
	return recent
}

// spent reports whether key had limit events within the window before now.
func (b *keyBudget) spent(key stream.Key, now time.Time, limit int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.recent(key, now)) >= limit
}

// record remembers an event of key at now.
func (b *keyBudget) record(key stream.Key, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.add(key, now, b.recent(key, now))
}

// allow reports whether key had fewer than limit events within the window
// before now, and records one at now when so.
func (b *keyBudget) allow(key stream.Key, now time.Time, limit int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	recent := b.recent(key, now)
	if len(recent) >= limit {
		return false
	}
	b.add(key, now, recent)
	return true
}

// add appends now to key's recent times, keeping at most maxStallKeys
// streams. Called with mu held.
func (b *keyBudget) add(key stream.Key, now time.Time, recent []time.Time) {
	if b.by == nil {
		b.by = map[stream.Key][]time.Time{}
	}
	if _, ok := b.by[key]; !ok && len(b.by) >= maxStallKeys {
		b.evict(now)
	}
	if len(recent) >= maxBudgetTimes {
		recent = recent[1:]
	}
	b.by[key] = append(recent, now)
}

// evict forgets the streams whose last event is past the window, or,
// when none is, the one whose last event is oldest. Called with mu held.
func (b *keyBudget) evict(now time.Time) {
	var oldest stream.Key
	var at time.Time
	for k, ts := range b.by {
		last := ts[len(ts)-1]
		if now.Sub(last) >= stallWindow {
			delete(b.by, k)
			continue
		}
		if at.IsZero() || last.Before(at) {
			oldest, at = k, last
		}
	}
	if len(b.by) >= maxStallKeys {
		delete(b.by, oldest)
	}
}

// watchStall starts the goroutine that ends the session when the
// publisher sent no audio or video for stall (Config.PublishStall),
// measured on the publisher's own media: the origin then ends the stream,
// and a standby anywhere takes over. The returned func stops the
// goroutine and waits for it.
func (p *publisher) watchStall(stall time.Duration) (stop func()) {
	p.stall = true
	p.media.Store(time.Now().UnixNano())
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
			case <-t.C:
			}
			if silent := time.Since(time.Unix(0, p.media.Load())); silent >= stall {
				if !p.c.s.stalls.allow(p.c.req.Key, time.Now()) {
					p.c.log.Warn("publisher stalled: no media; left publishing, the stream's stall budget is spent", "silent", silent.Round(time.Millisecond), "per_minute", maxStallEnds)
					return
				}
				p.c.log.Warn("publisher stalled: no media; ending its publish so that a standby can take over", "silent", silent.Round(time.Millisecond))
				p.c.s.stats.stalled.Add(1)
				p.c.observeStandby(StandbyStalled, p.origin.ID, silent)
				p.stalled.Store(true)
				p.c.closeAll()
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
