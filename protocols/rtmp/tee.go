package rtmp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/stream"
)

// SourceSet is where the live copies of a stream go (Config.Sources). With
// one, a publisher feeds every origin the mesh wants a copy on, not only the
// one it published to: the warm replicas of the stream and the target of a
// planned move. Each copy is an origin leg of its own (a "tee") that replays
// the client's publish and gets the cached metadata and sequence headers,
// then the stream from a key frame on, message for message as the primary
// gets it.
//
// Sources is a local read of the mesh's replicated state and must not block:
// the origin players follow (primary) and the others that should hold a
// copy now. When the primary is another origin than the one the publisher
// feeds as its own, and a tee to it has landed, the tee becomes the
// publisher's leg (a make-before-break move) and the old leg keeps the
// stream for moveLinger, while players everywhere switch. A publisher whose
// leg fails while a tee has landed continues on the tee at once, with no
// re-publish.
//
// Moving is the id of the origin a planned move of key is filling, ""
// when none (a local read too). Landed is called, from a goroutine of the
// session, when that origin has the stream from a key frame on: when its
// tee got its first key frame, or at once when the move's target is a
// tee that had landed already (a warm replica); the mesh then completes
// the move. The node calls it on its own observation, never on a client's
// word.
type SourceSet interface {
	Sources(key stream.Key) (primary stream.Origin, others []stream.Origin, ok bool)
	Moving(key stream.Key) string
	Landed(ctx context.Context, key stream.Key, origin stream.Origin) error
}

// Bounds of a publisher's tees.
const (
	// maxTees bounds the extra origin legs of one publisher (replicas and
	// a move's target, plus an old leg kept after a move).
	maxTees = 5
	// teePoll is how often a publisher compares its legs with SourceSet.
	teePoll = 200 * time.Millisecond
	// teeRetry is the pause before a tee that failed to open or broke is
	// tried again; it doubles with each failure in a row, up to
	// teeRetryMax, and starts over once the tee landed.
	teeRetry    = 2 * time.Second
	teeRetryMax = 30 * time.Second
	// moveLinger is how long the old origin keeps getting the stream after
	// a make-before-break move, for the players that still read it to
	// switch: longer than a fan-out hub's planned switch may take
	// (fanout.DefaultSwitchTimeout).
	moveLinger = 5 * time.Second
	// landedTimeout bounds the write a landed tee makes.
	landedTimeout = 5 * time.Second
	// teeWriteTimeout bounds one write of a tee's writer: an origin that
	// stalls longer loses its tee (tried again after its backoff).
	teeWriteTimeout = time.Second
	// teeQueueBytes and teeQueueMessages bound what a tee's writer has
	// not written yet (payload bytes, messages). The publisher queues
	// each message for every tee and goes on at once; a tee whose origin
	// falls that far behind is closed (and tried again after its
	// backoff), so that a slow origin never slows the publisher.
	teeQueueBytes    = 4 << 20
	teeQueueMessages = 1024
)

// teeLeg is an origin leg of a publisher other than its current one.
type teeLeg struct {
	origin stream.Origin
	leg    *originLeg
	// w writes the leg's messages while it is a tee (nil once it is the
	// publisher's own leg).
	w *teeWriter
	// done receives the error that ended the leg's reader.
	done chan error
	// waitKey: no media has gone yet; it starts at a resume point.
	waitKey bool
	// landed: the origin got the stream from a key frame on.
	landed bool
	// closeAt, when set, is when an old leg kept after a move closes.
	closeAt time.Time
	// fwd: the leg is the publisher's own now; its reader relays what the
	// origin sends to the client (teeRead).
	fwd atomic.Bool
}

// teeOpened is the result of opening a tee.
type teeOpened struct {
	origin stream.Origin
	leg    *originLeg
	err    error
}

// tees are a publisher's extra origin legs; they belong to its run loop.
type tees struct {
	legs map[string]*teeLeg
	// opening cancels the opens in progress, by origin id.
	opening map[string]context.CancelFunc
	opened  chan teeOpened
	retry   map[string]time.Time
	// fails counts the failures in a row of the tee to an origin, for
	// its backoff.
	fails map[string]int
	next  time.Time
	// told is the move target Landed was last called for, so that a
	// landed tee that becomes a move's target is reported once.
	told string
	// stopping: the publisher stopped; closeTee waits for readers itself.
	stopping bool
}

