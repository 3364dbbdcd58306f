package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// MaxRegistrationBytes bounds the body of an origin registration. SRS's
// heartbeat with "summaries" on is a few KiB.
const MaxRegistrationBytes = 64 << 10

// Errors returned by ParseRegistration and ParseEndpoint.
var (
	ErrRegistration = errors.New("stream: bad origin registration")
	ErrEndpoint     = errors.New("stream: bad endpoint")
)

// Registration is SRS's heartbeat body with "ports on". Numbers may arrive as
// JSON strings or numbers, so those fields are decoded loosely.
type Registration struct {
	DeviceID json.RawMessage `json:"device_id"`
	IP       string          `json:"ip"`
	Server   string          `json:"server"`
	Service  json.RawMessage `json:"service"`
	PID      json.RawMessage `json:"pid"`
	RTMP     []string        `json:"rtmp"`
	HTTP     []string        `json:"http"`
	API      []string        `json:"api"`
	SRT      []string        `json:"srt"`
	RTC      []string        `json:"rtc"`
	// MaxStreams and Weight are srs-mesh's capacity fields (Origin), for
	// scripts that register origins; SRS itself sends neither.
	MaxStreams json.RawMessage `json:"max_streams"`
	Weight     json.RawMessage `json:"weight"`
	// Summaries is SRS's load report ("heartbeat { summaries on; }"),
	// decoded apart so that a malformed one never refuses the heartbeat.
	Summaries json.RawMessage `json:"summaries"`
}

// summaries is the part of SRS's summaries (srs_api_dump_summaries) that
// the mesh reads.
type summaries struct {
	Data struct {
		Self struct {
			CPUPercent json.RawMessage `json:"cpu_percent"`
		} `json:"self"`
		System struct {
			CPUPercent json.RawMessage `json:"cpu_percent"`
			SampleTime json.RawMessage `json:"srs_sample_time"`
			RecvBytes  json.RawMessage `json:"srs_recv_bytes"`
			SendBytes  json.RawMessage `json:"srs_send_bytes"`
			ConnSRS    json.RawMessage `json:"conn_srs"`
		} `json:"system"`
	} `json:"data"`
}

// load turns the summaries into a Load; figures that are absent, malformed
// or out of range read as 0 (a bad figure must not refuse the heartbeat).
func (s *summaries) load() Load {
	sys := s.Data.System
	l := Load{
		CPUPermille:     ratioPermille(sys.CPUPercent, MaxPermille),
		SelfCPUPermille: ratioPermille(s.Data.Self.CPUPercent, 64*MaxPermille),
		Conns:           counter(sys.ConnSRS),
		SampleMs:        counter(sys.SampleTime),
		RecvBytes:       counter(sys.RecvBytes),
		SendBytes:       counter(sys.SendBytes),
	}
	return l
}

// ratioPermille reads SRS's cpu_percent, a ratio (0.25 is 25%), as
// thousandths clamped to 0..limit; a malformed value is 0.
func ratioPermille(raw json.RawMessage, limit int) int {
	f, err := strconv.ParseFloat(looseString(raw), 64)
	if err != nil || math.IsNaN(f) || f <= 0 {
		return 0
	}
	return int(math.Min(math.Round(f*1000), float64(limit)))
}

