package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
)

// answer is what one origin said to one request.
type answer struct {
	ID     string
	Status int
	Body   []byte
	// Err is set when the origin could not be asked or did not answer in
	// time, in full, or with HTTP 2xx. It wraps ErrOriginUnreachable when
	// the transport failed (its text then names the origin's address).
	Err error
}

// sortedOrigins returns a sorted copy so that answers list origins in a
// stable order.
func sortedOrigins(in []OriginInfo) []OriginInfo {
	out := append([]OriginInfo(nil), in...)
	sort.Slice(out, func(i, j int) bool { return out[i].Origin.ID < out[j].Origin.ID })
	return out
}

// originURL builds the URL of path and query on an origin's API endpoint.
func originURL(o OriginInfo, path string, query url.Values) string {
	u := url.URL{Scheme: "http", Host: o.Origin.API, Path: path}
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	return u.String()
}

// fetch makes one bounded request to one origin and reads the whole answer.
// An answer that is not HTTP 2xx is an error (its body is kept).
func (s *Server) fetch(ctx context.Context, o OriginInfo, method, path string, query url.Values) answer {
	a := answer{ID: o.Origin.ID}
	if err := askable(o); err != nil {
		a.Err = err
		return a
	}
	ctx, cancel := s.timeoutCtx(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, originURL(o, path, query), nil)
	if err != nil {
		a.Err = fmt.Errorf("%w: %w", ErrOriginUnreachable, err)
		return a
	}
	req.Header.Set("Accept", "application/json")
	if c := s.credentials(o.Origin.ID); c != "" {
		req.Header.Set("Authorization", c)
	}
	res, err := s.client.Do(req)
	if err != nil {
		a.Err = fmt.Errorf("%w: %w", ErrOriginUnreachable, err)
		return a
	}
	defer res.Body.Close()
	a.Status = res.StatusCode
	a.Body, err = io.ReadAll(io.LimitReader(res.Body, s.cfg.MaxResponseBytes+1))
	switch {
	case err != nil:
		a.Err = fmt.Errorf("%w: read answer: %w", ErrOriginUnreachable, err)
	case int64(len(a.Body)) > s.cfg.MaxResponseBytes:
		a.Body = nil
		a.Err = fmt.Errorf("%w (more than %d bytes)", ErrResponseTooLarge, s.cfg.MaxResponseBytes)
	case res.StatusCode/100 != 2:
		a.Err = fmt.Errorf("%w: %s", ErrOriginStatus, res.Status)
	}
	return a
}

// fanout asks every origin concurrently and returns their answers in the
// order of origins. It returns when every request has ended; each is bounded
// by PerOriginTimeout.
func (s *Server) fanout(ctx context.Context, origins []OriginInfo, method, path string, query url.Values) []answer {
	out := make([]answer, len(origins))
	var wg sync.WaitGroup
	for i, o := range origins {
		if err := askable(o); err != nil {
			out[i] = answer{ID: o.Origin.ID, Err: err}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = s.fetch(ctx, o, method, path, query)
		}()
	}
	wg.Wait()
	return out
}

// find asks every origin concurrently and returns the first answer accepted
// by ok, cancelling the other requests, and the answers of origins that
// failed. found is false when no origin's answer was accepted. It returns
// only when every request has ended.
func (s *Server) find(ctx context.Context, origins []OriginInfo, path string, ok func(answer) bool) (hit answer, found bool, failed []answer) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan answer, len(origins))
	var wg sync.WaitGroup
	for _, o := range origins {
		if err := askable(o); err != nil {
			failed = append(failed, answer{ID: o.Origin.ID, Err: err})
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- s.fetch(ctx, o, http.MethodGet, path, nil)
		}()
	}
	go func() { wg.Wait(); close(results) }()
	for a := range results {
		if found {
			continue // drain: the rest were cancelled
		}
		if ok(a) {
			hit, found = a, true
			cancel()
			continue
		}
		if a.Err != nil {
			failed = append(failed, a)
		}
	}
	return hit, found, failed
}
