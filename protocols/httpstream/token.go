package httpstream

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strings"
	"time"
)

// A segment token names an origin resource without any state on the node
// that issued it: it carries the origin's HTTP endpoint ("host:port"), the
// origin path and an HMAC over both. Every node of a mesh shares the HMAC
// key, so a playlist fetched from one node may have its segments fetched
// from any other.
//
// A token is a pure function of the key and the origin object: it holds no
// time. The same segment therefore gets the same URI on every reload of its
// playlist and on every node, which players require (hls.js treats a changed
// URI under an unchanged media sequence number as a broken playlist) and
// which lets HTTP caches share playlists and segments between viewers. A
// token grants no more than its playlist did: one file (or one directory for
// DASH) of one origin, fetched with the client's own query, which the origin
// still authorizes. Rotating the key revokes every token.
//
// Wire form (before base64url without padding):
//
//	version(1)=2 kind(1) len(origin)(uvarint) origin len(path)(uvarint) path mac(16)
//
// where mac is HMAC-SHA256 over everything before it, truncated to 128 bits.
// Version 1 tokens, issued by earlier releases, also carried an expiry
// (uvarint unix seconds after kind); they are still accepted until that
// expiry, so that a rolling upgrade does not break players.
const (
	tokenVersion   = 2
	tokenVersionV1 = 1
	tokenMACLen    = 16
	// MaxTokenLen bounds an encoded token; longer input is rejected before it
	// is decoded.
	MaxTokenLen = 1024
	// maxTokenField bounds the origin and path carried in a token.
	maxTokenField = 512
)

// TokenKind says how the path in a token is used.
type TokenKind byte

const (
	// TokenFile tokens name exactly one origin path (HLS segments, keys,
	// init sections and variant playlists).
	TokenFile TokenKind = 1
	// TokenDir tokens name a directory ending in '/'; any path below it may
	// be fetched (DASH segment templates resolved against a BaseURL).
	TokenDir TokenKind = 2
)

// Token errors. Callers answer ErrTokenExpired (an expired version 1 token)
// with 403 and the others with 400.
var (
	ErrTokenMalformed = errors.New("httpstream: malformed token")
	ErrTokenTooLong   = errors.New("httpstream: token too long")
	ErrTokenSignature = errors.New("httpstream: token signature mismatch")
	ErrTokenExpired   = errors.New("httpstream: token expired")
	ErrTokenVersion   = errors.New("httpstream: unknown token version")
)

// Token is the decoded content of a segment token.
type Token struct {
	Kind TokenKind
	// Origin is the origin's HTTP endpoint, "host:port".
	Origin string
	// Path is the escaped origin path: the file for TokenFile, a directory
	// ending in '/' for TokenDir.
	Path string
}

// tokenCodec signs and verifies tokens with one key.
type tokenCodec struct {
	key []byte
}

// Encode returns the base64url form of t signed with the codec's key. It
// fails only when a field is out of bounds.
func (c tokenCodec) Encode(t Token) (string, error) {
	return c.signer().Encode(t)
}

// tokenSigner encodes many tokens with one HMAC state. It is not safe for
// concurrent use; a rewriter uses one per document.
type tokenSigner struct {
	mac hash.Hash
}

// signer returns a tokenSigner for the codec's key.
func (c tokenCodec) signer() *tokenSigner {
	return &tokenSigner{mac: hmac.New(sha256.New, c.key)}
}

