package api

import (
	"net/http"

	"github.com/srs-mesh/srs-mesh/stream/bearer"
	"github.com/srs-mesh/srs-mesh/stream/httpjson"
)

// needsToken reports whether r must carry the mesh's token: every request
// that may change an origin (any method but GET, HEAD and OPTIONS) and
// every request that names an origin (?origin=), which is proxied to it.
// Requests of GET or HEAD without ?origin= read the cluster-wide answers,
// which are public as SRS's read API is.
func needsToken(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return r.URL.Query().Has("origin")
	}
	return true
}

// requireToken answers 401 with a JSON error and a Bearer challenge to a
// request that needsToken but does not carry token. With an empty token,
// such a request is refused with 403 and a JSON error unless open is set,
// which lets every request through. The token is never logged.
func requireToken(token string, open bool, next http.Handler) http.Handler {
	if token == "" {
		if open {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if needsToken(r) {
				httpjson.Error(w, http.StatusForbidden, ErrWritesClosed.Error())
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if needsToken(r) && !bearer.Match(bearer.FromRequest(r), token) {
			bearer.Challenge(w)
			httpjson.Error(w, http.StatusUnauthorized, ErrUnauthorized.Error())
			return
		}
		next.ServeHTTP(w, r)
	})
}
