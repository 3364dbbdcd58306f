package httpstream

import (
	"container/list"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/internal/route"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Documents held while their stream moves (see Server.serveHeld) wait for
// one retry loop, whatever their number and their queries: the loop probes
// a document (holdTable, runHold), and the requests waiting for it each ask
// the origin once when it ends. A request thus costs the origin at most two
// requests across a move (one when it comes while a loop runs).
//
// There are two kinds of loops, and a client can start neither for a name
// of its choice:
//
//   - one per stream and document, for a stream whose replicated
//     assignment moved within MoveHold and moveHoldWindow (inMoveWindow):
//     it probes the new origin for the document, at most maxHoldProbes
//     times per move. Only a node's own observation moves a stream, so the
//     streams with such loops are the mesh's, not the client's;
//   - one per origin, for any stream whose origin the node could not reach
//     (no answer at all, before the stream moved off it): it probes that
//     origin, at most maxHoldProbes times per MoveHold+moveHoldWindow,
//     whatever the streams asked for. Origins are the mesh's too.
//
// An answer the origin itself gave (a 502 or 503 of its own, a 404) for a
// stream that did not move is never held: it goes to the client as it is.

// Bounds of the retries of held documents.
const (
	// maxHoldProbes bounds the probes of one moved stream's document per
	// move, and of one unreachable origin per MoveHold+moveHoldWindow.
	maxHoldProbes = 32
	// Bounds of holdTable: moved streams and unreachable origins with a
	// loop running or a budget remembered, and their bytes (the stream key
	// or origin address with entryOverhead).
	maxHoldStreams = 4096
	maxHoldBytes   = 2 << 20
)

// holdKey names what a loop waits for: a moved stream's document (key and
// suffix, ".m3u8" or ".mpd"), or an unreachable origin (origin, its HTTP
// address, and nothing else).
type holdKey struct {
	key    stream.Key
	suffix string
	origin string
}

func (k holdKey) size() int64 {
	return int64(len(k.key.Vhost) + len(k.key.App) + len(k.key.Stream) + len(k.suffix) + len(k.origin) + entryOverhead)
}

// holdLoop is a retry loop running for a held document. ready is set before
// done is closed: whether a probe found the document.
type holdLoop struct {
	done  chan struct{}
	ready bool
}

// answered reports whether l ended and a probe found what it waited for.
func (l *holdLoop) answered() bool {
	select {
	case <-l.done:
		return l.ready
	default:
		return false
	}
}

// holdEntry is what holdTable knows of one moved stream's document or one
// unreachable origin.
type holdEntry struct {
	key    holdKey
	moved  time.Time // the move whose budget this is
	window time.Time // end of the budget window; the entry may go after it
	probes int       // probes made in the window
	ready  bool      // a probe found the document since moved
	loop   *holdLoop // the loop running, or nil
}

// holdTable holds the retry loops of held documents and their budgets,
// bounded in entries (maxHoldStreams) and bytes (maxHoldBytes). An entry
// stays while its loop runs and until its budget window ends; when the
// table is full of such entries, a new one is not made (the request's
// answer goes to the client as it is). Its keys are streams that moved and
// origins (see holdKey), never names a client made up. The zero value is
// ready to use.
type holdTable struct {
	mu    sync.Mutex
	lru   list.List // of *holdEntry, most recently started first
	m     map[holdKey]*list.Element
	bytes int64
}

func (t *holdTable) stats() (entries int, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lru.Len(), t.bytes
}

// join returns the loop to wait for k, starting one with start when none
// runs, or nil when the request is not to wait: gate is set and a probe
// found the document since the move, the budget of probes is spent, or the
// table is full. moved is the stream's last move (zero: none known) and
// window how long a budget lasts.
func (t *holdTable) join(k holdKey, moved time.Time, gate bool, now time.Time, window time.Duration, start func(*holdEntry, *holdLoop)) *holdLoop {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[holdKey]*list.Element)
	}
	var e *holdEntry
	if el, ok := t.m[k]; ok {
		e = el.Value.(*holdEntry)
		if e.loop != nil {
			return e.loop
		}
		if !e.moved.Equal(moved) || now.After(e.window) {
			*e = holdEntry{key: k, moved: moved, window: now.Add(window)}
		}
		t.lru.MoveToFront(el)
	} else {
		for el := t.lru.Back(); el != nil && t.full(k) && t.idle(el.Value.(*holdEntry), now); el = t.lru.Back() {
			t.removeLocked(el)
		}
		if t.full(k) {
			return nil
		}
		e = &holdEntry{key: k, moved: moved, window: now.Add(window)}
		t.m[k] = t.lru.PushFront(e)
		t.bytes += k.size()
	}
	if (gate && e.ready) || e.probes >= maxHoldProbes {
		return nil
	}
	l := &holdLoop{done: make(chan struct{})}
	e.loop = l
	start(e, l)
	return l
}

// full reports whether one more entry k would break a bound.
func (t *holdTable) full(k holdKey) bool {
	return t.lru.Len() >= maxHoldStreams || t.bytes+k.size() > maxHoldBytes
}

// idle reports whether e may go: no loop and its window over.
func (t *holdTable) idle(e *holdEntry, now time.Time) bool {
	return e.loop == nil && now.After(e.window)
}

func (t *holdTable) removeLocked(el *list.Element) {
	e := t.lru.Remove(el).(*holdEntry)
	delete(t.m, e.key)
	t.bytes -= e.key.size()
}

// spend takes one probe of e's budget, or reports that it is spent.
func (t *holdTable) spend(e *holdEntry) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.probes >= maxHoldProbes {
		return false
	}
	e.probes++
	return true
}

