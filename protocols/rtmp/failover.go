package rtmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Rerouter moves a stream off an origin that failed (Config.Rerouter).
// With one, a publisher whose origin leg fails keeps its
// connection: the session is replayed on the origin Reroute returns.
//
// Reroute is called only after the node itself saw the leg to failed break
// (reset, end of stream, write timeout), never on a client's word. It
// returns the origin that owns key now, moving the assignment off failed when
// it is still there; it is called again, with the origin it returned as
// failed, when that one cannot be reached either. Its context is bounded by
// Config.FailoverTimeout.
type Rerouter interface {
	Reroute(ctx context.Context, key stream.Key, failed stream.Origin) (stream.Origin, error)
}

// OriginHealth knows whether the mesh holds an origin healthy
// (Config.OriginHealth). With it (and a Rerouter), a publisher whose origin is
// marked unhealthy fails over as if its leg had failed: an origin that
// vanished without closing its connections is left within
// healthPollInterval of the verdict, not after a write timeout.
// OriginHealthy must be cheap (a local read) and must not block.
type OriginHealth interface {
	OriginHealthy(id string) bool
}

// FailoverObserver is told about every failover, once it ended.
// Failover is called from the session's goroutine and must not block.
type FailoverObserver interface {
	Failover(FailoverEvent)
}

// Results of a failover (FailoverEvent.Result).
const (
	// FailoverOK: the new origin received the stream's first key frame.
	FailoverOK = "ok"
	// FailoverNoOrigin: no origin could take the stream within
	// Config.FailoverTimeout; the client got an error onStatus.
	FailoverNoOrigin = "no_origin"
	// FailoverRefused: the new origin refused the publish (an error
	// onStatus); the refusal went to the client.
	FailoverRefused = "refused"
	// FailoverAbandoned: the client went away before the stream resumed.
	FailoverAbandoned = "abandoned"
)

// FailoverEvent describes one failover of one session.
type FailoverEvent struct {
	// Proto is "rtmp"; Kind is "publish".
	Proto, Kind string
	Key         stream.Key
	// Peer is the client's address.
	Peer string
	// From is the origin whose leg failed; To the origin the stream moved
	// to (zero unless Result is FailoverOK or FailoverRefused).
	From, To stream.Origin
	// Result is one of the Failover* constants.
	Result string
	// Reason is what ended the old leg; Err why the failover failed (nil
	// when Result is FailoverOK).
	Reason string
	Err    error
	// Start is when the old leg was seen to fail; Duration the time from
	// then until the new origin received media (FailoverOK) or until the
	// failover gave up.
	Start    time.Time
	Duration time.Duration
}

// Bounds of publisher failover.
const (
	// maxHeldBytes bounds what is held for a new leg while it opens: the
	// frames from the first key frame after the failure on. Past it, the
	// held frames are dropped and the next key frame starts again.
	maxHeldBytes = 8 << 20
	// maxHeldMessages bounds the count of held messages.
	maxHeldMessages = 4096
	// maxFailovers is the most failovers of one session within
	// failoverWindow; one more ends the session as before failover existed.
	maxFailovers   = 3
	failoverWindow = time.Minute
	// rerouteRetry is the pause between attempts to find a reachable origin.
	rerouteRetry = 100 * time.Millisecond
	// healthPollInterval is how often a publisher asks OriginHealth about
	// its origin.
	healthPollInterval = 500 * time.Millisecond
	// reasonUnhealthy is the failure reason of a leg closed because its
	// origin was marked unhealthy.
	reasonUnhealthy = "origin marked unhealthy"
)

// legResult is what a failover attempt ends with: a new leg to its origin,
// or the error that ended it.
type legResult struct {
	leg    *originLeg
	origin stream.Origin
	err    error
}

