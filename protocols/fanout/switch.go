package fanout

import (
	"context"
	"errors"
	"hash/maphash"
	"io"
	"sync"
	"time"
)

// Kinds of switch (Reattach.Kind).
const (
	// SwitchFailover is a re-attach after the upstream failed or ended
	// because the stream moved.
	SwitchFailover = "failover"
	// SwitchPlanned is a make-before-break switch (Registry.Switch).
	SwitchPlanned = "planned"
	// SwitchPublisher is the stream's return within the publisher grace
	// (Config.PublishGrace) after its publisher stopped; reported with
	// Err set when the grace ended without it.
	SwitchPublisher = "publisher"
)

// DefaultSwitchTimeout is Config.SwitchTimeout's default.
const DefaultSwitchTimeout = 3 * time.Second

// seenKeyframes bounds the ring of keyframes delivered (seenRing): at one
// keyframe a second, four minutes, far more than an origin's GOP cache
// holds.
const seenKeyframes = 256

// maxRepeats bounds the frames of a new upstream dropped as repeats after
// one switch aligned by content; past it every frame is delivered.
const maxRepeats = 4096

// errSwitched ends reading an upstream the hub switched away from; the
// hub goes on with the upstream it switched to (hub.cur).
var errSwitched = errors.New("fanout: switched upstream")

// errSameOrigin ends a planned switch whose Opener routed to the origin
// the hub already plays: there is nothing to switch to.
var errSameOrigin = errors.New("fanout: the stream has not moved")

// Switch starts a planned, make-before-break switch of every hub of
// stream (the stream part of their keys, StreamOf, whatever the query)
// that is live: not closing and not re-attaching after a failure. It
// returns how many hubs started one; a hub with a switch already pending
// does not start another.
//
// Each such hub runs its Opener again (which routes anew, as on a
// re-attach) while its players go on with the old upstream. When the
// Opener reaches the origin the hub plays already (Opened.Origins.To), it
// closes what it opened and nothing changes. Otherwise the hub reads the
// new upstream into a buffer (bounded by Config.GOPBytes and GOPTags;
// past them it starts again at the next keyframe), from its first
// keyframe on, its metadata and sequence headers kept, and switches its
// players to it at that keyframe, found in the old upstream by content:
//
//   - When the old upstream has already delivered the keyframe, the hub
//     switches at once: the new upstream's timestamps are mapped onto the
//     old ones by that keyframe, and its frames the players already had
//     (mapped at or before the last delivered on their track) are dropped.
//   - Otherwise the hub switches when the old upstream comes to that
//     keyframe, in place of it.
//   - Past Config.SwitchTimeout (counted from this call), it switches the
//     way a re-attach does (the new upstream's keyframe one frame after
//     the last tag delivered) when the new upstream has its keyframe, and
//     gives up, keeping the old upstream, when it failed or has none.
//   - When the old upstream ends or fails meanwhile, the hub switches as
//     soon as the new upstream has its keyframe (within the timeout),
//     rather than re-attaching.
//
// Metadata and sequence headers of the new upstream that are the same
// bytes as those in force are not sent again; changed ones reach the
// players ahead of the first frame. Players see continuous tags: none
// lost or repeated when the hub aligned by content, timestamps monotonic
// per track (modulo 2^32). Each switch is reported (Config.OnSwitch) and
// counted (Stats.Switched). Audio-only streams are not aligned by
// content (their frames, silence, repeat): they switch as soon as the new
// upstream has a frame, the way a re-attach does.
//
// It finds the hubs through an index by stream, so it costs the hubs of
// stream only, and each hub's start takes its lock briefly and starts a
// goroutine: callers may run it on the goroutine that applies the mesh's
// replicated log.
func (r *Registry) Switch(stream string) int {
	r.mu.Lock()
	set := r.byStream[stream]
	hubs := make([]*hub, 0, len(set))
	for h := range set {
		hubs = append(hubs, h)
	}
	r.mu.Unlock()
	n := 0
	for _, h := range hubs {
		if h.startSwitch() {
			n++
		}
	}
	return n
}

