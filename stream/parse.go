package stream

import (
	"fmt"
	"net/url"
	"strings"
)

// RTMPRequest is what a client named in its RTMP connect and publish/play
// commands, split into the parts the proxy needs.
type RTMPRequest struct {
	Key Key
	// App is the app exactly as the client's tcUrl named it, without query.
	App string
	// StreamQuery is the query of the stream name ("secret=..."), without '?'.
	// It is not part of the key, but must reach the origin unchanged.
	StreamQuery string
	// AppQuery is the query of the tcUrl's app ("vhost=..."), without '?'.
	AppQuery string
}

// FromRTMP derives the key from an RTMP connect tcUrl (rtmp://host[:port]/app[?q])
// and the stream name given to publish or play (stream[?q]). When tcUrl is
// empty the app argument of connect may be given as the path instead
// ("rtmp:///app"). A "vhost=" parameter in either query selects the vhost.
// The host and port of tcUrl never change the key.
func FromRTMP(tcURL, streamName string) (RTMPRequest, error) {
	var req RTMPRequest
	path, appQuery, err := rtmpURLPath(tcURL)
	if err != nil {
		return req, err
	}
	name, streamQuery := SplitQuery(streamName)
	// Some clients put the app in the stream name (tcUrl rtmp://host/ and
	// stream "live/s"); SRS accepts it, so do we.
	app := cleanPath(path)
	if app == "" {
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			app, name = cleanPath(name[:i]), name[i+1:]
		}
	}
	name = strings.TrimSpace(name)
	vhost := vhostFromQuery(streamQuery)
	if vhost == "" {
		vhost = vhostFromQuery(appQuery)
	}
	req.Key = Key{Vhost: normalizeVhost(vhost), App: app, Stream: name}
	req.App = app
	req.StreamQuery = streamQuery
	req.AppQuery = appQuery
	if err := req.Key.Validate(); err != nil {
		return RTMPRequest{}, err
	}
	return req, nil
}

// rtmpURLPath returns the path and query of an rtmp:// (or rtmps://, rtmpt://)
// URL. It does not rely on net/url for the host part, because tcUrls seen in
// the wild carry vhosts, IPv6 literals and odd ports that net/url rejects.
func rtmpURLPath(tcURL string) (path, query string, err error) {
	s := strings.TrimSpace(tcURL)
	if len(s) > 4096 {
		return "", "", fmt.Errorf("%w: tcUrl too long", ErrBadURL)
	}
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
		// Skip the authority.
		j := strings.IndexByte(s, '/')
		if j < 0 {
			if k := strings.IndexByte(s, '?'); k >= 0 {
				return "", s[k+1:], nil
			}
			return "", "", nil
		}
		s = s[j:]
	}
	path, query = SplitQuery(s)
	// SRS's legacy form carries parameters in the app with "..." separators:
	// "live...vhost...v1" means app "live" with vhost=v1.
	if i := strings.Index(path, "..."); i >= 0 {
		parts := strings.Split(path[i+3:], "...")
		path = path[:i]
		var q []string
		for j := 0; j+1 < len(parts); j += 2 {
			q = append(q, url.QueryEscape(parts[j])+"="+url.QueryEscape(parts[j+1]))
		}
		if query != "" {
			q = append(q, query)
		}
		query = strings.Join(q, "&")
	}
	return path, query, nil
}

// Suffixes of SRS's HTTP stream URLs that name a stream.
var httpSuffixes = []string{".flv", ".ts", ".m3u8", ".mpd", ".aac", ".mp3"}

// FromHTTPPath derives the key from an HTTP stream path such as
// "/live/livestream.flv" and its query (for "vhost="). It returns the suffix
// (".flv", ".ts", ".m3u8", ".mpd", ...) that names the format. The Host header
// is deliberately not an input.
func FromHTTPPath(path, rawQuery string) (Key, string, error) {
	if len(path) > MaxKeyLen+16 {
		return Key{}, "", ErrPartTooLong
	}
	p := cleanPath(path)
	suffix := ""
	for _, s := range httpSuffixes {
		if strings.HasSuffix(p, s) {
			suffix = s
			p = strings.TrimSuffix(p, s)
			break
		}
	}
	if suffix == "" {
		return Key{}, "", fmt.Errorf("%w: %q", ErrUnknownSuffix, path)
	}
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return Key{}, "", fmt.Errorf("%w: %q has no app", ErrEmptyApp, path)
	}
	k := Key{Vhost: normalizeVhost(vhostFromQuery(rawQuery)), App: p[:i], Stream: p[i+1:]}
	if err := k.Validate(); err != nil {
		return Key{}, "", err
	}
	return k, suffix, nil
}