// publisher is the publish relay of one session, with failover. Its run
// loop is the only reader of the client and the only writer of media to the
// origin; one goroutine reads the current origin leg and another, while a
// failover runs, opens the next leg. Both are owned by run, which waits for
// them before it returns.
type publisher struct {
	c      *conn
	ctx    context.Context
	rr     Rerouter
	cache  mediaCache
	wg     sync.WaitGroup
	cur    *originLeg
	origin stream.Origin
	// curDone receives the error that ended cur's reading goroutine.
	curDone chan error

	// While a failover runs: its result, when it started, from which
	// origin and why.
	pending  chan legResult
	cancelFo context.CancelFunc
	foStart  time.Time
	foFrom   stream.Origin
	foReason string
	// waitKey: messages are dropped until a resume point; resumed is false
	// until the new leg got its first media after a failover.
	waitKey  bool
	resuming bool
	held     heldMessages
	recent   []time.Time

	// stall: media times are recorded in media for watchStall.
	stall bool
	// stalled: watchStall ended the session.
	stalled atomic.Bool
	// unpublished: the publisher sent FCUnpublish, deleteStream or
	// closeStream, so its session's end is not a drop.
	unpublished bool
	// readErr: the session ended at reading the publisher (not at the
	// node's end of it: a failover that gave up, a refused message).
	readErr bool
	media   atomic.Int64

	// ss and t: the other origins fed a copy of the stream (tee.go).
	ss SourceSet
	t  tees

	// watched is the current leg as the health watcher sees it.
	watched struct {
		sync.Mutex
		id        string   // origin id; "" while no leg is open
		nc        net.Conn // the leg's connection
		unhealthy bool     // the watcher closed nc for that reason
	}
}

// heldMessages are copies of the messages read from the publisher while no
// origin leg is open, starting at a key frame, in one reused buffer.
type heldMessages struct {
	msgs []chunk.Message // Payload is nil; see offs
	offs []int
	buf  []byte
}

func (h *heldMessages) reset() {
	h.msgs, h.offs, h.buf = h.msgs[:0], h.offs[:0], h.buf[:0]
}

// release empties h and lets its arrays go: a failover's buffer (up to
// maxHeldBytes) is not kept for the rest of the session.
func (h *heldMessages) release() {
	h.msgs, h.offs, h.buf = nil, nil, nil
}

// add holds a copy of m, or reports false when the bounds are reached.
func (h *heldMessages) add(m *chunk.Message) bool {
	if len(h.msgs) >= maxHeldMessages || len(h.buf)+len(m.Payload) > maxHeldBytes {
		return false
	}
	cp := *m
	cp.Payload = nil
	h.msgs = append(h.msgs, cp)
	h.offs = append(h.offs, len(h.buf))
	h.buf = append(h.buf, m.Payload...)
	return true
}

// message returns held message i, its payload aliasing the buffer.
func (h *heldMessages) message(i int) chunk.Message {
	m := h.msgs[i]
	end := len(h.buf)
	if i+1 < len(h.offs) {
		end = h.offs[i+1]
	}
	m.Payload = h.buf[h.offs[i]:end]
	return m
}

// relayPublish tells the publisher that publishing started and relays its
// messages to the origin until the publisher leaves or fails. When the
// origin leg fails and the Config has a Rerouter, the client keeps its
// connection: the session is replayed on the stream's new origin, which
// gets the cached metadata and sequence headers and then the stream from a
// key frame on. It returns the error that ended the session (nil for an
// orderly close).
//
// sb, when not nil, is the standby publisher whose publish this is: the
// client was told already, and the leg gets the standby's cached metadata,
// sequence headers and GOP first.
func (c *conn) relayPublish(ctx context.Context, o *originLeg, origin stream.Origin, sb *standby) error {
	cl := c.client
	if sb == nil {
		if err := c.sendStatus(levelStatus, codePublishStart, "Started publishing stream."); err != nil {
			return err
		}
	}
	idle := c.s.cfg.IdleTimeout
	cl.conn.writeIdle, cl.conn.readIdle = idle, idle
	p := &publisher{c: c, ctx: ctx}
	p.rr = c.s.cfg.Rerouter
	if ss := c.s.cfg.Sources; ss != nil {
		p.initTees(ss)
	}
	p.attach(o, origin)
	if sb != nil {
		p.cache = sb.cache
		media, err := p.replayStandby(sb)
		if err != nil {
			p.stop()
			return err
		}
		if media {
			c.observeStandby(StandbyPromoted, origin.ID, time.Since(sb.endAt))
		}
	}
	stopWatch := func() {}
	if h := c.s.cfg.OriginHealth; h != nil && p.rr != nil {
		stopWatch = p.watchHealth(h)
	}
	stopStall := func() {}
	if c.s.cfg.BackupPublish && c.s.cfg.PublishStall > 0 {
		stopStall = p.watchStall(c.s.cfg.PublishStall)
	}
	started := time.Now()
	err := p.run()
	stopStall()
	stopWatch()
	p.stop()
	p.reportDrop(err, time.Since(started))
	if isClosedErr(err) {
		return nil
	}
	return err
}

