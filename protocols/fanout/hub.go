package fanout

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Opener opens the upstream of a hub: typically an HTTP GET of the
// origin's .flv (FLVSource) or an RTMP play of the stream, made with the
// first subscriber's query and headers. ctx is the hub's, not a
// subscriber's: it ends when the hub closes. An error is returned to the
// subscriber whose call ran the Opener, as it is, and no hub is kept.
//
// With Config.Reattach the hub runs the Opener again when its upstream
// fails, so an Opener must find the stream's origin anew on each call (the
// stream may have moved to another origin): Follow makes such Openers.
type Opener func(ctx context.Context) (Opened, error)

// Opened is an upstream an Opener opened, and what the hub is told of it.
// Every field but Source is optional: the zero value is off.
type Opened struct {
	// Source is the upstream; it must not be nil.
	Source Source
	// Info is kept by the hub for every subscriber (Subscriber.Info): the
	// caller may put the origin's response headers there. Only the first
	// open's counts.
	Info any
	// Origins are, on a re-attach, the origins the stream left and
	// reached, for the report (Reattach.Origins).
	Origins Origins
	// Moved, when not nil, is asked when Source ends cleanly (io.EOF),
	// with the hub's context: true says that the stream moved to another
	// origin (its old origin ended it as the publisher left), so that the
	// hub re-attaches its players rather than ending them. Nil: a clean
	// end ends them.
	Moved func(ctx context.Context) bool
}

// Reattach reports one switch of a hub's upstream, a re-attach after a
// failure (Kind SwitchFailover, Config.OnReattach) or a planned switch
// (SwitchPlanned, Config.OnSwitch): its key; how long it took (from the
// upstream's failure, or from Registry.Switch, to the new upstream's first
// tag, or to giving up); nil or why it gave up (a planned switch that gives
// up leaves the players on the old upstream); how many subscribers rode
// through; the origins it left and reached when the Opener said
// (Opened.Origins); the gap the players saw (from the last tag of the old
// upstream to the first of the new); how many frames of the new upstream
// were dropped as repeats of frames the players had (counted up to its
// first tag delivered); and whether the new upstream was aligned with the
// old by content (a keyframe both had), so that no frame was lost or
// repeated, rather than rebased.
type Reattach struct {
	Key         string
	Took        time.Duration
	Err         error
	Subscribers int
	Origins     Origins
	Kind        string
	Gap         time.Duration
	Repeats     int
	Aligned     bool
}

// Origins are the origins a re-attach left (the previous open's) and
// reached (the one it opened).
type Origins struct {
	From, To string
}

// Config bounds a Registry and its hubs. Zero values take the defaults.
type Config struct {
	// MaxHubs bounds the hubs (upstreams) at once; Subscribe returns
	// ErrFull beyond it. Default DefaultMaxHubs.
	MaxHubs int
	// MaxTagSize bounds a tag's body; a larger one ends the upstream.
	// Default DefaultMaxTagSize.
	MaxTagSize int
	// GOPBytes and GOPTags bound the cached GOP; past either, the rest of
	// that GOP is not cached (new subscribers then start at the next
	// keyframe). GOPBytes is at most QueueBytes, so that a fast start fits
	// a subscriber's queue. Defaults DefaultGOPBytes and DefaultGOPTags.
	GOPBytes int
	GOPTags  int
	// QueueBytes bounds what is queued for one subscriber. A tag that does
	// not fit is dropped, and so is everything after it until a keyframe
	// that fits. Default DefaultQueueBytes.
	QueueBytes int
	// BehindBytes bounds what a subscriber may miss in a row: one that has
	// dropped more than this since it last caught up is disconnected
	// (ErrSlow). Default DefaultBehindBytes.
	BehindBytes int
	// Linger is how long a hub keeps its upstream after its last
	// subscriber leaves; a subscriber arriving meanwhile reuses it.
	// Default DefaultLinger; negative closes the hub at once.
	Linger time.Duration
	// WakeEvery is the shortest time between two wake-ups of a hub's
	// subscribers for new tags: a tag that arrives sooner waits for the
	// rest of the interval with the ones after it, so that a player
	// writes a batch of tags with one writev rather than one tag per
	// wake-up, whatever the stream's tag rate (SRS's own players wait
	// 350 ms by default: mw_latency). It adds at most this much to the
	// players' delay. Default DefaultWakeEvery; negative wakes them for
	// every tag.
	WakeEvery time.Duration
	// Reattach is how long a hub whose upstream failed (any error but a
	// clean end, io.EOF) keeps its subscribers while it runs its Opener
	// again, retrying, to re-attach them to the stream wherever it now
	// lives. The subscribers then get the new upstream's metadata and
	// sequence headers, and timestamps continue, monotonic, from the last
	// ones they had. Zero: the subscribers end with the upstream's error.
	Reattach time.Duration
	// OnReattach, when not nil, is called (from the hub's goroutine) after
	// each re-attach, successful or not, and after each publisher grace
	// that ended (Reattach.Kind SwitchPublisher).
	OnReattach func(Reattach)
	// PublishGrace is how long a hub whose upstream ended cleanly (io.EOF:
	// the publisher stopped, and the stream did not move) keeps its
	// subscribers, sending them nothing, their connections open, while it
	// runs its Opener again, retrying and backing off, until the stream is
	// back (a publisher published it again, through any node). The
	// subscribers then get the new publish at its first keyframe, after
	// its metadata and sequence headers, with timestamps continuing,
	// monotonic, from the last ones they had, as after a re-attach. When
	// no media came within the grace, they end as at a clean end. Zero:
	// they end at once.
	PublishGrace time.Duration
	// SwitchTimeout bounds a planned switch (Registry.Switch), from the
	// call: past it the hub switches the way a re-attach does, or gives
	// up. Default DefaultSwitchTimeout.
	SwitchTimeout time.Duration
	// OnSwitch, when not nil, is called (from the hub's goroutine) after
	// each planned switch, done or given up (Reattach.Kind SwitchPlanned).
	OnSwitch func(Reattach)
}