func (p *publisher) initTees(ss SourceSet) {
	p.ss = ss
	p.t = tees{legs: map[string]*teeLeg{}, opening: map[string]context.CancelFunc{}, opened: make(chan teeOpened, maxTees),
		retry: map[string]time.Time{}, fails: map[string]int{}}
}

// backoff sets when the tee to origin id, which failed, is tried again.
func (t *tees) backoff(id string, now time.Time) {
	n := t.fails[id]
	t.fails[id] = n + 1
	t.retry[id] = now.Add(retryAfter(n))
}

// retryAfter is the pause before a tee is tried again after n earlier
// failures in a row.
func retryAfter(n int) time.Duration {
	d := teeRetry
	for ; n > 0 && d < teeRetryMax; n-- {
		d *= 2
	}
	return min(d, teeRetryMax)
}

// pollTees runs reconcileTees every teePoll; it is called for every message
// and costs a clock read when nothing is due.
func (p *publisher) pollTees() {
	if p.ss == nil {
		return
	}
	if now := time.Now(); !now.Before(p.t.next) {
		p.t.next = now.Add(teePoll)
		p.reconcileTees(now)
	}
}

// reconcileTees brings the publisher's legs in line with the mesh: it
// adopts opened tees, forgets broken ones, closes old legs whose linger
// passed and legs the mesh no longer wants, switches to a landed tee on
// the stream's primary, and opens the tees that are missing.
func (p *publisher) reconcileTees(now time.Time) {
	t := &p.t
	for more := true; more; {
		select {
		case r := <-t.opened:
			if cancel := t.opening[r.origin.ID]; cancel != nil {
				cancel()
			}
			delete(t.opening, r.origin.ID)
			if r.err != nil {
				p.c.log.Debug("tee to origin failed to open", "origin", r.origin.ID, "err", r.err)
				t.backoff(r.origin.ID, now)
				continue
			}
			p.adoptTee(r)
		default:
			more = false
		}
	}
	for id, tl := range t.legs {
		select {
		case err := <-tl.done:
			p.c.log.Info("tee to origin ended", "origin", id, "err", err)
			p.closeTee(id, true)
			t.backoff(id, now)
			continue
		default:
		}
		if !tl.closeAt.IsZero() && now.After(tl.closeAt) {
			p.closeTee(id, false)
		}
	}
	if p.cur == nil {
		return // a failover runs; it decides the next leg
	}
	primary, others, ok := p.ss.Sources(p.c.req.Key)
	if !ok {
		return
	}
	want := make(map[string]stream.Origin, len(others)+1)
	for _, o := range others {
		want[o.ID] = o
	}
	if target := p.ss.Moving(p.c.req.Key); target != t.told {
		if tl := t.legs[target]; tl != nil && tl.landed && tl.closeAt.IsZero() {
			t.told = target
			p.landed(tl.origin)
		} else if target == "" {
			t.told = ""
		}
	}
	if primary.ID != p.origin.ID {
		want[primary.ID] = primary
		if tl := t.legs[primary.ID]; tl != nil && tl.landed && tl.closeAt.IsZero() {
			p.switchTo(tl, now)
		}
	}
	delete(want, p.origin.ID)
	for id, tl := range t.legs {
		if _, ok := want[id]; !ok && tl.closeAt.IsZero() {
			p.closeTee(id, false)
		}
	}
	for id, o := range want {
		if t.legs[id] != nil || t.opening[id] != nil || now.Before(t.retry[id]) || o.RTMP == "" ||
			len(t.legs)+len(t.opening) >= maxTees {
			continue
		}
		p.openTee(o)
	}
}

// openTee starts opening a tee to o in a goroutine of the publisher.
func (p *publisher) openTee(o stream.Origin) {
	ctx, cancel := context.WithCancel(p.ctx)
	p.t.opening[o.ID] = cancel
	c := p.c
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		leg, err := c.openLeg(ctx, o.RTMP, c.addTee, c.dropTee)
		p.t.opened <- teeOpened{origin: o, leg: leg, err: err}
	}()
}