// attach makes o the current origin leg and starts reading it: what the
// origin sends (acknowledgements, pings, status) goes to the client.
func (p *publisher) attach(o *originLeg, origin stream.Origin) {
	c := p.c
	c.origin = o
	o.conn.writeIdle = c.s.cfg.IdleTimeout
	p.cur, p.origin = o, origin
	p.watched.Lock()
	p.watched.id, p.watched.nc, p.watched.unhealthy = origin.ID, o.conn.Conn, false
	p.watched.Unlock()
	done := make(chan error, 1)
	p.curDone = done
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		done <- pump(o.leg, c.client, o.streamID, c.clientStream)
	}()
}

// detach closes the current leg, waits for its reader and releases it.
// err is the reader's result when the caller already received it.
func (p *publisher) detach(received bool) {
	p.watched.Lock()
	p.watched.id, p.watched.nc = "", nil
	p.watched.Unlock()
	o := p.cur
	o.conn.Conn.Close()
	if !received {
		<-p.curDone
	}
	o.release()
	p.c.origin, p.cur, p.curDone = nil, nil, nil
}

// stop ends the session: it closes both connections, cancels a failover
// in progress and waits for every goroutine of the publisher.
func (p *publisher) stop() {
	p.c.closeAll()
	if p.cancelFo != nil {
		p.cancelFo()
	}
	p.wg.Wait()
	p.stopTees()
	if p.pending != nil {
		select {
		case r := <-p.pending:
			if r.leg != nil {
				r.leg.conn.Conn.Close()
				r.leg.release()
			}
		default:
		}
		p.pending = nil
	}
	if p.resuming {
		p.observe(FailoverAbandoned, stream.Origin{}, context.Canceled)
	}
}

