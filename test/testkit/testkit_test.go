package testkit

import (
	"errors"
	"net"
	"strconv"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	n := 0
	if err := Poll(time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("Poll = %v after %d calls", err, n)
	}
	if err := Poll(20*time.Millisecond, func() error { return errors.New("never") }); err == nil || err.Error() != "never" {
		t.Fatalf("Poll = %v, want the last error", err)
	}
}

func TestGoroutinesBack(t *testing.T) {
	stop := make(chan struct{})
	base := 0
	go func() { <-stop }()
	if err := GoroutinesBack(base, 20*time.Millisecond); err == nil {
		t.Fatal("no error with goroutines above base")
	}
	close(stop)
}

func TestFreePort(t *testing.T) {
	for _, udp := range []bool{false, true} {
		p := FreePort(t, udp)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		ln.Close()
	}
	p := FreeUDPPort(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("udp port %d: %v", p, err)
	}
	pc.Close()
}

// A tripwire reports the connections made before the call, and only them.
func TestTripwire(t *testing.T) {
	w := NewTripwire(t)
	if got := w.Connections(t); len(got) != 0 {
		t.Fatalf("untouched tripwire: %v", got)
	}
	var locals []string
	for range 3 {
		c, err := net.Dial("tcp", w.Addr())
		if err != nil {
			t.Fatal(err)
		}
		locals = append(locals, c.LocalAddr().String())
		c.Close()
	}
	got := w.Connections(t)
	if len(got) != 3 || got[0] != locals[0] || got[1] != locals[1] || got[2] != locals[2] {
		t.Fatalf("Connections = %v, want %v", got, locals)
	}
	if again := w.Connections(t); len(again) != 3 {
		t.Fatalf("Connections again = %v, want the same 3", again)
	}
}
