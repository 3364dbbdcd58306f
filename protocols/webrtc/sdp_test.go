package webrtc

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// answer is the shape of an SRS answer, with LF line endings; tests switch
// it to CRLF where that matters.
const answer = `v=0
o=SRS/6.0.0 1 2 IN IP4 0.0.0.0
s=SRSPublishSession
t=0 0
a=ice-lite
a=group:BUNDLE 0 1
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=ice-ufrag:ans1
a=ice-pwd:0123456789abcdef0123456789
a=fingerprint:sha-256 AA:BB
a=setup:passive
a=mid:0
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=candidate:0 1 udp 2130706431 10.0.0.5 8000 typ host generation 0
a=candidate:1 1 udp 2130706431 fd00::5 8000 typ host generation 0
a=candidate:2 1 tcp 1685987071 10.0.0.5 8000 typ host tcptype passive
a=candidate:3 1 udp 1685987071 203.0.113.9 38000 typ srflx raddr 10.0.0.5 rport 8000
a=candidate:4 2 udp 2130706430 10.0.0.5 8001 typ host
a=end-of-candidates
m=video 9 UDP/TLS/RTP/SAVPF 106
c=IN IP4 0.0.0.0
a=ice-ufrag:ans1
a=ice-pwd:0123456789abcdef0123456789
a=mid:1
a=rtpmap:106 H264/90000
a=candidate:0 1 UDP 2130706431 10.0.0.5 8000 typ host
`

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func candidates(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "a=candidate:") {
			out = append(out, strings.TrimSuffix(l, "\r"))
		}
	}
	return out
}

func TestRewriteSDPIPv4(t *testing.T) {
	got := RewriteSDP([]byte(answer), netip.MustParseAddrPort("192.0.2.1:8000"))
	want := []string{
		"a=candidate:0 1 udp 2130706431 192.0.2.1 8000 typ host generation 0",
		"a=candidate:0 1 UDP 2130706431 192.0.2.1 8000 typ host",
	}
	if c := candidates(got); strings.Join(c, "|") != strings.Join(want, "|") {
		t.Fatalf("candidates:\n%s\nwant\n%s", strings.Join(c, "\n"), strings.Join(want, "\n"))
	}
	for _, leak := range []string{"10.0.0.5", "fd00::5", "203.0.113.9", "tcptype", "8001"} {
		if bytes.Contains(got, []byte(leak)) {
			t.Errorf("answer still contains %q:\n%s", leak, got)
		}
	}
	if !bytes.Contains(got, []byte("a=end-of-candidates\n")) {
		t.Error("end-of-candidates was removed")
	}
	if _, err := ParseSDP(got); err != nil {
		t.Fatalf("rewritten answer does not parse: %v", err)
	}
}

func TestRewriteSDPIPv6(t *testing.T) {
	got := RewriteSDP([]byte(answer), netip.MustParseAddrPort("[2001:db8::7]:18000"))
	c := candidates(got)
	if len(c) != 2 || c[0] != "a=candidate:0 1 udp 2130706431 2001:db8::7 18000 typ host generation 0" {
		t.Fatalf("candidates: %q", c)
	}
}

func TestRewriteSDPMappedIPv4(t *testing.T) {
	got := RewriteSDP([]byte(answer), netip.MustParseAddrPort("[::ffff:192.0.2.1]:8000"))
	if c := candidates(got); !strings.Contains(c[0], " 192.0.2.1 8000 ") {
		t.Fatalf("mapped address not unmapped: %q", c[0])
	}
}