// counter reads a non-negative integer counter; anything else is 0.
func counter(raw json.RawMessage) int64 {
	v, err := strconv.ParseInt(looseString(raw), 10, 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// ParseRegistration validates an SRS heartbeat body and turns it into an
// Origin. remoteIP (the request's peer address, may be empty) stands in when
// the body's ip is empty or unspecified. The origin must name itself
// ("server"; "device_id" is used when server is absent) and at least one
// endpoint. Unknown fields are ignored.
func ParseRegistration(body []byte, remoteIP string) (Origin, error) {
	o, _, err := ParseHeartbeat(body, remoteIP)
	return o, err
}

// ParseHeartbeat is ParseRegistration that also returns the load the origin
// reported in "summaries" (nil when it sent none), and reads the optional
// capacity fields "max_streams" and "weight" (numbers or numeric strings,
// within MaxOriginStreams and MaxWeight; out of bounds is an error).
func ParseHeartbeat(body []byte, remoteIP string) (Origin, *Load, error) {
	o, r, err := parseRegistration(body, remoteIP)
	if err != nil {
		return Origin{}, nil, err
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		out  *int
	}{{"max_streams", r.MaxStreams, &o.MaxStreams}, {"weight", r.Weight, &o.Weight}} {
		v := looseString(f.raw)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return Origin{}, nil, fmt.Errorf("%w: %s %q is not a whole number", ErrRegistration, f.name, v)
		}
		*f.out = n
	}
	if err := o.CheckCapacity(); err != nil {
		return Origin{}, nil, err
	}
	raw := bytes.TrimSpace(r.Summaries)
	if len(raw) == 0 || string(raw) == "null" {
		return o, nil, nil
	}
	var sum summaries
	if json.Unmarshal(raw, &sum) != nil {
		return o, nil, nil
	}
	l := sum.load()
	return o, &l, nil
}

func parseRegistration(body []byte, remoteIP string) (Origin, Registration, error) {
	if len(body) > MaxRegistrationBytes {
		return Origin{}, Registration{}, fmt.Errorf("%w: body larger than %d bytes", ErrRegistration, MaxRegistrationBytes)
	}
	var r Registration
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&r); err != nil {
		return Origin{}, Registration{}, fmt.Errorf("%w: %v", ErrRegistration, err)
	}
	o := Origin{
		ID:      strings.TrimSpace(r.Server),
		IP:      strings.TrimSpace(r.IP),
		Service: looseString(r.Service),
		PID:     looseString(r.PID),
	}
	if o.ID == "" {
		o.ID = looseString(r.DeviceID)
	}
	if o.ID == "" {
		return Origin{}, Registration{}, fmt.Errorf("%w: missing \"server\" id", ErrRegistration)
	}
	if len(o.ID) > MaxPartLen || strings.ContainsAny(o.ID, " \t\r\n/?#") {
		return Origin{}, Registration{}, fmt.Errorf("%w: bad \"server\" id %q", ErrRegistration, o.ID)
	}
	if o.IP == "" || isUnspecified(o.IP) {
		o.IP = remoteIP
	}
	if o.IP == "" {
		return Origin{}, Registration{}, fmt.Errorf("%w: missing \"ip\"", ErrRegistration)
	}
	if !validHost(o.IP) {
		return Origin{}, Registration{}, fmt.Errorf("%w: bad \"ip\" %q", ErrRegistration, o.IP)
	}
	lists := []struct {
		name string
		in   []string
		out  *string
	}{
		{"rtmp", r.RTMP, &o.RTMP}, {"http", r.HTTP, &o.HTTP}, {"api", r.API, &o.API},
		{"srt", r.SRT, &o.SRT}, {"rtc", r.RTC, &o.RTC},
	}
	any := false
	for _, l := range lists {
		if len(l.in) == 0 {
			continue
		}
		ep, err := ParseEndpoint(l.in[0], o.IP)
		if err != nil {
			return Origin{}, Registration{}, fmt.Errorf("%w: %s: %v", ErrRegistration, l.name, err)
		}
		*l.out = ep
		any = true
	}
	if !any {
		return Origin{}, Registration{}, fmt.Errorf("%w: no endpoints (rtmp, http, api, srt or rtc)", ErrRegistration)
	}
	return o, r, nil
}

// ParseEndpoint turns one of SRS's port forms into "host:port":
//
//	"1935", "0.0.0.0:1935", "10.0.0.5:1935", "[::]:1935",
//	"udp://0.0.0.0:8000", "udp://8000", "tcp://:1935"
//
// An empty or unspecified host (0.0.0.0, ::) means defaultHost.
func ParseEndpoint(s, defaultHost string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: empty", ErrEndpoint)
	}
	if len(s) > 300 {
		return "", fmt.Errorf("%w: too long", ErrEndpoint)
	}
	if i := strings.Index(s, "://"); i >= 0 {
		switch strings.ToLower(s[:i]) {
		case "udp", "tcp", "srt", "rtmp", "http", "https":
		default:
			return "", fmt.Errorf("%w: unknown scheme in %q", ErrEndpoint, s)
		}
		s = strings.TrimSuffix(s[i+3:], "/")
	}
	var host, port string
	if p, err := strconv.Atoi(s); err == nil || isDigits(s) {
		_ = p
		port = s
	} else {
		h, pt, err := net.SplitHostPort(s)
		if err != nil {
			return "", fmt.Errorf("%w: %q: %v", ErrEndpoint, s, err)
		}
		host, port = h, pt
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || !isDigits(port) {
		return "", fmt.Errorf("%w: bad port %q", ErrEndpoint, port)
	}
	if host == "" || isUnspecified(host) {
		host = defaultHost
	}
	if host == "" || !validHost(host) {
		return "", fmt.Errorf("%w: bad host %q", ErrEndpoint, host)
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), nil
}

// StaticOriginError is the error of ParseStaticOrigin; it wraps
// ErrRegistration. Error says what is wrong and quotes the input where that
// helps. Redacted says the same naming only the keys ParseStaticOrigin
// knows, never a value, an unknown key or a piece of the input: the form
// for a caller whose input may hold a secret (a credential that ran over a
// ',' into the pieces that follow it).
type StaticOriginError struct {
	detail, redacted string
}

func (e *StaticOriginError) Error() string { return ErrRegistration.Error() + ": " + e.detail }

// Redacted is Error without anything of the input but known keys.
func (e *StaticOriginError) Redacted() string { return ErrRegistration.Error() + ": " + e.redacted }

func (e *StaticOriginError) Unwrap() error { return ErrRegistration }

