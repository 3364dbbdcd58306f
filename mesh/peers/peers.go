// Package peers is the one way a node asks every other member for its part
// of a cluster-wide document (the streams, events and history of
// GET /mesh/v1/streams, /events and /history): a GET of the same path on
// each member's internal API, in parallel, each bounded in time and bytes.
//
// The package knows nothing of the documents; it returns each member's raw
// answer and whether it came. Which members exist, and whether each may be
// asked, is the caller's (gossip's) knowledge.
package peers

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

// Timeout bounds each member's answer.
const Timeout = time.Second

// Answer says whether one node's part is in a cluster-wide document.
//
//	{"id":"n2","ok":false,"error":"10.0.0.2:7947: no answer within 1s"}
type Answer struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Peer is a member to ask: its id and the address ("host:port") of its
// internal API, or, when Skip is set, why it is listed as not ok without
// being asked (e.g. "gossip state suspect").
type Peer struct {
	ID, Addr, Skip string
}

// Body is one member's answer: Body is set when OK.
type Body struct {
	Answer
	Body []byte
}

// Asker asks members over one HTTP client: the cluster port's, which
// speaks mutual TLS itself when the mesh has it (so URLs say "http").
type Asker struct {
	Client *http.Client
}

// Ask GETs path from every peer that is not skipped, in parallel, each
// within Timeout and ctx and at most maxBytes of body. Every peer is in
// the answer, sorted by id; the call returns when the last one answered or
// timed out.
func (a Asker) Ask(ctx context.Context, ps []Peer, path string, maxBytes int64) []Body {
	out := make([]Body, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		out[i].ID, out[i].Error = p.ID, p.Skip
		if p.Skip != "" {
			continue
		}
		if p.Addr == "" {
			out[i].Error = "no cluster address"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := a.get(ctx, p.Addr, path, maxBytes)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].OK, out[i].Body = true, b
		}()
	}
	wg.Wait()
	slices.SortFunc(out, func(x, y Body) int { return cmp.Compare(x.ID, y.ID) })
	return out
}

// get GETs path from the internal API at addr.
func (a Asker) get(ctx context.Context, addr, path string, maxBytes int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.Client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s: no answer within %v", addr, Timeout)
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
