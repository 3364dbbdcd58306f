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
// request that needsToken but does not carry token. An empty token lets
// every request through. The token is never logged.
func requireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
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
