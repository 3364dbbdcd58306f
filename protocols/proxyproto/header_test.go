package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// v2 builds a version 2 header from hex (spaces ignored).
func v2(t testing.TB, h string) string {
	b, err := hex.DecodeString(strings.ReplaceAll(h, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return v2Sig + string(b)
}

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Header
		err  error
		rest string // what stays unread after the header
	}{
		// Version 1, the specification's examples and its limits.
		{"v1 tcp4", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /", Header{Version: 1,
			Source: ap("192.168.0.1:56324"), Destination: ap("192.168.0.11:443")}, nil, "GET /"},
		{"v1 tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", Header{Version: 1,
			Source: ap("[2001:db8::1]:1"), Destination: ap("[2001:db8::2]:65535")}, nil, ""},
		{"v1 tcp6 mapped", "PROXY TCP6 ::ffff:10.0.0.1 ::1 0 0\r\n", Header{Version: 1,
			Source: ap("10.0.0.1:0"), Destination: ap("[::1]:0")}, nil, ""},
		{"v1 unknown", "PROXY UNKNOWN\r\n\x03", Header{Version: 1, Local: true}, nil, "\x03"},
		{"v1 unknown with addresses", "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
			Header{Version: 1, Local: true}, nil, ""},
		{"v1 longest", "PROXY UNKNOWN " + strings.Repeat("x", MaxV1Length-16) + "\r\n", Header{Version: 1, Local: true}, nil, ""},
		{"v1 one byte too long", "PROXY UNKNOWN " + strings.Repeat("x", MaxV1Length-15) + "\r\n", Header{}, ErrV1, ""},
		{"v1 no CR", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", Header{}, ErrV1, ""},
		{"v1 tcp4 with v6", "PROXY TCP4 ::1 ::1 1 2\r\n", Header{}, ErrV1, ""},
		{"v1 tcp6 with v4", "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", Header{}, ErrV1, ""},
		{"v1 zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", Header{}, ErrV1, ""},
		{"v1 udp", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", Header{}, ErrV1, ""},
		{"v1 port too big", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", Header{}, ErrV1, ""},
		{"v1 port leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", Header{}, ErrV1, ""},
		{"v1 port sign", "PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n", Header{}, ErrV1, ""},
		{"v1 double space", "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", Header{}, ErrV1, ""},
		{"v1 missing field", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Header{}, ErrV1, ""},
		{"v1 ipv4 leading zero", "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", Header{}, ErrV1, ""},
		{"v1 cut", "PROXY TCP4 1.2.3.4", Header{}, io.ErrUnexpectedEOF, ""},
		{"not a header: POST", "POST / HTTP/1.1\r\n", Header{}, ErrNoHeader, ""},
		{"not a header: rtmp", "\x03\x00\x00\x00", Header{}, ErrNoHeader, ""},
		{"not a header: PROXy", "PROXy TCP4", Header{}, ErrNoHeader, ""},
		{"empty", "", Header{}, io.EOF, ""},

		// Version 2.
		{"v2 tcp4", v2(t, "21 11 000c  c0000201 c6336407  1f90 01bb") + "rest", Header{Version: 2,
			Source: ap("192.0.2.1:8080"), Destination: ap("198.51.100.7:443")}, nil, "rest"},
		{"v2 tcp6", v2(t, "21 21 0024  20010db8000000000000000000000001 20010db8000000000000000000000002  0001 0002"),
			Header{Version: 2, Source: ap("[2001:db8::1]:1"), Destination: ap("[2001:db8::2]:2")}, nil, ""},
		{"v2 tcp4 with TLVs", v2(t, "21 11 0013  0a000001 0a000002 0050 0051  04 0004 61626364") + "x", Header{Version: 2,
			Source: ap("10.0.0.1:80"), Destination: ap("10.0.0.2:81")}, nil, "x"},
		{"v2 local", v2(t, "20 00 0000") + "x", Header{Version: 2, Local: true}, nil, "x"},
		{"v2 local with addresses", v2(t, "20 11 000c  0a000001 0a000002 0050 0051") + "x", Header{Version: 2, Local: true}, nil, "x"},
		{"v2 unspec", v2(t, "21 00 0003 010203") + "x", Header{Version: 2, Local: true}, nil, "x"},
		{"v2 unix", v2(t, "21 31 00d8"+strings.Repeat("00", 216)) + "x", Header{Version: 2, Local: true}, nil, "x"},
		{"v2 longest", v2(t, "21 11 0800  0a000001 0a000002 0050 0051"+strings.Repeat("00", MaxV2Length-12)) + "x",
			Header{Version: 2, Source: ap("10.0.0.1:80"), Destination: ap("10.0.0.2:81")}, nil, "x"},
		{"v2 too long", v2(t, "21 11 0801  0a000001 0a000002 0050 0051"), Header{}, ErrV2, ""},
		{"v2 version 1", v2(t, "11 11 000c  0a000001 0a000002 0050 0051"), Header{}, ErrV2, ""},
		{"v2 command 2", v2(t, "22 11 000c  0a000001 0a000002 0050 0051"), Header{}, ErrV2, ""},
		{"v2 family 4", v2(t, "21 41 000c  0a000001 0a000002 0050 0051"), Header{}, ErrV2, ""},
		{"v2 transport 3", v2(t, "21 13 000c  0a000001 0a000002 0050 0051"), Header{}, ErrV2, ""},
		{"v2 short for tcp4", v2(t, "21 11 000b  0a000001 0a000002 0050 00"), Header{}, ErrV2, ""},
		{"v2 short for tcp6", v2(t, "21 21 000c  0a000001 0a000002 0050 0051"), Header{}, ErrV2, ""},
		{"v2 cut in addresses", v2(t, "21 11 000c  0a000001"), Header{}, io.ErrUnexpectedEOF, ""},
		{"v2 cut in TLVs", v2(t, "21 11 0010  0a000001 0a000002 0050 0051 01"), Header{}, io.ErrUnexpectedEOF, ""},
		{"v2 cut in signature", v2Sig[:5], Header{}, io.ErrUnexpectedEOF, ""},
		{"v2 wrong signature", "\r\n\r\nGET", Header{}, ErrNoHeader, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.in), 256)
			got, err := Read(br)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Read(%q) error %v, want %v", tc.in, err, tc.err)
			}
			if err != nil {
				return
			}
			if got != tc.want {
				t.Fatalf("Read(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tc.rest {
				t.Fatalf("after the header %q, want %q", rest, tc.rest)
			}
		})
	}
}

