package forwarded

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func TestClientXForwardedFor(t *testing.T) {
	c := Config{Trusted: prefixes("10.0.0.0/8", "2001:db8:ffff::/48")}
	const lb = "10.0.0.1:40000"
	for _, tc := range []struct {
		name   string
		peer   string
		values []string
		want   string
	}{
		{"untrusted peer: header ignored", "198.51.100.1:5000", []string{"203.0.113.9"}, "198.51.100.1:5000"},
		{"untrusted peer, mapped", "[::ffff:198.51.100.1]:5000", []string{"203.0.113.9"}, "198.51.100.1:5000"},
		{"trusted peer, no header", lb, nil, lb},
		{"one hop", lb, []string{"203.0.113.9"}, "203.0.113.9:0"},
		{"forged left part ignored", lb, []string{"1.1.1.1, 2.2.2.2, 203.0.113.9"}, "203.0.113.9:0"},
		{"trusted hops skipped", lb, []string{"1.1.1.1, 203.0.113.9, 10.0.0.7, 10.0.0.8"}, "203.0.113.9:0"},
		{"several header lines", lb, []string{"1.1.1.1, 203.0.113.9", "10.0.0.7"}, "203.0.113.9:0"},
		{"ipv6", lb, []string{"2001:db8::9, 2001:db8:ffff::1"}, "[2001:db8::9]:0"},
		{"with ports", lb, []string{"203.0.113.9:4711"}, "203.0.113.9:4711"},
		{"bracketed ipv6 with port", lb, []string{"[2001:db8::9]:4711"}, "[2001:db8::9]:4711"},
		{"mapped", lb, []string{"::ffff:203.0.113.9"}, "203.0.113.9:0"},
		{"garbage at the right: the proxy stands", lb, []string{"203.0.113.9, garbage"}, lb},
		{"garbage behind a trusted hop", lb, []string{"garbage, 10.0.0.7"}, "10.0.0.7:0"},
		{"garbage left of the client", lb, []string{"garbage, 203.0.113.9"}, "203.0.113.9:0"},
		{"empty entry", lb, []string{"203.0.113.9, "}, lb},
		{"all trusted: the leftmost", lb, []string{"10.0.0.5, 10.0.0.6"}, "10.0.0.5:0"},
		{"spaces", lb, []string{"  203.0.113.9  ,10.0.0.6 "}, "203.0.113.9:0"},
		{"zone dropped", lb, []string{"fe80::1%eth0"}, "[fe80::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.values {
				h.Add("X-Forwarded-For", v)
			}
			h.Set("Forwarded", "for=192.0.2.66") // not the header read
			got := c.Client(netip.MustParseAddrPort(tc.peer), h)
			if got.String() != tc.want {
				t.Fatalf("Client = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestClientForwarded(t *testing.T) {
	c := Config{Trusted: prefixes("10.0.0.0/8"), Header: Forwarded}
	lb := netip.MustParseAddrPort("10.0.0.1:40000")
	for _, tc := range []struct {
		values []string
		want   string
	}{
		// RFC 7239's examples.
		{[]string{`for="_gazonk"`}, lb.String()},
		{[]string{`For="[2001:db8:cafe::17]:4711"`}, "[2001:db8:cafe::17]:4711"},
		{[]string{`for=192.0.2.60;proto=http;by=203.0.113.43`}, "192.0.2.60:0"},
		{[]string{`for=192.0.2.43, for=198.51.100.17`}, "198.51.100.17:0"},
		{[]string{`for=192.0.2.43`, `for=198.51.100.17;by=10.0.0.1, for=10.0.0.2`}, "198.51.100.17:0"},
		{[]string{`for="[2001:db8::1]"`}, "[2001:db8::1]:0"},
		{[]string{`for=unknown`}, lb.String()},
		{[]string{`for=192.0.2.43, proto=https`}, lb.String()}, // the last element names no client
		{[]string{`for="192.0.2.43,10.0.0.9"`}, lb.String()},   // a quoted comma separates nothing
		{[]string{`proto=http;for="198.51.100.17:80";host="a;b"`}, "198.51.100.17:80"},
		{[]string{`for="\198.51.100.17"`}, "198.51.100.17:0"},
		{[]string{`for=10.0.0.3, for=10.0.0.4`}, "10.0.0.3:0"},
		// Strict RFC 7239: a line that breaks the grammar ends in a hop
		// that is not an address, so the proxy stands.
		{[]string{`for=192.0.2.9;x=", for=198.51.100.17`}, lb.String()},                     // a client's open quote, then the proxy's element on the same line
		{[]string{`for=192.0.2.9;x=", for="[2001:db8::6]:4711"`}, lb.String()},              // the proxy's quote closes the client's; the rest runs on
		{[]string{`for=192.0.2.9;x="\", for=198.51.100.17`}, lb.String()},                   // an escaped quote closes nothing
		{[]string{`for="192.0.2.9, for=198.51.100.17`}, lb.String()},                        // unterminated
		{[]string{`for=192.0.2.9;x=", for=6.6.6.6", for=198.51.100.17`}, "198.51.100.17:0"}, // a closed quote is one value
		{[]string{`for=192.0.2.9;x="`, `for=198.51.100.17`}, "198.51.100.17:0"},             // a broken line does not reach into the next
		{[]string{`garbage"`, `for=10.0.0.7`}, "10.0.0.7:0"},
		{[]string{`for=198.51.100.17, x="`}, lb.String()},
		{[]string{`for=198.51.100.17;for=192.0.2.9`}, lb.String()}, // for twice in one element
		{[]string{`for=192.0.2.9, for=198.51.100.17;FOR=198.51.100.17`}, lb.String()},
		{[]string{`for="198.51.100.17"x`}, lb.String()}, // a quoted-string is the whole value
		{[]string{`for=x"198.51.100.17"`}, lb.String()}, // and a token has no quotes
		{[]string{`for=[2001:db8::1]`}, lb.String()},    // IPv6 and ports must be quoted
		{[]string{`for=198.51.100.17:80`}, lb.String()},
		{[]string{`for = 198.51.100.17`}, lb.String()},                   // no spaces around =
		{[]string{`for=`}, lb.String()},                                  // no empty value
		{[]string{`=198.51.100.17`}, lb.String()},                        // no empty name
		{[]string{"for=\"198.51.100.17\x01\""}, lb.String()},             // no control bytes
		{[]string{"for=198.51.100.17 ;\tproto=http ,"}, lb.String()},     // an empty element at the right
		{[]string{"for=198.51.100.17 ;\tproto=http"}, "198.51.100.17:0"}, // spaces around ; are allowed
		{[]string{`for=192.0.2.9,, for=198.51.100.17`}, "198.51.100.17:0"},
	} {
		h := http.Header{"Forwarded": tc.values, "X-Forwarded-For": {"192.0.2.66"}}
		if got := c.Client(lb, h); got.String() != tc.want {
			t.Errorf("Forwarded %q: Client = %s, want %s", tc.values, got, tc.want)
		}
	}
}

// A proxy that appends its element to the client's Forwarded line
// (nginx's "$http_forwarded, for=$remote_addr", or header lines merged
// with ", ") names the real client or, if the client's part breaks the
// grammar, leaves the proxy standing; never an address the client wrote.
// On a line of its own the proxy's element always names the real client.
func TestClientForwardedAppended(t *testing.T) {
	c := Config{Trusted: prefixes("10.0.0.0/8"), Header: Forwarded}
	lb := netip.MustParseAddrPort("10.0.0.1:40000")
	for _, sent := range []string{
		``, `for=192.0.2.9`, `for=192.0.2.9;x="`, `for=192.0.2.9;x="\`, `for="192.0.2.9`,
		`for=192.0.2.9;x="a`, `for=192.0.2.9;x=`, `for=192.0.2.9;`, `for=192.0.2.9,`, `for=192.0.2.9;for=`,
		`for="[2001:db8::9]:1";x="`, `x=", for="`, `for=192.0.2.9\`, `for=192.0.2.9;x="\"`,
	} {
		for _, appended := range []struct{ elem, client string }{
			{`for=198.51.100.17`, "198.51.100.17:0"},
			{`for=198.51.100.17;proto=https`, "198.51.100.17:0"},
			{`for="[2001:db8::6]:4711"`, "[2001:db8::6]:4711"},
			{`for="[2001:db8::6]";by="[2001:db8::1]"`, "[2001:db8::6]:0"},
		} {
			merged := sent + ", " + appended.elem
			got := c.Client(lb, http.Header{"Forwarded": {merged}})
			if got.String() != appended.client && got != lb {
				t.Errorf("Forwarded %q: Client = %s, want %s or the proxy", merged, got, appended.client)
			}
			if got := c.Client(lb, http.Header{"Forwarded": {sent, appended.elem}}); got.String() != appended.client {
				t.Errorf("Forwarded lines %q, %q: Client = %s, want %s", sent, appended.elem, got, appended.client)
			}
		}
	}
}

// Nobody is trusted by default, whatever the headers say.
func TestNoTrustedProxies(t *testing.T) {
	peer := netip.MustParseAddrPort("127.0.0.1:1")
	h := http.Header{"X-Forwarded-For": {"203.0.113.9"}, "Forwarded": {"for=203.0.113.9"}}
	for _, c := range []Config{{}, {Header: Forwarded}} {
		if got := c.Client(peer, h); got != peer {
			t.Errorf("%v: Client = %s", c.Header, got)
		}
	}
}

// A chain longer than MaxHops of trusted addresses is looked at only from
// the right, and a huge header costs no more than MaxHops addresses.
func TestClientMaxHops(t *testing.T) {
	c := Config{Trusted: prefixes("10.0.0.0/8")}
	lb := netip.MustParseAddrPort("10.0.0.1:1")
	hops := []string{"203.0.113.9"}
	for i := range MaxHops + 5 {
		hops = append(hops, netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}).String())
	}
	got := c.Client(lb, http.Header{"X-Forwarded-For": {strings.Join(hops, ",")}})
	if want := hops[len(hops)-MaxHops]; got.Addr().String() != want {
		t.Fatalf("Client = %s, want the %dth from the right, %s", got, MaxHops, want)
	}
	big := strings.Repeat("10.0.0.9,", 6000) + "203.0.113.9"
	allocs := testing.AllocsPerRun(10, func() {
		c.Client(lb, http.Header{"X-Forwarded-For": {big}})
	})
	if allocs > 2 {
		t.Errorf("%v allocations for a %d-byte header", allocs, len(big))
	}
	fc := Config{Trusted: c.Trusted, Header: Forwarded}
	if got := fc.Client(lb, http.Header{"Forwarded": {strings.Repeat("for=10.0.0.9,", 6000) + "for=203.0.113.9"}}); got.String() != "203.0.113.9:0" {
		t.Fatalf("Forwarded: Client = %s", got)
	}
}

func TestHandler(t *testing.T) {
	var seen string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.RemoteAddr })
	if h := (Config{}).Handler(next); h == nil {
		t.Fatal("nil handler")
	}
	h := Config{Trusted: prefixes("127.0.0.1/32")}.Handler(next)
	for _, tc := range []struct{ remote, xff, want string }{
		{"127.0.0.1:5000", "203.0.113.9", "203.0.113.9:0"},
		{"127.0.0.1:5000", "", "127.0.0.1:5000"},
		{"127.0.0.2:5000", "203.0.113.9", "127.0.0.2:5000"},
		{"not an address", "203.0.113.9", "not an address"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if seen != tc.want {
			t.Errorf("%s with %q: handler saw %s, want %s", tc.remote, tc.xff, seen, tc.want)
		}
		if r.RemoteAddr != tc.remote {
			t.Errorf("the caller's request was changed to %s", r.RemoteAddr)
		}
	}
}