// pending is a planned switch in progress: its goroutine (run) opens the
// new upstream and buffers it until the hub's reader takes it over
// (adopt) or gives it up (abandon).
type pending struct {
	started  time.Time
	deadline time.Time
	video    bool               // the stream has video: the switch waits for a keyframe
	ctx      context.Context    // the new upstream's, the hub's child
	cancel   context.CancelFunc // ends ctx
	done     chan struct{}      // closed when run returns
	changed  chan struct{}      // a token when the buffer gets its keyframe or the source ends
	looked   int                // the gen looked up among the keyframes delivered; the reader's

	// Guarded by mu: run files tags until the reader adopts them.
	mu        sync.Mutex
	up        Opened
	heads     []Tag // metadata and sequence headers ahead of buf, the latest of each kind
	buf       []Tag // from the keyframe on
	bufBytes  int
	key       bool   // buf starts with the new upstream's first keyframe
	hashed    bool   // keyHash is set (a video keyframe)
	keyHash   uint64 // of buf[0]
	keyTS     uint32 // buf[0]'s timestamp
	gen       int    // counts the keyframes buf started at
	ended     bool   // the source ended, or failed to open, with err
	err       error
	adopted   bool // the reader took the source over
	abandoned bool
	restarts  int // times buf passed its bound and started again
}

func (p *pending) signal() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// startSwitch starts a planned switch of h unless h is not live or one
// is pending.
func (h *hub) startSwitch() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || !h.live || h.sw.Load() != nil {
		return false
	}
	now := time.Now()
	p := &pending{started: now, deadline: now.Add(h.cfg.SwitchTimeout), video: h.hasVideo,
		done: make(chan struct{}), changed: make(chan struct{}, 1)}
	p.ctx, p.cancel = context.WithCancel(h.ctx)
	h.sw.Store(p)
	h.swWG.Add(1)
	go h.runSwitch(p)
	return true
}

// runSwitch is a planned switch's goroutine, owned by the hub (close
// waits for it): it opens the new upstream and buffers it until the
// reader adopts it (then it files the tag it was reading and returns) or
// gives it up, or the hub closes.
func (h *hub) runSwitch(p *pending) {
	defer h.swWG.Done()
	defer close(p.done)
	end := func(err error) {
		p.mu.Lock()
		p.ended, p.err = true, err
		p.mu.Unlock()
		p.signal()
	}
	up, err := h.openSwitch(p)
	if err != nil {
		end(err)
		return
	}
	p.mu.Lock()
	if p.abandoned {
		p.mu.Unlock()
		up.Source.Close()
		end(ErrClosed)
		return
	}
	p.up = up
	p.mu.Unlock()
	// Until the reader adopts it, the source is this goroutine's to close.
	stop := context.AfterFunc(p.ctx, func() { up.Source.Close() })
	defer stop()
	if _, err := up.Source.ReadHeader(); err != nil {
		end(err)
		return
	}
	for {
		t, err := up.Source.ReadTag()
		if err == nil && len(t.Data)-tagHeaderSize-prevSizeLen > h.cfg.MaxTagSize {
			err = ErrTagTooLarge
		}
		if err != nil {
			end(err)
			return
		}
		p.mu.Lock()
		if p.adopted {
			p.buf = append(p.buf, t)
			p.mu.Unlock()
			stop() // the reader closes it now
			return
		}
		got := p.file(t, h)
		p.mu.Unlock()
		if got {
			p.signal()
		}
	}
}

