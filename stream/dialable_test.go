package stream

import (
	"net"
	"net/netip"
	"testing"
)

func TestCheckDialable(t *testing.T) {
	lan := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, c := range []struct {
		o     Origin
		allow []netip.Prefix
		ok    bool
	}{
		{Origin{IP: "10.0.0.5", RTMP: "10.0.0.5:1935"}, nil, true},
		{Origin{IP: "10.0.0.5", RTMP: "10.0.0.5:1935", HTTP: "[::ffff:10.0.0.5]:8080"}, lan, true},
		{Origin{IP: "192.0.2.1"}, lan, false},
		{Origin{RTMP: "169.254.169.254:80"}, nil, false},
		{Origin{RTMP: "169.254.169.254:80"}, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, false},
		{Origin{HTTP: "[fe80::1]:8080"}, nil, false},
		{Origin{RTC: "224.0.0.1:8000"}, nil, false},
		{Origin{API: "0.0.0.0:1985"}, nil, false},
		{Origin{API: "origin.example:1985"}, nil, false},
		{Origin{}, lan, true},
	} {
		if err := CheckDialable(c.o, c.allow); (err == nil) != c.ok {
			t.Errorf("%+v allow %v: %v, want ok %v", c.o, c.allow, err, c.ok)
		}
	}
}

// Registered addresses come from the network: any of them is either refused
// or an IP address that is not link-local, multicast or unspecified.
func FuzzCheckDialable(f *testing.F) {
	for _, s := range []string{"10.0.0.5:1935", "169.254.169.254:80", "[fe80::1]:1", "origin.example:1", "0.0.0.0:1", "[::ffff:127.0.0.1]:2", "", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		if CheckDialable(Origin{RTMP: addr}, nil) != nil || addr == "" {
			return
		}
		host := addr
		if h, _, err := net.SplitHostPort(addr); err == nil {
			host = h
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			t.Fatalf("%q accepted but is not an IP", addr)
		}
		if ip = ip.Unmap(); ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
			t.Fatalf("%q accepted", addr)
		}
	})
}
