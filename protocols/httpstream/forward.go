package httpstream

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// forwardable reports whether a request header (canonical name) is one an
// origin has use for and so may be sent to it: content negotiation, ranges
// and revalidation, and what players and pages say about themselves, which
// SRS's hooks and logs see. Nothing else a client sends reaches an origin:
// not its cookies or credentials, not its claims about its address, and not
// headers that mean something to the services around an origin (such as a
// cloud's Metadata-Flavor).
func forwardable(name string) bool {
	switch name {
	case "Accept", "Accept-Encoding", "Accept-Language",
		"Range", "If-Range", "If-None-Match", "If-Modified-Since",
		"User-Agent", "Referer", "Origin",
		"Cache-Control", "Pragma":
		return true
	}
	return false
}

// originRequestHeader returns the headers of the request to an origin made
// for the client request r: r's forwardable headers, except those in drop
// (canonical names) and those r's Connection header names (hop-by-hop), and
// the node's forwarding headers (setForwarded).
func originRequestHeader(r *http.Request, drop []string) http.Header {
	named := connectionNamed(r.Header)
	out := make(http.Header)
	for k, vv := range r.Header {
		if forwardable(k) && !slices.Contains(drop, k) && !slices.Contains(named, k) {
			out[k] = append([]string(nil), vv...)
		}
	}
	setForwarded(out, r)
	return out
}

// connectionNamed returns the canonical names of the headers that h's
// Connection header lists.
func connectionNamed(h http.Header) []string {
	var named []string
	for _, v := range h.Values("Connection") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				named = append(named, http.CanonicalHeaderKey(f))
			}
		}
	}
	return named
}

// setForwarded sets, replacing whatever h holds, X-Forwarded-For and
// X-Real-IP to the IP of r.RemoteAddr (both are removed when it holds no
// IP), X-Forwarded-Proto to "https" or "http" as r came, and
// X-Forwarded-Host to r.Host, so that the origin (SRS reads X-Forwarded-For
// and X-Real-IP for its hooks and logs) sees the viewer rather than the
// node, and never an address the client claims. r.RemoteAddr is the TCP
// peer, or the client that the node's trusted proxies named (the node's
// --trusted-proxies); the chain the request carried is not passed on.
func setForwarded(h http.Header, r *http.Request) {
	if ip := peerIP(r.RemoteAddr); ip != "" {
		h.Set("X-Forwarded-For", ip)
		h.Set("X-Real-Ip", ip)
	} else {
		h.Del("X-Forwarded-For")
		h.Del("X-Real-Ip")
	}
	if r.Host != "" {
		h.Set("X-Forwarded-Host", r.Host)
	} else {
		h.Del("X-Forwarded-Host")
	}
	if r.TLS != nil {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
}

// peerIP returns the IP of a peer address ("ip:port", or a bare IP) with
// no zone, IPv4-mapped IPv6 addresses as IPv4, or "" when addr holds no IP.
func peerIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	return ip.WithZone("").Unmap().String()
}
