// Package forwarded finds the client of an HTTP request that reached the
// node through trusted reverse proxies, from the X-Forwarded-For or the
// Forwarded (RFC 7239) header that those proxies write.
//
// The client is the rightmost address in the header's chain that is not a
// trusted proxy: every address to its right was appended by a trusted
// proxy, so the client could not have forged it, while everything to its
// left is whatever the client sent. The leftmost address is never taken on
// its own. A request whose TCP peer is not a trusted proxy is its own
// client, and its headers are never read.
//
// The address found is for accounting, per-address limits and logs; it
// never decides where a node connects.
package forwarded

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Header is the header a node reads from its trusted proxies. Only one is
// read: a proxy that writes one header passes the other through from the
// client unchanged, so reading both would let a client choose.
type Header int

const (
	// XForwardedFor reads X-Forwarded-For: comma-separated addresses, each
	// proxy appending its peer (nginx, HAProxy's forwardfor, Envoy, cloud
	// load balancers). The default.
	XForwardedFor Header = iota
	// Forwarded reads RFC 7239's Forwarded: the for= parameter of each
	// comma-separated element (HAProxy's option forwarded, some CDNs),
	// parsed strictly to the RFC's grammar; IPv6 and ports are quoted.
	Forwarded
)

// ParseHeader parses a header name: "X-Forwarded-For" or "Forwarded",
// case-insensitive.
func ParseHeader(s string) (Header, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "x-forwarded-for":
		return XForwardedFor, nil
	case "forwarded":
		return Forwarded, nil
	}
	return 0, fmt.Errorf("want X-Forwarded-For or Forwarded, got %q", s)
}

// String is the header's canonical name.
func (h Header) String() string {
	if h == Forwarded {
		return "Forwarded"
	}
	return "X-Forwarded-For"
}

// MaxHops is the most addresses of a chain looked at, from the right. A
// chain of more trusted proxies than that ends at the MaxHops-th.
const MaxHops = 32

// Config says whose headers are honoured, and which header.
type Config struct {
	// Trusted are the networks of the proxies whose header is read. Empty:
	// nobody's.
	Trusted []netip.Prefix
	// Header is the header the proxies write.
	Header Header
}

// trusted reports whether a is inside one of c.Trusted.
func (c Config) trusted(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range c.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Client returns the client of a request from peer (the TCP peer, or the
// client a trusted PROXY protocol header named) carrying h: peer itself
// unless peer is trusted; then the rightmost address of the chain that is
// not trusted. When the chain ends (it is empty, or every address in it is
// trusted) or holds something that is not an address (an obfuscated or
// "unknown" node, garbage), the last trusted address reached stands: a
// client never gains by sending garbage. An address without a port gets
// port 0.
func (c Config) Client(peer netip.AddrPort, h http.Header) netip.AddrPort {
	peer = netip.AddrPortFrom(peer.Addr().Unmap().WithZone(""), peer.Port())
	if len(c.Trusted) == 0 || !peer.IsValid() || !c.trusted(peer.Addr()) {
		return peer
	}
	var hops [MaxHops]string
	var n int
	if c.Header == Forwarded {
		n = forwardedFor(h.Values("Forwarded"), &hops)
	} else {
		n = xForwardedFor(h.Values("X-Forwarded-For"), &hops)
	}
	client := peer
	for i := range n {
		a, ok := parseNode(hops[i])
		if !ok {
			break
		}
		client = a
		if !c.trusted(a.Addr()) {
			break
		}
	}
	return client
}

// Handler serves next with r.RemoteAddr set to the client of r (see
// Client), "ip:port" as net/http writes it. A request whose RemoteAddr is
// not an address is passed on unchanged. With no trusted proxies it is next
// itself.
func (c Config) Handler(next http.Handler) http.Handler {
	if len(c.Trusted) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			next.ServeHTTP(w, r)
			return
		}
		if client := c.Client(peer, r.Header); client != peer {
			r = r.WithContext(r.Context()) // a shallow copy: the caller's r is not changed
			r.RemoteAddr = client.String()
		}
		next.ServeHTTP(w, r)
	})
}