// openSwitch runs the hub's Opener for p, never at the same time as
// another run of it, bounded by p's deadline. It fails with errSameOrigin
// when the Opener reached the origin the hub plays.
func (h *hub) openSwitch(p *pending) (Opened, error) {
	h.openMu.Lock()
	defer h.openMu.Unlock()
	if err := p.ctx.Err(); err != nil {
		return Opened{}, err
	}
	// Not a deadline on p.ctx: the source may live on with it.
	timer := time.AfterFunc(time.Until(p.deadline), p.cancel)
	up, err := h.open(p.ctx)
	if !timer.Stop() && err == nil {
		err = context.DeadlineExceeded
	}
	if err == nil && up.Source == nil {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		if up.Source != nil {
			up.Source.Close()
		}
		return Opened{}, err
	}
	h.mu.Lock()
	if h.playing == "" {
		h.playing = up.Origins.From
	}
	same := up.Origins.To != "" && up.Origins.To == h.playing
	h.mu.Unlock()
	if same {
		up.Source.Close()
		return Opened{}, errSameOrigin
	}
	return up, nil
}

// file buffers t, a tag of the new upstream, and reports whether buf just
// got its keyframe. Called with p.mu held.
func (p *pending) file(t Tag, h *hub) bool {
	if isHeaderTag(t) && !p.key {
		p.heads = keepHeader(p.heads, t)
		return false
	}
	if !p.key {
		if t.Kind != KindKeyframe && (p.video || t.Type != TagAudio) {
			return false // ahead of the keyframe
		}
		p.key, p.gen, p.keyTS = true, p.gen+1, t.Timestamp
		p.hashed = t.Kind == KindKeyframe
		if p.hashed {
			p.keyHash = h.hash(t)
		}
		p.buf, p.bufBytes = append(p.buf, t), len(t.Data)
		return true
	}
	if len(p.buf) >= h.cfg.GOPTags || p.bufBytes+len(t.Data) > h.cfg.GOPBytes {
		// Past the bound: start again at the next keyframe, keeping the
		// headers in force.
		for _, b := range p.buf {
			if isHeaderTag(b) {
				p.heads = keepHeader(p.heads, b)
			}
		}
		clear(p.buf)
		p.buf, p.bufBytes, p.key = p.buf[:0], 0, false
		p.restarts++
		return p.file(t, h)
	}
	p.buf, p.bufBytes = append(p.buf, t), p.bufBytes+len(t.Data)
	return false
}

// isHeaderTag reports whether t is metadata or a sequence header.
func isHeaderTag(t Tag) bool {
	return t.Kind == KindMetadata || t.Kind == KindVideoSeq || t.Kind == KindAudioSeq
}

// keepHeader puts t in heads in place of one of its kind.
func keepHeader(heads []Tag, t Tag) []Tag {
	for i := range heads {
		if heads[i].Kind == t.Kind {
			heads[i] = t
			return heads
		}
	}
	return append(heads, t)
}

// hash identifies a frame by its content (type and body, not timestamp).
func (h *hub) hash(t Tag) uint64 {
	return maphash.Bytes(h.reg.seed, t.Body()) ^ uint64(t.Type)<<56
}

// seenRing maps the hashes of the last keyframes delivered to the
// timestamps they were delivered at; bounded (seenKeyframes).
type seenRing struct {
	hash [seenKeyframes]uint64
	ts   [seenKeyframes]uint32
	n    int
	next int
}

func (s *seenRing) add(hash uint64, ts uint32) {
	s.hash[s.next], s.ts[s.next] = hash, ts
	s.next = (s.next + 1) % seenKeyframes
	s.n = min(s.n+1, seenKeyframes)
}

// find returns the timestamp of the latest keyframe delivered with hash.
func (s *seenRing) find(hash uint64) (uint32, bool) {
	for i := 1; i <= s.n; i++ {
		j := (s.next - i + seenKeyframes) % seenKeyframes
		if s.hash[j] == hash {
			return s.ts[j], true
		}
	}
	return 0, false
}

// What the reader does at a tag of the old upstream while a switch is
// pending (step).
const (
	stepDeliver = iota // deliver the tag, go on with the old upstream
	stepAligned        // switch now, aligned by content; the tag is not delivered
	stepRebase         // deliver the tag, then switch the way a re-attach does
)