// Defaults for Config.
const (
	DefaultMaxHubs     = 4096
	DefaultMaxTagSize  = 8 << 20
	DefaultGOPBytes    = 4 << 20
	DefaultGOPTags     = 8192
	DefaultQueueBytes  = 8 << 20
	DefaultBehindBytes = 32 << 20
	DefaultLinger      = 2 * time.Second
	DefaultWakeEvery   = 50 * time.Millisecond
)

// Errors.
var (
	// ErrFull is returned by Subscribe when MaxHubs hubs exist.
	ErrFull = errors.New("fanout: too many hubs")
	// ErrClosed is returned once the Registry is closed.
	ErrClosed = errors.New("fanout: closed")
	// ErrSlow ends a subscriber that fell more than BehindBytes behind.
	ErrSlow = errors.New("fanout: subscriber too slow")
	// ErrRefused marks an Opener's error when the origin itself refused
	// the play (an authorization hook said no), as opposed to failing.
	ErrRefused = errors.New("fanout: origin refused the play")
	// ErrUpstream is returned to subscribers that joined a hub whose
	// upstream failed to open (the one that opened it gets its Opener's
	// error).
	ErrUpstream = errors.New("fanout: upstream failed to open")
)

// Stats are a Registry's counters.
type Stats struct {
	Upstreams   int    // hubs with an upstream (open or opening), a gauge
	Subscribers int    // subscribers, a gauge
	Dropped     uint64 // times a subscriber started dropping tags
	Kicked      uint64 // subscribers ended with ErrSlow
	Reattached  uint64 // upstreams replaced after a failure
	Switched    uint64 // upstreams replaced by a planned switch
}

// Registry holds the hubs by key. It is safe for concurrent use.
type Registry struct {
	cfg Config

	mu   sync.Mutex
	hubs map[string]*hub
	// byStream indexes hubs by StreamOf(key), for Switch.
	byStream map[string]map[*hub]struct{}
	closed   bool
	wg       sync.WaitGroup // one per hub not yet closed

	subs       atomic.Int64
	dropped    atomic.Uint64
	kicked     atomic.Uint64
	reattached atomic.Uint64
	switched   atomic.Uint64
	seed       maphash.Seed // for the hashes that identify frames
	push       pusher       // the writers of pushed players
}

// NewRegistry returns an empty Registry.
func NewRegistry(cfg Config) *Registry {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.MaxHubs, DefaultMaxHubs)
	def(&cfg.MaxTagSize, DefaultMaxTagSize)
	def(&cfg.GOPBytes, DefaultGOPBytes)
	def(&cfg.GOPTags, DefaultGOPTags)
	def(&cfg.QueueBytes, DefaultQueueBytes)
	def(&cfg.BehindBytes, DefaultBehindBytes)
	cfg.GOPBytes = min(cfg.GOPBytes, cfg.QueueBytes)
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.WakeEvery == 0 {
		cfg.WakeEvery = DefaultWakeEvery
	}
	if cfg.SwitchTimeout <= 0 {
		cfg.SwitchTimeout = DefaultSwitchTimeout
	}
	return &Registry{cfg: cfg, hubs: make(map[string]*hub), byStream: map[string]map[*hub]struct{}{}, seed: maphash.MakeSeed(),
		push: pusher{epoch: time.Now()}}
}

