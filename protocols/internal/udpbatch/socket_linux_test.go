//go:build linux

package udpbatch

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

func detach(t *testing.T, network, addr string) *Socket {
	t.Helper()
	uc := listen(t, network, addr)
	s, err := Detach(uc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, _, err := uc.ReadFromUDPAddrPort(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("the detached UDPConn still reads: %v", err)
	}
	return s
}

// A detached socket batches reads and writes, and reads and writes one
// datagram at a time, on IPv4 and dual-stack sockets.
func TestSocketRoundTrip(t *testing.T) {
	for _, tc := range []struct{ name, network, addr string }{
		{"udp4", "udp4", "127.0.0.1:0"},
		{"dual-stack", "udp", ":0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := detach(t, tc.network, tc.addr)
			to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), s.LocalAddr().(*net.UDPAddr).AddrPort().Port())
			peer := listen(t, "udp4", "127.0.0.1:0")
			peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()

			pw := NewWriter(peer, 8)
			var out []Msg
			for i := range 5 {
				p := []byte{byte(i), 'x'}
				out = append(out, Msg{Buf: p, N: len(p), Addr: to})
			}
			if sent, _, err := pw.Write(out); sent != 5 || err != nil {
				t.Fatalf("write to the socket: %d, %v", sent, err)
			}
			r := NewReader(s, 8, 64)
			if !r.Batched() {
				t.Fatal("a Socket is not batched")
			}
			s.SetReadDeadline(time.Now().Add(5 * time.Second))
			var got []Msg
			for len(got) < 5 {
				ms, err := r.Read()
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ms...)
			}
			for i, m := range got {
				if m.Payload()[0] != byte(i) || m.Addr.Port() != peerAddr.Port() || !m.Addr.Addr().Unmap().IsLoopback() {
					t.Fatalf("datagram %d: %q from %v", i, m.Payload(), m.Addr)
				}
			}

			// Back, batched and one by one.
			w := NewWriter(s, 8)
			if sent, n, err := w.Write([]Msg{{Buf: []byte("ab"), N: 2, Addr: peerAddr}, {Buf: []byte("c"), N: 1, Addr: peerAddr}}); sent != 2 || n != 3 || err != nil {
				t.Fatalf("batched write: %d %d %v", sent, n, err)
			}
			if n, err := s.WriteToUDPAddrPort([]byte("def"), peerAddr); n != 3 || err != nil {
				t.Fatalf("single write: %d %v", n, err)
			}
			back := readAll(t, NewReader(peer, 8, 64), peer, 3)
			if string(back[0].Buf) != "ab" || string(back[1].Buf) != "c" || string(back[2].Buf) != "def" {
				t.Fatalf("got %q %q %q", back[0].Buf, back[1].Buf, back[2].Buf)
			}

			if _, err := peer.WriteToUDPAddrPort([]byte("ghij"), to); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 64)
			n, from, err := s.ReadFromUDPAddrPort(b)
			if err != nil || string(b[:n]) != "ghij" || from.Port() != peerAddr.Port() {
				t.Fatalf("single read: %q from %v, %v", b[:n], from, err)
			}
		})
	}
}

// Close and a past deadline wake a blocked read at once; a deadline in
// the future ends a read that finds nothing.
func TestSocketUnblock(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(*Socket)
		want error
	}{
		{"close", func(s *Socket) { s.Close() }, net.ErrClosed},
		{"past deadline", func(s *Socket) { s.SetReadDeadline(time.Unix(1, 0)) }, os.ErrDeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := detach(t, "udp4", "127.0.0.1:0")
			r := NewReader(s, 8, 64)
			done := make(chan error, 1)
			go func() {
				_, err := r.Read()
				done <- err
			}()
			tc.stop(s)
			select {
			case err := <-done:
				if !errors.Is(err, tc.want) {
					t.Fatalf("read ended with %v, want %v", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a blocked read was not woken")
			}
		})
	}

	s := detach(t, "udp4", "127.0.0.1:0")
	s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := NewReader(s, 8, 64).Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past a deadline: %v", err)
	}
	var ne net.Error
	if _, _, err := s.ReadFromUDPAddrPort(make([]byte, 8)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("single read past a deadline: %v, want a timeout", err)
	}
	s.Close()
	if _, err := s.WriteToUDPAddrPort([]byte("x"), netip.MustParseAddrPort("127.0.0.1:9")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
	if err := s.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

// A connected socket is not detached, and stays usable.
func TestDetachConnected(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	c, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := Detach(c); err == nil {
		t.Fatal("a connected socket was detached")
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("the socket after a failed Detach: %v", err)
	}
}

// Coalescing reads of a Socket allocate nothing.
func TestSocketAllocs(t *testing.T) {
	s := detach(t, "udp4", "127.0.0.1:0")
	cli, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), s.LocalAddr().(*net.UDPAddr).AddrPort().Port())))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	r := NewReader(s, 8, 64)
	r.Coalesce(100*time.Microsecond, 4)
	w := NewWriter(s, 8)
	back := []Msg{{Buf: []byte("y"), N: 1, Addr: cli.LocalAddr().(*net.UDPAddr).AddrPort()}}
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	p := []byte("x")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := cli.Write(p); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Read(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := w.Write(back); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per read and write, want 0", allocs)
	}
}