// staticOriginError is a *StaticOriginError; redacted is detail when "".
func staticOriginError(redacted, detail string) error {
	if redacted == "" {
		redacted = detail
	}
	return &StaticOriginError{detail: detail, redacted: redacted}
}

// ParseStaticOrigin parses the --origin flag form
// "id=o1,ip=10.0.0.5,rtmp=1935,http=8080,api=1985,srt=10080,rtc=8000",
// with optional "max_streams=200" and "weight=2" (see Origin).
// Port values take every form ParseEndpoint accepts. "id" (or its aliases
// "name", "server"), "ip" (or "host") and at least one port are required;
// a key given twice, under its own name or an alias, is an error that names
// it, as is an unknown key. A ';' (which separates origins in a list) is
// an error too. Every error is a *StaticOriginError.
func ParseStaticOrigin(s string) (Origin, error) {
	o := Origin{Static: true}
	ports := map[string]string{}
	seen := map[string]string{} // canonical key -> the name it was given as
	if strings.Contains(s, ";") {
		return Origin{}, staticOriginError("", "';' separates origins, and this is one origin")
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return Origin{}, staticOriginError("a piece is not key=value", fmt.Sprintf("%q is not key=value", kv))
		}
		k = strings.ToLower(strings.TrimSpace(k))
		canon := k
		switch k {
		case "name", "server":
			canon = "id"
		case "host":
			canon = "ip"
		}
		switch k {
		case "id", "name", "server", "ip", "host", "rtmp", "http", "api", "srt", "rtc", "max_streams", "weight":
		default:
			return Origin{}, staticOriginError("unknown key", fmt.Sprintf("unknown key %q", k))
		}
		if first, dup := seen[canon]; dup {
			if first == k {
				return Origin{}, staticOriginError("", fmt.Sprintf("%s= is given twice", k))
			}
			return Origin{}, staticOriginError("", fmt.Sprintf("%s= and %s= are given both (the same key)", first, k))
		}
		seen[canon] = k
		switch k {
		case "id", "name", "server":
			o.ID = strings.TrimSpace(v)
		case "ip", "host":
			o.IP = strings.TrimSpace(v)
		case "rtmp", "http", "api", "srt", "rtc":
			ports[k] = v
		case "max_streams", "weight":
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return Origin{}, staticOriginError(k+"= is not a whole number", fmt.Sprintf("%s %q is not a whole number", k, v))
			}
			if k == "weight" {
				o.Weight = n
			} else {
				o.MaxStreams = n
			}
		}
	}
	if o.ID == "" || strings.ContainsAny(o.ID, " /?#") {
		return Origin{}, staticOriginError("", "missing or bad id=")
	}
	if o.IP == "" {
		return Origin{}, staticOriginError("no ip=", fmt.Sprintf("origin %q has no ip=", o.ID))
	}
	if !validHost(o.IP) {
		return Origin{}, staticOriginError("ip= is not an IP address or host name", fmt.Sprintf("bad ip %q", o.IP))
	}
	if len(ports) == 0 {
		return Origin{}, staticOriginError("no endpoints (rtmp=, http=, api=, srt= or rtc=)", fmt.Sprintf("origin %q has no endpoints", o.ID))
	}
	switch { // Origin.CheckCapacity's bounds
	case o.MaxStreams < 0 || o.MaxStreams > MaxOriginStreams:
		return Origin{}, staticOriginError(fmt.Sprintf("max_streams= is not within 0..%d", MaxOriginStreams),
			fmt.Sprintf("max_streams %d is not within 0..%d", o.MaxStreams, MaxOriginStreams))
	case o.Weight < 0 || o.Weight > MaxWeight:
		return Origin{}, staticOriginError(fmt.Sprintf("weight= is not within 0..%d", MaxWeight),
			fmt.Sprintf("weight %d is not within 0..%d", o.Weight, MaxWeight))
	}
	for _, k := range []string{"rtmp", "http", "api", "srt", "rtc"} {
		v, ok := ports[k]
		if !ok {
			continue
		}
		ep, err := ParseEndpoint(v, o.IP)
		if err != nil {
			return Origin{}, staticOriginError(k+"= is not a port or host:port", fmt.Sprintf("%s: %v", k, err))
		}
		switch k {
		case "rtmp":
			o.RTMP = ep
		case "http":
			o.HTTP = ep
		case "api":
			o.API = ep
		case "srt":
			o.SRT = ep
		case "rtc":
			o.RTC = ep
		}
	}
	return o, nil
}

func looseString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isUnspecified(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsUnspecified()
}

// validHost accepts an IP literal without an IPv6 zone, or a DNS name. A
// zone ("%eth0") names an interface of the host that wrote it, means nothing
// to another node, and may hold any byte, "://" too, which "host:port" and
// URLs built from the endpoint could not carry.
func validHost(h string) bool {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Zone() == ""
	}
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return !strings.HasPrefix(h, "-") && !strings.HasPrefix(h, ".")
}
