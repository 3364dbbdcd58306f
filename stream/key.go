// Package stream is the pure domain of srs-mesh: the canonical stream Key and
// the functions that derive it from each protocol's request, the Origin record,
// the RTCSession record of a WebRTC ICE session, the deterministic origin
// selection policy, and the two interfaces every protocol server relays
// through (Router and Sessions), so that each is declared once.
//
// The package does no I/O, reads no clock and starts no goroutines, so every
// node of a mesh (and every Raft replica) computes the same answer from the
// same input.
package stream

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultVhost is the vhost SRS uses when a client names none.
const DefaultVhost = "__defaultVhost__"

// Limits on the parts of a key. They bound memory per key and keep keys
// printable in logs and tables.
const (
	MaxPartLen = 256
	MaxKeyLen  = 3*MaxPartLen + 2
)

// Errors returned by the key parsers. Callers map them to their protocol's
// own error (an RTMP onStatus, an HTTP 400, an SRT reject).
var (
	ErrEmptyApp      = errors.New("stream: empty app")
	ErrEmptyStream   = errors.New("stream: empty stream name")
	ErrPartTooLong   = errors.New("stream: key part too long")
	ErrBadCharacter  = errors.New("stream: key part has a control character, space or '?'")
	ErrBadKey        = errors.New("stream: key is not vhost/app/stream")
	ErrBadURL        = errors.New("stream: malformed URL")
	ErrDotSegment    = errors.New("stream: key part is '.' or '..'")
	ErrUnknownSuffix = errors.New("stream: path has no known stream suffix")
)

// Key is the canonical name of a stream: vhost, app and stream name. Every
// protocol produces the same Key for the same stream, so an RTMP publish and
// an HLS, SRT or WebRTC play meet at the same origin. App may contain '/'
// (SRS allows nested apps); Vhost and Stream never do.
type Key struct {
	Vhost  string
	App    string
	Stream string
}

// String renders the key as "vhost/app/stream", the form stored in the mesh.
func (k Key) String() string {
	return k.Vhost + "/" + k.App + "/" + k.Stream
}

// Path renders the key as "/app/stream", the form used in origin URLs.
func (k Key) Path() string {
	return "/" + k.App + "/" + k.Stream
}

// Validate reports whether every part of the key is non-empty, bounded and free
// of characters that could change its meaning (controls, spaces, '?', '#').
func (k Key) Validate() error {
	if k.App == "" {
		return ErrEmptyApp
	}
	if k.Stream == "" {
		return ErrEmptyStream
	}
	if k.Vhost == "" {
		return fmt.Errorf("%w: empty vhost", ErrBadKey)
	}
	for _, p := range []string{k.Vhost, k.Stream} {
		if strings.Contains(p, "/") {
			return fmt.Errorf("%w: %q contains '/'", ErrBadKey, p)
		}
	}
	for _, p := range []string{k.Vhost, k.App, k.Stream} {
		if len(p) > MaxPartLen {
			return ErrPartTooLong
		}
		for rest := p; ; {
			seg, tail, more := strings.Cut(rest, "/")
			if seg == "" {
				return fmt.Errorf("%w: empty path segment in %q", ErrBadKey, p)
			}
			if seg == "." || seg == ".." {
				return ErrDotSegment
			}
			if !more {
				break
			}
			rest = tail
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			if c <= ' ' || c == 0x7f || c == '?' || c == '#' || c == '\\' {
				return ErrBadCharacter
			}
		}
	}
	return nil
}

// ParseKey parses the "vhost/app/stream" form produced by Key.String. The
// app is everything between the first and the last '/'.
func ParseKey(s string) (Key, error) {
	first := strings.IndexByte(s, '/')
	last := strings.LastIndexByte(s, '/')
	if first < 0 || first == last {
		return Key{}, fmt.Errorf("%w: %q", ErrBadKey, s)
	}
	k := Key{Vhost: s[:first], App: s[first+1 : last], Stream: s[last+1:]}
	if err := k.Validate(); err != nil {
		return Key{}, err
	}
	return k, nil
}

// normalizeVhost maps an absent vhost to DefaultVhost. The Host header, the
// tcUrl host and the port never select the vhost: only an explicit ?vhost=
// does, so the same stream reached through any node name has one key.
func normalizeVhost(v string) string {
	v = strings.TrimSpace(v)
	if v == "" {
		return DefaultVhost
	}
	return strings.ToLower(v)
}

// SplitQuery splits "name?a=b" into "name" and "a=b". The query is returned
// unchanged so that it can be forwarded to the origin as the client sent it.
func SplitQuery(s string) (name, query string) {
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// vhostFromQuery returns the vhost named by a "vhost=" (or SRS's legacy
// "domain=") parameter of a raw query, or "" when there is none. A malformed
// query names no vhost.
func vhostFromQuery(rawQuery string) string {
	if rawQuery == "" {
		return ""
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil && len(q) == 0 {
		return ""
	}
	if v := q.Get("vhost"); v != "" {
		return v
	}
	return q.Get("domain")
}

// cleanPath trims leading and trailing '/' and rejects empty inner segments.
func cleanPath(p string) string {
	return strings.Trim(p, "/")
}
