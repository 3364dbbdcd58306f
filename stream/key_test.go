package stream

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

const dv = DefaultVhost

func TestFromRTMP(t *testing.T) {
	tests := []struct {
		name        string
		tcURL       string
		stream      string
		want        string
		streamQuery string
		appQuery    string
		err         error
	}{
		{"plain", "rtmp://127.0.0.1:1935/live", "livestream", dv + "/live/livestream", "", "", nil},
		{"name host same key", "rtmp://media.example.com/live", "livestream", dv + "/live/livestream", "", "", nil},
		{"no port", "rtmp://10.0.0.5/live", "livestream", dv + "/live/livestream", "", "", nil},
		{"ipv6 host", "rtmp://[::1]:1935/live", "s", dv + "/live/s", "", "", nil},
		{"trailing slash", "rtmp://h/live/", "s", dv + "/live/s", "", "", nil},
		{"stream query kept", "rtmp://h/live", "s?secret=abc&x=1", dv + "/live/s", "secret=abc&x=1", "", nil},
		{"vhost in tcurl", "rtmp://h/live?vhost=v.example.com", "s", "v.example.com/live/s", "", "vhost=v.example.com", nil},
		{"vhost in stream", "rtmp://h/live", "s?vhost=V.Example.com&secret=1", "v.example.com/live/s", "vhost=V.Example.com&secret=1", "", nil},
		{"stream vhost wins", "rtmp://h/live?vhost=a", "s?vhost=b", "b/live/s", "vhost=b", "vhost=a", nil},
		{"legacy dots vhost", "rtmp://h/live...vhost...v1", "s", "v1/live/s", "", "vhost=v1", nil},
		{"domain param", "rtmp://h/live?domain=d1", "s", "d1/live/s", "", "domain=d1", nil},
		{"nested app", "rtmp://h/a/b", "s", dv + "/a/b/s", "", "", nil},
		{"app in stream name", "rtmp://h/", "live/s", dv + "/live/s", "", "", nil},
		{"rtmps", "rtmps://h:443/live", "s", dv + "/live/s", "", "", nil},
		{"no scheme path", "/live", "s", dv + "/live/s", "", "", nil},
		{"empty app", "rtmp://h", "s", "", "", "", ErrEmptyApp},
		{"empty stream", "rtmp://h/live", "", "", "", "", ErrEmptyStream},
		{"empty stream with query", "rtmp://h/live", "?secret=1", "", "", "", ErrEmptyStream},
		{"dotdot", "rtmp://h/..", "s", "", "", "", ErrDotSegment},
		{"space", "rtmp://h/live", "a b", "", "", "", ErrBadCharacter},
		{"control char", "rtmp://h/live", "a\x00b", "", "", "", ErrBadCharacter},
		{"too long", "rtmp://h/live", strings.Repeat("x", MaxPartLen+1), "", "", "", ErrPartTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromRTMP(tt.tcURL, tt.stream)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if got.Key.String() != tt.want {
				t.Errorf("key = %q, want %q", got.Key, tt.want)
			}
			if got.StreamQuery != tt.streamQuery {
				t.Errorf("stream query = %q, want %q", got.StreamQuery, tt.streamQuery)
			}
			if got.AppQuery != tt.appQuery {
				t.Errorf("app query = %q, want %q", got.AppQuery, tt.appQuery)
			}
		})
	}
}