// adoptTee starts a tee that opened: its reader, then the cached metadata
// and sequence headers. Media follow from the next resume point.
func (p *publisher) adoptTee(r teeOpened) {
	tl := &teeLeg{origin: r.origin, leg: r.leg, done: make(chan error, 1), waitKey: true}
	setWriteIdle(r.leg.leg, teeWriteTimeout)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tl.done <- teeRead(r.leg, &tl.fwd, p.c.client, p.c.clientStream)
	}()
	tl.w = p.startWriter(r.leg)
	p.t.legs[r.origin.ID] = tl
	msgs := p.cache.messages()
	for i, m := range msgs {
		if err := tl.w.put(m, i == len(msgs)-1, false); err != nil {
			p.closeTee(r.origin.ID, false)
			return
		}
	}
	p.c.log.Info("feeding another origin", "origin", r.origin.ID)
}

// closeTee closes a tee: its connection, then its writer, which it waits
// for. Its reader (unless received: the reader already returned) may be
// writing to the client (an old leg's pump), so a goroutine of the
// publisher waits for it and releases the leg; once the publisher stops,
// closeTee waits itself.
func (p *publisher) closeTee(id string, received bool) {
	tl := p.t.legs[id]
	if tl == nil {
		return
	}
	delete(p.t.legs, id)
	p.c.dropTee(tl.leg.conn.Conn)
	if tl.w != nil {
		tl.w.close()
	}
	if received {
		tl.leg.release()
		return
	}
	if p.t.stopping {
		<-tl.done
		tl.leg.release()
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		<-tl.done
		tl.leg.release()
	}()
}

// stopTees closes every tee and the legs still opening; the publisher's
// goroutines have ended (stop waited for them).
func (p *publisher) stopTees() {
	if p.ss == nil {
		return
	}
	p.t.stopping = true
	for id := range p.t.legs {
		p.closeTee(id, false)
	}
	for {
		select {
		case r := <-p.t.opened:
			if r.leg != nil {
				p.c.dropTee(r.leg.conn.Conn)
				r.leg.release()
			}
		default:
			return
		}
	}
}

// teeSend queues m for every tee, from a resume point on; a tee that
// failed or fell behind is closed (the session goes on). A tee has landed
// once its writer wrote its first resume point.
func (p *publisher) teeSend(m *chunk.Message, flush bool) {
	for id, tl := range p.t.legs {
		media := m.Type == chunk.TypeVideo || m.Type == chunk.TypeAudio
		first := false
		if tl.waitKey && media && !isCodecConfig(m) {
			if !p.cache.resumePoint(m) {
				continue
			}
			tl.waitKey, first = false, true
		}
		if err := tl.w.put(m, flush, first); err != nil {
			p.c.log.Info("tee to origin failed or fell behind; closed", "origin", id, "err", err)
			p.closeTee(id, false)
			p.t.backoff(id, time.Now())
			continue
		}
		if !tl.landed && tl.w.wrote.Load() {
			tl.landed = true
			delete(p.t.fails, id)
			if p.ss.Moving(p.c.req.Key) == id {
				p.t.told = id
			}
			p.landed(tl.origin)
		}
	}
}

// landed tells the SourceSet, from a goroutine of the publisher, that
// origin got the stream.
func (p *publisher) landed(o stream.Origin) {
	key := p.c.req.Key
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(p.ctx, landedTimeout)
		defer cancel()
		if err := p.ss.Landed(ctx, key, o); err != nil {
			p.c.log.Warn("could not complete the move to an origin that has the stream", "origin", o.ID, "err", err)
		}
	}()
}

