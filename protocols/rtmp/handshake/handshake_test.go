package handshake

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
)

// rw is a scripted peer: reads come from in, writes go to out.
type rw struct {
	in  io.Reader
	out bytes.Buffer
}

func (p *rw) Read(b []byte) (int, error)  { return p.in.Read(b) }
func (p *rw) Write(b []byte) (int, error) { return p.out.Write(b) }

// c0c1 returns C0 and a C1 whose version field is non-zero but which is
// not signed.
func c0c1(version byte) []byte {
	b := make([]byte, 1+Size)
	b[0] = version
	for i := range b[1:] {
		b[1+i] = byte(i * 7)
	}
	return b
}

func TestServer(t *testing.T) {
	c2 := bytes.Repeat([]byte{0xaa}, Size)
	tests := []struct {
		name    string
		in      []byte
		wantErr error
		wantOut int
	}{
		{"ok", append(c0c1(3), c2...), nil, 1 + 2*Size},
		{"bad version", append(c0c1(6), c2...), ErrVersion, 0},
		{"garbage", []byte("GET / HTTP/1.1\r\n"), ErrVersion, 0},
		{"empty", nil, ErrShort, 0},
		{"short C1", c0c1(3)[:100], ErrShort, 0},
		{"missing C2", c0c1(3), ErrShort, 1 + 2*Size},
		{"short C2", append(c0c1(3), c2[:10]...), ErrShort, 1 + 2*Size},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &rw{in: bytes.NewReader(tt.in)}
			kind, err := Server(p, 42)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if kind != Simple {
				t.Fatalf("%v handshake, want simple", kind)
			}
			if p.out.Len() != tt.wantOut {
				t.Fatalf("wrote %d bytes, want %d", p.out.Len(), tt.wantOut)
			}
			if tt.wantOut > 0 {
				out := p.out.Bytes()
				if out[0] != Version {
					t.Fatalf("S0 %#x", out[0])
				}
				if !bytes.Equal(out[5:9], []byte{0, 0, 0, 0}) {
					t.Fatalf("S1 version field %x, want zero (simple handshake)", out[5:9])
				}
				if !bytes.Equal(out[1+Size:], tt.in[1:1+Size]) {
					t.Fatal("S2 does not echo C1")
				}
			}
		})
	}
}

func TestClientServer(t *testing.T) {
	// TCP rather than net.Pipe: both sides write before reading, which
	// relies on socket buffers as it does in production.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		b, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer b.Close()
		kind, err := Server(b, 1)
		if err == nil && kind != Simple {
			err = fmt.Errorf("%v handshake, want simple", kind)
		}
		errc <- err
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := Client(a, 2); err != nil {
		t.Fatalf("client: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server: %v", err)
	}
}

func TestClientBadS0(t *testing.T) {
	p := &rw{in: bytes.NewReader(c0c1(9))}
	if err := Client(p, 0); !errors.Is(err, ErrVersion) {
		t.Fatalf("got %v", err)
	}
	p = &rw{in: bytes.NewReader(c0c1(3))}
	if err := Client(p, 0); !errors.Is(err, ErrShort) {
		t.Fatalf("no S2: got %v", err)
	}
}

func FuzzHandshake(f *testing.F) {
	f.Add(append(c0c1(3), make([]byte, Size)...))
	f.Add(c0c1(3))
	f.Add([]byte{3})
	f.Add([]byte{0x16, 0x03, 0x01})
	for _, l := range layouts {
		f.Add(append(signedC0C1(l), make([]byte, Size)...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p := &rw{in: bytes.NewReader(in)}
		kind, err := Server(p, 0)
		if err == nil && len(in) < 1+2*Size {
			t.Fatalf("handshake succeeded on %d bytes", len(in))
		}
		if err != nil && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrShort) {
			t.Fatalf("unexpected error %v", err)
		}
		if p.out.Len() != 1+2*Size {
			return
		}
		// Whatever the answer, it is a consistent one.
		out := p.out.Bytes()
		c1, s1, s2 := in[1:1+Size], out[1:1+Size], out[1+Size:]
		switch kind {
		case Simple:
			if !bytes.Equal(s2, c1) || !bytes.Equal(s1[4:8], []byte{0, 0, 0, 0}) {
				t.Fatal("simple answer with a signed S1 or an S2 that does not echo C1")
			}
		case Complex:
			cd, _, ok := testClientDigest(c1)
			if !ok {
				t.Fatal("complex answer to a C1 that does not verify")
			}
			if _, err := verifyServer(s1, s2, cd); err != nil {
				t.Fatal(err)
			}
		}
	})
}