func TestFromHTTPPath(t *testing.T) {
	tests := []struct {
		path, query, want, suffix string
		err                       error
	}{
		{"/live/livestream.flv", "", dv + "/live/livestream", ".flv", nil},
		{"/live/livestream.ts", "token=1", dv + "/live/livestream", ".ts", nil},
		{"/live/livestream.m3u8", "hls_ctx=abc", dv + "/live/livestream", ".m3u8", nil},
		{"/live/livestream.mpd", "", dv + "/live/livestream", ".mpd", nil},
		{"/live/s.flv", "vhost=v1", "v1/live/s", ".flv", nil},
		{"/a/b/s.flv", "", dv + "/a/b/s", ".flv", nil},
		{"/s.flv", "", "", "", ErrEmptyApp},
		{"/live/.flv", "", "", "", ErrEmptyStream},
		{"/live/s.mp4", "", "", "", ErrUnknownSuffix},
		{"/live//s.flv", "", "", "", ErrBadKey},
		{"/../s.flv", "", "", "", ErrDotSegment},
	}
	for _, tt := range tests {
		k, suffix, err := FromHTTPPath(tt.path, tt.query)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%s: err = %v, want %v", tt.path, err, tt.err)
			}
			continue
		}
		if err != nil || k.String() != tt.want || suffix != tt.suffix {
			t.Errorf("%s: got %q %q %v, want %q %q", tt.path, k, suffix, err, tt.want, tt.suffix)
		}
	}
}

func TestFromSRTStreamID(t *testing.T) {
	tests := []struct {
		sid, want string
		mode      SRTMode
		params    int
		err       bool
	}{
		{"#!::r=live/s,m=publish", dv + "/live/s", SRTPublish, 0, false},
		{"#!::r=live/s,m=request", dv + "/live/s", SRTRequest, 0, false},
		{"#!::r=live/s", dv + "/live/s", SRTRequest, 0, false},
		{"#!::h=v1,r=live/s,m=publish", "v1/live/s", SRTPublish, 0, false},
		{"#!::h=live/s,m=publish", dv + "/live/s", SRTPublish, 0, false},
		{"#!::r=live/s,secret=abc,m=publish", dv + "/live/s", SRTPublish, 1, false},
		{"#!::player=x,r=live/s", dv + "/live/s", SRTRequest, 1, false},
		{"#!::r=live/s?vhost=v2,m=request", "v2/live/s", SRTRequest, 0, false},
		{"#!::m=publish", dv + "/live/livestream", SRTPublish, 0, false},
		{"live/s", dv + "/live/s", SRTRequest, 0, false},
		{"s", dv + "/live/s", SRTRequest, 0, false},
		{"", dv + "/live/livestream", SRTRequest, 0, false},
		{"#!::r=live/s,m=bogus", "", "", 0, true},
		{"#!::r=live/../s", "", "", 0, true},
		{strings.Repeat("a", 600), "", "", 0, true},
	}
	for _, tt := range tests {
		got, err := FromSRTStreamID(tt.sid)
		if tt.err {
			if err == nil {
				t.Errorf("%q: want error, got %v", tt.sid, got.Key)
			}
			continue
		}
		if err != nil || got.Key.String() != tt.want || got.Mode != tt.mode || len(got.Params) != tt.params {
			t.Errorf("%q: got %q %q %v %v, want %q %q", tt.sid, got.Key, got.Mode, got.Params, err, tt.want, tt.mode)
		}
	}
}

func TestFromWebRTC(t *testing.T) {
	tests := []struct {
		query, streamURL, want string
		err                    bool
	}{
		{"app=live&stream=s", "", dv + "/live/s", false},
		{"app=live&stream=s&vhost=v1", "", "v1/live/s", false},
		{"stream=s", "", dv + "/live/s", false},
		{"", "webrtc://10.0.0.1/live/s", dv + "/live/s", false},
		{"", "webrtc://media.example.com:1985/live/s?vhost=v3", "v3/live/s", false},
		{"", "webrtc://h/s", "", true},
		{"app=live", "", "", true},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		k, err := FromWebRTC(q, tt.streamURL)
		if tt.err {
			if err == nil {
				t.Errorf("%q %q: want error, got %v", tt.query, tt.streamURL, k)
			}
			continue
		}
		if err != nil || k.String() != tt.want {
			t.Errorf("%q %q: got %q %v, want %q", tt.query, tt.streamURL, k, err, tt.want)
		}
	}
}

