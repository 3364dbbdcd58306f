package clusterport

import (
	"net"
	"net/netip"
)

// DefaultAdvertise is the address a node advertises when none is
// configured, for its Raft and gossip bind addresses ("ip:port"): the Raft
// bind IP when it is specific, else the gossip bind IP when that is, else
// the host's first global unicast address (IPv4 first), else 127.0.0.1.
// mesh.Config's defaults use the same rule.
func DefaultAdvertise(raftAddr, gossipAddr string) string {
	bind := bindIP(raftAddr)
	if !bind.IsValid() || bind.IsUnspecified() {
		bind = bindIP(gossipAddr)
	}
	return defaultAdvertise(bind)
}

// bindIP is the IP of "ip:port", or the zero Addr.
func bindIP(hostport string) netip.Addr {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

// defaultAdvertise returns bind when it is a specific address, else the first
// non-loopback unicast IPv4 (then IPv6) of the host, else loopback.
func defaultAdvertise(bind netip.Addr) string {
	if bind.IsValid() && !bind.IsUnspecified() {
		return bind.String()
	}
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		var v6 string
		for _, a := range addrs {
			pfx, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			ip := pfx.Addr()
			if ip.IsLoopback() || ip.IsLinkLocalUnicast() || !ip.IsGlobalUnicast() {
				continue
			}
			if ip.Is4() {
				return ip.String()
			}
			if v6 == "" {
				v6 = ip.String()
			}
		}
		if v6 != "" {
			return v6
		}
	}
	return "127.0.0.1"
}
