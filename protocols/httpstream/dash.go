package httpstream

import (
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/srs-mesh/srs-mesh/stream"
)

// serveMPDByKey serves "/app/stream.mpd" from key's origin, rewritten so
// that its segments resolve under "/_dash/<token>/" (see rewriteMPD). This
// covers SRS's layout (segments under "/app/stream/") and nginx-rtmp's
// ("/app/stream-<time>.m4v" next to the MPD) alike.
//
// A stream that moved to another origin has its Periods renamed by its
// epoch (epochMPD), and a reload during a move waits for the new origin
// (serveHeld).
func (s *Server) serveMPDByKey(w http.ResponseWriter, r *http.Request, key stream.Key) {
	s.serveHeld(w, r, key, ".mpd", func(w http.ResponseWriter) {
		origin := s.route(w, r, key)
		if origin == "" {
			return
		}
		c, ok := s.codec(w)
		if !ok {
			return
		}
		s.serveDocument(w, r, origin, keyPath(key, ".mpd"), s.dashMapper(c, origin), s.dashEpochFormat(key))
	})
}

// serveDASHToken serves "/_dash/<token>/<rest>": the origin file rest below
// the directory the token names. rest must be a clean relative path.
func (s *Server) serveDASHToken(w http.ResponseWriter, r *http.Request, p string) {
	tokStr, rest, ok := strings.Cut(p, "/")
	if !ok || rest == "" {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	tok, ok := s.decodeToken(w, tokStr, TokenDir)
	if !ok {
		return
	}
	if !cleanRelPath(rest, false) || strings.ContainsAny(rest, "\\") {
		writeError(w, http.StatusBadRequest, "bad segment path")
		return
	}
	s.proxyFile(w, r, tok.Origin, tok.Path+rest)
}

// dashSegmentKey is the fallback for DASH clients that ignore the BaseURL
// the proxy inserts and ask for segments by their origin path. It derives
// the stream key from the two known layouts:
//
//	nginx-rtmp: /app/stream-<time>.m4v|m4a, /app/stream-init.m4v|m4a
//	SRS:        /app/stream/<name>.m4s|mp4
func dashSegmentKey(p, rawQuery string) (stream.Key, bool) {
	dir, file := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	var streamPath string
	switch path.Ext(file) {
	case ".m4v", ".m4a":
		i := strings.LastIndexByte(file, '-')
		if i <= 0 {
			return stream.Key{}, false
		}
		streamPath = dir + "/" + file[:i]
	case ".m4s", ".mp4":
		streamPath = dir
	default:
		return stream.Key{}, false
	}
	key, _, err := stream.FromHTTPPath(streamPath+".mpd", rawQuery)
	return key, err == nil
}

// serveDASHByPath relays a DASH segment asked for by its origin path from
// key's origin (see dashSegmentKey).
func (s *Server) serveDASHByPath(w http.ResponseWriter, r *http.Request, key stream.Key) {
	origin := s.route(w, r, key)
	if origin == "" {
		return
	}
	s.proxyFile(w, r, origin, escapePath(r.URL.Path))
}

// dashMapper maps URLs of an MPD fetched from origin to
// "/_dash/<token>/<rest>?<query>", where the token names the longest
// directory of the URL's path that holds no template identifier and rest is
// the remainder (templates included). URLs on other hosts are left alone.
func (s *Server) dashMapper(c tokenCodec, origin string) uriMapper {
	signer := c.signer()
	return func(u *url.URL) (string, bool) {
		if !onOrigin(u, origin) {
			return "", false
		}
		p := u.EscapedPath()
		if p == "" {
			p = "/"
		}
		cut := len(p)
		if i := strings.IndexByte(p, '$'); i >= 0 {
			cut = i
		}
		dirEnd := strings.LastIndexByte(p[:cut], '/') + 1
		if dirEnd == 0 {
			return "", false
		}
		tok, err := signer.Encode(Token{Kind: TokenDir, Origin: origin, Path: p[:dirEnd]})
		if err != nil {
			return "", false
		}
		out := dashPrefix + tok + "/" + p[dirEnd:]
		if u.RawQuery != "" {
			out += "?" + u.RawQuery
		}
		return out, true
	}
}
