// Package proxyproto reads the PROXY protocol header (HAProxy's
// specification, version 1 text and version 2 binary) that a TCP load
// balancer sends first on a connection to name the client it relays, and
// wraps a listener so that the connections of trusted peers report that
// client as their remote address (see Listener).
//
// The package owns the header's parsing and the trust decision; it knows no
// media protocol, and a node's protocol servers never see a header.
package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// The wire constants of the specification.
const (
	// MaxV1Length is the longest version 1 header, CRLF included.
	MaxV1Length = 107
	// MaxV2Length bounds what a version 2 header may declare after its
	// 16-byte fixed part: the addresses (216 bytes at most, for AF_UNIX)
	// and TLVs, which are skipped. The specification allows 65535; load
	// balancers send a few dozen bytes of TLVs.
	MaxV2Length = 2048

	v1Prefix = "PROXY "
	v2Sig    = "\r\n\r\n\x00\r\nQUIT\n"
)

// Errors of Read. Each error Read returns wraps one of them.
var (
	// ErrNoHeader: the connection does not start with a PROXY signature.
	ErrNoHeader = errors.New("proxyproto: no PROXY protocol header")
	// ErrV1: a version 1 header that is too long, not ended by CRLF, or
	// whose fields do not parse.
	ErrV1 = errors.New("proxyproto: bad version 1 header")
	// ErrV2: a version 2 header with an unknown version or command, an
	// unknown address family or transport, a length past MaxV2Length, or a
	// length too short for its addresses.
	ErrV2 = errors.New("proxyproto: bad version 2 header")
)

// Header is a parsed PROXY protocol header.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Local is true when the header names no client: version 2's LOCAL
	// command (a balancer's own health check), version 1's UNKNOWN, or a
	// version 2 PROXY of an unspecified or AF_UNIX family. The connection's
	// own endpoints stand then.
	Local bool
	// Source and Destination are the client's address and the address it
	// connected to, when Local is false.
	Source, Destination netip.AddrPort
}

// Read reads one PROXY protocol header, version 1 or 2, from br and nothing
// after it. It reads at most MaxV1Length bytes of a version 1 header and 16
// + MaxV2Length of a version 2 one; the caller bounds the time with a read
// deadline. Errors wrap ErrNoHeader, ErrV1, ErrV2, or the reader's error:
// io.EOF when the stream ends before its first byte (a peer that connected
// and closed), io.ErrUnexpectedEOF when it ends inside a header.
func Read(br *bufio.Reader) (Header, error) {
	first, err := br.Peek(1)
	if err != nil {
		return Header{}, err
	}
	switch first[0] {
	case v1Prefix[0]:
		return readV1(br)
	case v2Sig[0]:
		return readV2(br)
	}
	return Header{}, ErrNoHeader
}