// switchTo makes tl the publisher's leg: the stream's primary moved to
// tl's origin, which has the stream. The old leg becomes a tee that keeps
// the stream for moveLinger.
func (p *publisher) switchTo(tl *teeLeg, now time.Time) {
	if !p.takeWriter(tl) {
		p.c.log.Info("tee to the stream's new origin failed; not moving to it", "origin", tl.origin.ID)
		p.closeTee(tl.origin.ID, false)
		p.t.backoff(tl.origin.ID, now)
		return
	}
	old := &teeLeg{origin: p.origin, leg: p.cur, done: p.curDone, landed: true, closeAt: now.Add(moveLinger)}
	setWriteIdle(old.leg.leg, teeWriteTimeout)
	old.w = p.startWriter(old.leg)
	delete(p.t.legs, tl.origin.ID)
	p.t.legs[old.origin.ID] = old
	p.use(tl)
	p.c.log.Info("publisher moved to another origin without a break", "from", old.origin.ID, "to", tl.origin.ID)
}

// use makes tl the current leg.
func (p *publisher) use(tl *teeLeg) {
	setWriteIdle(tl.leg.leg, p.c.s.cfg.IdleTimeout)
	tl.fwd.Store(true)
	p.c.origin = tl.leg
	p.cur, p.origin, p.curDone = tl.leg, tl.origin, tl.done
	p.watched.Lock()
	p.watched.id, p.watched.nc, p.watched.unhealthy = tl.origin.ID, tl.leg.conn.Conn, false
	p.watched.Unlock()
}

// takeOver continues on a landed tee after the current leg failed (its
// origin failed): no re-publish, no held frames. It reports false when no
// tee can take over. The stream's assignment moves in the background.
func (p *publisher) takeOver(from stream.Origin, reason string, received bool) bool {
	if p.ss == nil {
		return false
	}
	var pick *teeLeg
	for pick = p.takeOverPick(); pick != nil; pick = p.takeOverPick() {
		if p.takeWriter(pick) {
			break
		}
		// Its writer failed: it cannot continue the stream without a gap.
		p.c.log.Info("tee could not take over", "origin", pick.origin.ID)
		p.closeTee(pick.origin.ID, false)
		p.t.backoff(pick.origin.ID, time.Now())
	}
	if pick == nil {
		return false
	}
	p.detach(received)
	delete(p.t.legs, pick.origin.ID)
	p.use(pick)
	start := time.Now()
	p.foStart, p.foFrom, p.foReason = start, from, reason
	p.c.log.Warn("origin leg failed; a warm replica took over", "from", from.ID, "to", pick.origin.ID, "reason", reason)
	p.observe(FailoverOK, pick.origin, nil)
	if p.rr != nil {
		key, rr := p.c.req.Key, p.rr
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			ctx, cancel := context.WithTimeout(p.ctx, p.c.s.cfg.FailoverTimeout)
			defer cancel()
			if _, err := rr.Reroute(ctx, key, from); err != nil {
				p.c.log.Warn("could not move the stream off its failed origin", "from", from.ID, "err", err)
			}
		}()
	}
	return true
}

// takeOverPick is the tee takeOver continues on, nil when none can: a
// landed tee, not an old leg kept after a move, on a healthy origin. It
// prefers the target of a planned move, then the stream's primary, then
// the lowest origin id, so that the choice does not depend on map order.
func (p *publisher) takeOverPick() *teeLeg {
	primary, _, _ := p.ss.Sources(p.c.req.Key)
	target := p.ss.Moving(p.c.req.Key)
	rank := func(tl *teeLeg) int {
		switch tl.origin.ID {
		case target:
			return 0
		case primary.ID:
			return 1
		}
		return 2
	}
	var pick *teeLeg
	for _, tl := range p.t.legs {
		if !tl.landed || !tl.closeAt.IsZero() {
			continue
		}
		if h := p.c.s.cfg.OriginHealth; h != nil && !h.OriginHealthy(tl.origin.ID) {
			continue
		}
		if pick == nil || rank(tl) < rank(pick) || rank(tl) == rank(pick) && tl.origin.ID < pick.origin.ID {
			pick = tl
		}
	}
	return pick
}