// run is the publisher's read loop. It does not allocate per message while
// the origin leg is up.
func (p *publisher) run() error {
	cl := p.c.client
	for {
		m, err := cl.r.ReadMessage()
		if err != nil {
			p.readErr = true
			if err = clientReadErr(err); errors.Is(err, ErrMessageTooLarge) {
				// Refused at the node, never relayed: the publisher hears
				// why, and the stream stays where it is.
				p.c.refuse(fmt.Sprintf("message larger than %d bytes refused (--rtmp-max-message)", p.c.s.cfg.MaxMessageSize))
			}
			return err
		}
		if err := cl.maybeAck(); err != nil {
			return err
		}
		if m.Type <= chunk.TypeSetPeerBandwidth {
			handled, err := cl.handleControl(&m)
			if err != nil {
				return err
			}
			if handled {
				continue
			}
		}
		p.cache.observe(&m)
		if m.Type == chunk.TypeCommandAMF0 || m.Type == chunk.TypeCommandAMF3 {
			p.noteCommand(&m)
		}
		if p.stall && (m.Type == chunk.TypeVideo || m.Type == chunk.TypeAudio) {
			p.media.Store(time.Now().UnixNano())
		}
		if p.cur != nil {
			select {
			case err := <-p.curDone:
				if err := p.legFailed(err, true); err != nil {
					return err
				}
			default:
			}
		}
		if p.cur == nil {
			ok, err := p.whileDown(&m)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		if p.waitKey {
			switch {
			case p.cache.resumePoint(&m):
				p.waitKey = false
			case !isCodecConfig(&m):
				continue
			}
		}
		flush := cl.r.Buffered() == 0
		sent, err := p.sendCur(&m, flush)
		if err != nil {
			return err
		}
		if !sent {
			continue
		}
		if p.ss != nil {
			p.teeSend(&m, flush)
			p.pollTees()
		}
		if p.resuming && !p.waitKey && (m.Type == chunk.TypeVideo || m.Type == chunk.TypeAudio) {
			p.resumed()
		}
	}
}

// send writes m to the current leg, mapping the client's message stream id
// to the leg's.
func (p *publisher) send(m *chunk.Message, flush bool) error {
	return p.sendOn(p.cur, m, flush)
}

// legFailed handles the failure of the current leg (err ended it): it
// starts a failover, or returns an error that ends the session when none
// may run. received says whether the leg's reader already returned err.
func (p *publisher) legFailed(legErr error, received bool) error {
	c := p.c
	if c.s.ctx.Err() != nil || p.ctx.Err() != nil {
		return legErr
	}
	now := time.Now()
	kept := p.recent[:0]
	for _, t := range p.recent {
		if now.Sub(t) < failoverWindow {
			kept = append(kept, t)
		}
	}
	p.recent = kept
	if p.rr == nil || len(p.recent) >= maxFailovers {
		if p.rr != nil {
			c.log.Warn("origin leg failed again; not failing over", "failovers", len(p.recent), "window", failoverWindow)
		}
		return fmt.Errorf("%w: origin %s: %v", ErrOriginDown, p.origin.ID, legErr)
	}
	p.watched.Lock()
	unhealthy := p.watched.unhealthy
	p.watched.Unlock()
	var probeErr error
	if !unhealthy {
		probeErr = probeOrigin(p.origin)
	}
	if !unhealthy && probeErr == nil {
		// Only the failure of an origin moves a stream. The leg broke, by
		// whatever error (end of stream, reset, broken pipe, timeout), but
		// the origin still accepts connections: it ended this session on
		// purpose (an operator's kick, a refusal mid-stream, nginx-rtmp's
		// drop of a message above its max_message, which a client can
		// provoke), so the session ends as an ordinary error and the
		// stream stays. A killed origin's port refuses; the leader's
		// probes move streams off an origin that hangs.
		c.log.Info("origin leg broke and the origin still answers; not failing over", "origin", p.origin.ID, "err", legErr)
		return fmt.Errorf("%w: origin %s ended the session: %v", ErrOriginRefused, p.origin.ID, legErr)
	}
	p.recent = append(p.recent, now)
	from := p.origin
	reason := "closed"
	switch {
	case unhealthy:
		reason = reasonUnhealthy
	case legErr != nil && !errors.Is(legErr, context.Canceled):
		reason = legErr.Error()
	}
	if p.takeOver(from, reason, received) {
		return nil
	}
	p.detach(received)
	released := p.dropTees()
	c.log.Warn("origin leg failed; failing over", "from", from.ID, "reason", reason, "probe", probeErr)
	if !p.resuming {
		// A leg that fails before the stream resumed continues the same
		// failover: its start and first origin stay.
		p.foStart, p.foFrom, p.foReason = now, from, reason
	}
	p.waitKey, p.resuming = true, true
	p.held.reset()
	ctx, cancel := context.WithTimeout(p.ctx, c.s.cfg.FailoverTimeout)
	p.cancelFo = cancel
	res := make(chan legResult, 1)
	p.pending = res
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		res <- c.failover(ctx, p.rr, from, released)
	}()
	return nil
}

// aliveTimeout bounds probeOrigin's dial. A dead origin's port refuses at
// once; only an origin whose host vanished makes a failover wait for it.
const aliveTimeout = time.Second

// originAnswers reports whether o's RTMP port accepts a connection now,
// which tells an origin that closed a leg on purpose from one that died.
func originAnswers(o stream.Origin) bool { return probeOrigin(o) == nil }

// probeOrigin connects to o's RTMP port and closes the connection: nil when
// the origin answers, else why not.
func probeOrigin(o stream.Origin) error {
	nc, err := net.DialTimeout("tcp", o.RTMP, aliveTimeout)
	if err != nil {
		return err
	}
	return nc.Close()
}

// whileDown handles m while no origin leg is open. It reports whether m
// should be sent now (a new leg is attached and ready); otherwise m was held
// or dropped. An error ends the session.
func (p *publisher) whileDown(m *chunk.Message) (bool, error) {
	p.dropOpened()
	select {
	case r := <-p.pending:
		p.pending = nil
		p.cancelFo()
		p.cancelFo = nil
		if r.err != nil {
			return false, p.giveUp(r)
		}
		p.attach(r.leg, r.origin)
		if err := p.replayMedia(); err != nil {
			return false, p.legFailed(err, false)
		}
		if p.cur == nil {
			return false, nil
		}
		return true, nil
	default:
	}
	if m.Type != chunk.TypeVideo && m.Type != chunk.TypeAudio {
		return false, nil // metadata is cached; commands wait for no one
	}
	if p.waitKey {
		if !p.cache.resumePoint(m) {
			return false, nil
		}
		p.waitKey = false
	}
	if !p.held.add(m) {
		p.held.reset()
		p.waitKey = !p.cache.resumePoint(m)
		if !p.waitKey {
			p.held.add(m)
		}
	}
	return false, nil
}

