package udpbatch

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

func listen(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("no %s socket: %v", network, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// readAll reads until want datagrams arrived or the deadline passed.
func readAll(t testing.TB, r *Reader, c *net.UDPConn, want int) []Msg {
	t.Helper()
	var got []Msg
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < want {
		ms, err := r.Read()
		if err != nil {
			t.Fatalf("read after %d of %d: %v", len(got), want, err)
		}
		for _, m := range ms {
			got = append(got, Msg{Buf: append([]byte(nil), m.Payload()...), N: m.N, Addr: m.Addr})
		}
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct{ name, network, addr string }{
		{"udp4", "udp4", "127.0.0.1:0"},
		{"dual-stack", "udp", ":0"},
		{"udp6", "udp6", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := listen(t, tc.network, tc.addr)
			dst := srv.LocalAddr().(*net.UDPAddr).AddrPort()
			if !dst.Addr().IsLoopback() {
				dst = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), dst.Port())
				if tc.network == "udp6" {
					dst = netip.AddrPortFrom(netip.IPv6Loopback(), dst.Port())
				}
			}
			cliNet := "udp4"
			if dst.Addr().Is6() {
				cliNet = "udp6"
			}
			cli, err := net.DialUDP(cliNet, nil, net.UDPAddrFromAddrPort(dst))
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()

			// Client -> server: a connected Writer, a batched Reader.
			w := NewWriter(cli, 4)
			var out []Msg
			for i := range 10 {
				p := bytes.Repeat([]byte{byte(i)}, 100+i)
				out = append(out, Msg{Buf: p, N: len(p)})
			}
			sent, n, err := w.Write(out)
			if err != nil || sent != 10 || n != 10*100+45 {
				t.Fatalf("write: sent %d, %d bytes, %v", sent, n, err)
			}
			r := NewReader(srv, 4, 2048)
			if runtime.GOOS == "linux" && !r.Batched() {
				t.Fatal("a UDP socket on Linux is not batched")
			}
			got := readAll(t, r, srv, 10)
			for i, m := range got {
				if !bytes.Equal(m.Buf, out[i].Buf) {
					t.Fatalf("datagram %d: %d bytes, want %d", i, m.N, out[i].N)
				}
				if m.Addr.Port() != cli.LocalAddr().(*net.UDPAddr).AddrPort().Port() {
					t.Fatalf("datagram %d from %v, want port of %v", i, m.Addr, cli.LocalAddr())
				}
			}

			// Server -> client: an unconnected Writer to the address read.
			back := NewWriter(srv, 4)
			for i := range got {
				got[i].Addr = got[0].Addr
			}
			if sent, _, err := back.Write(got); err != nil || sent != 10 {
				t.Fatalf("write back: sent %d, %v", sent, err)
			}
			cr := NewReader(cli, 8, 2048)
			echo := readAll(t, cr, cli, 10)
			for i := range echo {
				if !bytes.Equal(echo[i].Buf, out[i].Buf) {
					t.Fatalf("echo %d differs", i)
				}
			}
		})
	}
}

// TestWriteSkipsRefused sends a batch whose middle datagram the socket
// cannot send (an IPv6 destination on an IPv4 socket): the others arrive.
func TestWriteSkipsRefused(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	src := listen(t, "udp4", "127.0.0.1:0")
	to := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	p := []byte("hello")
	ms := []Msg{
		{Buf: p, N: len(p), Addr: to},
		{Buf: p, N: len(p), Addr: netip.MustParseAddrPort("[2001:db8::1]:9")},
		{Buf: p, N: len(p), Addr: to},
	}
	sent, n, err := NewWriter(src, 8).Write(ms)
	if sent != 2 || n != 10 || err == nil {
		t.Fatalf("sent %d (%d bytes), err %v; want 2, 10 and an error", sent, n, err)
	}
	got := readAll(t, NewReader(srv, 8, 64), srv, 2)
	if len(got) != 2 {
		t.Fatalf("got %d datagrams", len(got))
	}
}

