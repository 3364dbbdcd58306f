package mesh

// The write path: a command is applied through Raft on the leader, or
// forwarded to the leader's internal API on a follower; and a member's
// request to be removed on a graceful leave.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/srs-mesh/srs-mesh/mesh/state"
)

// writeContext bounds a write by ctx, or by RouteTimeout when ctx has no
// deadline.
func (n *Node) writeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, n.cfg.RouteTimeout)
}

// apply writes a command: through Raft on the leader, or forwarded to the
// leader's internal API (on its cluster port) on a follower. It retries across elections and leader
// changes until ctx is done, then fails with ErrNoLeader. A command that was
// applied but failed (unknown origin, no origin) returns its error at once,
// and so does a type that a member cannot apply yet (a *ProtocolWaitError,
// also when the leader refuses it) or any write on a halted replica
// (ErrStateHalted).
// Every command is idempotent, so a retry after an ambiguous failure is safe.
func (n *Node) apply(ctx context.Context, c state.Command) (state.Result, error) {
	if err := n.gate(c.Type()); err != nil {
		return state.Result{}, err
	}
	data, err := state.Encode(c)
	if err != nil {
		return state.Result{}, err
	}
	backoff := 10 * time.Millisecond
	var last error = ErrNoLeader
	for {
		if n.ctx.Err() != nil {
			return state.Result{}, ErrClosed
		}
		if ctx.Err() != nil {
			return state.Result{}, fmt.Errorf("%w: %v", ErrNoLeader, last)
		}
		if n.IsLeader() {
			timeout := time.Second
			if d, ok := ctx.Deadline(); ok {
				timeout = time.Until(d)
			}
			f := n.raft.Apply(data, timeout)
			err := f.Error()
			if err == nil {
				res, _ := f.Response().(state.Result)
				res.Index = f.Index()
				return res, resultErr(res)
			}
			if errors.Is(err, raft.ErrRaftShutdown) {
				return state.Result{}, ErrClosed
			}
			last = err
		} else if addr, id := n.raft.LeaderWithID(); id == "" || addr == "" {
			last = ErrNoLeader
		} else {
			res, err := n.forwardAttempt(ctx, string(addr), data)
			if err == nil {
				return res, resultErr(res)
			}
			if !errors.Is(err, ErrNotLeader) && !errors.Is(err, errForward) {
				return state.Result{}, err
			}
			last = err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		case <-n.ctx.Done():
			t.Stop()
		}
		backoff = min(backoff*2, 200*time.Millisecond)
	}
}

// forwardAttemptTimeout bounds one forwarded write. A leader that is frozen
// (stopped, not crashed) accepts connections but never answers; the write is
// then retried, at the next leader once one is known. Every command is
// idempotent, so a slow write that did commit is harmless to repeat.
const forwardAttemptTimeout = time.Second

// leaderWatchEvery is how often a forwarded write checks that its target is
// still the leader this node knows.
const leaderWatchEvery = 20 * time.Millisecond