// Stats returns the registry's counters.
func (r *Registry) Stats() Stats {
	r.mu.Lock()
	n := len(r.hubs)
	r.mu.Unlock()
	return Stats{Upstreams: n, Subscribers: int(r.subs.Load()), Dropped: r.dropped.Load(), Kicked: r.kicked.Load(),
		Reattached: r.reattached.Load(), Switched: r.switched.Load()}
}

// Subscribe joins the hub of key, creating it if there is none; the first
// subscriber of a hub runs open (in this call) and the others wait for it.
// The caller must Close the Subscriber. It returns open's error to the
// caller that ran it, ErrUpstream to the others that waited for it,
// ErrFull when MaxHubs hubs exist, ErrClosed after Close, or ctx's error.
//
// Subscribers share a hub only when their key is identical: callers put in
// key whatever must match for two players to receive the same stream under
// the same authorization (the origin, the path and the query).
func (r *Registry) Subscribe(ctx context.Context, key string, open Opener) (*Subscriber, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	h := r.hubs[key]
	if h == nil {
		if len(r.hubs) >= r.cfg.MaxHubs {
			r.mu.Unlock()
			return nil, ErrFull
		}
		h = newHub(r, key)
		r.hubs[key] = h
		st := StreamOf(key)
		if r.byStream[st] == nil {
			r.byStream[st] = map[*hub]struct{}{}
		}
		r.byStream[st][h] = struct{}{}
		r.wg.Add(1)
	}
	s, starter := h.add()
	r.mu.Unlock()
	r.subs.Add(1)

	if starter {
		h.start(open)
	}
	select {
	case <-h.ready:
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
	if h.openErr != nil {
		s.Close()
		if starter {
			return nil, h.openErr
		}
		return nil, ErrUpstream
	}
	return s, nil
}

// Close closes every hub, ending their subscribers, and waits for their
// goroutines. Subscribe fails afterwards.
func (r *Registry) Close() error {
	r.mu.Lock()
	r.closed = true
	hubs := make([]*hub, 0, len(r.hubs))
	for _, h := range r.hubs {
		hubs = append(hubs, h)
	}
	r.mu.Unlock()
	for _, h := range hubs {
		h.close(ErrClosed)
	}
	r.push.close()
	r.wg.Wait()
	return nil
}

// remove forgets h (if key still names it).
func (r *Registry) remove(h *hub) {
	r.mu.Lock()
	if r.hubs[h.key] == h {
		delete(r.hubs, h.key)
		st := StreamOf(h.key)
		delete(r.byStream[st], h)
		if len(r.byStream[st]) == 0 {
			delete(r.byStream, st)
		}
	}
	r.mu.Unlock()
}

// hub is one upstream and its subscribers. Its reader goroutine is the
// only writer of the cache and the only producer of subscribers' queues,
// and it never blocks on a subscriber.
type hub struct {
	reg *Registry
	cfg *Config
	key string

	// Wake-ups of the subscribers (wake), guarded by mu.
	wokeAt    time.Time
	wakeDue   bool
	wakeTimer *time.Timer

	ready   chan struct{} // closed once the Opener has returned
	openErr error         // set before ready closes
	info    any
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{} // closed when the reader goroutine has returned

	mu       sync.Mutex
	subs     map[*Subscriber]struct{}
	started  bool
	closed   bool
	linger   *time.Timer
	lingers  uint64 // counts lingers, so that a stale timer's callback is ignored
	src      Source
	open     Opener
	live     bool   // reading an upstream, not re-attaching: a planned switch may start
	playing  string // the origin played, when an Opener said (Opened.Origins)
	graceSrc Source // the upstream a grace's timer may close, until its first tag

	openMu sync.Mutex              // held while the Opener runs: it never runs twice at once
	sw     atomic.Pointer[pending] // the planned switch pending, if any
	swWG   sync.WaitGroup          // planned switches' goroutines

	// The reader goroutine's.
	ts         rebaser
	cur        Opened             // the upstream read
	curCancel  context.CancelFunc // ends the context cur was opened with, when a switch made it
	held       []Tag              // headers of a re-attached upstream held for its first frame
	seen       seenRing           // the last keyframes delivered
	lastAt     time.Time          // when the last tag was delivered
	failed     time.Time          // the upstream failure not yet recovered from
	graceEnd   time.Time          // the end of the publisher grace under way, if any
	graceTry   time.Duration      // the wait before the grace's next open
	graceTimer *time.Timer        // closes the grace's upstream at graceEnd
	rep        Reattach           // the switch to report at the next tag delivered
	repSince   time.Time          // when that switch began
	repOn      bool               // rep is to be reported

	// The cache, written by the reader goroutine under mu.
	header   []byte
	meta     []byte
	videoSeq []byte
	audioSeq []byte
	gen      uint64 // counts metadata and sequence header changes
	hasVideo bool
	gop      [][]byte
	gopBytes int
	gopOK    bool // gop holds a whole GOP so far
}

func newHub(r *Registry, key string) *hub {
	h := &hub{reg: r, cfg: &r.cfg, key: key, ready: make(chan struct{}), done: make(chan struct{}),
		subs: make(map[*Subscriber]struct{})}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h
}

// add registers a new subscriber, stopping a linger, and reports whether
// the caller is the one to start the upstream. Called with reg.mu held.
func (h *hub) add() (*Subscriber, bool) {
	s := &Subscriber{h: h, notify: make(chan struct{}, 1), end: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.linger != nil {
		h.linger.Stop()
		h.linger = nil
	}
	if h.closed { // only after a failed open: the subscriber ends with it
		s.finish(nil)
	} else {
		h.subs[s] = struct{}{}
		h.fastStart(s)
	}
	starter := !h.started
	h.started = true
	return s, starter
}

// fastStart queues what the hub has cached for a new subscriber: the FLV
// header, the metadata, the sequence headers and the current GOP. Called
// with h.mu held.
func (h *hub) fastStart(s *Subscriber) {
	if h.header == nil {
		return // the reader delivers the header when it comes
	}
	s.push(h.header)
	if !h.gopOK {
		s.waitKey = true // the keyframe brings the metadata and sequence headers
		return
	}
	h.resume(s)
	for _, b := range h.gop {
		s.push(b)
	}
}

// resume queues the metadata and sequence headers for s (on fast start, or
// when it catches up after dropping). Called with h.mu held.
func (h *hub) resume(s *Subscriber) {
	if s.gen == h.gen && s.started {
		return
	}
	for _, b := range [...][]byte{h.meta, h.videoSeq, h.audioSeq} {
		if b != nil {
			s.push(b)
		}
	}
	s.gen, s.started = h.gen, true
}

// start runs open and the reader goroutine.
func (h *hub) start(open Opener) {
	h.open = open
	h.openMu.Lock()
	up, err := open(h.ctx)
	h.openMu.Unlock()
	if err == nil && up.Source == nil {
		err = io.ErrUnexpectedEOF
	}
	h.info, h.openErr = up.Info, err
	if err != nil {
		close(h.ready)
		close(h.done)
		h.close(err)
		return
	}
	ok := h.setSource(up.Source)
	h.mu.Lock()
	h.live = ok
	h.mu.Unlock()
	close(h.ready)
	if !ok { // closed while opening
		close(h.done)
		return
	}
	go h.read(up)
}

// setSource makes src the hub's upstream, so that close reaches it. It
// reports false, having closed src, when the hub is closed.
func (h *hub) setSource(src Source) bool {
	h.mu.Lock()
	closed := h.closed
	if !closed {
		h.src = src
	}
	h.mu.Unlock()
	if closed {
		src.Close()
	}
	return !closed
}

// read is the hub's reader goroutine: it delivers every tag of the
// upstream, switching upstreams (Registry.Switch) and re-attaching when
// the upstream fails (Config.Reattach), then closes the hub.
func (h *hub) read(up Opened) {
	defer close(h.done)
	h.cur = up
	err := h.readFrom(up.Source, true)
	for h.ctx.Err() == nil {
		if err == errSwitched {
			err = h.readTags(h.cur.Source)
			continue
		}
		h.setLive(false)
		h.cur.Source.Close()
		if p := h.sw.Load(); p != nil {
			// The old upstream ended with a switch pending: switch as soon
			// as the new one has its keyframe, rather than re-attach.
			if h.awaitKey(p) {
				off, aligned := h.alignment(p)
				err = h.adopt(p, off, aligned)
				continue
			}
			p.mu.Lock()
			why := p.err
			p.mu.Unlock()
			if why == nil {
				why = context.DeadlineExceeded
			}
			h.abandon(p, why)
		}
		err = h.ended(h.cur, err)
		h.stopGraceTimer()
		if err == io.EOF && h.cfg.PublishGrace > 0 || !h.graceEnd.IsZero() && err != nil {
			// The publisher stopped, or the upstream opened to wait for
			// it ended before it came back: wait within the grace.
			up, gerr := h.graceOpen()
			if gerr != nil {
				err = gerr
				break
			}
			if h.curCancel != nil {
				h.curCancel()
				h.curCancel = nil
			}
			h.cur = up
			h.ts.reattached()
			h.rep = Reattach{Key: h.key, Kind: SwitchPublisher, Origins: up.Origins}
			h.repSince, h.repOn = h.failed, true
			err = h.readFrom(up.Source, false)
			continue
		}
		if err == nil || err == io.EOF || h.cfg.Reattach <= 0 {
			break
		}
		if h.failed.IsZero() {
			h.failed = time.Now()
		}
		up, rerr := h.reattach(h.failed.Add(h.cfg.Reattach))
		if rerr != nil {
			h.report(Reattach{Key: h.key, Kind: SwitchFailover, Took: time.Since(h.failed), Err: rerr})
			err = rerr
			break
		}
		if h.curCancel != nil {
			h.curCancel()
			h.curCancel = nil
		}
		h.cur = up
		h.reg.reattached.Add(1)
		h.ts.reattached() // enter resets the GOP cache unless aligned
		h.rep = Reattach{Key: h.key, Kind: SwitchFailover, Origins: up.Origins}
		h.repSince, h.repOn = h.failed, true
		err = h.readFrom(up.Source, false)
	}
	h.stopGraceTimer()
	if err == io.EOF || err == errGraceOver {
		err = nil
	}
	h.close(err)
	h.stopWakeTimer()
}

// errGraceOver ends a hub whose publisher did not come back within
// Config.PublishGrace: for the subscribers, the stream's clean end.
var errGraceOver = errors.New("fanout: the publisher did not come back")

// graceMaxTry bounds the wait between a grace's opens.
const graceMaxTry = time.Second

// graceOpen opens the stream again within Config.PublishGrace from the
// publisher's end, to wait for a publisher: it runs the Opener
// (reattach), backing off after an open whose upstream ended without
// media, and arms a timer that closes the upstream at the grace's end
// unless a tag came first (deliverNow), so that a play waiting for a
// publisher that never comes (SRS's plays wait) does not hold the
// players. It returns errGraceOver, the grace reported, when the grace
// ended without the stream. Run by the reader goroutine.
func (h *hub) graceOpen() (Opened, error) {
	now := time.Now()
	if h.graceEnd.IsZero() {
		h.graceEnd, h.graceTry = now.Add(h.cfg.PublishGrace), 0
		h.failed = now
		// A new publish continues nothing the players had, even where
		// its frames are the same bytes (a test pattern): it is rebased,
		// never aligned by content with the old one.
		h.seen = seenRing{}
	} else if h.graceTry > 0 {
		t := time.NewTimer(max(0, min(h.graceTry, time.Until(h.graceEnd))))
		select {
		case <-t.C:
		case <-h.ctx.Done():
			t.Stop()
			return Opened{}, h.ctx.Err()
		}
	}
	h.graceTry = min(max(2*h.graceTry, 100*time.Millisecond), graceMaxTry)
	var up Opened
	err := errGraceOver
	if time.Now().Before(h.graceEnd) {
		up, err = h.reattach(h.graceEnd)
	}
	if err != nil || !time.Now().Before(h.graceEnd) {
		if up.Source != nil {
			up.Source.Close()
		}
		if h.ctx.Err() != nil {
			return Opened{}, h.ctx.Err()
		}
		h.report(Reattach{Key: h.key, Kind: SwitchPublisher, Took: time.Since(h.failed), Err: errGraceOver})
		h.graceEnd, h.failed = time.Time{}, time.Time{}
		return Opened{}, errGraceOver
	}
	src := up.Source
	h.mu.Lock()
	h.graceSrc = src
	h.mu.Unlock()
	h.graceTimer = time.AfterFunc(time.Until(h.graceEnd), func() {
		h.mu.Lock()
		mine := h.graceSrc == src
		h.mu.Unlock()
		if mine {
			src.Close()
		}
	})
	return up, nil
}

// stopGraceTimer stops the timer that ends a grace's upstream. Run by the
// reader goroutine.
func (h *hub) stopGraceTimer() {
	if h.graceTimer == nil {
		return
	}
	h.graceTimer.Stop()
	h.graceTimer = nil
	h.mu.Lock()
	h.graceSrc = nil
	h.mu.Unlock()
}

// setLive says whether a planned switch may start.
func (h *hub) setLive(live bool) {
	h.mu.Lock()
	h.live = live
	h.mu.Unlock()
}

// resetGOP empties the GOP cache.
func (h *hub) resetGOP() {
	h.mu.Lock()
	clear(h.gop)
	h.gop, h.gopBytes, h.gopOK = h.gop[:0], 0, false
	h.mu.Unlock()
}

// errMoved ends an upstream whose origin ended the stream cleanly after the
// stream moved to another origin: for the players it is a failure to
// re-attach from, not the publisher's end.
var errMoved = errors.New("fanout: the stream moved to another origin")

// ended is err, or errMoved when up ended cleanly because the stream moved
// (Opened.Moved).
func (h *hub) ended(up Opened, err error) error {
	if err == io.EOF && up.Moved != nil && up.Moved(h.ctx) {
		return errMoved
	}
	return err
}

func (h *hub) report(r Reattach) {
	h.mu.Lock()
	r.Subscribers = len(h.subs)
	h.mu.Unlock()
	if h.cfg.OnReattach != nil {
		h.cfg.OnReattach(r)
	}
}

func (h *hub) reportSwitch(r Reattach) {
	h.mu.Lock()
	r.Subscribers = len(h.subs)
	h.mu.Unlock()
	if h.cfg.OnSwitch != nil {
		h.cfg.OnSwitch(r)
	}
}

// readFrom reads src's header, then delivers its tags until it ends. The
// first upstream's header goes to the subscribers; later ones' are read
// and dropped.
func (h *hub) readFrom(src Source, first bool) error {
	hdr, err := src.ReadHeader()
	if err != nil {
		return err
	}
	if first {
		h.mu.Lock()
		h.header = hdr
		for s := range h.subs {
			h.fastStart(s)
			s.signal()
		}
		h.mu.Unlock()
	}
	return h.readTags(src)
}

// readTags delivers the tags of src until it ends, or the hub switched
// to another upstream (errSwitched).
func (h *hub) readTags(src Source) error {
	for {
		t, err := src.ReadTag()
		if err != nil {
			return err
		}
		if len(t.Data)-tagHeaderSize-prevSizeLen > h.cfg.MaxTagSize {
			return fmt.Errorf("%w: %d bytes", ErrTagTooLarge, len(t.Data)-tagHeaderSize-prevSizeLen)
		}
		if h.ts.skip(t, h.hasVideo) {
			continue
		}
		if h.ts.pending {
			// A re-attached upstream: its headers wait for its first
			// frame, which says whether the players had it already.
			if isHeaderTag(t) {
				h.held = keepHeader(h.held, t) // one of each kind: bounded
				continue
			}
			h.enter(t)
		}
		if h.ts.repeat(t) {
			continue
		}
		if p := h.sw.Load(); p != nil {
			switch step, off := h.step(p, t); step {
			case stepAligned:
				return h.adopt(p, off, true)
			case stepRebase:
				h.emit(t)
				return h.adopt(p, 0, false)
			}
		}
		h.emit(t)
	}
}

// emit rebases t and delivers it.
func (h *hub) emit(t Tag) { h.deliverNow(h.ts.apply(t)) }

// deliverNow delivers t, its timestamp final, remembers it when it is a
// keyframe, and reports the switch it ends, if any.
func (h *hub) deliverNow(t Tag) {
	h.deliver(t)
	if t.Kind == KindKeyframe {
		h.seen.add(h.hash(t), t.Timestamp)
	}
	now := time.Now()
	// A publisher grace ends at the new publish's first frame: an
	// origin's own data message on a play (nginx-rtmp's
	// |RtmpSampleAccess) says nothing of a publisher.
	if h.repOn && (h.rep.Kind != SwitchPublisher || (t.Type == TagAudio || t.Type == TagVideo) && !isHeaderTag(t)) {
		h.repOn = false
		r := h.rep
		r.Took, r.Gap, r.Repeats = now.Sub(h.repSince), now.Sub(h.lastAt), h.ts.repeats
		if r.Kind == SwitchFailover || r.Kind == SwitchPublisher {
			h.stopGraceTimer()
			h.failed, h.graceEnd = time.Time{}, time.Time{}
			h.setLive(true)
			h.report(r)
		} else {
			h.reportSwitch(r)
		}
	}
	h.lastAt = now
}

// reattach runs the Opener until it gives a Source or the deadline has
// passed, backing off between tries.
func (h *hub) reattach(deadline time.Time) (Opened, error) {
	ctx, cancel := context.WithDeadline(h.ctx, deadline)
	defer cancel()
	backoff := 100 * time.Millisecond
	for {
		h.openMu.Lock()
		up, err := h.open(ctx)
		h.openMu.Unlock()
		if err == nil && up.Source != nil {
			if !h.setSource(up.Source) {
				return Opened{}, ErrClosed
			}
			h.mu.Lock()
			if h.playing == "" {
				h.playing = up.Origins.From
			}
			if up.Origins.To != "" {
				up.Origins.From, h.playing = h.playing, up.Origins.To
			}
			h.mu.Unlock()
			return up, nil
		}
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		if errors.Is(err, ErrRefused) { // the new origin said no: no retry changes that
			return Opened{}, fmt.Errorf("fanout: re-attach refused: %w", err)
		}
		select {
		case <-ctx.Done():
			return Opened{}, fmt.Errorf("fanout: re-attach gave up: %w", err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// deliver caches t and queues it for every subscriber.
func (h *hub) deliver(t Tag) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cache(t)
	for s := range h.subs {
		h.offer(s, t)
	}
	h.wake()
}

// wakeSettle is how long a tag that arrives after a quiet interval waits
// for the ones right behind it: an origin writes a batch of tags at once
// (SRS's mw_latency), which the hub reads in several reads, and a player
// is better written the whole batch than its first tag, then the rest.
const wakeSettle = 5 * time.Millisecond

// wake signals the subscribers that have tags queued, at most once per
// Config.WakeEvery: tags delivered sooner are signalled by the hub's wake
// timer at the end of the interval, and the first after a quiet interval
// by the timer too, wakeSettle later. Called with h.mu held.
func (h *hub) wake() {
	now := time.Now()
	if h.cfg.WakeEvery < 0 {
		h.wokeAt = now
		h.signalQueued()
		return
	}
	if h.wakeDue {
		return
	}
	h.wakeDue = true
	d := max(h.wokeAt.Add(h.cfg.WakeEvery).Sub(now), min(wakeSettle, h.cfg.WakeEvery))
	if h.wakeTimer == nil {
		h.wakeTimer = time.AfterFunc(d, h.timerWake)
	} else {
		h.wakeTimer.Reset(d)
	}
}

// timerWake is the wake timer's function: see wake.
func (h *hub) timerWake() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.wakeDue = false
	h.wokeAt = time.Now()
	h.signalQueued()
}

// signalQueued signals the subscribers with tags queued. Called with h.mu
// held.
func (h *hub) signalQueued() {
	for s := range h.subs {
		if len(s.queue) > 0 {
			s.signal()
		}
	}
}

// stopWakeTimer stops the wake timer, once the hub has ended: what its
// subscribers still have queued is read once they see the end.
func (h *hub) stopWakeTimer() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wakeTimer != nil {
		h.wakeTimer.Stop()
	}
	h.wakeDue = false
}

// cache updates the cache with t. Called with h.mu held.
func (h *hub) cache(t Tag) {
	switch t.Kind {
	case KindMetadata:
		h.meta = t.Data
		h.gen++
		return
	case KindVideoSeq:
		h.videoSeq, h.hasVideo = t.Data, true
		h.gen++
		return
	case KindAudioSeq:
		h.audioSeq = t.Data
		h.gen++
		return
	case KindKeyframe:
		clear(h.gop)
		h.gop, h.gopBytes, h.gopOK = h.gop[:0], 0, true
	}
	if t.Type == TagVideo {
		h.hasVideo = true
	}
	if !h.gopOK {
		return
	}
	if len(h.gop) >= h.cfg.GOPTags || h.gopBytes+len(t.Data) > h.cfg.GOPBytes {
		clear(h.gop)
		h.gop, h.gopBytes, h.gopOK = h.gop[:0], 0, false
		return
	}
	h.gop = append(h.gop, t.Data)
	h.gopBytes += len(t.Data)
}

// offer queues t for s unless s is dropping, starting or ending drops and
// kicking s when it is too far behind. Called with h.mu held; it never
// blocks.
func (h *hub) offer(s *Subscriber, t Tag) {
	if t.Kind == KindMetadata || t.Kind == KindVideoSeq || t.Kind == KindAudioSeq {
		switch {
		case s.waitKey || s.dropping:
			// resume sends the current ones
		case s.fits(len(t.Data), h.cfg.QueueBytes):
			s.push(t.Data)
			s.gen = h.gen
		default:
			s.dropping, s.drops = true, s.drops+1
			h.reg.dropped.Add(1)
			h.behind(s, len(t.Data))
		}
		return
	}
	resumable := t.Kind == KindKeyframe || (!h.hasVideo && t.Type == TagAudio)
	if s.waitKey || s.dropping {
		if !resumable || !s.fits(len(t.Data)+len(h.meta)+len(h.videoSeq)+len(h.audioSeq), h.cfg.QueueBytes) {
			if s.dropping {
				h.behind(s, len(t.Data))
			}
			return
		}
		s.waitKey, s.dropping, s.behindBy = false, false, 0
		h.resume(s)
	}
	if !s.fits(len(t.Data), h.cfg.QueueBytes) {
		s.dropping, s.drops = true, s.drops+1
		h.reg.dropped.Add(1)
		h.behind(s, len(t.Data))
		return
	}
	s.push(t.Data)
}

// behind counts n more bytes s missed, kicking it past BehindBytes.
func (h *hub) behind(s *Subscriber, n int) {
	s.behindBy += n
	if s.behindBy > h.cfg.BehindBytes {
		delete(h.subs, s)
		h.reg.kicked.Add(1)
		s.finish(ErrSlow)
		h.idle()
	}
}

// idle starts the linger once the last subscriber is gone. Called with
// h.mu held.
func (h *hub) idle() {
	if len(h.subs) > 0 || h.closed || h.linger != nil || !h.started {
		return
	}
	if h.cfg.Linger < 0 {
		go h.close(nil)
		return
	}
	h.lingers++
	n := h.lingers
	h.linger = time.AfterFunc(h.cfg.Linger, func() { h.lingerEnd(n) })
}

// lingerEnd closes the hub unless a subscriber came back since linger n
// began.
func (h *hub) lingerEnd(n uint64) {
	h.mu.Lock()
	idle := len(h.subs) == 0 && h.linger != nil && h.lingers == n
	h.mu.Unlock()
	if idle {
		h.close(nil)
	}
}

// close ends the hub: no new subscriber joins it, its subscribers end
// (with err, after their queues) and its upstream is closed. It waits for
// the reader goroutine unless called from it, and is safe to call twice.
func (h *hub) close(err error) {
	h.reg.remove(h)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	if h.linger != nil {
		h.linger.Stop()
		h.linger = nil
	}
	for s := range h.subs {
		s.finish(err)
	}
	clear(h.subs)
	src := h.src
	h.mu.Unlock()
	h.cancel()
	if src != nil {
		src.Close()
	}
	go func() { // the reader (or a failed start) closes done
		<-h.done
		h.swWG.Wait() // a closed hub starts no switch; h.cancel ended those running
		h.reg.wg.Done()
	}()
}

// Subscriber is one player of a hub. Its queue holds references to the
// hub's immutable tag buffers; nothing is copied per subscriber.
type Subscriber struct {
	h      *hub
	notify chan struct{} // a token when the queue gets data
	end    chan struct{} // closed by finish

	// Guarded by h.mu.
	queue    [][]byte
	queued   int
	waitKey  bool // joined without a whole GOP cached: waits for a keyframe
	dropping bool
	started  bool // has had the metadata and sequence headers
	gen      uint64
	behindBy int
	drops    int
	err      error // why it ended, once end is closed; nil at upstream EOF
	left     bool
	pusher   *pushed // the writer of a pushed player (Registry.Push)
}

// keepQueue is the largest queue array (in tags) a subscriber keeps between
// batches: enough for the tags of a live stream between two wake-ups,
// while a fast start's GOP, hundreds of tags, gets an array that is freed
// once it is read. It bounds what an idle player holds, in a player count
// of thousands.
const keepQueue = 32

// Info returns what the hub's first open returned as Opened.Info.
func (s *Subscriber) Info() any { return s.h.info }

func (s *Subscriber) fits(n, bound int) bool { return s.queued+n <= bound }

func (s *Subscriber) push(b []byte) {
	s.queue = append(s.queue, b)
	s.queued += len(b)
}

func (s *Subscriber) signal() {
	if s.pusher != nil {
		s.pusher.wake()
		return
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// finish ends s with err once its queue is read. Called with h.mu held.
func (s *Subscriber) finish(err error) {
	select {
	case <-s.end:
	default:
		s.err = err
		close(s.end)
		if s.pusher != nil {
			s.pusher.wake()
		}
	}
}

// Drops returns how many times s started dropping tags.
func (s *Subscriber) Drops() int {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return s.drops
}

// Next waits for queued data and appends it to dst: FLV header and tags as
// the player gets them, each a reference to a shared buffer the caller must
// not modify. It returns io.EOF when the upstream ended cleanly and
// everything queued was returned, ErrSlow when s was disconnected for
// falling behind, the upstream's error, or ctx's.
func (s *Subscriber) Next(ctx context.Context, dst net.Buffers) (net.Buffers, error) {
	for {
		s.h.mu.Lock()
		if len(s.queue) > 0 {
			dst = s.moveQueue(dst)
			s.h.mu.Unlock()
			return dst, nil
		}
		select {
		case <-s.end:
			err := s.err
			s.h.mu.Unlock()
			if err == nil {
				err = io.EOF
			}
			return dst, err
		default:
		}
		s.h.mu.Unlock()
		select {
		case <-s.notify:
		case <-s.end:
		case <-ctx.Done():
			return dst, ctx.Err()
		}
	}
}

// WriteTo writes the stream to w until it ends, with writev where w
// supports it (net.Buffers). It returns the bytes written and why it
// ended (nil at the upstream's clean end).
func (s *Subscriber) WriteTo(w io.Writer) (int64, error) {
	var bufs net.Buffers
	out := new(net.Buffers) // WriteTo consumes its receiver; bufs keeps the array
	var total int64
	for {
		var err error
		bufs, err = s.Next(context.Background(), bufs[:0])
		*out = bufs
		n, werr := out.WriteTo(w)
		total += n
		clear(bufs)
		if cap(bufs) > keepQueue {
			bufs = nil
		}
		if werr != nil {
			return total, werr
		}
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return total, err
		}
	}
}

// Close leaves the hub; the hub lingers when it was the last subscriber.
// It is safe to call twice.
func (s *Subscriber) Close() error {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.left {
		return nil
	}
	s.left = true
	h.reg.subs.Add(-1)
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		s.finish(ErrClosed)
		clear(s.queue)
		s.queue = nil
		h.idle()
	}
	return nil
}