// readErr turns an end of stream inside a header into io.ErrUnexpectedEOF.
func readErr(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func readV1(br *bufio.Reader) (Header, error) {
	var line [MaxV1Length]byte
	n := 0
	for {
		if n == len(line) {
			return Header{}, fmt.Errorf("%w: no CRLF within %d bytes", ErrV1, MaxV1Length)
		}
		b, err := br.ReadByte()
		if err != nil {
			return Header{}, readErr(err)
		}
		line[n] = b
		n++
		if n <= len(v1Prefix) && b != v1Prefix[n-1] {
			return Header{}, ErrNoHeader
		}
		if b == '\n' {
			break
		}
	}
	if n < 2 || line[n-2] != '\r' {
		return Header{}, fmt.Errorf("%w: line not ended by CRLF", ErrV1)
	}
	return parseV1(line[len(v1Prefix) : n-2])
}

// parseV1 parses the fields after "PROXY ": "TCP4|TCP6 src dst sport
// dport", or "UNKNOWN" followed by anything.
func parseV1(b []byte) (Header, error) {
	h := Header{Version: 1}
	if bytes.Equal(b, []byte("UNKNOWN")) || bytes.HasPrefix(b, []byte("UNKNOWN ")) {
		h.Local = true
		return h, nil
	}
	f := bytes.Split(b, []byte(" "))
	if len(f) != 5 {
		return h, fmt.Errorf("%w: want 5 fields after PROXY, got %d", ErrV1, len(f))
	}
	var want4 bool
	switch string(f[0]) {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return h, fmt.Errorf("%w: unknown protocol %q", ErrV1, f[0])
	}
	var addrs [2]netip.Addr
	for i := range addrs {
		a, err := netip.ParseAddr(string(f[1+i]))
		if err != nil || a.Zone() != "" || a.Is4() != want4 {
			return h, fmt.Errorf("%w: bad %s address %q", ErrV1, f[0], f[1+i])
		}
		addrs[i] = a
	}
	var ports [2]uint16
	for i := range ports {
		p, err := parsePort(f[3+i])
		if err != nil {
			return h, err
		}
		ports[i] = p
	}
	h.Source = netip.AddrPortFrom(addrs[0].Unmap(), ports[0])
	h.Destination = netip.AddrPortFrom(addrs[1].Unmap(), ports[1])
	return h, nil
}

// parsePort parses a decimal port of 0 to 65535 without a sign or leading
// zeros.
func parsePort(b []byte) (uint16, error) {
	if len(b) == 0 || len(b) > 5 || (len(b) > 1 && b[0] == '0') || b[0] < '0' || b[0] > '9' {
		return 0, fmt.Errorf("%w: bad port %q", ErrV1, b)
	}
	p, err := strconv.ParseUint(string(b), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%w: bad port %q", ErrV1, b)
	}
	return uint16(p), nil
}

func readV2(br *bufio.Reader) (Header, error) {
	var fixed [16]byte
	// Compare the signature byte by byte, so that a stream that is not a
	// header is told apart as soon as it differs.
	for i := range len(v2Sig) {
		b, err := br.ReadByte()
		if err != nil {
			return Header{}, readErr(err)
		}
		if b != v2Sig[i] {
			return Header{}, ErrNoHeader
		}
		fixed[i] = b
	}
	if _, err := io.ReadFull(br, fixed[len(v2Sig):]); err != nil {
		return Header{}, readErr(err)
	}
	h := Header{Version: 2}
	verCmd, famProto := fixed[12], fixed[13]
	length := int(binary.BigEndian.Uint16(fixed[14:]))
	if verCmd>>4 != 2 {
		return h, fmt.Errorf("%w: version %d", ErrV2, verCmd>>4)
	}
	if length > MaxV2Length {
		return h, fmt.Errorf("%w: length %d past %d", ErrV2, length, MaxV2Length)
	}
	var addrLen int
	switch cmd := verCmd & 0xf; cmd {
	case 0: // LOCAL: the addresses, if any, are ignored.
		h.Local = true
	case 1: // PROXY
		switch fam, proto := famProto>>4, famProto&0xf; {
		case fam == 0: // AF_UNSPEC
			h.Local = true
		case proto > 2:
			return h, fmt.Errorf("%w: transport %d", ErrV2, proto)
		case fam == 1:
			addrLen = 12
		case fam == 2:
			addrLen = 36
		case fam == 3: // AF_UNIX names no IP client
			h.Local = true
			addrLen = 216
		default:
			return h, fmt.Errorf("%w: address family %d", ErrV2, fam)
		}
	default:
		return h, fmt.Errorf("%w: command %d", ErrV2, cmd)
	}
	if length < addrLen {
		return h, fmt.Errorf("%w: length %d too short for the addresses (%d)", ErrV2, length, addrLen)
	}
	if !h.Local {
		var a [36]byte
		if _, err := io.ReadFull(br, a[:addrLen]); err != nil {
			return h, readErr(err)
		}
		ipLen := (addrLen - 4) / 2
		src, _ := netip.AddrFromSlice(a[:ipLen])
		dst, _ := netip.AddrFromSlice(a[ipLen : 2*ipLen])
		h.Source = netip.AddrPortFrom(src.Unmap(), binary.BigEndian.Uint16(a[2*ipLen:]))
		h.Destination = netip.AddrPortFrom(dst.Unmap(), binary.BigEndian.Uint16(a[2*ipLen+2:]))
		length -= addrLen
	}
	// The rest (TLVs, or the addresses of a header that names no client)
	// is skipped.
	if _, err := br.Discard(length); err != nil {
		return h, readErr(err)
	}
	return h, nil
}

// Detect reports whether br starts with a PROXY protocol signature, either
// version's, without consuming anything. It reads only as far as it must to
// tell: a stream whose first byte is neither signature's is answered at once.
// An end of stream before it can tell is reported as false and no error.
func Detect(br *bufio.Reader) (bool, error) {
	var sig string
	for n := 1; ; n++ {
		b, err := br.Peek(n)
		if err != nil {
			if err == io.EOF {
				return false, nil
			}
			return false, err
		}
		if n == 1 {
			switch b[0] {
			case v1Prefix[0]:
				sig = v1Prefix
			case v2Sig[0]:
				sig = v2Sig
			default:
				return false, nil
			}
		}
		if b[n-1] != sig[n-1] {
			return false, nil
		}
		if n == len(sig) {
			return true, nil
		}
	}
}

// AppendV1 appends a version 1 header naming the connection src -> dst
// (TCP4 when both are IPv4, else TCP6 with IPv4 addresses mapped) to b.
func AppendV1(b []byte, src, dst netip.AddrPort) []byte {
	proto := "TCP4"
	s, d := src.Addr(), dst.Addr()
	if !s.Is4() || !d.Is4() {
		proto, s, d = "TCP6", as16(s), as16(d)
	}
	b = append(b, v1Prefix+proto+" "...)
	b = s.AppendTo(b)
	b = append(b, ' ')
	b = d.AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(dst.Port()), 10)
	return append(b, "\r\n"...)
}

// AppendV2 appends a version 2 PROXY header over TCP naming the connection
// src -> dst (AF_INET when both are IPv4, else AF_INET6) to b.
func AppendV2(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, v2Sig...)
	s, d := src.Addr(), dst.Addr()
	if s.Is4() && d.Is4() {
		b = append(b, 0x21, 0x11, 0, 12)
	} else {
		s, d = as16(s), as16(d)
		b = append(b, 0x21, 0x21, 0, 36)
	}
	b = append(b, s.AsSlice()...)
	b = append(b, d.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// as16 is a as an IPv6 address (IPv4 mapped).
func as16(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom16(a.As16())
	}
	return a
}
