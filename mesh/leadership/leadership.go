// Package leadership runs the leader's loop while, and only while, this
// node leads: one owner starts a loop when the node becomes leader, stops
// it when the node stops leading, and waits for the old loop to return
// before it starts the next, so that two leader loops never run at once
// however fast leadership flaps.
//
// It follows leadership level by level rather than edge by edge: every
// wake-up (a Raft observation of a state or leader change, or the periodic
// resync) makes it compare the node's current state with whether a loop
// runs. Raft's observer channel drops observations when its reader is slow,
// and LeaderCh is best effort as well, so no single notification is relied
// upon.
//
// It starts one goroutine per loop it runs; Follow waits for the last one
// before it returns.
package leadership

import (
	"context"
	"time"
)

// Config is what Follow needs.
type Config struct {
	// IsLeader reports whether the node leads now (raft.Raft.State() ==
	// raft.Leader).
	IsLeader func() bool
	// Run is the leader's loop. It must return soon after its ctx is
	// cancelled.
	Run func(ctx context.Context)
	// Stopped, when set, is called after a loop has returned because the
	// node no longer leads (not when Follow's ctx ends).
	Stopped func()
	// Resync is how often the state is compared without a wake-up
	// (default one second): the bound on how late a dropped observation
	// is noticed.
	Resync time.Duration
}

// loop is one running leader loop: cancel stops it, done is closed when it
// has returned.
type loop struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs cfg.Run on its own goroutine under a child of ctx.
func start(ctx context.Context, run func(context.Context)) *loop {
	lctx, cancel := context.WithCancel(ctx)
	l := &loop{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		run(lctx)
	}()
	return l
}

// stop cancels the loop and waits for it to return.
func (l *loop) stop() {
	l.cancel()
	<-l.done
}

// Follow starts and stops cfg.Run as cfg.IsLeader says, checking at every
// value received from wake and every cfg.Resync, until ctx is done; it then
// stops the running loop, waits for it and returns. At most one Run runs at
// any time: a new one starts only after the previous one returned.
func Follow[T any](ctx context.Context, wake <-chan T, cfg Config) {
	if cfg.Resync <= 0 {
		cfg.Resync = time.Second
	}
	t := time.NewTicker(cfg.Resync)
	defer t.Stop()
	var (
		cur *loop
		// held is set when a loop returned by itself: the next one
		// waits for a wake-up, so that a loop that returns at once
		// does not spin.
		held bool
	)
	defer func() {
		if cur != nil {
			cur.stop()
		}
	}()
	for {
		leads := cfg.IsLeader()
		switch {
		case leads && cur == nil && !held:
			cur = start(ctx, cfg.Run)
		case !leads && cur != nil:
			cur.stop()
			cur = nil
			if cfg.Stopped != nil {
				cfg.Stopped()
			}
		}
		var done chan struct{}
		if cur != nil {
			done = cur.done
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
			held = false
		case <-t.C:
			held = false
		case <-done:
			// The loop returned by itself (it gave up, e.g. leadership
			// was lost before it could act): start another at the next
			// wake-up if the node still leads.
			cur.cancel()
			cur, held = nil, true
			if cfg.Stopped != nil && !cfg.IsLeader() {
				cfg.Stopped()
			}
		}
	}
}