// forwardAttempt is one forward to the leader at addr, bounded by
// forwardAttemptTimeout and abandoned as soon as this node learns of
// another leader (or of none): nothing waits on a leader that froze. An
// abandoned attempt fails with errForward, which apply retries.
func (n *Node) forwardAttempt(ctx context.Context, addr string, data []byte) (state.Result, error) {
	actx, cancel := context.WithTimeout(ctx, forwardAttemptTimeout)
	defer cancel()
	watched := make(chan struct{})
	var moved atomic.Bool
	go func() {
		defer close(watched)
		t := time.NewTicker(leaderWatchEvery)
		defer t.Stop()
		for {
			select {
			case <-actx.Done():
				return
			case <-t.C:
				if cur, _ := n.raft.LeaderWithID(); string(cur) != addr {
					moved.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	res, err := n.forward(actx, addr, data)
	cancel()
	<-watched
	if err != nil && ctx.Err() == nil && (moved.Load() || actx.Err() != nil) {
		return state.Result{}, fmt.Errorf("%w: %s: no answer (leader moved: %v)", errForward, addr, moved.Load())
	}
	return res, err
}

// errForward marks a transport-level forwarding failure, which is retried.
var errForward = errors.New("mesh: forward to leader")

// Internal endpoints, served on the cluster port.
const (
	pathInternalApply = "/mesh/v1/internal/apply"
	pathInternalLeave = "/mesh/v1/internal/leave"
)

// forward posts a command to the internal apply endpoint of the leader's
// cluster port at addr.
func (n *Node) forward(ctx context.Context, addr string, data []byte) (state.Result, error) {
	var env struct {
		Code    int          `json:"code"`
		Message string       `json:"message"`
		Data    state.Result `json:"data"`
	}
	status, err := n.postInternal(ctx, addr, pathInternalApply, data, &env)
	if err != nil {
		return state.Result{}, err
	}
	switch {
	case status == http.StatusOK:
		return env.Data, nil
	case status == http.StatusMisdirectedRequest:
		return state.Result{}, ErrNotLeader
	case status == http.StatusUnauthorized:
		return state.Result{}, fmt.Errorf("%w: leader refused the token", ErrUnauthorized)
	case status == http.StatusBadRequest:
		return state.Result{}, fmt.Errorf("%w: %s", ErrBadCommand, leaderDetail(ErrBadCommand, env.Message))
	case status == http.StatusConflict:
		return state.Result{}, fmt.Errorf("%w: %s", ErrOriginAnswers, leaderDetail(ErrOriginAnswers, env.Message))
	case status == http.StatusPreconditionFailed:
		return state.Result{}, fmt.Errorf("%w: the leader says: %s", ErrProtocolWaiting, env.Message)
	}
	return state.Result{}, fmt.Errorf("%w: %s: HTTP %d: %s", errForward, addr, status, leaderDetail(nil, env.Message))
}

// leaderDetail is the leader's error message without what the error that
// wraps it here says already (its sentinel, the "mesh: " prefix), so that
// the message reads "mesh: malformed command: bad key", not "mesh:
// malformed command: mesh: malformed command: bad key".
func leaderDetail(sentinel error, msg string) string {
	if sentinel != nil {
		msg = strings.TrimPrefix(msg, sentinel.Error()+": ")
	}
	return strings.TrimPrefix(msg, "mesh: ")
}

// postInternal sends one internal request with the token to the cluster
// port at addr and decodes the JSON reply into out.
func (n *Node) postInternal(ctx context.Context, addr, path string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errForward, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if n.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+n.cfg.Token)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errForward, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, state.MaxCommandBytes))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errForward, err)
	}
	if err := json.Unmarshal(b, out); err != nil && resp.StatusCode == http.StatusOK {
		return 0, fmt.Errorf("%w: bad reply: %v", errForward, err)
	}
	return resp.StatusCode, nil
}

// requestRemoval asks the leader to remove this node from the voters,
// waiting out a leadership transfer in progress.
func (n *Node) requestRemoval(ctx context.Context) error {
	ctx, cancel := n.writeContext(ctx)
	defer cancel()
	body, _ := json.Marshal(map[string]string{"id": n.cfg.NodeID})
	for {
		addr, id := n.raft.LeaderWithID()
		if id != "" && string(id) != n.cfg.NodeID {
			if api := string(addr); api != "" {
				var env struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				}
				status, err := n.postInternal(ctx, api, pathInternalLeave, body, &env)
				if err == nil && status == http.StatusOK {
					return nil
				}
				if err == nil && status != http.StatusMisdirectedRequest {
					return fmt.Errorf("mesh: leave: leader answered HTTP %d: %s", status, env.Message)
				}
			}
		} else if string(id) == n.cfg.NodeID {
			if _, err := n.removeOnLeave(n.cfg.NodeID); err != nil && !errors.Is(err, ErrNotLeader) {
				return err
			}
			return nil
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return fmt.Errorf("%w: leave: %v", ErrNoLeader, ctx.Err())
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// applyLocal applies a command on this (leader) node. The feature gate
// applies (see gate).
func (n *Node) applyLocal(ctx context.Context, c state.Command) (state.Result, error) {
	if err := n.gate(c.Type()); err != nil {
		return state.Result{}, err
	}
	data, err := state.Encode(c)
	if err != nil {
		return state.Result{}, err
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		return state.Result{}, err
	}
	res, _ := f.Response().(state.Result)
	return res, resultErr(res)
}
