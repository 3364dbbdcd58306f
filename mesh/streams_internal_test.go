package mesh

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestFetchLocalSessionsIsBounded(t *testing.T) {
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(release)
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("{"))
	}))
	defer garbage.Close()

	n := &Node{client: &http.Client{}}
	start := time.Now()
	_, err := n.fetchLocalSessions(context.Background(), strings.TrimPrefix(hung.URL, "http://"))
	if err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("hung node: %v", err)
	}
	if d := time.Since(start); d < fanoutTimeout || d > fanoutTimeout+time.Second {
		t.Fatalf("hung node answered after %v", d)
	}
	if _, err := n.fetchLocalSessions(context.Background(), strings.TrimPrefix(garbage.URL, "http://")); err == nil {
		t.Fatal("garbage answer accepted")
	}
}
