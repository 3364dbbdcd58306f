package proxyproto

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// serveOne listens on loopback with cfg, dials it, writes send and returns
// the server's end of the connection and the client's.
func serveOne(t *testing.T, cfg Config, send string) (*Conn, net.Conn) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(inner, cfg)
	t.Cleanup(func() { ln.Close() })
	cc, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	if send != "" {
		if _, err := io.WriteString(cc, send); err != nil {
			t.Fatal(err)
		}
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc.(*Conn), cc
}

var (
	loopback  = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	elsewhere = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
)

// refusals records OnRefuse calls.
type refusals struct {
	mu   sync.Mutex
	errs []error
}

func (r *refusals) add(_ netip.AddrPort, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *refusals) all() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func TestTrustedPeerHeader(t *testing.T) {
	for _, hdr := range []string{
		"PROXY TCP4 203.0.113.7 10.0.0.1 50000 1935\r\n",
		string(AppendV2(nil, ap("203.0.113.7:50000"), ap("10.0.0.1:1935"))),
	} {
		var ref refusals
		sc, _ := serveOne(t, Config{Trusted: loopback, OnRefuse: ref.add}, hdr+"\x03hello")
		if got := sc.RemoteAddr().String(); got != "203.0.113.7:50000" {
			t.Errorf("RemoteAddr = %s, want the header's source", got)
		}
		if got := readN(t, sc, 6); got != "\x03hello" {
			t.Errorf("read %q after the header", got)
		}
		if sc.LocalAddr().String() == "10.0.0.1:1935" {
			t.Error("LocalAddr is the header's destination; it must stay the socket's")
		}
		if errs := ref.all(); len(errs) != 0 {
			t.Errorf("refused: %v", errs)
		}
	}
}

// A LOCAL header (a balancer's health check) keeps the peer's address.
func TestTrustedPeerLocal(t *testing.T) {
	sc, cc := serveOne(t, Config{Trusted: loopback}, v2Sig+"\x20\x00\x00\x00ok")
	if got, want := sc.RemoteAddr().String(), cc.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr = %s, want the peer %s", got, want)
	}
	if got := readN(t, sc, 2); got != "ok" {
		t.Errorf("read %q", got)
	}
}

// A trusted peer must send a header: without one, or with a bad one, the
// connection serves nothing and the refusal is reported once.
func TestTrustedPeerWithoutHeader(t *testing.T) {
	for _, tc := range []struct {
		send string
		err  error
	}{
		{"\x03" + string(make([]byte, 1536)), ErrNoHeader},
		{"GET / HTTP/1.1\r\n\r\n", ErrNoHeader},
		{"PROXY TCP4 203.0.113.7 10.0.0.1 50000\r\n", ErrV1},
		{v2Sig + "\x21\x11\xff\xff", ErrV2},
	} {
		var ref refusals
		sc, cc := serveOne(t, Config{Trusted: loopback, OnRefuse: ref.add}, tc.send)
		if _, err := sc.Read(make([]byte, 10)); !errors.Is(err, tc.err) {
			t.Errorf("%q: read error %v, want %v", tc.send, err, tc.err)
		}
		if _, err := sc.Read(make([]byte, 10)); !errors.Is(err, tc.err) {
			t.Errorf("%q: second read error %v, want %v", tc.send, err, tc.err)
		}
		if got, want := sc.RemoteAddr().String(), cc.LocalAddr().String(); got != want {
			t.Errorf("%q: RemoteAddr = %s, want the peer %s", tc.send, got, want)
		}
		if errs := ref.all(); len(errs) != 1 || !errors.Is(errs[0], tc.err) {
			t.Errorf("%q: refusals %v", tc.send, errs)
		}
	}
}

// A trusted peer that sends nothing is refused after Timeout; the server's
// later deadline is restored for the connection (here: none).
func TestTrustedPeerSilent(t *testing.T) {
	var ref refusals
	sc, _ := serveOne(t, Config{Trusted: loopback, Timeout: 50 * time.Millisecond, OnRefuse: ref.add}, "")
	sc.SetReadDeadline(time.Now().Add(time.Hour))
	_, err := sc.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read error %v, want a deadline", err)
	}
	if errs := ref.all(); len(errs) != 1 {
		t.Fatalf("refusals %v", errs)
	}
}

