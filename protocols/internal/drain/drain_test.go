package drain

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDrainWaitsForLiveSessions(t *testing.T) {
	var g Group
	if !g.Enter() || !g.Enter() {
		t.Fatal("Enter refused before Drain")
	}
	done := make(chan error, 1)
	go func() { done <- g.Drain(context.Background()) }()
	// Drain has begun once Enter fails.
	deadline := time.Now().Add(5 * time.Second)
	for !g.Draining() {
		if time.Now().After(deadline) {
			t.Fatal("Drain did not begin")
		}
		time.Sleep(time.Millisecond)
	}
	if g.Enter() {
		t.Fatal("Enter accepted while draining")
	}
	g.Join() // a session the server must still carry
	g.Leave()
	g.Leave()
	select {
	case err := <-done:
		t.Fatalf("Drain returned %v with a session live", err)
	default:
	}
	g.Leave()
	if err := <-done; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if g.Live() != 0 {
		t.Fatalf("live %d", g.Live())
	}
	// Draining an idle group returns at once, and again later.
	if err := g.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestDrainDeadline(t *testing.T) {
	var g Group
	g.Enter()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Drain(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain = %v, want context.Canceled", err)
	}
	g.Leave() // no drain waits any more: nothing to close twice
	if err := g.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestLeaveWithoutEnterPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	var g Group
	g.Leave()
}
