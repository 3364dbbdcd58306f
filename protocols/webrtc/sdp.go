package webrtc

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/pion/sdp/v3"
)

// SDP errors. Signalling maps them to a 400 for offers and a 502 for answers.
var (
	ErrBadSDP  = errors.New("webrtc: SDP does not parse")
	ErrNoUfrag = errors.New("webrtc: SDP has no a=ice-ufrag")
)

// maxUfragLen bounds an ICE ufrag (RFC 8839 allows 4 to 256 characters).
const maxUfragLen = 256

// MaxPwdLen bounds an ICE password (RFC 8839 allows 22 to 256 characters).
const MaxPwdLen = 256

// ParseSDP checks that b is a session description pion/sdp accepts and returns
// its ICE ufrag: the first a=ice-ufrag, at session or media level. It does not
// modify b.
func ParseSDP(b []byte) (ufrag string, err error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(string(b)); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	u := iceUfrag(b)
	if u == "" {
		return "", ErrNoUfrag
	}
	return u, nil
}

// iceUfrag returns the value of the first valid a=ice-ufrag line, or "".
func iceUfrag(b []byte) string {
	for len(b) > 0 {
		line, rest := nextLine(b)
		b = rest
		v, ok := bytes.CutPrefix(trimEOL(line), []byte("a=ice-ufrag:"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		if len(v) == 0 || len(v) > maxUfragLen || bytes.ContainsAny(v, ": \t") {
			continue
		}
		return string(v)
	}
	return ""
}

// ICEPwd returns the value of the first valid a=ice-pwd line of b, at session
// or media level, or "" when there is none. A valid value is 1 to MaxPwdLen
// printable ASCII characters without spaces (RFC 8839's ice-chars are a
// subset). In an answer it is the key of the MESSAGE-INTEGRITY of the
// client's Binding requests to the answerer.
func ICEPwd(b []byte) string {
	for len(b) > 0 {
		line, rest := nextLine(b)
		b = rest
		v, ok := bytes.CutPrefix(trimEOL(line), []byte("a=ice-pwd:"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		if len(v) == 0 || len(v) > MaxPwdLen || bytes.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r > '~' }) {
			continue
		}
		return string(v)
	}
	return ""
}

// RewriteSDP rewrites the ICE candidates of an answer so that the client sends
// its media to the node: every UDP host candidate of component 1 gets the
// address and port of cand; all other candidates (TCP, srflx, relay, RTCP
// component 2, unparseable ones) are removed, and so are the duplicates the
// rewrite produces (one candidate is kept per media section). When the answer had no usable candidate, one host
// candidate is added to the first media section. Every other line, and the
// line ending of every line (CRLF or LF), is kept byte for byte.
//
// RewriteSDP is pure: it never fails on bad input; it rewrites what it can
// recognise. Callers validate with ParseSDP first.
func RewriteSDP(b []byte, cand netip.AddrPort) []byte {
	ip := cand.Addr().Unmap().String()
	port := strconv.Itoa(int(cand.Port()))
	out := make([]byte, 0, len(b)+64)
	kept := 0
	// One candidate per media section: after the rewrite every candidate
	// names the same address, so further ones are duplicates.
	sectionHas := false
	firstMedia, firstMediaEnd := -1, -1
	eol := []byte("\r\n")
	for len(b) > 0 {
		line, rest := nextLine(b)
		b = rest
		body := trimEOL(line)
		if len(body) != len(line) {
			eol = line[len(body):]
		}
		if bytes.HasPrefix(body, []byte("m=")) {
			sectionHas = false
			if firstMedia < 0 {
				firstMedia = len(out)
			} else if firstMediaEnd < 0 {
				firstMediaEnd = len(out)
			}
		}
		if v, ok := bytes.CutPrefix(body, []byte("a=candidate:")); ok {
			nl, ok := rewriteCandidate(v, ip, port)
			if !ok || sectionHas {
				continue
			}
			sectionHas = true
			kept++
			out = append(out, "a=candidate:"...)
			out = append(out, nl...)
			out = append(out, line[len(body):]...)
			continue
		}
		out = append(out, line...)
	}
	if kept == 0 && firstMedia >= 0 {
		if firstMediaEnd < 0 {
			firstMediaEnd = len(out)
		}
		var add []byte
		if firstMediaEnd > 0 && out[firstMediaEnd-1] != '\n' {
			add = append(add, eol...)
		}
		add = fmt.Appendf(add, "a=candidate:0 1 udp 2130706431 %s %s typ host", ip, port)
		add = append(add, eol...)
		out = append(out[:firstMediaEnd], append(add, out[firstMediaEnd:]...)...)
	}
	return out
}

// rewriteCandidate rewrites the value of one a=candidate attribute:
// "foundation component transport priority address port typ type [ext...]".
// It reports false for a candidate the node does not relay.
func rewriteCandidate(v []byte, ip, port string) (string, bool) {
	f := bytes.Fields(v)
	if len(f) < 8 || string(f[6]) != "typ" {
		return "", false
	}
	if string(f[1]) != "1" || !bytes.EqualFold(f[2], []byte("udp")) || string(f[7]) != "host" {
		return "", false
	}
	if _, err := strconv.ParseUint(string(f[3]), 10, 32); err != nil {
		return "", false
	}
	var s []byte
	s = append(s, f[0]...)
	s = append(s, ' ')
	s = append(s, f[1]...)
	s = append(s, ' ')
	s = append(s, f[2]...)
	s = append(s, ' ')
	s = append(s, f[3]...)
	s = append(s, ' ')
	s = append(s, ip...)
	s = append(s, ' ')
	s = append(s, port...)
	s = append(s, " typ host"...)
	// Keep extensions (generation, ufrag, network-id) except the related
	// address, which would leak the origin's address.
	for i := 8; i+1 < len(f); i += 2 {
		k := string(f[i])
		if k == "raddr" || k == "rport" {
			continue
		}
		s = append(s, ' ')
		s = append(s, f[i]...)
		s = append(s, ' ')
		s = append(s, f[i+1]...)
	}
	return string(s), true
}

// nextLine splits b after its first '\n' (the line keeps its terminator).
func nextLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i+1], b[i+1:]
	}
	return b, nil
}

// trimEOL removes a trailing "\n" or "\r\n" (a lone '\r' is not a line end).
func trimEOL(line []byte) []byte {
	if l, ok := bytes.CutSuffix(line, []byte("\n")); ok {
		return bytes.TrimSuffix(l, []byte("\r"))
	}
	return line
}
