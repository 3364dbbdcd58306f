package stream

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct{ in, host, want string }{
		{"1935", "10.0.0.5", "10.0.0.5:1935"},
		{"0.0.0.0:1935", "10.0.0.5", "10.0.0.5:1935"},
		{"10.0.0.6:1935", "10.0.0.5", "10.0.0.6:1935"},
		{"udp://0.0.0.0:8000", "10.0.0.5", "10.0.0.5:8000"},
		{"udp://8000", "10.0.0.5", "10.0.0.5:8000"},
		{"tcp://:1935", "10.0.0.5", "10.0.0.5:1935"},
		{"[::]:1935", "10.0.0.5", "10.0.0.5:1935"},
		{"[::1]:1935", "10.0.0.5", "[::1]:1935"},
		{" 8080 ", "h.example.com", "h.example.com:8080"},
	}
	for _, tt := range tests {
		got, err := ParseEndpoint(tt.in, tt.host)
		if err != nil || got != tt.want {
			t.Errorf("ParseEndpoint(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "0", "65536", "-1", "abc", "1.2.3.4", "ftp://1935", "udp://", "1935x", ":", "host:port", strings.Repeat("9", 400),
		"[fe80::1%eth0]:80", "tcp://[fe80::1%a://b]:80"} {
		if got, err := ParseEndpoint(bad, "10.0.0.5"); !errors.Is(err, ErrEndpoint) {
			t.Errorf("ParseEndpoint(%q) = %q, %v; want ErrEndpoint", bad, got, err)
		}
	}
}

const srsHeartbeat = `{"device_id":"","ip":"10.0.0.5","server":"vid-0xr1z3n","service":"f8s2k1","pid":"12345",
"rtmp":["1935"],"http":["0.0.0.0:8080"],"api":["1985"],"srt":["udp://0.0.0.0:10080"],"rtc":["udp://8000"],
"summaries":{"ok":true}}`

func TestParseRegistration(t *testing.T) {
	o, err := ParseRegistration([]byte(srsHeartbeat), "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	want := Origin{ID: "vid-0xr1z3n", IP: "10.0.0.5", Service: "f8s2k1", PID: "12345",
		RTMP: "10.0.0.5:1935", HTTP: "10.0.0.5:8080", API: "10.0.0.5:1985", SRT: "10.0.0.5:10080", RTC: "10.0.0.5:8000"}
	if o != want {
		t.Errorf("got %+v\nwant %+v", o, want)
	}

	// Numeric pid, empty ip (peer address stands in), device_id as the id.
	o, err = ParseRegistration([]byte(`{"device_id":"dev1","ip":"","pid":42,"rtmp":["19350"]}`), "127.0.0.1")
	if err != nil || o.ID != "dev1" || o.PID != "42" || o.RTMP != "127.0.0.1:19350" {
		t.Errorf("got %+v %v", o, err)
	}

	bad := map[string]string{
		"not json":      `not json`,
		"empty":         ``,
		"array":         `[]`,
		"no id":         `{"ip":"10.0.0.5","rtmp":["1935"]}`,
		"no endpoints":  `{"server":"s","ip":"10.0.0.5"}`,
		"bad port":      `{"server":"s","ip":"10.0.0.5","rtmp":["99999"]}`,
		"bad port text": `{"server":"s","ip":"10.0.0.5","rtmp":["abc"]}`,
		"bad ip":        `{"server":"s","ip":"not an ip!","rtmp":["1935"]}`,
		"bad id":        `{"server":"a/b","ip":"10.0.0.5","rtmp":["1935"]}`,
		"wrong type":    `{"server":5,"ip":"10.0.0.5","rtmp":["1935"]}`,
		"ports not arr": `{"server":"s","ip":"10.0.0.5","rtmp":"1935"}`,
		"huge":          `{"server":"` + strings.Repeat("x", MaxRegistrationBytes) + `"}`,
	}
	for name, body := range bad {
		if _, err := ParseRegistration([]byte(body), ""); !errors.Is(err, ErrRegistration) {
			t.Errorf("%s: err = %v, want ErrRegistration", name, err)
		}
	}
	if _, err := ParseRegistration([]byte(`{"server":"s","rtmp":["1935"]}`), ""); err == nil {
		t.Error("registration without ip or peer address accepted")
	}
}

func TestParseStaticOrigin(t *testing.T) {
	o, err := ParseStaticOrigin("id=o1,ip=127.0.0.1,rtmp=19351,http=18081,api=19851,srt=10081,rtc=8001")
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != "o1" || o.RTMP != "127.0.0.1:19351" || o.HTTP != "127.0.0.1:18081" || o.RTC != "127.0.0.1:8001" || !o.Static {
		t.Errorf("got %+v", o)
	}
	for _, bad := range []string{"", "ip=127.0.0.1,rtmp=1", "id=o1", "id=o1,rtmp=x", "id=o1,foo=1,rtmp=1", "id=o1,rtmp"} {
		if _, err := ParseStaticOrigin(bad); err == nil {
			t.Errorf("ParseStaticOrigin(%q) accepted", bad)
		}
	}
}

// Mistakes an operator makes are errors naming the key, never a silent
// default or a silently kept last value.
func TestParseStaticOriginMistakes(t *testing.T) {
	for _, tc := range []struct{ spec, names string }{
		{"id=o1,rtmp=1935", "ip="},
		{"id=o1,ip=10.0.0.5,ip=10.0.0.6,rtmp=1935", "ip="},
		{"id=o1,ip=10.0.0.5,host=10.0.0.6,rtmp=1935", "host="},
		{"id=o1,name=o2,ip=10.0.0.5,rtmp=1935", "name="},
		{"id=o1,ip=10.0.0.5,rtmp=1935,rtmp=1936", "rtmp="},
		{"id=o1,ip=10.0.0.5,rtmp=1935,weight=1,WEIGHT=2", "weight="},
		{"id=o1,ip=10.0.0.5,rtmp=1935;id=o2,ip=10.0.0.6,rtmp=1935", "';'"},
		{"id=o1,ip=10.0.0.5,rtmp=1935,", `""`},
	} {
		_, err := ParseStaticOrigin(tc.spec)
		if !errors.Is(err, ErrRegistration) || !strings.Contains(err.Error(), tc.names) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseStaticOrigin(%q) = %v, want an error naming %s", tc.spec, err, tc.names)
		}
	}
}

