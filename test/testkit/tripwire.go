package testkit

import (
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// Tripwire is a TCP listener on loopback that accepts every connection,
// closes it at once and remembers where it came from. A test points what
// must never be reached (the origin a forged token names, say) at Addr and
// then checks that Connections is empty. It is closed, and its goroutine
// ended, when the test ends.
type Tripwire struct {
	ln   net.Listener
	done chan struct{}

	mu   sync.Mutex
	from []string // remote addresses, in the order accepted
}

// NewTripwire starts a Tripwire on a free loopback port.
func NewTripwire(t testing.TB) *Tripwire {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &Tripwire{ln: ln, done: make(chan struct{})}
	go w.accept()
	t.Cleanup(func() {
		ln.Close()
		<-w.done
	})
	return w
}

func (w *Tripwire) accept() {
	defer close(w.done)
	for {
		c, err := w.ln.Accept()
		if err != nil {
			return
		}
		w.mu.Lock()
		w.from = append(w.from, c.RemoteAddr().String())
		w.mu.Unlock()
		c.Close()
	}
}

// Addr is the tripwire's "127.0.0.1:port".
func (w *Tripwire) Addr() string { return w.ln.Addr().String() }

// Connections returns the remote addresses of the connections made to the
// tripwire so far, by anyone but Connections itself. It counts every
// connection whose TCP handshake completed before the call: it connects
// once itself and waits (up to 10 s) until the listener has accepted that
// connection, which comes after the ones queued before it.
func (w *Tripwire) Connections(t testing.TB) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", w.Addr(), 10*time.Second)
	if err != nil {
		t.Fatalf("tripwire: %v", err)
	}
	defer c.Close()
	self := c.LocalAddr().String()
	var out []string
	WaitFor(t, 10*time.Second, "the tripwire accepts its own connection", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		i := slices.Index(w.from, self)
		if i < 0 {
			return false
		}
		out = slices.Concat(w.from[:i], w.from[i+1:])
		return true
	})
	// Forget the probe, so that a later call does not report it.
	w.mu.Lock()
	w.from = slices.DeleteFunc(w.from, func(a string) bool { return a == self })
	w.mu.Unlock()
	return out
}
