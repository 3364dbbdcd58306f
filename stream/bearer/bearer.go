// Package bearer reads the mesh's token from HTTP requests, the one way
// every endpoint that needs it does: "Authorization: Bearer <token>", or,
// where a client can only send a URL (SRS's heartbeat), "?token=<token>".
package bearer

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// FromHeader returns the token of a bearer Authorization header, or "".
func FromHeader(r *http.Request) string {
	if scheme, v, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(v)
	}
	return ""
}

// FromRequest returns the token of a bearer Authorization header, else of
// the query's "token", else "".
func FromRequest(r *http.Request) string {
	if t := FromHeader(r); t != "" {
		return t
	}
	return r.URL.Query().Get("token")
}

// Match reports whether got is the non-empty token want, in time that does
// not depend on where they differ.
func Match(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// Challenge sets the WWW-Authenticate header of a 401 answer.
func Challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="srs-mesh"`)
}