func TestSelect(t *testing.T) {
	k := Key{DefaultVhost, "live", "s"}
	if _, err := Select(k, nil); !errors.Is(err, ErrNoOrigin) {
		t.Fatalf("no candidates: %v", err)
	}
	cs := []Candidate{
		{ID: "a", Healthy: true, Streams: 3},
		{ID: "b", Healthy: true, Streams: 1},
		{ID: "c", Healthy: false, Streams: 0},
		{ID: "d", Healthy: true, Draining: true, Streams: 0},
	}
	if id, _ := Select(k, cs); id != "b" {
		t.Errorf("least loaded healthy origin: got %q, want b", id)
	}
	cs[0].Streams, cs[1].Streams = 0, 0
	id1, _ := Select(k, cs)
	// Order of candidates does not matter.
	rev := []Candidate{cs[3], cs[2], cs[1], cs[0]}
	id2, _ := Select(k, rev)
	if id1 != id2 {
		t.Errorf("selection depends on order: %q vs %q", id1, id2)
	}
	if h, _ := SelectByHash(k, cs); h != id1 {
		t.Errorf("equal load: Select %q != SelectByHash %q", id1, h)
	}
	if _, err := Select(k, []Candidate{{ID: "x"}, {ID: "y", Healthy: true, Draining: true}}); !errors.Is(err, ErrNoOrigin) {
		t.Errorf("no usable origin: %v", err)
	}
}