// dropTees closes every tee and cancels the opens in progress; the
// publisher's leg failed and no tee could take over. A tee holds the
// stream's publish on its origin, which would refuse the failover's own
// publish as a second one if the failover picked it. It returns the ids of
// those origins. The mesh's sources are fed again once the failover ends.
func (p *publisher) dropTees() map[string]bool {
	if p.ss == nil {
		return nil
	}
	ids := make(map[string]bool, len(p.t.legs)+len(p.t.opening))
	for id := range p.t.legs {
		ids[id] = true
		p.closeTee(id, false)
	}
	for id, cancel := range p.t.opening {
		ids[id] = true
		cancel()
	}
	p.t.told = ""
	return ids
}

// dropOpened closes the tees that finished opening while a failover runs
// (dropTees cancelled them, but an open may have completed first).
func (p *publisher) dropOpened() {
	if p.ss == nil {
		return
	}
	for {
		select {
		case r := <-p.t.opened:
			if cancel := p.t.opening[r.origin.ID]; cancel != nil {
				cancel()
			}
			delete(p.t.opening, r.origin.ID)
			if r.leg != nil {
				p.c.dropTee(r.leg.conn.Conn)
				r.leg.release()
			}
		default:
			return
		}
	}
}

// sendOn writes m to o, mapping the client's message stream id to o's and
// back, so that m can be written to several legs.
func (p *publisher) sendOn(o *originLeg, m *chunk.Message, flush bool) error {
	cs, os := p.c.clientStream, o.streamID
	ev := m.Type == chunk.TypeUserControl && len(m.Payload) >= 6 && binary.BigEndian.Uint32(m.Payload[2:]) == cs
	if ev {
		binary.BigEndian.PutUint32(m.Payload[2:], os)
	}
	sid := m.StreamID
	if sid == cs {
		m.StreamID = os
	}
	err := o.write(m, flush)
	m.StreamID = sid
	if ev {
		binary.BigEndian.PutUint32(m.Payload[2:], cs)
	}
	return err
}

// teeRead reads what an origin sends on a tee leg, answering its control
// messages, until the leg fails or closes. While the leg is a tee it drops
// the rest; once the leg is the publisher's own (fwd), it relays the rest
// to the client as pump does, so that the publisher hears its new origin's
// status (an error onStatus, a stream event) as it heard the old one's.
func teeRead(o *originLeg, fwd *atomic.Bool, client *leg, clientStream uint32) error {
	for {
		m, err := o.r.ReadMessage()
		if err != nil {
			return err
		}
		if err := o.maybeAck(); err != nil {
			return err
		}
		if m.Type <= chunk.TypeSetPeerBandwidth {
			handled, err := o.handleControl(&m)
			if err != nil {
				return err
			}
			if handled || !fwd.Load() {
				continue
			}
			if binary.BigEndian.Uint32(m.Payload[2:]) == o.streamID {
				binary.BigEndian.PutUint32(m.Payload[2:], clientStream)
			}
		}
		if !fwd.Load() {
			continue
		}
		if m.StreamID == o.streamID {
			m.StreamID = clientStream
		}
		if err := client.write(&m, o.r.Buffered() == 0); err != nil {
			return err
		}
	}
}

// sendCur writes m to the current leg. When that fails and a tee takes
// over (legFailed), m goes to the new leg too, so that it loses nothing.
// It reports whether m was sent; an error ends the session.
func (p *publisher) sendCur(m *chunk.Message, flush bool) (bool, error) {
	for range 2 {
		err := p.send(m, flush)
		if err == nil {
			return true, nil
		}
		if err := p.legFailed(err, false); err != nil {
			return false, err
		}
		if p.cur == nil {
			return false, nil // a failover runs
		}
	}
	return false, nil
}

// setWriteIdle sets l's write timeout under the lock its writers hold: the
// leg's reader writes to it too (acknowledgements, pongs).
func setWriteIdle(l *leg, d time.Duration) {
	l.mu.Lock()
	l.conn.writeIdle = d
	l.mu.Unlock()
}

// takeWriter ends tl's writer and writes what it had queued itself, so
// that tl can become the publisher's leg with nothing lost or reordered;
// it waits for the write the writer has in hand (bounded by
// teeWriteTimeout). It reports false when the tee failed.
func (p *publisher) takeWriter(tl *teeLeg) bool {
	rest, ok := tl.w.retire()
	if !ok {
		return false
	}
	for i := range rest {
		if err := p.sendOn(tl.leg, &rest[i].m, rest[i].flush || i == len(rest)-1); err != nil {
			return false
		}
	}
	return true
}