// step advances the pending switch p at t, the old upstream's next tag,
// and says what to do with it; for stepAligned it returns the offset that
// maps the new upstream's timestamps onto the players'.
func (h *hub) step(p *pending, t Tag) (int, uint32) {
	p.mu.Lock()
	key, hashed, kh, kts, gen, ended, err := p.key, p.hashed, p.keyHash, p.keyTS, p.gen, p.ended, p.err
	p.mu.Unlock()
	switch {
	case ended:
		h.abandon(p, err) // a new upstream that failed is no better than the old
		return stepDeliver, 0
	case key && !hashed:
		return stepRebase, 0 // audio only: nothing to align by
	case key && t.Kind == KindKeyframe && h.hash(t) == kh:
		// The old upstream comes to the new one's first keyframe: switch
		// in its place, at the timestamp it would have had.
		return stepAligned, t.Timestamp + h.ts.offset - kts
	case key && gen != p.looked:
		p.looked = gen
		if ts, ok := h.seen.find(kh); ok { // already delivered
			return stepAligned, ts - kts
		}
	}
	if time.Now().After(p.deadline) {
		if key {
			return stepRebase, 0
		}
		h.abandon(p, context.DeadlineExceeded)
	}
	return stepDeliver, 0
}

// awaitKey waits, after the old upstream ended with p pending, until p
// has its keyframe (true), or failed, or its deadline passed.
func (h *hub) awaitKey(p *pending) bool {
	timer := time.NewTimer(time.Until(p.deadline))
	defer timer.Stop()
	for {
		p.mu.Lock()
		key, ended := p.key, p.ended
		p.mu.Unlock()
		if key {
			return true // even if it ended since: its frames are still new
		}
		if ended {
			return false
		}
		select {
		case <-p.changed:
		case <-timer.C:
			return false
		case <-h.ctx.Done():
			return false
		}
	}
}

// alignment returns the offset that maps p's timestamps onto the players'
// when the old upstream already delivered p's keyframe.
func (h *hub) alignment(p *pending) (uint32, bool) {
	p.mu.Lock()
	hashed, kh, kts := p.hashed, p.keyHash, p.keyTS
	p.mu.Unlock()
	if !hashed {
		return 0, false
	}
	ts, ok := h.seen.find(kh)
	return ts - kts, ok
}

// abandon gives up the pending switch p, keeping the old upstream, and
// reports why unless there was nothing to switch to.
func (h *hub) abandon(p *pending, why error) {
	h.sw.CompareAndSwap(p, nil)
	p.mu.Lock()
	p.abandoned = true
	p.mu.Unlock()
	p.cancel() // ends the open, closes the source
	if errors.Is(why, errSameOrigin) {
		return
	}
	if why == nil {
		why = io.ErrUnexpectedEOF
	}
	h.reportSwitch(Reattach{Key: h.key, Kind: SwitchPlanned, Took: time.Since(p.started), Err: why})
}

