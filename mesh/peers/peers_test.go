package peers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestAsk: every peer is in the answer, sorted by id; skipped ones are not
// asked, a hung one is cut off at Timeout, an error status and a body over
// the bound are errors, and a good answer carries its body. The cut-off is
// read off the requests, not timed: each carries a deadline Timeout after
// Ask was called and at most Timeout after it was sent.
func TestAsk(t *testing.T) {
	var asked []string
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.URL.Path)
		w.Write([]byte(`{"ok":1}`))
	}))
	defer good.Close()
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(release)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer broken.Close()
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 100)))
	}))
	defer big.Close()
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

	var mu sync.Mutex
	var deadlines []string // one error per request whose deadline is wrong
	requests := 0
	called := time.Now()
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent := time.Now()
		deadline, ok := r.Context().Deadline()
		mu.Lock()
		requests++
		if lo, hi := called.Add(Timeout), sent.Add(Timeout); !ok || deadline.Before(lo) || deadline.After(hi) {
			deadlines = append(deadlines, fmt.Sprintf("%s: deadline %v (set: %v), want between %v and %v", r.URL.Host, deadline, ok, lo, hi))
		}
		mu.Unlock()
		return http.DefaultTransport.RoundTrip(r)
	})}
	got := Asker{Client: client}.Ask(context.Background(), []Peer{
		{ID: "n5", Addr: addr(big)},
		{ID: "n1", Addr: addr(good)},
		{ID: "n4", Skip: "gossip state dead", Addr: addr(good)},
		{ID: "n3", Addr: addr(broken)},
		{ID: "n2", Addr: addr(hung)},
		{ID: "n6"},
	}, "/mesh/v1/local/x", 64)

	if len(got) != 6 {
		t.Fatalf("answers %+v", got)
	}
	for i, want := range []struct {
		id, err string
		ok      bool
	}{
		{"n1", "", true},
		{"n2", "no answer within", false},
		{"n3", "HTTP 500", false},
		{"n4", "gossip state dead", false},
		{"n5", "larger than 64 bytes", false},
		{"n6", "no cluster address", false},
	} {
		a := got[i]
		if a.ID != want.id || a.OK != want.ok || !strings.Contains(a.Error, want.err) {
			t.Errorf("answer %d = %+v, want %+v", i, a.Answer, want)
		}
	}
	if string(got[0].Body) != `{"ok":1}` || len(asked) != 1 || asked[0] != "/mesh/v1/local/x" {
		t.Errorf("good answer %q, asked %v (the skipped peer must not be asked)", got[0].Body, asked)
	}
	if requests != 4 || len(deadlines) != 0 {
		t.Errorf("%d requests (want 4); wrong deadlines: %v", requests, deadlines)
	}
}
