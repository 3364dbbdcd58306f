package httpstream

import (
	"net/http"
	"net/url"
)

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

// escapePath escapes a decoded URL path the way net/url does.
func escapePath(p string) string {
	return (&url.URL{Path: p}).EscapedPath()
}