// A version 1 header is read within MaxV1Length bytes: a stream of 'x'
// after "PROXY " is refused once the bound is reached, not read to its end.
func TestReadV1Bounded(t *testing.T) {
	r := &countingReader{r: io.MultiReader(strings.NewReader("PROXY "), infinite('x'))}
	_, err := Read(bufio.NewReaderSize(r, 16))
	if !errors.Is(err, ErrV1) {
		t.Fatalf("error %v, want ErrV1", err)
	}
	if r.n > MaxV1Length+16 {
		t.Fatalf("read %d bytes for a header of at most %d", r.n, MaxV1Length)
	}
}

// A version 2 header declaring 65535 bytes is refused from its fixed part,
// without reading what it declares.
func TestReadV2Bounded(t *testing.T) {
	r := &countingReader{r: io.MultiReader(strings.NewReader(v2(t, "21 11 ffff")), infinite(0))}
	_, err := Read(bufio.NewReaderSize(r, 16))
	if !errors.Is(err, ErrV2) {
		t.Fatalf("error %v, want ErrV2", err)
	}
	if r.n > 32 {
		t.Fatalf("read %d bytes to refuse a 16-byte fixed header", r.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type infinite byte

func (b infinite) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", true},
		{"PROXY ", true},
		{v2Sig, true},
		{"POST / HTTP/1.1\r\n", false},
		{"PUT /", false},
		{"PROXZ", false},
		{"PROXY", false}, // ends before it can tell
		{"\x03" + strings.Repeat("\x00", 1536), false},
		{"\r\n\r\n\x00\r\nQUIX", false},
		{"GET / HTTP/1.1\r\n", false},
		{"", false},
	} {
		br := bufio.NewReaderSize(strings.NewReader(tc.in), 256)
		got, err := Detect(br)
		if err != nil || got != tc.want {
			t.Errorf("Detect(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if rest, _ := io.ReadAll(br); string(rest) != tc.in {
			t.Errorf("Detect(%q) consumed bytes: %q left", tc.in, rest)
		}
	}
}

// Detect answers from the first byte when it is neither signature's, and
// never waits for more.
func TestDetectFirstByte(t *testing.T) {
	br := bufio.NewReaderSize(&oneByte{b: 'G'}, 256)
	if found, err := Detect(br); found || err != nil {
		t.Fatalf("Detect = %v, %v", found, err)
	}
}

// oneByte returns b once, then fails the test's reads with an error.
type oneByte struct {
	b    byte
	done bool
}

func (o *oneByte) Read(p []byte) (int, error) {
	if o.done {
		return 0, errors.New("read past the first byte")
	}
	o.done = true
	p[0] = o.b
	return 1, nil
}

func TestAppendRoundTrip(t *testing.T) {
	for _, c := range [][2]netip.AddrPort{
		{ap("203.0.113.9:50000"), ap("10.0.0.1:1935")},
		{ap("[2001:db8::9]:1"), ap("[2001:db8::1]:8080")},
		{ap("203.0.113.9:0"), ap("[2001:db8::1]:65535")},
	} {
		for _, enc := range []func([]byte, netip.AddrPort, netip.AddrPort) []byte{AppendV1, AppendV2} {
			b := enc(nil, c[0], c[1])
			h, err := Read(bufio.NewReader(bytes.NewReader(b)))
			if err != nil || h.Local || h.Source != c[0] || h.Destination != c[1] {
				t.Errorf("%q: %+v, %v; want %v -> %v", b, h, err, c[0], c[1])
			}
			if h.Version == 1 && len(b) > MaxV1Length {
				t.Errorf("%q longer than %d", b, MaxV1Length)
			}
		}
	}
	// The longest TCP6 header fits the bound (the specification's 107
	// bytes are those of UNKNOWN with the longest addresses).
	b := AppendV1(nil, ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535"), ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"))
	if len(b) != 104 {
		t.Fatalf("longest TCP6 header: %d bytes, want 104", len(b))
	}
	if _, err := Read(bufio.NewReader(bytes.NewReader(b))); err != nil {
		t.Fatalf("longest TCP6 header %q: %v", b, err)
	}
}

// FuzzRead: any bytes give a header or an error, never a panic, within the
// read bounds; a header that names a client encodes back to the same one.
func FuzzRead(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte(v2(f, "21 11 000c c0000201 c6336407 1f90 01bb")))
	f.Add([]byte(v2(f, "21 21 0024 20010db8000000000000000000000001 20010db8000000000000000000000002 0001 0002")))
	f.Add([]byte(v2(f, "20 00 0000")))
	f.Add([]byte(v2(f, "21 11 0013 0a000001 0a000002 0050 0051 04 0004 61626364")))
	f.Add([]byte("\x03rtmp"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := &countingReader{r: bytes.NewReader(in)}
		br := bufio.NewReaderSize(r, 16)
		h, err := Read(br)
		if consumed := r.n - br.Buffered(); consumed > 16+MaxV2Length {
			t.Fatalf("consumed %d bytes", consumed)
		}
		if err != nil || h.Local {
			return
		}
		enc := AppendV1
		if h.Version == 2 {
			enc = AppendV2
		}
		again, err := Read(bufio.NewReader(bytes.NewReader(enc(nil, h.Source, h.Destination))))
		if err != nil || again.Source != h.Source || again.Destination != h.Destination {
			t.Fatalf("%+v encodes to %+v, %v", h, again, err)
		}
	})
}