// adopt switches the players to p's upstream: aligned by content with
// offset, or the way a re-attach does. The old upstream is closed. It
// returns errSwitched, or the new upstream's error when it ended during
// the hand-over.
func (h *hub) adopt(p *pending, offset uint32, aligned bool) error {
	h.sw.CompareAndSwap(p, nil)
	p.mu.Lock()
	p.adopted = true
	heads, buf, up := p.heads, p.buf, p.up
	p.heads, p.buf = nil, nil
	p.mu.Unlock()
	old := h.cur
	if !h.setSource(up.Source) {
		p.cancel()
		return ErrClosed
	}
	old.Source.Close()
	if h.curCancel != nil {
		h.curCancel()
	}
	h.cur, h.curCancel = up, p.cancel
	h.mu.Lock()
	if up.Origins.To != "" {
		h.playing = up.Origins.To
	}
	h.live = true
	h.mu.Unlock()
	h.reg.switched.Add(1)
	if aligned {
		h.ts.align(offset)
	} else {
		h.ts.reattached()
		h.ts.keyWait = 0 // buf starts at the keyframe
		h.resetGOP()
	}
	h.rep = Reattach{Key: h.key, Kind: SwitchPlanned, Origins: up.Origins, Aligned: aligned}
	h.repSince, h.repOn = p.started, true
	for _, t := range heads {
		h.switchHeader(t, true)
	}
	h.pass(buf)
	<-p.done // the tag in flight, then run returns
	p.mu.Lock()
	rest, ended, err := p.buf, p.ended, p.err
	p.buf = nil
	p.mu.Unlock()
	h.pass(rest)
	if ended {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return errSwitched
}

// pass delivers tags of a new upstream after a switch, dropping repeats.
func (h *hub) pass(tags []Tag) {
	for _, t := range tags {
		if isHeaderTag(t) {
			h.switchHeader(t, true)
			continue
		}
		if h.ts.repeat(t) {
			continue
		}
		h.emit(t)
	}
}

// switchHeader delivers a new upstream's metadata or sequence header at a
// switch: unless it is the same bytes as the one in force (when skipSame),
// at the last timestamp delivered on its track, so that it goes ahead of
// the next frame. While the new upstream's first frame is awaited after a
// re-attach, it goes where the rebaser puts it.
func (h *hub) switchHeader(t Tag, skipSame bool) {
	if skipSame {
		var cur []byte
		switch t.Kind {
		case KindMetadata:
			cur = h.meta
		case KindVideoSeq:
			cur = h.videoSeq
		case KindAudioSeq:
			cur = h.audioSeq
		}
		if cur != nil && string(Tag{Data: cur}.Body()) == string(t.Body()) {
			return
		}
	}
	if h.ts.pending {
		h.emit(t)
		return
	}
	ts, any := h.ts.last, h.ts.any
	switch t.Kind {
	case KindVideoSeq:
		ts, any = h.ts.lastV, h.ts.anyV
	case KindAudioSeq:
		ts, any = h.ts.lastA, h.ts.anyA
	}
	if !any {
		ts = h.ts.last
	}
	t.Timestamp = ts
	putTimestamp(t.Data, ts)
	h.deliverNow(t)
}

// enter handles k, the first frame of a re-attached upstream, ahead of
// delivering it: when the players already had k (the new upstream's
// origin held the stream and its GOP, a warm replica), the new upstream's
// timestamps are mapped onto the old ones by it and its frames the
// players had are dropped, and the GOP cached goes on; otherwise they are
// rebased and the GOP cache starts again. Then the headers held back for
// it go out.
func (h *hub) enter(k Tag) {
	aligned := false
	if k.Kind == KindKeyframe {
		if ts, ok := h.seen.find(h.hash(k)); ok {
			h.ts.align(ts - k.Timestamp)
			aligned = true
		}
	}
	if !aligned {
		// The old upstream's GOP must not lead into the new one's frames.
		h.resetGOP()
	}
	h.rep.Aligned = aligned
	for _, t := range h.held {
		h.switchHeader(t, aligned)
	}
	clear(h.held)
	h.held = h.held[:0]
}

// align maps the current upstream's timestamps by offset from now on,
// dropping its frames at or before the last delivered on their track.
func (r *rebaser) align(offset uint32) {
	r.offset, r.pending, r.guard, r.keyWait = offset, false, 0, 0
	r.dedupA, r.dedupV, r.repeatsLeft, r.repeats = r.anyA, r.anyV, maxRepeats, 0
}

// repeat reports whether t, a frame of an upstream aligned by content, is
// one the players already had: mapped at or before the last delivered on
// its track. A track stops being checked at its first new frame.
func (r *rebaser) repeat(t Tag) bool {
	if !r.dedupA && !r.dedupV || isHeaderTag(t) {
		return false
	}
	ts := t.Timestamp + r.offset
	var on *bool
	var last uint32
	switch t.Type {
	case TagAudio:
		on, last = &r.dedupA, r.lastA
	case TagVideo:
		on, last = &r.dedupV, r.lastV
	default:
		return false
	}
	if !*on {
		return false
	}
	if int32(ts-last) <= 0 && r.repeatsLeft > 0 {
		r.repeats++
		r.repeatsLeft--
		return true
	}
	*on = false
	return false
}