// The server's own deadline, earlier than Timeout, bounds the header.
func TestTrustedPeerServerDeadline(t *testing.T) {
	sc, _ := serveOne(t, Config{Trusted: loopback, Timeout: time.Hour}, "")
	sc.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := sc.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read error %v, want a deadline", err)
	}
}

// After the header, the server's read deadline set before it holds.
func TestDeadlineRestored(t *testing.T) {
	sc, _ := serveOne(t, Config{Trusted: loopback, Timeout: time.Hour}, "PROXY UNKNOWN\r\n")
	sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := sc.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read error %v, want the server's deadline", err)
	}
	sc.SetReadDeadline(time.Time{})
	sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := sc.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read error %v, want the server's deadline", err)
	}
}

// An untrusted peer is its own client: its bytes reach the server as sent
// (including a first byte that looks like a signature's), and its address
// is its own.
func TestUntrustedPeer(t *testing.T) {
	for _, send := range []string{"\x03rtmp", "POST / HTTP/1.1\r\n", "PUT /x", "\r\nxx", "PROXZ"} {
		var ref refusals
		sc, cc := serveOne(t, Config{Trusted: elsewhere, OnRefuse: ref.add}, send)
		if got := readN(t, sc, len(send)); got != send {
			t.Errorf("read %q, want %q", got, send)
		}
		if got, want := sc.RemoteAddr().String(), cc.LocalAddr().String(); got != want {
			t.Errorf("RemoteAddr = %s, want %s", got, want)
		}
		if errs := ref.all(); len(errs) != 0 {
			t.Errorf("%q refused: %v", send, errs)
		}
	}
}

// An untrusted peer that sends a PROXY header is refused; its header never
// names the client.
func TestUntrustedPeerHeader(t *testing.T) {
	for _, hdr := range []string{
		"PROXY TCP4 203.0.113.7 10.0.0.1 50000 1935\r\n",
		string(AppendV2(nil, ap("203.0.113.7:50000"), ap("10.0.0.1:1935"))),
	} {
		var ref refusals
		sc, cc := serveOne(t, Config{Trusted: elsewhere, OnRefuse: ref.add}, hdr+"\x03")
		if got, want := sc.RemoteAddr().String(), cc.LocalAddr().String(); got != want {
			t.Errorf("RemoteAddr = %s, want the peer %s", got, want)
		}
		if _, err := sc.Read(make([]byte, 1)); !errors.Is(err, ErrUntrusted) {
			t.Errorf("read error %v, want ErrUntrusted", err)
		}
		if got, want := sc.RemoteAddr().String(), cc.LocalAddr().String(); got != want {
			t.Errorf("after the read: RemoteAddr = %s, want the peer %s", got, want)
		}
		if errs := ref.all(); len(errs) != 1 || !errors.Is(errs[0], ErrUntrusted) {
			t.Errorf("refusals %v", errs)
		}
	}
}

// An untrusted peer's first read waits only under the server's deadline,
// as it would without the listener.
func TestUntrustedPeerKeepsServerDeadline(t *testing.T) {
	sc, cc := serveOne(t, Config{Trusted: elsewhere, Timeout: time.Nanosecond}, "")
	go func() { io.WriteString(cc, "late") }()
	sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got := readN(t, sc, 4); got != "late" {
		t.Fatalf("read %q", got)
	}
}

func TestTrusted(t *testing.T) {
	p := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	for a, want := range map[string]bool{
		"10.1.2.3": true, "::ffff:10.1.2.3": true, "2001:db8::1": true,
		"11.0.0.1": false, "2001:db9::1": false, "127.0.0.1": false,
	} {
		if got := Trusted(p, netip.MustParseAddr(a)); got != want {
			t.Errorf("Trusted(%s) = %v", a, got)
		}
	}
	if Trusted(p, netip.Addr{}) || Trusted(nil, netip.MustParseAddr("10.0.0.1")) {
		t.Error("an invalid address or no prefixes must trust nobody")
	}
}

// A trusted peer that connects and closes without a byte (a TCP health
// check) ends the connection as EOF and is not reported as refused.
func TestTrustedPeerHealthCheck(t *testing.T) {
	var ref refusals
	sc, cc := serveOne(t, Config{Trusted: loopback, OnRefuse: ref.add}, "")
	cc.Close()
	if _, err := sc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read error %v, want io.EOF", err)
	}
	if errs := ref.all(); len(errs) != 0 {
		t.Fatalf("refusals %v", errs)
	}
}
