package main

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitClosed reads c until the peer closes it, for at most within; it fails
// the test if c is still open then. within is a generous bound, not a
// measurement.
func waitClosed(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", within)
	}
}

// A connection's slot is freed once, however often it is closed, and the
// count never goes below zero.
func TestConnLimitReleasesOnce(t *testing.T) {
	testkit.CheckGoroutines(t)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var onRefuse atomic.Int64
	l := newConnLimit(inner, 1, func() { onRefuse.Add(1) })
	defer l.Close()
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	addr := l.Addr().String()

	dial(t, addr)
	s1 := <-accepted
	if n := l.Open(); n != 1 {
		t.Fatalf("open %d after one accept, want 1", n)
	}
	over := dial(t, addr)
	over.SetReadDeadline(time.Now().Add(3 * time.Second))
	if got, err := io.ReadAll(over); err != nil || string(got) != string(refuseAnswer) {
		t.Fatalf("over the cap: %q %v, want %q", got, err, refuseAnswer)
	}
	if l.Refused() != 1 || onRefuse.Load() != 1 || l.Open() != 1 {
		t.Fatalf("refused %d (callback %d), open %d; want 1, 1, 1", l.Refused(), onRefuse.Load(), l.Open())
	}

	s1.Close()
	s1.Close()
	if n := l.Open(); n != 0 {
		t.Fatalf("open %d after closing twice, want 0", n)
	}
	dial(t, addr)
	s2 := <-accepted
	if n := l.Open(); n != 1 {
		t.Fatalf("open %d after a new accept, want 1", n)
	}
	s2.Close()
	s2.Close()
	if n := l.Open(); n != 0 {
		t.Fatalf("open %d at the end, want 0", n)
	}
	l.Close()
	if _, ok := <-accepted; ok {
		t.Fatal("accepted after Close")
	}
}
