package httpstream

import (
	"crypto/tls"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestOriginRequestHeader(t *testing.T) {
	// The node's forwarding headers for a request from 192.0.2.7 to host
	// "node:8080" over plain HTTP.
	fwd := http.Header{"X-Forwarded-For": {"192.0.2.7"}, "X-Real-Ip": {"192.0.2.7"},
		"X-Forwarded-Host": {"node:8080"}, "X-Forwarded-Proto": {"http"}}
	with := func(h http.Header) http.Header {
		out := fwd.Clone()
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	for _, tc := range []struct {
		name string
		in   http.Header
		drop []string
		want http.Header
	}{
		{"allowed headers pass",
			http.Header{"Accept": {"*/*"}, "Accept-Encoding": {"gzip"}, "Accept-Language": {"fr"}, "Range": {"bytes=0-3"},
				"If-Range": {`"e"`}, "If-None-Match": {`"e"`}, "If-Modified-Since": {"Mon, 01 Jan 2024 00:00:00 GMT"},
				"User-Agent": {"hls.js"}, "Referer": {"http://page/"}, "Origin": {"http://page"},
				"Cache-Control": {"no-cache"}, "Pragma": {"no-cache"}},
			nil,
			with(http.Header{"Accept": {"*/*"}, "Accept-Encoding": {"gzip"}, "Accept-Language": {"fr"}, "Range": {"bytes=0-3"},
				"If-Range": {`"e"`}, "If-None-Match": {`"e"`}, "If-Modified-Since": {"Mon, 01 Jan 2024 00:00:00 GMT"},
				"User-Agent": {"hls.js"}, "Referer": {"http://page/"}, "Origin": {"http://page"},
				"Cache-Control": {"no-cache"}, "Pragma": {"no-cache"}})},
		{"documents drop encoding, ranges and revalidation",
			http.Header{"Accept-Encoding": {"gzip"}, "Range": {"bytes=0-3"}, "If-Range": {"x"}, "If-None-Match": {"x"},
				"If-Modified-Since": {"x"}, "User-Agent": {"ua"}},
			documentDropHeaders,
			with(http.Header{"User-Agent": {"ua"}})},
		{"everything else is dropped",
			http.Header{"Metadata-Flavor": {"Google"}, "X-Custom": {"1"}, "Cookie": {"a=b"}, "Authorization": {"Bearer x"},
				"Proxy-Authorization": {"Basic eA=="}, "Content-Type": {"text/plain"}, "X-Aws-Ec2-Metadata-Token": {"x"},
				"Host": {"evil"}, "Via": {"1.1 evil"}, "Max-Forwards": {"0"}, "Expect": {"100-continue"}},
			nil,
			fwd},
		{"hop-by-hop headers are dropped",
			http.Header{"Connection": {"keep-alive"}, "Keep-Alive": {"timeout=5"}, "Te": {"trailers"}, "Trailer": {"X"},
				"Transfer-Encoding": {"chunked"}, "Upgrade": {"websocket"}, "Proxy-Connection": {"keep-alive"}},
			nil,
			fwd},
		{"headers Connection names are dropped, allowed or not",
			http.Header{"Connection": {"user-agent, X-Custom", "range"}, "User-Agent": {"ua"}, "Range": {"bytes=0-"}, "Accept": {"*/*"}},
			nil,
			with(http.Header{"Accept": {"*/*"}})},
		{"the client's forwarding claims are replaced",
			http.Header{"X-Forwarded-For": {"6.6.6.6", "7.7.7.7"}, "X-Real-Ip": {"6.6.6.6"}, "X-Forwarded-Host": {"evil"},
				"X-Forwarded-Proto": {"https"}, "Forwarded": {"for=6.6.6.6"}, "X_real_ip": {"6.6.6.6"}, "True-Client-Ip": {"6.6.6.6"}},
			nil,
			fwd},
		{"repeated values are kept",
			http.Header{"Accept": {"a", "b"}},
			nil,
			with(http.Header{"Accept": {"a", "b"}})},
	} {
		r := httptest.NewRequest("GET", "http://node:8080/live/s.flv", nil)
		r.RemoteAddr = "192.0.2.7:50000"
		r.Header = tc.in.Clone()
		got := originRequestHeader(r, tc.drop)
		if !maps.EqualFunc(got, tc.want, slices.Equal[[]string]) {
			t.Errorf("%s:\n got  %v\n want %v", tc.name, got, tc.want)
		}
		if !maps.EqualFunc(r.Header, tc.in, slices.Equal[[]string]) {
			t.Errorf("%s: the client's headers were changed: %v", tc.name, r.Header)
		}
	}
}

func TestSetForwarded(t *testing.T) {
	for _, tc := range []struct {
		remote, host string
		tls          bool
		ip, proto    string // ip "" when none is set
	}{
		{"127.0.0.1:1234", "node:8080", false, "127.0.0.1", "http"},
		{"203.0.113.9:443", "cdn.example", true, "203.0.113.9", "https"},
		{"[2001:db8::1]:80", "[2001:db8::2]:8080", false, "2001:db8::1", "http"},
		{"[::ffff:192.0.2.1]:80", "node", false, "192.0.2.1", "http"},
		{"[fe80::1%eth0]:80", "node", false, "fe80::1", "http"},
		{"192.0.2.3", "node", false, "192.0.2.3", "http"},
		{"", "node", false, "", "http"},
		{"@", "node", false, "", "http"},
		{"evil, 6.6.6.6:80", "node", false, "", "http"},
		{"6.6.6.6\r\nX: y:1", "node", false, "", "http"},
	} {
		r := httptest.NewRequest("GET", "/live/s.flv", nil)
		r.RemoteAddr, r.Host = tc.remote, tc.host
		if tc.tls {
			r.TLS = &tls.ConnectionState{}
		}
		h := http.Header{"X-Forwarded-For": {"6.6.6.6"}, "X-Real-Ip": {"6.6.6.6"}, "X-Forwarded-Host": {"evil"}, "X-Forwarded-Proto": {"gopher"}}
		setForwarded(h, r)
		if tc.ip == "" {
			if v := h.Values("X-Forwarded-For"); v != nil {
				t.Errorf("%q: X-Forwarded-For %q, want none", tc.remote, v)
			}
			if v := h.Values("X-Real-Ip"); v != nil {
				t.Errorf("%q: X-Real-IP %q, want none", tc.remote, v)
			}
		} else if !slices.Equal(h.Values("X-Forwarded-For"), []string{tc.ip}) || !slices.Equal(h.Values("X-Real-Ip"), []string{tc.ip}) {
			t.Errorf("%q: X-Forwarded-For %q X-Real-IP %q, want %s", tc.remote, h.Values("X-Forwarded-For"), h.Values("X-Real-Ip"), tc.ip)
		}
		if !slices.Equal(h.Values("X-Forwarded-Host"), []string{tc.host}) || !slices.Equal(h.Values("X-Forwarded-Proto"), []string{tc.proto}) {
			t.Errorf("%q: X-Forwarded-Host %q X-Forwarded-Proto %q", tc.remote, h.Values("X-Forwarded-Host"), h.Values("X-Forwarded-Proto"))
		}
	}
}

func FuzzOriginRequestHeader(f *testing.F) {
	f.Add("X-Custom", "1", "", "127.0.0.1:1234")
	f.Add("X-Real-Ip", "6.6.6.6", "", "127.0.0.1:1234")
	f.Add("X-Forwarded-For", "6.6.6.6, 7.7.7.7", "keep-alive", "[::1]:80")
	f.Add("Metadata-Flavor", "Google", "", "10.0.0.1:1")
	f.Add("User-Agent", "player/1", "User-Agent", "192.0.2.1:5")
	f.Add("Range", "bytes=0-", "x, range ,", "[::ffff:1.2.3.4]:9")
	f.Add("range", "bytes=0-", "", "garbage")
	f.Add("X_Real_IP", "6.6.6.6", "", "")
	f.Fuzz(func(t *testing.T, name, value, connection, remote string) {
		r := httptest.NewRequest("GET", "/live/s.flv", nil)
		r.RemoteAddr = remote
		r.Header = http.Header{name: {value}, "Connection": {connection}}
		h := originRequestHeader(r, nil)
		named := connectionNamed(r.Header)
		for k, v := range h {
			switch k {
			case "X-Forwarded-For", "X-Real-Ip":
				if len(v) != 1 || v[0] != peerIP(remote) {
					t.Fatalf("%s %q from peer %q", k, v, remote)
				}
				if _, err := netip.ParseAddr(v[0]); err != nil {
					t.Fatalf("%s %q is not an IP: %v", k, v, err)
				}
			case "X-Forwarded-Host", "X-Forwarded-Proto":
			default:
				if !forwardable(k) || k != name || slices.Contains(named, k) || !slices.Equal(v, []string{value}) {
					t.Fatalf("header %s %q forwarded from %s %q (Connection %q)", k, v, name, value, connection)
				}
			}
		}
		if ip := h.Get("X-Real-Ip"); ip != h.Get("X-Forwarded-For") || strings.ContainsAny(ip, ", \r\n") {
			t.Fatalf("X-Real-IP %q X-Forwarded-For %q", ip, h.Get("X-Forwarded-For"))
		}
	})
}

// Through the proxy: a live stream and a segment keep Accept-Encoding and
// Range, a document does not, and no request carries what is not on the
// allow-list.
func TestOriginSeesAllowedHeadersOnly(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]http.Header{}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = r.Header.Clone()
		mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, ".m3u8"):
			io.WriteString(w, "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns-1.ts\n")
		default:
			io.WriteString(w, "data")
		}
	}))
	defer origin.Close()
	_, proxy := proxyFor(t, hostOf(origin), nil)
	fetch := func(path string) string {
		req, _ := http.NewRequest("GET", proxy.URL+path, nil)
		for k, v := range map[string]string{
			"User-Agent": "player/1", "Range": "bytes=0-", "Accept-Encoding": "identity",
			"X-Custom": "1", "Metadata-Flavor": "Google", "X-Real-Ip": "6.6.6.6", "Cookie": "a=b",
		} {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	fetch("/live/s.flv")
	pl := fetch("/live/s.m3u8")
	seg := uriLines(pl)
	if len(seg) != 1 {
		t.Fatalf("playlist %q", pl)
	}
	fetch(seg[0])
	mu.Lock()
	defer mu.Unlock()
	for path, keepRange := range map[string]bool{"/live/s.flv": true, "/live/s.m3u8": false, "/live/s-1.ts": true} {
		h := seen[path]
		if h == nil {
			t.Fatalf("origin saw no %s: %v", path, seen)
		}
		if h.Get("User-Agent") != "player/1" || h.Get("X-Real-Ip") != "127.0.0.1" || h.Get("X-Forwarded-For") != "127.0.0.1" {
			t.Errorf("%s: origin saw %v", path, h)
		}
		for _, k := range []string{"X-Custom", "Metadata-Flavor", "Cookie"} {
			if h.Get(k) != "" {
				t.Errorf("%s: origin saw %s", path, k)
			}
		}
		if got := h.Get("Range") == "bytes=0-" && h.Get("Accept-Encoding") == "identity"; got != keepRange {
			t.Errorf("%s: origin saw Range %q Accept-Encoding %q", path, h.Get("Range"), h.Get("Accept-Encoding"))
		}
	}
}