// The same stream reached through every protocol, host and port has one key.
func TestSameKeyAcrossProtocols(t *testing.T) {
	want := dv + "/live/livestream"
	r, _ := FromRTMP("rtmp://node-1.example.com:1935/live", "livestream?secret=x")
	h, _, _ := FromHTTPPath("/live/livestream.flv", "")
	hls, _, _ := FromHTTPPath("/live/livestream.m3u8", "")
	s, _ := FromSRTStreamID("#!::r=live/livestream,m=request")
	w, _ := FromWebRTC(url.Values{"app": {"live"}, "stream": {"livestream"}}, "")
	j, _ := FromWebRTC(nil, "webrtc://127.0.0.1/live/livestream")
	for i, k := range []Key{r.Key, h, hls, s.Key, w, j} {
		if k.String() != want {
			t.Errorf("protocol %d: key %q, want %q", i, k, want)
		}
	}
}

func TestParseKeyRoundTrip(t *testing.T) {
	for _, s := range []string{dv + "/live/s", "v/a/b/c"} {
		k, err := ParseKey(s)
		if err != nil || k.String() != s {
			t.Errorf("ParseKey(%q) = %v, %v", s, k, err)
		}
	}
	for _, s := range []string{"", "a", "a/b", "/a/b", "a//b", "a/b/"} {
		if _, err := ParseKey(s); err == nil {
			t.Errorf("ParseKey(%q) accepted", s)
		}
	}
}

func FuzzFromRTMP(f *testing.F) {
	f.Add("rtmp://127.0.0.1:1935/live", "livestream?secret=1")
	f.Add("rtmp://h/live?vhost=v", "s")
	f.Add("rtmp://[::1]/a/b", "s?vhost=x")
	f.Add("", "live/s")
	f.Fuzz(func(t *testing.T, tcURL, name string) {
		r, err := FromRTMP(tcURL, name)
		if err != nil {
			return
		}
		if err := r.Key.Validate(); err != nil {
			t.Fatalf("returned invalid key %q: %v", r.Key, err)
		}
		back, err := ParseKey(r.Key.String())
		if err != nil || back != r.Key {
			t.Fatalf("key %q does not round-trip: %v %v", r.Key, back, err)
		}
	})
}

func FuzzFromSRTStreamID(f *testing.F) {
	for _, s := range []string{"#!::r=live/s,m=publish", "#!::h=live/s", "live/s", "", "#!::h=v,r=a/b,m=request,secret=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sid string) {
		info, err := FromSRTStreamID(sid)
		if err != nil {
			return
		}
		if err := info.Key.Validate(); err != nil {
			t.Fatalf("returned invalid key %q: %v", info.Key, err)
		}
	})
}

func FuzzFromHTTPPath(f *testing.F) {
	f.Add("/live/livestream.flv", "vhost=v")
	f.Add("/a/b/c.m3u8", "")
	f.Fuzz(func(t *testing.T, path, query string) {
		k, _, err := FromHTTPPath(path, query)
		if err != nil {
			return
		}
		if err := k.Validate(); err != nil {
			t.Fatalf("returned invalid key %q: %v", k, err)
		}
	})
}

func FuzzFromWebRTC(f *testing.F) {
	f.Add("app=live&stream=s", "")
	f.Add("", "webrtc://127.0.0.1:1985/live/s?vhost=v")
	f.Add("stream=s&vhost=x", "webrtc://h/a/b/c")
	f.Fuzz(func(t *testing.T, rawQuery, streamURL string) {
		q, _ := url.ParseQuery(rawQuery)
		k, err := FromWebRTC(q, streamURL)
		if err != nil {
			return
		}
		if err := k.Validate(); err != nil {
			t.Fatalf("returned invalid key %q: %v", k, err)
		}
	})
}

// Validating a key, which every route does, allocates nothing.
func TestValidateAllocs(t *testing.T) {
	k := Key{DefaultVhost, "live/sub", "livestream"}
	if n := testing.AllocsPerRun(100, func() { _ = k.Validate() }); n != 0 {
		t.Errorf("Validate allocates %v times", n)
	}
}
