package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/srs-mesh/srs-mesh/protocols/proxyproto"
	"github.com/srs-mesh/srs-mesh/stream/forwarded"
)

// proxyProtocolPorts are the listeners --proxy-protocol may name: the TCP
// client ports.
var proxyProtocolPorts = []string{"rtmp", "http", "api", "https", "api-https", "rtmps"}

// clientAddrs is how a node learns the address of a client that reached it
// through a load balancer (--trusted-proxies, --forwarded-header,
// --proxy-protocol). The address feeds per-address limits and logs, never
// where the node connects. The system API is never behind it: its peers
// are origins and operators, seen as they connect.
type clientAddrs struct {
	// forwarded reads the header of trusted proxies on the HTTP client
	// ports (--http, --api).
	forwarded forwarded.Config
	// proxyProtocol are the listeners whose trusted peers must send a PROXY
	// protocol header.
	proxyProtocol []string
	// refused counts connections refused for their PROXY header, by
	// listener; may be nil.
	refused *prometheus.CounterVec
	log     *slog.Logger
}

// newClientAddrs checks the flags of o.
func newClientAddrs(o serveOptions, log *slog.Logger) (clientAddrs, error) {
	trusted, err := parseTrustedProxies(o.trustedProxies)
	if err != nil {
		return clientAddrs{}, err
	}
	header, err := forwarded.ParseHeader(o.forwardedHeader)
	if err != nil {
		return clientAddrs{}, fmt.Errorf("--forwarded-header: %w", err)
	}
	c := clientAddrs{forwarded: forwarded.Config{Trusted: trusted, Header: header}, log: log}
	for _, p := range o.proxyProtocol {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" {
			continue
		}
		if !slices.Contains(proxyProtocolPorts, p) {
			return clientAddrs{}, fmt.Errorf("--proxy-protocol: unknown listener %q (want %s)", p, strings.Join(proxyProtocolPorts, ", "))
		}
		if !slices.Contains(c.proxyProtocol, p) {
			c.proxyProtocol = append(c.proxyProtocol, p)
		}
	}
	if len(c.proxyProtocol) > 0 && len(trusted) == 0 {
		return clientAddrs{}, errors.New("--proxy-protocol needs --trusted-proxies: the balancers whose PROXY headers are honoured")
	}
	c.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns,
		Name:      "proxy_protocol_refused_total",
		Help:      "Connections refused for their PROXY protocol header, by listener and reason (untrusted: a header from a peer outside --trusted-proxies; missing: a trusted peer sent none; bad: a header that does not parse or came too late).",
	}, []string{"listener", "reason"})
	return c, nil
}

// parseTrustedProxies parses --trusted-proxies: CIDRs, or single addresses
// (a /32 or /128). IPv4-mapped IPv6 prefixes are taken as IPv4. A /0 is
// refused: it would let every client name itself.
func parseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("--trusted-proxies %q: not a CIDR or an IP address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if a := p.Addr(); a.Is4In6() {
			if p.Bits() < 96 {
				return nil, fmt.Errorf("--trusted-proxies %q: an IPv4-mapped prefix shorter than /96", s)
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		if p.Bits() == 0 {
			return nil, fmt.Errorf("--trusted-proxies %q: trusts every peer, so any client could name its own address; list the load balancers' networks", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// listen puts the listener name (rtmp, http, api) in PROXY protocol mode if
// --proxy-protocol names it; otherwise ln is returned as it is.
func (c clientAddrs) listen(name string, ln net.Listener) net.Listener {
	if ln == nil || !slices.Contains(c.proxyProtocol, name) {
		return ln
	}
	log := c.log.With("listener", name)
	return proxyproto.NewListener(ln, proxyproto.Config{
		Trusted: c.forwarded.Trusted,
		OnRefuse: func(peer netip.AddrPort, err error) {
			reason := "bad"
			switch {
			case errors.Is(err, proxyproto.ErrUntrusted):
				reason = "untrusted"
			case errors.Is(err, proxyproto.ErrNoHeader):
				reason = "missing"
			}
			if c.refused != nil {
				c.refused.WithLabelValues(name, reason).Inc()
			}
			log.Debug("connection refused for its PROXY protocol header", "peer", peer.String(), "reason", reason, "err", err)
		},
	})
}

// handler makes h see, as r.RemoteAddr, the client that trusted proxies
// name in their header (see forwarded.Client).
func (c clientAddrs) handler(h http.Handler) http.Handler {
	return c.forwarded.Handler(h)
}