// xForwardedFor puts the last MaxHops entries of the X-Forwarded-For
// values into hops, rightmost first, and returns how many.
func xForwardedFor(values []string, hops *[MaxHops]string) int {
	n := 0
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for {
			j := strings.LastIndexByte(v, ',')
			hops[n] = strings.TrimSpace(v[j+1:])
			n++
			if n == MaxHops {
				return n
			}
			if j < 0 {
				break
			}
			v = v[:j]
		}
	}
	return n
}

// forwardedFor puts the for= values of the last MaxHops elements of the
// Forwarded values into hops, rightmost first, and returns how many. An
// element without a for= value, with two, or where a value breaks RFC
// 7239's grammar is "", which is not an address.
//
// Each value (header line) is parsed strictly, left to right: elements
// separated by commas, each of pairs token=value separated by semicolons
// (spaces and tabs allowed around both), each value a token or a
// quoted-string that is the whole value. At the first error the line ends
// with a "" and the rest of it is not read: once a client's quote is open
// or a value runs on, nothing to its right can be told apart. A proxy that
// appends its element to the client's line (nginx's "$http_forwarded,
// for=$remote_addr", header lines merged with ", ") thus leaves a "" at
// the right, never an address the client wrote.
func forwardedFor(values []string, hops *[MaxHops]string) int {
	var ring [MaxHops]string
	total := 0
	for _, v := range values {
		for i := 0; ; {
			node, next, ok := forwardedElement(v, i)
			ring[total%MaxHops] = node
			total++
			if !ok || next == len(v) {
				break
			}
			i = next + 1 // past the comma
		}
	}
	n := min(total, MaxHops)
	for i := range n {
		hops[i] = unquote(ring[(total-1-i)%MaxHops])
	}
	return n
}

// forwardedElement parses the element of the Forwarded value v that starts
// at i. It returns the element's for= value as written (a token, or a
// quoted-string with its quotes), "" if it has none or two, and the index
// of the comma that ends it or len(v); ok is false if v breaks the grammar
// within the element, and then node is "".
func forwardedElement(v string, i int) (node string, next int, ok bool) {
	seen := false
	for {
		i = skipOWS(v, i)
		if i < len(v) && v[i] != ';' && v[i] != ',' {
			k := i
			for i < len(v) && isTchar(v[i]) {
				i++
			}
			if i == k || i == len(v) || v[i] != '=' {
				return "", 0, false
			}
			key := v[k:i]
			i++
			val := i
			if i < len(v) && v[i] == '"' {
				if i = quotedEnd(v, i); i < 0 {
					return "", 0, false
				}
			} else {
				for i < len(v) && isTchar(v[i]) {
					i++
				}
				if i == val {
					return "", 0, false
				}
			}
			if strings.EqualFold(key, "for") {
				if seen {
					node = "" // two for=: neither is believed
				} else {
					node = v[val:i]
				}
				seen = true
			}
			i = skipOWS(v, i)
		}
		switch {
		case i == len(v) || v[i] == ',':
			return node, i, true
		case v[i] == ';':
			i++
		default:
			return "", 0, false
		}
	}
}

// quotedEnd returns the index just past the quoted-string that starts at
// v[i] (a '"'), or -1 if it is not terminated or holds a control byte.
func quotedEnd(v string, i int) int {
	for i++; i < len(v); i++ {
		switch b := v[i]; {
		case b == '"':
			return i + 1
		case b == '\\':
			i++
			if i == len(v) || (v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f {
				return -1
			}
		case (b < 0x20 && b != '\t') || b == 0x7f:
			return -1
		}
	}
	return -1
}

// skipOWS returns the index of the first byte at or after i in v that is
// not a space or a tab.
func skipOWS(v string, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	return i
}

// isTchar reports whether b may appear in an RFC 9110 token.
func isTchar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// unquote removes the quotes and backslash escapes of a quoted-string
// that forwardedElement found well formed; a token is returned as it is.
func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' {
		return s
	}
	s = s[1 : len(s)-1]
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseNode parses one hop: an IP address, "ip:port" or "[ipv6]:port", or
// "[ipv6]" (Forwarded's form). Anything else (an obfuscated name, "unknown",
// a port that is not a number) is not an address.
func parseNode(s string) (netip.AddrPort, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap().WithZone(""), 0), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() {
			return netip.AddrPortFrom(a.Unmap().WithZone(""), 0), true
		}
		return netip.AddrPort{}, false
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()), true
	}
	return netip.AddrPort{}, false
}