// replayMedia sends a new leg the cached metadata and sequence headers, and
// the messages held since the failure.
func (p *publisher) replayMedia() error {
	for _, m := range p.cache.messages() {
		cp := *m
		if err := p.send(&cp, false); err != nil {
			return err
		}
	}
	media := false
	for i := range p.held.msgs {
		m := p.held.message(i)
		if err := p.send(&m, false); err != nil {
			return err
		}
		media = true
	}
	p.held.release()
	if err := p.cur.flush(); err != nil {
		return err
	}
	if media {
		p.resumed()
	}
	return nil
}

// resumed records that the new origin received media again.
func (p *publisher) resumed() {
	p.resuming = false
	d := time.Since(p.foStart)
	p.c.log.Info("publisher failed over", "from", p.foFrom.ID, "to", p.origin.ID, "resume", d.Round(time.Millisecond))
	p.observe(FailoverOK, p.origin, nil)
}

// giveUp ends a failover that found no origin: the client gets an error
// onStatus (the new origin's own refusal when there was one) and a close.
func (p *publisher) giveUp(r legResult) error {
	c := p.c
	p.resuming = false
	p.held.release()
	result := FailoverNoOrigin
	if cleanRefusal(r.err) {
		result = FailoverRefused
	}
	c.log.Warn("failover failed", "from", p.foFrom.ID, "result", result, "err", r.err)
	p.observe(result, r.origin, r.err)
	c.s.stats.originFailures.Add(1)
	c.client.conn.readIdle = 0
	c.refuse(r.err.Error())
	return r.err
}

func (p *publisher) observe(result string, to stream.Origin, err error) {
	ob := p.c.s.cfg.Failovers
	if ob == nil {
		return
	}
	ob.Failover(FailoverEvent{Proto: "rtmp", Kind: "publish", Key: p.c.req.Key, Peer: p.c.nc.RemoteAddr().String(),
		From: p.foFrom, To: to, Result: result, Reason: p.foReason, Err: err, Start: p.foStart, Duration: time.Since(p.foStart)})
}

// failover finds the stream's new origin and opens a leg to it, replaying
// the session, until ctx ends. An origin's clean refusal ends it at once,
// except from an origin in released: the publisher fed it a copy until the
// failure, and it may take a moment to let the copy's publish go.
func (c *conn) failover(ctx context.Context, rr Rerouter, failed stream.Origin, released map[string]bool) legResult {
	var last error
	for {
		o, err := rr.Reroute(ctx, c.req.Key, failed)
		if err == nil && o.RTMP == "" {
			err = fmt.Errorf("%w: origin %s of %s serves no RTMP", ErrNoOrigin, o.ID, c.req.Key)
		}
		if err == nil {
			leg, lerr := c.openOriginLeg(ctx, o.RTMP)
			if lerr == nil {
				return legResult{leg: leg, origin: o}
			}
			switch {
			case cleanRefusal(lerr) && released[o.ID]:
				c.log.Debug("failover: origin still holds the copy it was fed", "origin", o.ID, "err", lerr)
				err = lerr
			case cleanRefusal(lerr):
				return legResult{origin: o, err: lerr}
			default:
				c.log.Debug("failover: origin leg failed", "origin", o.ID, "err", lerr)
				failed, err = o, lerr
			}
		} else if ctx.Err() == nil {
			c.log.Debug("failover: no origin yet", "err", err)
		}
		if err != nil && ctx.Err() == nil {
			last = err
		}
		t := time.NewTimer(rerouteRetry)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if last == nil {
				last = ctx.Err()
			}
			return legResult{err: fmt.Errorf("%w: %s: no origin took the stream in time: %v", ErrNoOrigin, c.req.Key, last)}
		}
	}
}

// watchHealth starts the goroutine that closes the current origin leg when
// h says its origin is unhealthy, which makes the publisher fail over. The
// returned func stops the goroutine and waits for it.
func (p *publisher) watchHealth(h OriginHealth) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(healthPollInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			p.watched.Lock()
			if p.watched.id != "" && !p.watched.unhealthy && !h.OriginHealthy(p.watched.id) {
				p.watched.unhealthy = true
				p.watched.nc.Close()
			}
			p.watched.Unlock()
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