func TestParseHeader(t *testing.T) {
	for s, want := range map[string]Header{"X-Forwarded-For": XForwardedFor, "x-forwarded-for": XForwardedFor, " Forwarded ": Forwarded} {
		if got, err := ParseHeader(s); err != nil || got != want {
			t.Errorf("ParseHeader(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseHeader("X-Real-IP"); err == nil {
		t.Error("X-Real-IP accepted")
	}
}

// FuzzClient: any header gives a valid address (no zone, IPv4 unmapped),
// never a panic, and from an untrusted peer always the peer.
func FuzzClient(f *testing.F) {
	f.Add("1.1.1.1, 203.0.113.9, 10.0.0.7", false)
	f.Add(`for=192.0.2.43;proto=http, for="[2001:db8:cafe::17]:4711"`, true)
	f.Add(`for="\"a,b;c\"", for=unknown,,`, true)
	f.Add("[::1]:80,garbage,10.0.0.1:1", false)
	f.Fuzz(func(t *testing.T, value string, rfc7239 bool) {
		c := Config{Trusted: prefixes("10.0.0.0/8", "::1/128")}
		if rfc7239 {
			c.Header = Forwarded
		}
		h := http.Header{"X-Forwarded-For": {value}, "Forwarded": {value}}
		peer := netip.MustParseAddrPort("10.0.0.1:1")
		got := c.Client(peer, h)
		if a := got.Addr(); !got.IsValid() || a.Zone() != "" || a.Is4In6() {
			t.Fatalf("Client = %s from %q: want a valid address, no zone, IPv4 unmapped", got, value)
		}
		outside := netip.MustParseAddrPort("198.51.100.1:1")
		if got := c.Client(outside, h); got != outside {
			t.Fatalf("untrusted peer: Client = %s", got)
		}
		if !rfc7239 {
			return
		}
		// A trusted proxy appended its element: to the client's line, the
		// real client or the proxy; on a line of its own, the real client.
		for _, p := range []struct{ sep, elem, client string }{
			{", ", `for=198.51.100.17`, "198.51.100.17:0"},
			{", ", `for="[2001:db8::6]:4711"`, "[2001:db8::6]:4711"},
			{",", `for="198.51.100.17:4711";proto=https`, "198.51.100.17:4711"},
		} {
			merged := value + p.sep + p.elem
			if got := c.Client(peer, http.Header{"Forwarded": {merged}}); got.String() != p.client && got != peer {
				t.Fatalf("Forwarded %q: Client = %s, want %s or the proxy", merged, got, p.client)
			}
			if got := c.Client(peer, http.Header{"Forwarded": {value, p.elem}}); got.String() != p.client {
				t.Fatalf("Forwarded lines %q, %q: Client = %s, want %s", value, p.elem, got, p.client)
			}
		}
	})
}