// end ends e's loop l with its outcome and releases its waiters.
func (t *holdTable) end(e *holdEntry, l *holdLoop, ready bool) {
	t.mu.Lock()
	if e.loop == l {
		e.loop = nil
		e.ready = e.ready || ready
	}
	l.ready = ready
	t.mu.Unlock()
	close(l.done)
}

// holdWindow is how long a budget of probes lasts.
func (s *Server) holdWindow() time.Duration { return s.moveHold + moveHoldWindow }

// joinHold returns the loop a request for k's document waits for (see
// holdTable.join), starting it in a goroutine of the server's. k's stream
// must be in its move window (inMoveWindow): only streams the mesh moved
// get a loop of their own.
func (s *Server) joinHold(k holdKey, gate bool) *holdLoop {
	_, _, moved := s.epoch(k.key)
	return s.holds.join(k, moved, gate, time.Now(), s.holdWindow(), func(e *holdEntry, l *holdLoop) {
		s.startHold(e, l, func() bool { return s.probeHeld(k) })
	})
}

// joinOrigin returns the loop a request waits for after the node got no
// answer from origin (an HTTP address the Router gave) for k's document:
// one loop per origin, whatever the stream, which probes the origin until
// it answers (probeOrigin). The first request's document is what the loop
// asks for.
func (s *Server) joinOrigin(origin string, k holdKey) *holdLoop {
	return s.holds.join(holdKey{origin: origin}, time.Time{}, false, time.Now(), s.holdWindow(), func(e *holdEntry, l *holdLoop) {
		s.startHold(e, l, func() bool { return s.probeOrigin(origin, k) })
	})
}

// startHold starts e's loop l with probe in a goroutine of the server's.
func (s *Server) startHold(e *holdEntry, l *holdLoop, probe func() bool) {
	s.wg.Add(1)
	go s.runHold(e, l, probe)
}

// runHold calls probe every moveHoldRetry, within e's budget, until it
// reports true or MoveHold has passed, and ends l.
func (s *Server) runHold(e *holdEntry, l *holdLoop, probe func() bool) {
	defer s.wg.Done()
	deadline := time.Now().Add(s.moveHold)
	ready := false
	for s.holds.spend(e) {
		if ready = probe(); ready {
			break
		}
		if time.Now().Add(moveHoldRetry).After(deadline) {
			break
		}
		t := time.NewTimer(moveHoldRetry)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
		}
		if s.ctx.Err() != nil {
			break
		}
	}
	s.holds.end(e, l, ready)
}

// probeHeld routes k's stream and asks its origin for the document with no
// client query or headers (only the vhost, see withVhost), so that what a
// client adds to its query never makes a probe, and no client's
// credentials reach the origin on behalf of another. It reports whether the
// answer ends the hold: anything but no answer, a 502 or 503, and, within
// the move window (see serveHeld), a 404. With the document cache the
// probe goes through it (a 200 is stored for the empty query, as any
// client's).
func (s *Server) probeHeld(k holdKey) bool {
	ctx, cancel := context.WithTimeout(s.ctx, s.moveHold)
	defer cancel()
	o, err := route.For(s.router, true)(ctx, k.key)
	if err != nil || o.HTTP == "" {
		return false
	}
	p, q := keyPath(k.key, k.suffix), withVhost("", k.key)
	status, ok := s.probeStatus(ctx, o.HTTP, p, q, k.suffix)
	if !ok {
		return false
	}
	switch status {
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return false
	case http.StatusNotFound:
		return !s.inMoveWindow(k.key)
	}
	return true
}

// probeOrigin asks origin for k's document with no client query or
// headers (as probeHeld does, without routing) and reports whether any
// answer came: the origin is reachable again, and the requests waiting for
// it may ask it themselves.
func (s *Server) probeOrigin(origin string, k holdKey) bool {
	ctx, cancel := context.WithTimeout(s.ctx, s.moveHold)
	defer cancel()
	_, ok := s.probeStatus(ctx, origin, keyPath(k.key, k.suffix), withVhost("", k.key), k.suffix)
	return ok
}

// probeStatus returns the status of the origin's answer to a GET of path p
// and query q, or false when none came.
func (s *Server) probeStatus(ctx context.Context, origin, p, q, suffix string) (int, bool) {
	if c := s.docs; c != nil {
		f := hlsFormat
		if suffix == ".mpd" {
			f = dashFormat
		}
		obj, err := s.shared(ctx, c, origin+" "+p+"?"+q, func(ctx context.Context) (*object, time.Duration, error) {
			obj, err := s.fetchObject(ctx, c, http.Header{}, origin, p, q)
			if err != nil {
				return nil, 0, err
			}
			return obj, s.documentTTL(obj.body, f), nil
		})
		switch {
		case err == nil:
			return obj.status, true
		case errors.Is(err, errTooLarge):
			return http.StatusOK, true
		case !errors.Is(err, errBusy):
			return 0, false
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, originURL(origin, p, q), nil)
	if err != nil {
		return 0, false
	}
	resp, err := s.transport.RoundTrip(req)
	if err != nil {
		return 0, false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, MaxPlaylistSize))
	resp.Body.Close()
	return resp.StatusCode, true
}

// inMoveWindow reports whether key's stream moved (epoch > 0) within MoveHold and
// moveHoldWindow: a 404 of its new origin is then taken for a document not
// written yet.
func (s *Server) inMoveWindow(key stream.Key) bool {
	e, _, moved := s.epoch(key)
	return e > 0 && !moved.IsZero() && time.Since(moved) < s.holdWindow()
}