// Encode is tokenCodec.Encode with the signer's HMAC state.
func (s *tokenSigner) Encode(t Token) (string, error) {
	if err := t.check(); err != nil {
		return "", err
	}
	var raw [2 + 2*binary.MaxVarintLen64 + 2*maxTokenField + tokenMACLen]byte
	b := raw[:0]
	b = append(b, tokenVersion, byte(t.Kind))
	b = binary.AppendUvarint(b, uint64(len(t.Origin)))
	b = append(b, t.Origin...)
	b = binary.AppendUvarint(b, uint64(len(t.Path)))
	b = append(b, t.Path...)
	s.mac.Reset()
	s.mac.Write(b)
	var sum [sha256.Size]byte
	b = append(b, s.mac.Sum(sum[:0])[:tokenMACLen]...)
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// sign appends the truncated MAC of b to b.
func (c tokenCodec) sign(b []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write(b)
	var sum [sha256.Size]byte
	return append(b, m.Sum(sum[:0])[:tokenMACLen]...)
}

// Decode verifies s and returns its content. A version 1 token whose expiry
// is not after now is rejected with ErrTokenExpired (only after its
// signature has been checked, so the error never confirms a forged token's
// fields).
func (c tokenCodec) Decode(s string, now time.Time) (Token, error) {
	if len(s) > MaxTokenLen {
		return Token{}, ErrTokenTooLong
	}
	var raw [MaxTokenLen]byte
	n, err := base64.RawURLEncoding.Decode(raw[:], []byte(s))
	if err != nil {
		return Token{}, fmt.Errorf("%w: base64: %v", ErrTokenMalformed, err)
	}
	b := raw[:n]
	if len(b) < 2+tokenMACLen {
		return Token{}, fmt.Errorf("%w: %d bytes is too short", ErrTokenMalformed, n)
	}
	body, mac := b[:len(b)-tokenMACLen], b[len(b)-tokenMACLen:]
	m := hmac.New(sha256.New, c.key)
	m.Write(body)
	var sum [sha256.Size]byte
	if !hmac.Equal(m.Sum(sum[:0])[:tokenMACLen], mac) {
		return Token{}, ErrTokenSignature
	}
	if body[0] != tokenVersion && body[0] != tokenVersionV1 {
		return Token{}, fmt.Errorf("%w: %d", ErrTokenVersion, body[0])
	}
	t := Token{Kind: TokenKind(body[1])}
	rest := body[2:]
	var expiry time.Time
	if body[0] == tokenVersionV1 {
		exp, k := binary.Uvarint(rest)
		if k <= 0 || exp > 1<<40 {
			return Token{}, fmt.Errorf("%w: expiry", ErrTokenMalformed)
		}
		rest = rest[k:]
		expiry = time.Unix(int64(exp), 0)
	}
	var ok bool
	if t.Origin, rest, ok = readField(rest); !ok {
		return Token{}, fmt.Errorf("%w: origin", ErrTokenMalformed)
	}
	if t.Path, rest, ok = readField(rest); !ok {
		return Token{}, fmt.Errorf("%w: path", ErrTokenMalformed)
	}
	if len(rest) != 0 {
		return Token{}, fmt.Errorf("%w: %d trailing bytes", ErrTokenMalformed, len(rest))
	}
	if err := t.check(); err != nil {
		return Token{}, err
	}
	if !expiry.IsZero() && !now.Before(expiry) {
		return Token{}, ErrTokenExpired
	}
	return t, nil
}

// readField reads a uvarint length and that many bytes.
func readField(b []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxTokenField || uint64(len(b)-k) < n {
		return "", nil, false
	}
	return string(b[k : k+int(n)]), b[k+int(n):], true
}

// check validates the fields of a token: a known kind, a plausible
// "host:port" origin, and an absolute origin path free of dot segments,
// queries, fragments, backslashes and control characters. It runs on encode
// and on decode, so a token never names a path outside what its issuer saw.
func (t Token) check() error {
	if t.Kind != TokenFile && t.Kind != TokenDir {
		return fmt.Errorf("%w: kind %d", ErrTokenMalformed, t.Kind)
	}
	if t.Origin == "" || len(t.Origin) > maxTokenField || strings.ContainsAny(t.Origin, "/?#@\\ ") || !strings.Contains(t.Origin, ":") {
		return fmt.Errorf("%w: origin %q", ErrTokenMalformed, t.Origin)
	}
	if len(t.Path) > maxTokenField || !cleanOriginPath(t.Path) {
		return fmt.Errorf("%w: path %q", ErrTokenMalformed, t.Path)
	}
	if (t.Kind == TokenDir) != strings.HasSuffix(t.Path, "/") {
		return fmt.Errorf("%w: path %q does not fit kind %d", ErrTokenMalformed, t.Path, t.Kind)
	}
	return nil
}

// cleanOriginPath reports whether p is an absolute, escaped URL path with no
// '.' or '..' segment, no empty inner segment, and no character that would
// end the path or confuse a server ('?', '#', '\\', controls, spaces).
func cleanOriginPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c == 0x7f || c == '?' || c == '#' || c == '\\' {
			return false
		}
	}
	return cleanRelPath(p[1:], true)
}

// cleanRelPath reports whether the relative path p has no dot segments and
// (unless it is a directory) no empty segments. Escaped dots ("%2e") count
// as dots.
func cleanRelPath(p string, allowTrailingSlash bool) bool {
	if p == "" {
		return allowTrailingSlash
	}
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		if seg == "" {
			if i == len(segs)-1 && allowTrailingSlash {
				continue
			}
			return false
		}
		s := strings.ReplaceAll(strings.ToLower(seg), "%2e", ".")
		if s == "." || s == ".." || strings.Contains(strings.ToLower(seg), "%2f") || strings.Contains(strings.ToLower(seg), "%5c") {
			return false
		}
	}
	return true
}

// decodeToken verifies a token of the given kind that names an origin of
// the mesh, or answers 400 (403 when it expired, 503 without a key) and
// returns false.
func (s *Server) decodeToken(w http.ResponseWriter, str string, kind TokenKind) (Token, bool) {
	c, ok := s.codec(w)
	if !ok {
		return Token{}, false
	}
	tok, err := c.Decode(str, s.now())
	switch {
	case err == ErrTokenExpired:
		writeError(w, http.StatusForbidden, "token expired; reload the playlist")
		return Token{}, false
	case err != nil:
		writeError(w, http.StatusBadRequest, "invalid token")
		return Token{}, false
	case tok.Kind != kind:
		writeError(w, http.StatusBadRequest, "invalid token")
		return Token{}, false
	case s.authority != nil && !s.authority.KnownHTTPOrigin(tok.Origin):
		writeError(w, http.StatusBadRequest, "the token names no origin of this mesh")
		return Token{}, false
	}
	return tok, true
}

// codec returns the token codec with the current key, or answers 503 and
// returns false while the mesh's key is not known here.
func (s *Server) codec(w http.ResponseWriter) (tokenCodec, bool) {
	if s.authority == nil {
		return s.tokens, true
	}
	key, ok := s.authority.TokenKey()
	if !ok {
		writeError(w, http.StatusServiceUnavailable, "the mesh has no segment-token key yet")
		return tokenCodec{}, false
	}
	return tokenCodec{key: key}, true
}
