package voters

// A member's Raft progress, which the leader asks before it promotes the
// member: GET PathProgress on the member's internal API (cluster port).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/srs-mesh/srs-mesh/stream/httpjson"
)

// PathProgress answers a member's Raft progress (GET, cluster port).
const PathProgress = "/mesh/v1/internal/raft"

// maxPromoteLag is how many log entries a non-voter may trail the leader's
// last index and still count as caught up.
const maxPromoteLag = 256

// Progress is the answer of PathProgress.
type Progress struct {
	Term         uint64 `json:"term"`
	LastLogIndex uint64 `json:"last_log_index"`
	AppliedIndex uint64 `json:"applied_index"`
}

// HandleProgress answers PathProgress with this node's Progress.
func (s *Set) HandleProgress(w http.ResponseWriter, r *http.Request) {
	st := s.cfg.Raft.Stats()
	p := Progress{Term: parseStat(st["term"]), LastLogIndex: parseStat(st["last_log_index"]),
		AppliedIndex: s.cfg.Raft.AppliedIndex()}
	httpjson.OK(w, p)
}

func parseStat(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

// caughtUp asks the member at its cluster address addr for its Raft progress
// and reports whether it follows this leader's term and trails its last log
// index by at most maxPromoteLag entries (and if not, why). It gives up
// after a second.
func (s *Set) caughtUp(ctx context.Context, addr string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+PathProgress, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	var env struct {
		Data Progress `json:"data"`
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&env); err != nil {
		return false, err.Error()
	}
	st := s.cfg.Raft.Stats()
	return follows(env.Data, parseStat(st["term"]), parseStat(st["last_log_index"]))
}

// follows reports whether a member at progress p follows a leader of term
// whose last log index is last, trailing it by at most maxPromoteLag
// entries, and if not, why.
func follows(p Progress, term, last uint64) (bool, string) {
	switch {
	case p.Term != term:
		return false, fmt.Sprintf("term %d, the leader's is %d", p.Term, term)
	case p.LastLogIndex+maxPromoteLag < last:
		return false, fmt.Sprintf("last log index %d, the leader's is %d", p.LastLogIndex, last)
	}
	return true, ""
}
