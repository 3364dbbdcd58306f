package fanout

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Player is a player that a Registry writes to without a goroutine of its
// own (Registry.Push): the protocol's framing of the shared tags, and what
// is done once the play ends.
type Player interface {
	// Frame appends to dst the buffers that carry tags to the player:
	// the tags themselves (shared and read-only, as Next returns them) and
	// headers of the player's own between them. It is not called again
	// until everything it returned was written, so a header buffer of the
	// player's may be reused then. It is called by one goroutine at a
	// time.
	Frame(dst, tags net.Buffers) net.Buffers
	// Wrote counts n bytes written to the player's connection.
	Wrote(n int)
	// End is called once, on a goroutine of its own, when the play is
	// over: with io.EOF when the upstream ended cleanly and the player
	// was sent everything, ErrGone when the player closed its connection,
	// or the error that ended it (ErrSlow, the upstream's, the context's,
	// a write's). The subscriber is closed by then; the connection is
	// not: End closes it.
	End(err error)
}

// PushOptions tune Registry.Push.
type PushOptions struct {
	// Idle bounds how long a write may wait for a player that does not
	// read; past it the play ends with the write's error. Zero waits as
	// long as the player's connection lives.
	Idle time.Duration
	// Discard reads what the player sends, at most once a second, and
	// throws it away (an RTMP player's acknowledgements, an HTTP player's
	// pipelined bytes): it keeps the player's socket from filling, and it
	// sees the player close its connection within three seconds even
	// while the stream is quiet (a sweep gives such a player a turn). As
	// net/http does for a request's context, a player that shuts down its
	// sending side only is taken as gone: the play ends with ErrGone.
	Discard bool
}

// ErrGone ends a pushed player that closed its connection.
var ErrGone = errors.New("fanout: the player closed its connection")

// errWouldBlock is a write that the connection could not take whole.
var errWouldBlock = errors.New("fanout: write would block")

// maxIOV is the most buffers one writev takes (Linux's IOV_MAX).
const maxIOV = 1024

// discardEvery is how often a pushed player's input is read
// (PushOptions.Discard), and discardReads bounds the reads of one turn, so
// that a player that floods the node gets no more of its time.
const (
	discardEvery = time.Second
	discardReads = 16
)

// Push hands sub's player to the registry's writers: they write its
// queued tags, framed by pl, to nc without blocking, each time the hub
// wakes its subscribers, so that a player that keeps up costs no
// goroutine (and no goroutine stack) while it waits for data. A player
// whose connection cannot take a batch whole gets a goroutine until it
// has; the hub's bounds (QueueBytes, BehindBytes) apply as to any
// subscriber. The play ends, and pl.End is called, when the upstream,
// the player's connection or ctx ends, or Close.
//
// nc must give its file descriptor (syscall.Conn: a TCP connection, or
// one that wraps it and says so with RawConn() net.Conn); Push reports
// false, having done nothing, when it does not (a TLS connection): the
// caller then serves sub itself with Next. Once Push returns true, sub
// and nc are the registry's until pl.End.
func (r *Registry) Push(ctx context.Context, sub *Subscriber, nc net.Conn, pl Player, o PushOptions) bool {
	if u, ok := nc.(interface{ RawConn() net.Conn }); ok {
		nc = u.RawConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ps := &r.push
	p := &pushed{ps: ps, sub: sub, nc: nc, rc: rc, pl: pl, idle: o.Idle, discard: o.Discard}
	p.read.Store(ps.now())
	// Push holds p's turn while it sets p up: a wake-up meanwhile (the
	// context's end, the registry's close, the hub's) is counted, not run,
	// and nothing of p is read before p.stop is set.
	p.wakes.Store(1)
	if !ps.add(r, p) {
		return false
	}
	p.stop = context.AfterFunc(ctx, func() {
		p.cancelled.Store(true)
		nc.SetDeadline(time.Now()) // a write waiting for the player returns
		p.wake()
	})
	h := sub.h
	h.mu.Lock()
	sub.pusher = p
	h.mu.Unlock()
	ps.enqueue(p) // the turn passes on: what was queued before, or the end
	return true
}

// pusher is a Registry's writers of pushed players: workers that run the
// players the hubs woke, and the players that are live.
type pusher struct {
	mu      sync.Mutex
	cond    sync.Cond
	queue   []*pushed
	live    pushedList
	started bool
	closing bool        // no new player; the workers end once live is empty
	sweep   *time.Timer // sweepQuiet's, armed while a Discard player is live
	armed   bool        // sweep will fire
	epoch   time.Time   // the origin of now
	wg      sync.WaitGroup
	waiting atomic.Int32 // players whose turn is on a goroutine of their own (wait)
}

// add makes p live, starting the workers with the first player. It
// reports false once the registry is closing.
func (ps *pusher) add(r *Registry, p *pushed) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closing {
		return false
	}
	if !ps.started {
		ps.started = true
		ps.cond.L = &ps.mu
		n := max(1, runtime.GOMAXPROCS(0))
		ps.wg.Add(n)
		for range n {
			go ps.work()
		}
	}
	if p.discard && !ps.armed {
		ps.armed = true
		if ps.sweep == nil {
			ps.sweep = time.AfterFunc(discardEvery, ps.sweepQuiet)
		} else {
			ps.sweep.Reset(discardEvery)
		}
	}
	ps.live.push(p)
	return true
}

