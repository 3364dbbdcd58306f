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