// SRTMode is the direction an SRT client asked for in its streamid.
type SRTMode string

// SRT modes as SRS names them ("m=" in the streamid).
const (
	SRTRequest SRTMode = "request" // play
	SRTPublish SRTMode = "publish"
)

// SRTRequestInfo is the parsed SRT streamid.
type SRTRequestInfo struct {
	Key  Key
	Mode SRTMode
	// Params holds every other "k=v" pair of a "#!::" streamid (e.g.
	// "secret"), in the order given, for logging and auth forwarding.
	Params [][2]string
}

// FromSRTStreamID derives the key and mode from an SRT streamid, accepting
// every form SRS accepts:
//
//	#!::r=app/stream,m=publish      access-control syntax
//	#!::h=vhost,r=app/stream,m=request
//	#!::h=app/stream,m=publish      legacy: h carries the path
//	app/stream, stream              plain paths ("live" is the default app)
//	""                              SRS's default, live/livestream
//
// The default mode is request (play). Keys are matched exactly: a key named
// "player=x" is just an unknown parameter, not "r".
func FromSRTStreamID(sid string) (SRTRequestInfo, error) {
	info := SRTRequestInfo{Mode: SRTRequest}
	sid = strings.TrimSpace(sid)
	if len(sid) > 512 {
		return info, fmt.Errorf("%w: streamid too long", ErrBadKey)
	}
	var host, resource string
	if strings.HasPrefix(sid, "#!::") {
		for _, kv := range strings.Split(sid[4:], ",") {
			k, v, _ := strings.Cut(kv, "=")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch k {
			case "r":
				resource = v
			case "h":
				host = v
			case "m":
				switch v {
				case "publish":
					info.Mode = SRTPublish
				case "request", "play", "":
					info.Mode = SRTRequest
				default:
					return SRTRequestInfo{}, fmt.Errorf("%w: unknown SRT mode %q", ErrBadKey, v)
				}
			case "":
				continue
			default:
				info.Params = append(info.Params, [2]string{k, v})
			}
		}
		// Legacy form: h carries the path when there is no r.
		if resource == "" && strings.Contains(host, "/") {
			resource, host = host, ""
		}
	} else {
		resource = sid
	}
	resource, query := SplitQuery(resource)
	vhost := vhostFromQuery(query)
	if vhost == "" {
		vhost = host
	}
	resource = cleanPath(resource)
	app, name := "live", "livestream"
	if resource != "" {
		if i := strings.LastIndexByte(resource, '/'); i >= 0 {
			app, name = resource[:i], resource[i+1:]
		} else {
			name = resource
		}
	}
	info.Key = Key{Vhost: normalizeVhost(vhost), App: app, Stream: name}
	if err := info.Key.Validate(); err != nil {
		return SRTRequestInfo{}, err
	}
	return info, nil
}

// FromWebRTC derives the key from WHIP/WHEP query parameters (app, stream,
// vhost) or, when those are empty, from SRS's JSON API streamurl
// ("webrtc://host/app/stream?vhost=..."). The host never changes the key.
func FromWebRTC(q url.Values, streamURL string) (Key, error) {
	app, name, vhost := q.Get("app"), q.Get("stream"), q.Get("vhost")
	if app == "" && name == "" && streamURL != "" {
		path, query, err := rtmpURLPath(streamURL)
		if err != nil {
			return Key{}, err
		}
		path = cleanPath(path)
		i := strings.LastIndexByte(path, '/')
		if i < 0 {
			return Key{}, fmt.Errorf("%w: streamurl %q has no app", ErrEmptyApp, streamURL)
		}
		app, name = path[:i], path[i+1:]
		if vhost == "" {
			vhost = vhostFromQuery(query)
		}
	}
	if app == "" {
		app = "live"
	}
	k := Key{Vhost: normalizeVhost(vhost), App: cleanPath(app), Stream: name}
	if err := k.Validate(); err != nil {
		return Key{}, err
	}
	return k, nil
}