// enqueue puts p on the run queue; the caller holds p's turn (see wake).
// It wakes a worker when the queue was empty: while it is not, a worker
// is running, and it calls for help once the queue is long (spreadAt).
func (ps *pusher) enqueue(p *pushed) {
	ps.mu.Lock()
	ps.queue = append(ps.queue, p)
	first := len(ps.queue) == 1
	ps.mu.Unlock()
	if first {
		ps.cond.Signal()
	}
}

// spreadAt is the run queue's length from which a worker wakes another:
// a hundred players' batches are written sooner by one worker than by two
// woken for them.
const spreadAt = 128

// work runs queued players until the pusher closes and no player is live.
func (ps *pusher) work() {
	defer ps.wg.Done()
	var w scratch
	for {
		ps.mu.Lock()
		for len(ps.queue) == 0 && !(ps.closing && ps.live.n == 0) {
			ps.cond.Wait()
		}
		if len(ps.queue) == 0 {
			ps.mu.Unlock()
			return
		}
		p := ps.queue[0]
		ps.queue[0] = nil
		ps.queue = ps.queue[1:]
		if len(ps.queue) == 0 {
			ps.queue = nil // the array is not kept past a burst
		}
		help := len(ps.queue) >= spreadAt
		ps.mu.Unlock()
		if help {
			ps.cond.Signal()
		}
		p.run(&w)
	}
}

// now is the monotonic time since the pusher was made, in nanoseconds:
// what a player's read is stamped with, which a step of the wall clock
// does not move.
func (ps *pusher) now() int64 { return int64(time.Since(ps.epoch)) }

// sweepQuiet gives a turn to each player that reads what it is sent
// (PushOptions.Discard) and whose input was not read for two
// discardEvery: a quiet stream wakes none, and a player that left would
// otherwise stay until the stream spoke again. It runs every
// discardEvery while such a player is live, until close.
func (ps *pusher) sweepQuiet() {
	stale := ps.now() - int64(2*discardEvery)
	var quiet []*pushed
	ps.mu.Lock()
	if ps.closing {
		ps.armed = false
		ps.mu.Unlock()
		return
	}
	found := false
	for p := ps.live.head; p != nil; p = p.next {
		if p.discard {
			found = true
			if p.read.Load() < stale {
				quiet = append(quiet, p)
			}
		}
	}
	if ps.armed = found; found {
		ps.sweep.Reset(discardEvery)
	}
	ps.mu.Unlock()
	for _, p := range quiet {
		p.wake()
	}
}

// close ends every live player (their connections' deadlines pass now)
// and waits until each has ended and the workers with them. Called by
// Registry.Close once the hubs are closed.
func (ps *pusher) close() {
	ps.mu.Lock()
	ps.closing = true
	if ps.cond.L == nil {
		ps.mu.Unlock()
		return
	}
	if ps.sweep != nil {
		ps.sweep.Stop()
	}
	var live []*pushed
	for p := ps.live.head; p != nil; p = p.next {
		p.cancelled.Store(true)
		p.nc.SetDeadline(time.Now()) // a write waiting for room returns
		live = append(live, p)
	}
	ps.mu.Unlock()
	for _, p := range live {
		p.wake()
	}
	ps.cond.Broadcast()
	ps.wg.Wait()
}

// remove forgets p, which has ended.
func (ps *pusher) remove(p *pushed) {
	ps.mu.Lock()
	ps.live.remove(p)
	last := ps.closing && ps.live.n == 0
	ps.mu.Unlock()
	if last {
		ps.cond.Broadcast()
	}
}

// scratch is a worker's: the iovec array of its writes and the buffer of
// its reads, shared by every player it runs.
type scratch struct {
	iov [maxIOV]syscall.Iovec
	buf [4096]byte
}