// Ties are spread over origins: with equal load every origin wins some keys.
func TestSelectSpreadsTies(t *testing.T) {
	cs := []Candidate{{ID: "o1", Healthy: true}, {ID: "o2", Healthy: true}, {ID: "o3", Healthy: true}}
	wins := map[string]int{}
	for i := 0; i < 300; i++ {
		id, _ := Select(Key{DefaultVhost, "live", fmt.Sprintf("s%d", i)}, cs)
		wins[id]++
	}
	for _, c := range cs {
		if wins[c.ID] < 50 {
			t.Errorf("origin %s won %d of 300 keys: %v", c.ID, wins[c.ID], wins)
		}
	}
}

func FuzzParseRegistration(f *testing.F) {
	f.Add([]byte(srsHeartbeat), "127.0.0.1")
	f.Add([]byte(`{"server":"s","ip":"0.0.0.0","rtmp":["tcp://:1935"]}`), "10.0.0.1")
	f.Add([]byte(`{"server":"s","ip":"::1","rtc":["udp://[::]:8000"]}`), "")
	f.Add([]byte(`{`), "")
	f.Fuzz(func(t *testing.T, body []byte, remote string) {
		o, err := ParseRegistration(body, remote)
		if err != nil {
			if !errors.Is(err, ErrRegistration) {
				t.Fatalf("error %v is not ErrRegistration", err)
			}
			return
		}
		if o.ID == "" || o.IP == "" {
			t.Fatalf("accepted origin without id or ip: %+v", o)
		}
		if o.RTMP == "" && o.HTTP == "" && o.API == "" && o.SRT == "" && o.RTC == "" {
			t.Fatalf("accepted origin without endpoints: %+v", o)
		}
	})
}

// FuzzParseEndpoint checks ParseEndpoint's contract on any input: it fails
// with ErrEndpoint, or returns "host:port" with a valid host that is not
// unspecified and a port in 1..65535 written canonically; that result parses
// to itself (it is one of the accepted forms); and the default host changes
// the result only when it stood in for the host.
func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"1935", "0.0.0.0:1935", "udp://0.0.0.0:8000", "udp://8000", "tcp://:1935", "[::]:1", "[fe80::1%eth0]:80", "h.example.com:0080"} {
		f.Add(s)
	}
	const def, other = "127.0.0.1", "h.example.com"
	f.Fuzz(func(t *testing.T, s string) {
		ep, err := ParseEndpoint(s, def)
		if err != nil {
			if !errors.Is(err, ErrEndpoint) {
				t.Fatalf("error %v does not wrap ErrEndpoint", err)
			}
			return
		}
		host, port, err := net.SplitHostPort(ep)
		if err != nil {
			t.Fatalf("%q -> %q, not host:port: %v", s, ep, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			t.Fatalf("%q -> %q: port %q", s, ep, port)
		}
		if !validHost(host) || isUnspecified(host) {
			t.Fatalf("%q -> %q: host %q", s, ep, host)
		}
		if again, err := ParseEndpoint(ep, other); err != nil || again != ep {
			t.Fatalf("%q -> %q, which parses to %q, %v", s, ep, again, err)
		}
		ep2, err := ParseEndpoint(s, other)
		if err != nil {
			t.Fatalf("%q parses with default host %s but not %s: %v", s, def, other, err)
		}
		if ep2 != ep && ep2 != net.JoinHostPort(other, port) {
			t.Fatalf("%q -> %q with default host %s, %q with %s", s, ep, def, ep2, other)
		}
		if ep2 != ep && host != def {
			t.Fatalf("%q -> %q: the default host changed a given host (%q)", s, ep, ep2)
		}
	})
}

// redactedStaticOriginErrors is every text StaticOriginError.Redacted may
// have: made of known keys and fixed words only.
func redactedStaticOriginErrors() map[string]bool {
	keys := []string{"id", "name", "server", "ip", "host", "rtmp", "http", "api", "srt", "rtc", "max_streams", "weight"}
	texts := []string{
		"';' separates origins, and this is one origin", "a piece is not key=value", "unknown key",
		"missing or bad id=", "no ip=", "ip= is not an IP address or host name",
		"no endpoints (rtmp=, http=, api=, srt= or rtc=)",
		fmt.Sprintf("max_streams= is not within 0..%d", MaxOriginStreams), fmt.Sprintf("weight= is not within 0..%d", MaxWeight),
	}
	for _, k := range keys {
		texts = append(texts, k+"= is given twice", k+"= is not a whole number", k+"= is not a port or host:port")
		for _, k2 := range keys {
			texts = append(texts, fmt.Sprintf("%s= and %s= are given both (the same key)", k, k2))
		}
	}
	out := map[string]bool{}
	for _, t := range texts {
		out[ErrRegistration.Error()+": "+t] = true
	}
	return out
}

