package stream

import (
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