func TestReadDeadlineAndClose(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0")
	r := NewReader(c, 8, 64)
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := r.Read()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	c.Close()
	if _, err := r.Read(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read of a closed socket: %v, want net.ErrClosed", err)
	}
	if _, _, err := NewWriter(c, 8).Write([]Msg{{Buf: []byte("x"), N: 1, Addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write to a closed socket: %v, want net.ErrClosed", err)
	}
}

// TestDropped overflows a small receive buffer and checks that the reader
// learns the kernel's drop count.
func TestDropped(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_RXQ_OVFL is Linux's")
	}
	srv := listen(t, "udp4", "127.0.0.1:0")
	if _, _, err := SetBuffers(srv, 4096); err != nil {
		t.Fatal(err)
	}
	r := NewReader(srv, 8, 2048)
	cli, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	p := make([]byte, 1316)
	const sent = 200
	for range sent {
		cli.Write(p)
	}
	// Drain what fitted, then send one more: it carries the count.
	got := 0
	for {
		srv.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		ms, err := r.Read()
		if err != nil {
			break
		}
		got += len(ms)
	}
	cli.Write(p)
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	ms, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	got += len(ms)
	lost := uint64(sent + 1 - got)
	if lost == 0 {
		t.Skip("the kernel buffered every datagram")
	}
	if d := r.Dropped(); d != lost {
		t.Fatalf("Dropped() = %d, want %d (read %d of %d)", d, lost, got, sent+1)
	}
}

func TestSetBuffers(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1:0")
	rcv, snd, err := SetBuffers(c, 256<<10)
	if err != nil {
		t.Fatal(err)
	}
	// net.core.rmem_max may cap it, but never below Linux's floor.
	if rcv <= 0 || snd <= 0 || rcv > 256<<10 || snd > 256<<10 {
		t.Fatalf("granted %d/%d bytes for 256 KiB", rcv, snd)
	}
}

// fallbackConn hides the *net.UDPConn, so the Reader and Writer take one
// datagram per call.
type fallbackConn struct{ *net.UDPConn }

func TestFallback(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	cli := listen(t, "udp4", "127.0.0.1:0")
	r := NewReader(fallbackConn{srv}, 8, 64)
	if r.Batched() {
		t.Fatal("a wrapped socket is batched")
	}
	w := NewWriter(fallbackConn{cli}, 8)
	to := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	if sent, _, err := w.Write([]Msg{{Buf: []byte("a"), N: 1, Addr: to}, {Buf: []byte("bc"), N: 2, Addr: to}}); sent != 2 || err != nil {
		t.Fatalf("sent %d: %v", sent, err)
	}
	got := readAll(t, r, srv, 2)
	if string(got[0].Buf) != "a" || string(got[1].Buf) != "bc" {
		t.Fatalf("got %q %q", got[0].Buf, got[1].Buf)
	}
}

// TestAllocs: a batch read and a batch write allocate nothing.
func TestAllocs(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	cli := listen(t, "udp4", "127.0.0.1:0")
	r := NewReader(srv, 8, 2048)
	w := NewWriter(cli, 8)
	to := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	batch := make([]Msg, 8)
	for i := range batch {
		batch[i] = Msg{Buf: make([]byte, 1316), N: 1316, Addr: to}
	}
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	allocs := testing.AllocsPerRun(100, func() {
		if sent, _, err := w.Write(batch); err != nil || sent != len(batch) {
			t.Fatalf("sent %d: %v", sent, err)
		}
		for got := 0; got < len(batch); {
			ms, err := r.Read()
			if err != nil {
				t.Fatal(err)
			}
			got += len(ms)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per batch, want 0", allocs)
	}
}

// A batch of 1 takes the single-datagram path, on a connected socket too.
func TestUnbatchedConnected(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	cli, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	w := NewWriter(cli, 1)
	if sent, n, err := w.Write([]Msg{{Buf: []byte("one"), N: 3}, {Buf: []byte("two!"), N: 4}}); sent != 2 || n != 7 || err != nil {
		t.Fatalf("sent %d (%d bytes): %v", sent, n, err)
	}
	r := NewReader(srv, 1, 64)
	if r.Batched() {
		t.Fatal("a batch of 1 is batched")
	}
	got := readAll(t, r, srv, 2)
	if string(got[0].Buf) != "one" || string(got[1].Buf) != "two!" {
		t.Fatalf("got %q %q", got[0].Buf, got[1].Buf)
	}
}

// A Writer without a socket (a relay that is not serving yet) sends
// nothing and says the socket is closed, rather than crashing.
func TestWriterWithoutConn(t *testing.T) {
	w := NewWriter(nil, 8)
	sent, n, err := w.Write([]Msg{{Buf: make([]byte, 4), N: 4}})
	if sent != 0 || n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write without a socket: %d %d %v", sent, n, err)
	}
}

// TestReadEach: every datagram is handed over in order, in batches of up
// to the Reader's size, until handle says stop; a deadline ends it with a
// timeout; unbatched Readers behave the same.
func TestReadEach(t *testing.T) {
	for _, batch := range []int{4, 1} {
		srv := listen(t, "udp4", "127.0.0.1:0")
		cli, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		r := NewReader(srv, batch, 64)
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))

		// Queued before the first read: full batches, then the rest.
		for i := range 10 {
			if _, err := cli.Write([]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		var got []byte
		err = r.ReadEach(func(ms []Msg) bool {
			if len(ms) == 0 || len(ms) > batch {
				t.Errorf("batch of %d, Reader of %d", len(ms), batch)
			}
			for _, m := range ms {
				got = append(got, m.Payload()...)
			}
			if len(got) == 4 {
				// A datagram sent while handling is read too.
				cli.Write([]byte{10})
			}
			return len(got) < 11
		})
		if err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
		for i, b := range got {
			if int(b) != i {
				t.Fatalf("batch %d: datagrams %v, want in order", batch, got)
			}
		}

		srv.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		var ne net.Error
		if err := r.ReadEach(func([]Msg) bool { return true }); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("batch %d: ReadEach past the deadline: %v", batch, err)
		}
	}
}

// TestReadEachWaits: after a batch that drained the socket, ReadEach waits
// for datagrams that come later and hands them over.
func TestReadEachWaits(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	cli, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	r := NewReader(srv, 8, 64)
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	next := make(chan struct{}, 1)
	go func() {
		for i := range 5 {
			<-next
			cli.Write([]byte{byte(i)})
		}
	}()
	next <- struct{}{}
	n := 0
	err = r.ReadEach(func(ms []Msg) bool {
		for _, m := range ms {
			if int(m.Payload()[0]) != n {
				t.Errorf("datagram %d is %d", n, m.Payload()[0])
			}
			n++
		}
		if n < 5 {
			next <- struct{}{} // the next datagram comes once this one is handled
		}
		return n < 5
	})
	if err != nil || n != 5 {
		t.Fatalf("ReadEach: %d datagrams, %v", n, err)
	}
}

// TestReadEachAllocs: ReadEach allocates at most once per call, never per
// datagram.
func TestReadEachAllocs(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	cli := listen(t, "udp4", "127.0.0.1:0")
	r := NewReader(srv, 8, 2048)
	w := NewWriter(cli, 8)
	to := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	batch := make([]Msg, 16)
	for i := range batch {
		batch[i] = Msg{Buf: make([]byte, 1316), N: 1316, Addr: to}
	}
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := 0
	handle := func(ms []Msg) bool {
		got += len(ms)
		return got < len(batch)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if sent, _, err := w.Write(batch); err != nil || sent != len(batch) {
			t.Fatalf("sent %d: %v", sent, err)
		}
		got = 0
		if err := r.ReadEach(handle); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("%.1f allocations per ReadEach of %d datagrams, want at most 1", allocs, len(batch))
	}
}