// errTeeClosed is a message queued for a tee whose writer ended.
var errTeeClosed = errors.New("rtmp: tee closed")

// errTeeBehind is a tee whose origin fell teeQueueBytes or
// teeQueueMessages behind the publisher.
var errTeeBehind = errors.New("rtmp: tee fell behind the publisher")

// teeWriter writes a tee's messages in a goroutine of its own, so that an
// origin slow to take them never holds up the publisher: the publisher
// queues copies, bounded by teeQueueBytes and teeQueueMessages. The
// goroutine belongs to the tee: closeTee (close) or a take-over (retire)
// ends it and waits for it.
type teeWriter struct {
	wake chan struct{} // a token when there is something to do
	done chan struct{} // closed when the goroutine returns
	// wrote: the first resume point queued (put's first) was written.
	wrote atomic.Bool

	mu    sync.Mutex
	q     []teeMsg
	spare []teeMsg
	bytes int  // payload bytes queued or being written
	held  int  // messages being written
	stop  bool // the goroutine returns (or has)
	err   error
}

// teeMsg is a queued copy of a message for a tee.
type teeMsg struct {
	m     chunk.Message
	flush bool
	first bool
}

// startWriter starts the writer of the tee leg o.
func (p *publisher) startWriter(o *originLeg) *teeWriter {
	w := &teeWriter{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run(p, o)
	return w
}

func (w *teeWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// put queues a copy of m; flush asks for a flush after it, first marks the
// tee's first resume point (wrote). It fails when the writer ended or the
// queue is full.
func (w *teeWriter) put(m *chunk.Message, flush, first bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.err != nil:
		return w.err
	case w.stop:
		return errTeeClosed
	case len(w.q)+w.held >= teeQueueMessages || w.bytes+len(m.Payload) > teeQueueBytes:
		return errTeeBehind
	}
	cp := *m
	cp.Payload = bytes.Clone(m.Payload)
	w.q = append(w.q, teeMsg{m: cp, flush: flush, first: first})
	w.bytes += len(m.Payload)
	w.signal()
	return nil
}

// run is the writer's goroutine.
func (w *teeWriter) run(p *publisher, o *originLeg) {
	defer close(w.done)
	for {
		w.mu.Lock()
		for len(w.q) == 0 && !w.stop {
			w.mu.Unlock()
			<-w.wake
			w.mu.Lock()
		}
		if w.stop {
			w.mu.Unlock()
			return
		}
		batch := w.q
		w.q, w.spare = w.spare[:0], nil
		w.held = len(batch)
		w.mu.Unlock()
		n := 0
		var err error
		for i := range batch {
			t := &batch[i]
			n += len(t.m.Payload)
			// One flush per batch: when the origin is slower than the
			// publisher, batches grow and writes coalesce.
			if err = p.sendOn(o, &t.m, i == len(batch)-1); err != nil {
				break
			}
			if t.first {
				w.wrote.Store(true)
			}
		}
		clear(batch)
		w.mu.Lock()
		w.bytes -= n
		w.held = 0
		w.spare = batch[:0]
		if err != nil {
			w.err, w.stop = err, true
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}

// close ends the writer and waits for it; the caller closed the leg's
// connection, which ends a write in progress.
func (w *teeWriter) close() {
	w.mu.Lock()
	w.stop = true
	w.mu.Unlock()
	w.signal()
	<-w.done
}

// retire ends the writer, waiting for the write it has in hand, and
// returns what it had not taken yet; ok is false when it failed. The
// caller writes to the leg itself from then on.
func (w *teeWriter) retire() (rest []teeMsg, ok bool) {
	w.mu.Lock()
	if w.stop || w.err != nil {
		w.mu.Unlock()
		return nil, false
	}
	w.stop = true
	w.mu.Unlock()
	w.signal()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	rest, w.q = w.q, nil
	return rest, w.err == nil
}
