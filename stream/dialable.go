package stream

import (
	"fmt"
	"net"
	"net/netip"
)

// CheckDialable reports whether the mesh may dial every address of an
// origin (IP and endpoints): each must be an IP address (names are not
// resolved), neither link-local (cloud metadata services live at
// 169.254.169.254), multicast nor unspecified, and inside one of allow when
// allow is not empty. The error names the first address that fails.
func CheckDialable(o Origin, allow []netip.Prefix) error {
	for _, e := range []struct{ what, addr string }{{"ip", o.IP}, {"rtmp", o.RTMP}, {"http", o.HTTP}, {"api", o.API}, {"srt", o.SRT}, {"rtc", o.RTC}} {
		if e.addr == "" {
			continue
		}
		host := e.addr
		if h, _, err := net.SplitHostPort(e.addr); err == nil {
			host = h
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("%s %q is not an IP address", e.what, e.addr)
		}
		ip = ip.Unmap()
		if ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
			return fmt.Errorf("%s %s is a link-local, multicast or unspecified address", e.what, ip)
		}
		if !inAny(ip, allow) {
			return fmt.Errorf("%s %s is outside the allowed networks", e.what, ip)
		}
	}
	return nil
}

// inAny reports whether ip is in one of prefixes, or prefixes is empty.
func inAny(ip netip.Addr, prefixes []netip.Prefix) bool {
	if len(prefixes) == 0 {
		return true
	}
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