// Every error of ParseStaticOrigin has a redacted form that names only
// known keys: nothing of a value, an unknown key or a stray piece, which
// may be the tail of a credential that held a ',' or ';'.
func TestParseStaticOriginRedacted(t *testing.T) {
	for _, tc := range []struct{ spec, detail, redacted string }{
		{"id=o1,ip=10.0.0.5,rtmp=1935,HUNTER2", `"HUNTER2" is not key=value`, "a piece is not key=value"},
		{"id=o1,ip=10.0.0.5,rtmp=HUNTER2", "HUNTER2", "rtmp= is not a port or host:port"},
		{"id=o1,ip=10.0.0.5,rtmp=1935,weight=HUNTER2", "HUNTER2", "weight= is not a whole number"},
		{"id=o1,ip=10.0.0.5,rtmp=1935,max_streams=987654321", "987654321", "max_streams= is not within"},
		{"id=o1,ip=HUNTER2!,rtmp=1935", "HUNTER2!", "ip= is not an IP address"},
		{"id=HUNTER2,rtmp=1935", "HUNTER2", "no ip="},
		{"id=HUNTER2,ip=10.0.0.5", "HUNTER2", "no endpoints"},
		{"id=o1,ip=10.0.0.5,rtmp=1935,HUNTER2=x", "hunter2", "unknown key"},
		{"id=o1,ip=10.0.0.5,rtmp=1935;HUNTER2", "';'", "';' separates origins"},
		{"id=o1,ip=10.0.0.5,rtmp=1935,rtmp=1936", "rtmp= is given twice", "rtmp= is given twice"},
	} {
		_, err := ParseStaticOrigin(tc.spec)
		var se *StaticOriginError
		if !errors.As(err, &se) || !errors.Is(err, ErrRegistration) {
			t.Errorf("%q: %v (%T), want a *StaticOriginError", tc.spec, err, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.detail) {
			t.Errorf("%q: %q does not say %q", tc.spec, err, tc.detail)
		}
		r := se.Redacted()
		if !strings.Contains(r, tc.redacted) || strings.Contains(strings.ToLower(r), "hunter2") || strings.Contains(r, "98765") {
			t.Errorf("%q: redacted %q, want %q and nothing of the value", tc.spec, r, tc.redacted)
		}
	}
}

func FuzzParseStaticOrigin(f *testing.F) {
	for _, s := range []string{
		"id=o1,ip=10.0.0.5,rtmp=1935,http=8080,api=1985,srt=10080,rtc=8000,max_streams=2,weight=1",
		"id=o1,ip=10.0.0.5,rtmp=1935,HUNTER2", "id=o1,ip=10.0.0.5,rtmp=HUNTER2", "id=o1,ip=x,rtmp=1935,weight=99999",
		"id=o1,ip=10.0.0.5,rtmp=1935;x", "name=o1,server=o2", "ID = o1 , IP = ::1 , RTMP = [::1]:1", "",
	} {
		f.Add(s)
	}
	known := redactedStaticOriginErrors()
	f.Fuzz(func(t *testing.T, spec string) {
		o, err := ParseStaticOrigin(spec)
		if err == nil {
			if o.ID == "" || o.IP == "" || !o.Static || o.CheckCapacity() != nil {
				t.Fatalf("%q accepted as %+v", spec, o)
			}
			return
		}
		var se *StaticOriginError
		if !errors.As(err, &se) || !errors.Is(err, ErrRegistration) {
			t.Fatalf("%q: %v (%T)", spec, err, err)
		}
		if !known[se.Redacted()] {
			t.Fatalf("%q: redacted error %q is not made of known keys and fixed words", spec, se.Redacted())
		}
	})
}