func TestRewriteSDPKeepsCRLF(t *testing.T) {
	in := crlf(answer)
	got := RewriteSDP([]byte(in), netip.MustParseAddrPort("192.0.2.1:9000"))
	if strings.Count(string(got), "\n") != strings.Count(string(got), "\r\n") {
		t.Fatalf("bare LF in output:\n%q", got)
	}
	// Lines other than candidates are unchanged.
	strip := func(s string) string {
		var keep []string
		for _, l := range strings.Split(s, "\r\n") {
			if !strings.HasPrefix(l, "a=candidate:") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\r\n")
	}
	if strip(in) != strip(string(got)) {
		t.Fatalf("non-candidate lines changed:\n%s\n---\n%s", strip(in), strip(string(got)))
	}
}

func TestRewriteSDPAddsCandidateWhenNoneUsable(t *testing.T) {
	in := crlf(`v=0
o=- 1 2 IN IP4 0.0.0.0
s=-
t=0 0
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=ice-ufrag:x1y2
a=candidate:2 1 tcp 1685987071 10.0.0.5 8000 typ host tcptype passive
m=video 9 UDP/TLS/RTP/SAVPF 106
a=mid:1
`)
	got := RewriteSDP([]byte(in), netip.MustParseAddrPort("192.0.2.1:8000"))
	c := candidates(got)
	if len(c) != 1 || c[0] != "a=candidate:0 1 udp 2130706431 192.0.2.1 8000 typ host" {
		t.Fatalf("candidates: %q\n%s", c, got)
	}
	if i, j := bytes.Index(got, []byte("a=candidate")), bytes.Index(got, []byte("m=video")); i > j {
		t.Fatal("added candidate is not in the first media section")
	}
	if _, err := ParseSDP(got); err != nil {
		t.Fatal(err)
	}
}

func TestParseSDP(t *testing.T) {
	u, err := ParseSDP([]byte(crlf(answer)))
	if err != nil || u != "ans1" {
		t.Fatalf("ParseSDP = %q, %v", u, err)
	}
	noUfrag := strings.ReplaceAll(answer, "a=ice-ufrag:ans1\n", "")
	if _, err := ParseSDP([]byte(noUfrag)); !errors.Is(err, ErrNoUfrag) {
		t.Fatalf("no ufrag: %v", err)
	}
	for _, bad := range []string{"", "hello", "v=0\nx", "\x00\x01"} {
		if _, err := ParseSDP([]byte(bad)); err == nil {
			t.Errorf("ParseSDP(%q) accepted", bad)
		}
	}
}

func TestICEPwd(t *testing.T) {
	long := strings.Repeat("p", MaxPwdLen+1)
	for _, tc := range []struct{ sdp, want string }{
		{answer, "0123456789abcdef0123456789"},
		{crlf(answer), "0123456789abcdef0123456789"},
		{"v=0\na=ice-pwd: sessionlevelpwd0123456789 \nm=audio 9 RTP/AVP 0\na=ice-pwd:medialevel\n", "sessionlevelpwd0123456789"},
		{"v=0\nm=audio 9 RTP/AVP 0\na=ice-pwd:\na=ice-pwd:" + long + "\na=ice-pwd:a b\na=ice-pwd:a\rb\na=ice-pwd:caf\u00e9\na=ice-pwd:ok/+pwd\n", "ok/+pwd"},
		{strings.ReplaceAll(answer, "a=ice-pwd:", "a=x-pwd:"), ""},
		{"", ""},
	} {
		if got := ICEPwd([]byte(tc.sdp)); got != tc.want {
			t.Errorf("ICEPwd(%.40q) = %q, want %q", tc.sdp, got, tc.want)
		}
	}
}

func FuzzRewriteSDP(f *testing.F) {
	f.Add([]byte(answer))
	f.Add([]byte(crlf(answer)))
	f.Add([]byte("a=candidate:1 1 udp 1 1.2.3.4 5 typ host raddr\n"))
	f.Add([]byte("m=audio\na=candidate:"))
	f.Add([]byte(""))
	cand := netip.MustParseAddrPort("192.0.2.1:8000")
	f.Fuzz(func(t *testing.T, b []byte) {
		out := RewriteSDP(b, cand)
		for _, c := range candidates(out) {
			if !strings.Contains(c, " 192.0.2.1 8000 typ host") {
				t.Fatalf("candidate not rewritten: %q", c)
			}
		}
		// Rewriting is idempotent.
		if again := RewriteSDP(out, cand); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent:\n%q\n%q", out, again)
		}
		_, _ = ParseSDP(b)
		if pwd := ICEPwd(b); len(pwd) > MaxPwdLen || strings.ContainsFunc(pwd, func(r rune) bool { return r <= ' ' || r > '~' }) {
			t.Fatalf("bad pwd %q", pwd)
		}
	})
}
