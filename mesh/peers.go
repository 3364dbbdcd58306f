package mesh

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// peerTimeout bounds each peer's answer when a node gathers a cluster-wide
// document (events, history).
const peerTimeout = time.Second

// NodeAnswer says whether one node's part is in a cluster-wide document.
type NodeAnswer struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// peerBody is one peer's answer to askPeers: its body when OK.
type peerBody struct {
	NodeAnswer
	body []byte
}

// askPeers GETs path from the internal API of every other member that gossip
// shows alive (in parallel, each within peerTimeout and ctx, at most
// maxBytes of body). Members that are not alive are listed as not ok without
// being asked; members that left gracefully are not listed. The answers are
// sorted by node id.
func (n *Node) askPeers(ctx context.Context, path string, maxBytes int64) []peerBody {
	var out []peerBody
	var addrs []string
	for id, p := range n.peerSnapshot() {
		switch {
		case id == n.cfg.NodeID, p.state == gossipLeft:
			continue
		case p.state != gossipAlive:
			out = append(out, peerBody{NodeAnswer: NodeAnswer{ID: id, Error: "gossip state " + p.state}})
			addrs = append(addrs, "")
		case p.meta.Raft == "":
			out = append(out, peerBody{NodeAnswer: NodeAnswer{ID: id, Error: "no cluster address"}})
			addrs = append(addrs, "")
		default:
			out = append(out, peerBody{NodeAnswer: NodeAnswer{ID: id}})
			addrs = append(addrs, p.meta.Raft)
		}
	}
	var wg sync.WaitGroup
	for i, addr := range addrs {
		if addr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := n.getInternal(ctx, addr, path, maxBytes)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].OK, out[i].body = true, b
		}()
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b peerBody) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// getInternal GETs path from the internal API at addr.
func (n *Node) getInternal(ctx context.Context, addr, path string, maxBytes int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s: no answer within %v", addr, peerTimeout)
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("%s: HTTP %d", addr, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", addr, err)
	}
	if int64(len(b)) > maxBytes {
		return nil, fmt.Errorf("%s: answer larger than %d bytes", addr, maxBytes)
	}
	return b, nil
}
