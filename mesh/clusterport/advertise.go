package clusterport

import (
	"net"
	"net/netip"
)

// DefaultAdvertise is the address a node advertises when none is
// configured, for its Raft and gossip bind addresses (either may be zero):
// the Raft bind IP when it is specific, else the gossip bind IP when that
// is, else the host's first global unicast address (IPv4 first), else
// 127.0.0.1. mesh.Config's defaults use the same rule.
func DefaultAdvertise(raftAddr, gossipAddr netip.AddrPort) netip.Addr {
	bind := raftAddr.Addr()
	if !bind.IsValid() || bind.IsUnspecified() {
		bind = gossipAddr.Addr()
	}
	return defaultAdvertise(bind)
}

// defaultAdvertise returns bind when it is a specific address, else the first
// non-loopback unicast IPv4 (then IPv6) of the host, else loopback.
func defaultAdvertise(bind netip.Addr) netip.Addr {
	if bind.IsValid() && !bind.IsUnspecified() {
		return bind
	}
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		var v6 netip.Addr
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
				return ip
			}
			if !v6.IsValid() {
				v6 = ip
			}
		}
		if v6.IsValid() {
			return v6
		}
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}