// pushed is one player of Push: what it keeps between turns is its
// connection, its subscription and the tags being written.
type pushed struct {
	ps      *pusher
	sub     *Subscriber
	nc      net.Conn
	rc      syscall.RawConn
	pl      Player
	stop    func() bool
	idle    time.Duration
	discard bool
	read    atomic.Int64 // when the player's input was last read (pusher.now)

	// wakes counts the wake-ups since the player's last turn ended. The
	// one that raises it from zero queues the player; whoever runs the
	// player holds the turn until it brings wakes back to zero from the
	// count it last saw, so a player runs on one goroutine at a time and
	// a wake-up during its turn is never lost. An ended player keeps it
	// above zero for good.
	wakes     atomic.Int32
	cancelled atomic.Bool // ctx ended, or the registry is closing

	tags     net.Buffers // the batch taken from the subscriber
	out      net.Buffers // what is to be written: Frame's, from out[sent]
	sent     int
	progress int64 // bytes written to the connection so far

	prev, next *pushed // the pusher's live list
}

// wake gives p a turn: queues it unless it is queued or running already.
func (p *pushed) wake() {
	if p.wakes.Add(1) == 1 {
		p.ps.enqueue(p)
	}
}

// run is p's turn on a worker: it writes what p's subscriber holds until
// nothing is left, the connection would block (a goroutine takes the
// turn over) or the play ends.
func (p *pushed) run(w *scratch) {
	for {
		seen := p.wakes.Load()
		if !p.step(w) {
			return
		}
		if p.wakes.CompareAndSwap(seen, 0) {
			return
		}
	}
}

// step writes one batch. It reports false when p's turn passed to a
// goroutine of its own or p ended.
func (p *pushed) step(w *scratch) bool {
	if p.cancelled.Load() {
		p.end(context.Canceled)
		return false
	}
	var end error
	if len(p.out) == 0 {
		p.tags, end = p.sub.take(p.tags[:0])
		if len(p.tags) > 0 {
			p.out = p.pl.Frame(p.out[:0], p.tags)
			clear(p.tags)
			if cap(p.tags) > keepQueue {
				p.tags = nil
			}
		}
	}
	if len(p.out) > 0 {
		switch err := p.write(w.iov[:]); {
		case err == errWouldBlock:
			p.ps.wg.Add(1)
			go p.wait(end)
			return false
		case err != nil:
			p.end(err)
			return false
		}
	}
	if end != nil {
		p.end(end)
		return false
	}
	if p.discard {
		if err := p.drain(w); err != nil {
			p.end(err)
			return false
		}
	}
	return true
}

// write writes p.out from p.sent without blocking, with iov as the iovec
// array. It returns nil once all is written (p.out is emptied),
// errWouldBlock when the connection took only part, or the write's error.
func (p *pushed) write(iov []syscall.Iovec) error {
	var err error
	if rerr := p.rc.Write(func(fd uintptr) bool {
		err = p.writeFD(fd, iov)
		return true
	}); rerr != nil {
		return rerr
	}
	return err
}

// writeFD is write on the connection's descriptor. The system call is
// made raw, without telling the Go scheduler: the socket is non-blocking,
// so writev returns at once (EAGAIN when it would wait). A
// scheduler-aware call of a large write lets the runtime's monitor thread
// see the worker "in a system call" and hand its processor to another
// thread, a wake-up of a thread per write that cost more than the write.
func (p *pushed) writeFD(fd uintptr, iov []syscall.Iovec) error {
	for p.sent < len(p.out) {
		k := 0
		for _, b := range p.out[p.sent:] {
			if k == len(iov) {
				break
			}
			if len(b) > 0 {
				iov[k] = syscall.Iovec{Base: &b[0]}
				iov[k].SetLen(len(b))
				k++
			}
		}
		if k == 0 {
			break
		}
		r, _, errno := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
		clear(iov[:k]) // no pointer into the player's buffers is kept
		switch errno {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return errWouldBlock
		default:
			return os.NewSyscallError("writev", errno)
		}
		p.pl.Wrote(int(r))
		p.progress += int64(r)
		p.advance(int(r))
	}
	p.reset()
	return nil
}

// advance marks n more bytes of p.out written.
func (p *pushed) advance(n int) {
	for n > 0 && p.sent < len(p.out) {
		b := p.out[p.sent]
		if len(b) > n {
			p.out[p.sent] = b[n:]
			return
		}
		n -= len(b)
		p.out[p.sent] = nil
		p.sent++
	}
	for p.sent < len(p.out) && len(p.out[p.sent]) == 0 {
		p.sent++
	}
}

