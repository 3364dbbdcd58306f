package httpstream

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1 (plus the
// legacy ones proxies still see); they never cross the proxy.
var hopHeaders = []string{
	"Connection",
	"Keep-Alive",
	"Proxy-Connection",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// liveProto names the session protocol of a streaming suffix.
func liveProto(suffix string) string {
	return strings.TrimPrefix(suffix, ".")
}

// serveLive proxies an HTTP-FLV, HTTP-TS (or audio-only) live stream routed
// by key, flushing every chunk the origin sends.
func (s *Server) serveLive(w http.ResponseWriter, r *http.Request, key stream.Key, suffix string) {
	o, ok := s.routeOrigin(w, r, key)
	if !ok {
		return
	}
	if s.hubs != nil && suffix == ".flv" && r.Method == http.MethodGet && s.serveFLVFanOut(w, r, key, o) {
		return
	}
	origin := o.HTTP
	if origin == "" {
		writeError(w, http.StatusServiceUnavailable, "origin has no HTTP endpoint")
		return
	}
	resp, ok := s.fetch(w, r, r.Method, origin, keyPath(key, suffix), r.URL.RawQuery, nil)
	if !ok {
		return
	}
	defer resp.Body.Close()
	if r.Method == http.MethodGet && resp.StatusCode/100 == 2 {
		end, sent := s.track(key, liveProto(suffix))
		defer end()
		if sent != nil {
			w = meteredWriter{ResponseWriter: w, n: sent}
		}
	}
	s.relay(w, r, resp, cacheNone)
}

// fetch sends a request for origin path (escaped) and query to origin with
// the headers originRequestHeader makes of the client's (those in drop left
// out). It writes the 502 answer itself and returns false when the origin
// cannot be reached; when the client has gone it writes nothing.
func (s *Server) fetch(w http.ResponseWriter, r *http.Request, method, origin, path, query string, drop []string) (*http.Response, bool) {
	out, err := http.NewRequestWithContext(r.Context(), method, originURL(origin, path, query), nil)
	if err != nil {
		writeError(w, http.StatusBadGateway, "bad origin URL")
		return nil, false
	}
	out.Header = originRequestHeader(r, drop)
	resp, err := s.transport.RoundTrip(out)
	if err != nil {
		if r.Context().Err() != nil {
			return nil, false
		}
		s.log.Warn("origin unreachable", "origin", origin, "path", path, "err", err)
		originUnreachable(w, origin)
		return nil, false
	}
	return resp, true
}

// originURL is the URL of origin path (escaped) and query on origin.
func originURL(origin, path, query string) string {
	u := &url.URL{Scheme: "http", Host: origin, RawQuery: query}
	u.Path, _ = url.PathUnescape(path)
	u.RawPath = path
	return u.String()
}

// relay copies the origin's status and headers to the client and streams
// the body, flushing after every read so that the first bytes (an FLV header
// and its first tags) reach the player at once. It returns when either side
// ends; the caller closes resp.Body, which ends the origin leg. cache is the
// Cache-Control of a 2xx answer the origin sent none for.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, resp *http.Response, cache string) {
	copyHeader(w.Header(), resp.Header)
	setCacheDefault(w.Header(), resp.StatusCode, cache)
	setCORS(w.Header())
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if err := rc.SetWriteDeadline(time.Now().Add(s.writeTTL)); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
			if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return
			}
		}
		if rerr != nil {
			if rerr != io.EOF && r.Context().Err() == nil {
				s.log.Debug("origin stream ended", "err", rerr)
			}
			return
		}
	}
}

// copyHeader adds src's end-to-end headers to dst: hop-by-hop headers, and
// any header that src's Connection header names, are left out. It copies an
// origin's response headers to the client.
func copyHeader(dst, src http.Header) {
	named := connectionNamed(src)
next:
	for k, vv := range src {
		for _, h := range hopHeaders {
			if k == h {
				continue next
			}
		}
		for _, h := range named {
			if k == h {
				continue next
			}
		}
		dst[k] = append(dst[k], vv...)
	}
}

// escapePath escapes a decoded URL path the way net/url does.
func escapePath(p string) string {
	return (&url.URL{Path: p}).EscapedPath()
}
