// Package drain counts a server's live sessions so that the server can stop
// taking new ones and wait, within a deadline, for the live ones to end.
// Every protocol server of srs-mesh drains with it: RTMP connections, SRT
// sessions, WebRTC relay sessions and HTTP requests.
package drain

import (
	"context"
	"sync"
)

// Group counts live sessions. The zero value is ready to use; a Group must
// not be copied after first use. It is safe for concurrent use.
type Group struct {
	mu       sync.Mutex
	live     int
	draining bool
	idle     chan struct{} // closed when live reaches 0 during a drain
}

// Enter registers a new session and reports true, or reports false (and
// registers nothing) once Drain has begun: the caller then refuses the
// session in its protocol's way.
func (g *Group) Enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.draining {
		return false
	}
	g.live++
	return true
}

// Join registers a session even while draining, for sessions the server
// must still carry (a WebRTC flow whose ICE session was set up before the
// drain began). Drain waits for it too.
func (g *Group) Join() {
	g.mu.Lock()
	g.live++
	g.mu.Unlock()
}

// Leave ends a session registered with Enter or Join. It must be called
// exactly once per such session.
func (g *Group) Leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.live--
	if g.live < 0 {
		panic("drain: Leave without Enter")
	}
	if g.live == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// Live is the number of sessions registered now.
func (g *Group) Live() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.live
}

// Draining reports whether Drain has begun.
func (g *Group) Draining() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.draining
}

// Drain makes every later Enter fail and waits until no session is live
// (nil) or ctx ends (ctx.Err()). It can be called more than once; it never
// ends a session itself.
func (g *Group) Drain(ctx context.Context) error {
	g.mu.Lock()
	g.draining = true
	if g.live == 0 {
		g.mu.Unlock()
		return nil
	}
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	idle := g.idle
	g.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
