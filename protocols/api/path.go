package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/srs-mesh/srs-mesh/stream/httpjson"
)

// apiPrefix is the part of every path this package routes.
const apiPrefix = "/api/v1/"

// apiRoot is the one path outside apiPrefix that is routed: it redirects to
// apiPrefix, as SRS's collections redirect to their trailing-slash form.
const apiRoot = "/api/v1"

// cleanPath checks the escaped path of a request (url.URL.EscapedPath) and
// returns it decoded. It accepts only paths below apiPrefix whose segments
// are all non-empty (one trailing slash is kept: SRS's collections answer
// "/api/v1/streams/") and, once percent-decoded, are not "." or "..", hold
// no '/', '\\', '%' (so that decoding again changes nothing) and no control
// character (NUL included). Every other path gets an error wrapping
// ErrBadPath that says why.
//
// An accepted path decodes to the returned string and has no dot segment,
// so no origin that decodes it once (or again) walks out of /api/v1/.
func cleanPath(escaped string) (string, error) {
	rest, ok := strings.CutPrefix(escaped, apiPrefix)
	if !ok {
		return "", fmt.Errorf("%w: not below %s", ErrBadPath, apiPrefix)
	}
	var b strings.Builder
	b.Grow(len(escaped))
	b.WriteString(apiPrefix)
	segs := strings.Split(rest, "/")
	for i, seg := range segs {
		if seg == "" {
			if i == len(segs)-1 {
				break // "/api/v1/" or a trailing slash
			}
			return "", fmt.Errorf("%w: empty segment", ErrBadPath)
		}
		if containsFold(seg, "%2f") || containsFold(seg, "%5c") {
			return "", fmt.Errorf("%w: encoded slash or backslash", ErrBadPath)
		}
		dec, err := url.PathUnescape(seg)
		if err != nil {
			return "", fmt.Errorf("%w: bad escape", ErrBadPath)
		}
		if dec == "." || dec == ".." {
			return "", fmt.Errorf("%w: dot segment", ErrBadPath)
		}
		for j := 0; j < len(dec); j++ {
			switch c := dec[j]; {
			case c < 0x20 || c == 0x7f:
				return "", fmt.Errorf("%w: control character", ErrBadPath)
			case c == '/' || c == '\\':
				return "", fmt.Errorf("%w: slash or backslash in a segment", ErrBadPath)
			case c == '%':
				return "", fmt.Errorf("%w: encoded percent sign", ErrBadPath)
			}
		}
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(dec)
	}
	if strings.HasSuffix(rest, "/") {
		b.WriteByte('/')
	}
	return b.String(), nil
}

// containsFold reports whether s contains the ASCII string sub in any case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// checkPath answers 400 for a request whose path cleanPath refuses, and
// otherwise passes it on with its URL's path replaced by the clean one, so
// that routing and everything sent to an origin use that. apiRoot passes
// as it is.
func checkPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		escaped := r.URL.EscapedPath()
		if r.URL.Opaque != "" {
			escaped = r.URL.Opaque // "scheme:opaque": never below apiPrefix
		} else if escaped == apiRoot {
			next.ServeHTTP(w, r)
			return
		}
		p, err := cleanPath(escaped)
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("%v: %q", err, escaped))
			return
		}
		r2 := *r
		u := *r.URL
		u.Path, u.RawPath = p, ""
		r2.URL = &u
		next.ServeHTTP(w, &r2)
	})
}
