package api

import (
	"errors"
	"net/http"

	"github.com/srs-mesh/srs-mesh/stream/bearer"
	"github.com/srs-mesh/srs-mesh/stream/httpjson"
)

// needsToken reports whether r must carry the mesh's token whatever the
// origins: every request that may change an origin (any method but GET,
// HEAD and OPTIONS) and every request that names an origin (?origin=),
// which is proxied to it. Requests of GET or HEAD without ?origin= read the
// cluster-wide answers, which are public as SRS's read API is, unless an
// origin has credentials (see privateRead).
func needsToken(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return r.URL.Query().Has("origin")
	}
	return true
}

// operator reports whether r may make the calls that need the token: it
// carries the token, or the node has none and Config.OpenWrites lets
// anyone make them. The token is never logged.
func (s *Server) operator(r *http.Request) bool {
	if s.cfg.Token == "" {
		return s.cfg.OpenWrites
	}
	return bearer.Match(bearer.FromRequest(r), s.cfg.Token)
}

// refuse answers a call that needs the token from a caller operator did
// not admit: 401 with a JSON error and a Bearer challenge when the node has
// a token, else 403 with closed as the JSON error.
func (s *Server) refuse(w http.ResponseWriter, closed error) {
	if s.cfg.Token == "" {
		httpjson.Error(w, http.StatusForbidden, closed.Error())
		return
	}
	bearer.Challenge(w)
	httpjson.Error(w, http.StatusUnauthorized, ErrUnauthorized.Error())
}

// requireToken refuses every request that needsToken from a caller that is
// not an operator.
func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if needsToken(r) && !s.operator(r) {
			s.refuse(w, ErrWritesClosed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// privateRead guards a read that asks origins (summaries, lists, one stream
// or client): while some known origin is sent credentials, its API's reads
// are private at the origin, so the read needs the token as a write does;
// a caller that is not an operator is refused before any origin is asked.
// With no origin sent credentials the read is public.
func (s *Server) privateRead(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.operator(r) && s.privateReads() {
			s.refuse(w, ErrReadsClosed)
			return
		}
		next(w, r)
	}
}

// privateReads reports whether some known origin is sent credentials.
func (s *Server) privateReads() bool {
	if s.cfg.Credentials == nil {
		return false
	}
	for _, o := range s.cfg.Origins.Origins() {
		if s.cfg.Credentials(o.Origin.ID) != "" {
			return true
		}
	}
	return false
}

// forCaller returns answers with the errors r may read. An origin that
// could not be reached fails with its transport's error, which names its
// internal address; only an operator reads it, anyone else reads
// ErrOriginUnreachable alone. answers itself is not changed.
func (s *Server) forCaller(r *http.Request, answers []answer) []answer {
	if s.operator(r) {
		return answers
	}
	out := append([]answer(nil), answers...)
	for i := range out {
		if errors.Is(out[i].Err, ErrOriginUnreachable) {
			out[i].Err = ErrOriginUnreachable
		}
	}
	return out
}
