// Package bearer reads the mesh's token from HTTP requests, the one way
// every endpoint that needs it does: "Authorization: Bearer <token>", or,
// where a client can only send a URL (SRS's heartbeat), "?token=<token>".
package bearer

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/srs-mesh/srs-mesh/stream/httpjson"
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

// Guard checks requests for the mesh's token. An empty Token is a mesh
// without one. Refusals are 401 with a JSON message and a Bearer challenge;
// the token is never logged.
type Guard struct {
	Token string
}

// Require lets r through when the mesh has no token or r carries it (as a
// bearer header, or ?token=).
func (g Guard) Require(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if g.Token != "" && !Match(FromRequest(r), g.Token) {
			refuse(w, "missing or wrong token")
			return
		}
		h(w, r)
	}
}

// RequireHeader guards operator writes against cross-site requests: they
// need an Authorization header, which a web page cannot make a browser send
// to another site without a preflight the mesh never grants. With a token it
// must be "Bearer <token>" (the query form is not taken); without one, any
// Authorization header will do ("Bearer -").
func (g Guard) RequireHeader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ok := r.Header.Get("Authorization") != ""
		if g.Token != "" {
			ok = Match(FromHeader(r), g.Token)
		}
		if !ok {
			refuse(w, "missing or wrong token: an Authorization header is required")
			return
		}
		h(w, r)
	}
}

// Operator reports whether r comes from an operator: it carries the token,
// or, on a mesh without one, it comes from loopback.
func (g Guard) Operator(r *http.Request) bool {
	if g.Token != "" {
		return Match(FromRequest(r), g.Token)
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

func refuse(w http.ResponseWriter, msg string) {
	Challenge(w)
	httpjson.Error(w, http.StatusUnauthorized, msg)
}
