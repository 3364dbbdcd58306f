package httpstream

import (
	"net/http"
	"strings"

	"github.com/srs-mesh/srs-mesh/stream"
)

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