// reset empties p.out, keeping a small array for the next batch.
func (p *pushed) reset() {
	clear(p.out)
	p.out, p.sent = p.out[:0], 0
	if cap(p.out) > 2*keepQueue {
		p.out = nil // a burst's (a fast start's GOP) is not kept
	}
}

// wait is p's turn on a goroutine of its own while its connection cannot
// take what is left of the batch: it writes it, waiting for room at most
// PushOptions.Idle at a time, then hands the turn back to the workers (or
// ends p with end, when the subscriber had ended with the batch).
func (p *pushed) wait(end error) {
	defer p.ps.wg.Done()
	p.ps.waiting.Add(1)
	defer p.ps.waiting.Add(-1)
	iov := make([]syscall.Iovec, min(len(p.out)-p.sent, maxIOV))
	for p.sent < len(p.out) {
		if p.idle > 0 {
			p.nc.SetWriteDeadline(time.Now().Add(p.idle))
		}
		// After the deadline is set: a cancel that set its own passing
		// deadline before this one is seen here, one after it is not
		// overwritten.
		if p.cancelled.Load() {
			p.end(context.Canceled)
			return
		}
		var err error
		if rerr := p.rc.Write(func(fd uintptr) bool {
			before := p.progress
			err = p.writeFD(fd, iov)
			// false: the runtime waits for room. A write that made
			// progress returns, so that Idle bounds each wait, not the
			// whole batch: a player that reads slowly but steadily is
			// not cut off.
			return err != errWouldBlock || p.progress != before
		}); rerr != nil {
			err = rerr
		}
		if err == errWouldBlock {
			continue
		}
		if err != nil {
			p.end(err)
			return
		}
	}
	p.nc.SetWriteDeadline(time.Time{})
	if end != nil {
		p.end(end)
		return
	}
	p.ps.enqueue(p)
}

// drain reads and discards what the player sent, once per discardEvery.
func (p *pushed) drain(w *scratch) error {
	now := p.ps.now()
	if now-p.read.Load() < int64(discardEvery) {
		return nil
	}
	p.read.Store(now)
	for range discardReads {
		var n int
		var errno syscall.Errno
		if err := p.rc.Read(func(fd uintptr) bool {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&w.buf[0])), uintptr(len(w.buf)))
			n, errno = int(r), e
			return true
		}); err != nil {
			return err
		}
		switch {
		case errno == syscall.EAGAIN:
			return nil
		case errno == syscall.EINTR:
		case errno != 0:
			return os.NewSyscallError("read", errno)
		case n == 0:
			return ErrGone
		case n < len(w.buf):
			return nil
		}
	}
	return nil
}

// end ends p: it leaves the hub and the pusher, and pl.End runs on a
// goroutine of its own (it may write a last message to the player).
func (p *pushed) end(err error) {
	if p.stop != nil {
		p.stop()
	}
	p.sub.Close()
	if err == context.Canceled || errors.Is(err, os.ErrDeadlineExceeded) && p.cancelled.Load() {
		err = context.Canceled
	}
	p.tags, p.out = nil, nil
	p.ps.wg.Add(1)
	go func() {
		defer p.ps.wg.Done()
		p.pl.End(err)
	}()
	p.ps.remove(p)
}

// pushedList is an intrusive list of the live pushed players.
type pushedList struct {
	head *pushed
	n    int
}

func (l *pushedList) push(p *pushed) {
	p.next = l.head
	if l.head != nil {
		l.head.prev = p
	}
	l.head = p
	l.n++
}

func (l *pushedList) remove(p *pushed) {
	if p.prev != nil {
		p.prev.next = p.next
	} else if l.head == p {
		l.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	}
	p.prev, p.next = nil, nil
	l.n--
}

// take returns, without waiting, what sub has queued (appended to dst)
// and, once sub has ended and nothing is left, why: io.EOF at the
// upstream's clean end.
func (s *Subscriber) take(dst net.Buffers) (net.Buffers, error) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	dst = s.moveQueue(dst)
	select {
	case <-s.end:
		if s.err == nil {
			return dst, io.EOF
		}
		return dst, s.err
	default:
		return dst, nil
	}
}

// moveQueue appends what s has queued to dst and empties the queue.
// Called with h.mu held.
func (s *Subscriber) moveQueue(dst net.Buffers) net.Buffers {
	if len(s.queue) == 0 {
		return dst
	}
	dst = append(dst, s.queue...)
	clear(s.queue)
	s.queue, s.queued = s.queue[:0], 0
	if cap(s.queue) > keepQueue {
		s.queue = nil // a burst's array (a fast start's GOP) is not kept for the player's lifetime
	}
	return dst
}
