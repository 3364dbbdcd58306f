package main

import (
	"net"
	"net/netip"
)

// nodeURLs are the URLs people use on a node, for its start log: the
// dashboard on the system API, and an example URL of stream live/livestream
// for each client listener that is open. A listener bound to every address
// is shown at the advertise address, or at 127.0.0.1 when there is none.
func nodeURLs(lns listeners, advertise netip.Addr) []any {
	host := func(a net.Addr) string {
		h, port, err := net.SplitHostPort(a.String())
		if err != nil {
			return a.String()
		}
		if ip, err := netip.ParseAddr(h); err != nil || ip.IsUnspecified() {
			h = "127.0.0.1"
			if advertise.IsValid() && !advertise.IsUnspecified() {
				h = advertise.String()
			}
		}
		return net.JoinHostPort(h, port)
	}
	out := []any{"dashboard", "http://" + host(lns.system.Addr()) + "/"}
	if lns.rtmp != nil {
		out = append(out, "rtmp", "rtmp://"+host(lns.rtmp.Addr())+"/live/livestream")
	}
	if lns.http != nil {
		h := host(lns.http.Addr())
		out = append(out, "flv", "http://"+h+"/live/livestream.flv", "hls", "http://"+h+"/live/livestream.m3u8")
	}
	if lns.rtmps != nil {
		out = append(out, "rtmps", "rtmps://"+host(lns.rtmps.Addr())+"/live/livestream")
	}
	if lns.https != nil {
		out = append(out, "hls_https", "https://"+host(lns.https.Addr())+"/live/livestream.m3u8")
	}
	if lns.apiHTTPS != nil {
		out = append(out, "whep_https", "https://"+host(lns.apiHTTPS.Addr())+"/rtc/v1/whep/?app=live&stream=livestream")
	}
	if lns.api != nil {
		out = append(out, "whip", "http://"+host(lns.api.Addr())+"/rtc/v1/whip/?app=live&stream=livestream",
			"whep", "http://"+host(lns.api.Addr())+"/rtc/v1/whep/?app=live&stream=livestream")
	}
	if lns.srt != nil {
		out = append(out, "srt", "srt://"+host(lns.srt.LocalAddr())+"?streamid=#!::r=live/livestream,m=publish")
	}
	return out
}
