package httpstream

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
)

// servePlaylistByKey serves "/app/stream.m3u8" from key's origin. The
// client's query goes to the origin (SRS's hls_ctx, auth tokens).
//
// A stream that moved to another origin has its playlist renumbered by its
// epoch (epochPlaylist), and a reload during a move waits for the new
// origin (serveHeld).
func (s *Server) servePlaylistByKey(w http.ResponseWriter, r *http.Request, key stream.Key) {
	s.serveHeld(w, r, key, ".m3u8", func(w http.ResponseWriter) {
		origin := s.route(w, r, key)
		if origin == "" {
			return
		}
		c, ok := s.codec(w)
		if !ok {
			return
		}
		p := keyPath(key, ".m3u8")
		if q, ok := s.newSession(r, key, origin, p); ok {
			r = r.Clone(r.Context())
			r.URL.RawQuery = q
		}
		s.serveDocument(w, r, origin, p, s.hlsMapper(c, origin, p, key), s.hlsEpochFormat(key))
	})
}

// newSession handles a player that reloads SRS's per-viewer media playlist
// ("stream.m3u8?hls_ctx=A") of a stream that moved to another origin: the
// new origin does not know session A and answers with a master playlist
// that opens a session of its own ("stream.m3u8?hls_ctx=B"). A player that
// asked for a media playlist must not get a master playlist (FFmpeg's HLS
// reader crashes on it), so newSession returns the query of the new
// session's media playlist, to serve instead, and remembers it (bounded,
// see sessionMap), so that the player's later reloads with A reuse B
// rather than open a session each. The origin's answer is fetched through
// the document cache, so a player whose session the origin knows costs no
// second request. It reports false unless the request has a valid session
// id (validSessionID; an invalid one is ignored, and the request goes to
// the origin as it came) and the stream moved.
func (s *Server) newSession(r *http.Request, key stream.Key, origin, p string) (string, bool) {
	id := r.URL.Query().Get("hls_ctx")
	if !validSessionID(id) {
		return "", false
	}
	if e, _, _ := s.epoch(key); e == 0 {
		return "", false
	}
	stale := movedSessionKey(origin, p, id, r.URL.RawQuery)
	if q, ok := s.moved.get(stale); ok {
		return q, true
	}
	body, ok := s.fetchDocument(r, origin, p)
	if !ok || !bytes.Contains(body, tagStreamInf) {
		return "", false
	}
	base := &url.URL{Scheme: "http", Host: origin, RawQuery: r.URL.RawQuery}
	base.Path, _ = url.PathUnescape(p)
	base.RawPath = p
	for _, line := range strings.Split(string(body), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		u, err := base.Parse(line)
		if err != nil || !onOrigin(u, origin) || u.EscapedPath() != p || u.Query().Get("hls_ctx") == "" {
			return "", false
		}
		s.moved.put(stale, u.RawQuery)
		return u.RawQuery, true // the first variant: SRS lists one
	}
	return "", false
}

// maxSessionID bounds an SRS session id (hls_ctx) the node remembers a new
// session for; SRS makes ids of 8 characters.
const maxSessionID = 64

// validSessionID reports whether id can be an SRS session id (hls_ctx): 1 to
// maxSessionID characters of letters, digits, '-', '_', '.' and '~'.
func validSessionID(id string) bool {
	if id == "" || len(id) > maxSessionID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
		default:
			return false
		}
	}
	return true
}

// movedSessionKey is the sessionMap key of a stale session: the origin, the
// path, the session id and a SHA-256 digest of the whole query. Its size
// does not depend on what the client adds to the query, and a request
// reuses a new session only with the very query (authorization parameters
// included) that opened it.
func movedSessionKey(origin, p, id, query string) string {
	sum := sha256.Sum256([]byte(query))
	return origin + " " + p + " " + id + " " + string(sum[:])
}

// fetchDocument returns the origin's 200 answer for r's query at origin
// path p, through the document cache when there is one (the key
// serveDocument uses, so that it reuses the answer).
func (s *Server) fetchDocument(r *http.Request, origin, p string) ([]byte, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), s.fetchTimeout)
	defer cancel()
	query := r.URL.RawQuery
	hdr := originRequestHeader(r, documentDropHeaders)
	if c := s.docs; c != nil {
		obj, err := s.shared(ctx, c, origin+" "+p+"?"+query, func(ctx context.Context) (*object, time.Duration, error) {
			obj, err := s.fetchObject(ctx, c, hdr, origin, p, query)
			if err != nil {
				return nil, 0, err
			}
			return obj, s.documentTTL(obj.body, hlsFormat), nil
		})
		if err == nil && obj.status != http.StatusOK {
			return nil, false
		}
		if err == nil {
			return obj.body, true
		}
		if !errors.Is(err, errNotBuffered) {
			return nil, false
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, originURL(origin, p, query), nil)
	if err != nil {
		return nil, false
	}
	req.Header = hdr
	resp, err := s.transport.RoundTrip(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPlaylistSize+1))
	if err != nil || resp.StatusCode != http.StatusOK || len(body) > MaxPlaylistSize {
		return nil, false
	}
	return body, true
}

// sessionMap remembers, for players of moved streams, which new SRS
// session (query) serves a stale one (movedSessionKey). It is bounded in
// entries (maxMovedSessions) and bytes (maxMovedSessionBytes, keys and
// queries with entryOverhead each); each entry is forgotten
// movedSessionTTL after its last use, and when a bound is reached the least
// recently used goes. A new session's query longer than maxSessionQuery is
// not remembered. The zero value is ready to use with now set.
type sessionMap struct {
	mu    sync.Mutex
	now   func() time.Time
	lru   list.List // of *sessionEntry, most recently used first
	m     map[string]*list.Element
	bytes int64
}

type sessionEntry struct {
	stale string
	query string
	used  time.Time
}

func (e *sessionEntry) size() int64 { return int64(len(e.stale) + len(e.query) + entryOverhead) }

// Bounds of sessionMap.
const (
	maxMovedSessions     = 10000
	maxMovedSessionBytes = 4 << 20
	maxSessionQuery      = 1024
	movedSessionTTL      = 2 * time.Minute
)

func (m *sessionMap) get(stale string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.m[stale]
	if !ok {
		return "", false
	}
	e := el.Value.(*sessionEntry)
	now := m.now()
	if now.Sub(e.used) > movedSessionTTL {
		m.removeLocked(el)
		return "", false
	}
	e.used = now
	m.lru.MoveToFront(el)
	return e.query, true
}

func (m *sessionMap) put(stale, query string) {
	if len(query) > maxSessionQuery {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = make(map[string]*list.Element)
	}
	if el, ok := m.m[stale]; ok {
		m.removeLocked(el)
	}
	now := m.now()
	e := &sessionEntry{stale: stale, query: query, used: now}
	m.m[stale] = m.lru.PushFront(e)
	m.bytes += e.size()
	for el := m.lru.Back(); el != nil && now.Sub(el.Value.(*sessionEntry).used) > movedSessionTTL; el = m.lru.Back() {
		m.removeLocked(el)
	}
	for m.lru.Len() > maxMovedSessions || m.bytes > maxMovedSessionBytes {
		m.removeLocked(m.lru.Back())
	}
}

func (m *sessionMap) removeLocked(el *list.Element) {
	e := m.lru.Remove(el).(*sessionEntry)
	delete(m.m, e.stale)
	m.bytes -= e.size()
}

// stats returns the entries and bytes the map holds.
func (m *sessionMap) stats() (entries int, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len(), m.bytes
}

func (m *sessionMap) len() int {
	n, _ := m.stats()
	return n
}

// serveHLSToken serves "/_hls/<token>/<name>": a segment, key, init section
// or (for .m3u8 names) a variant playlist, which is rewritten in turn.
func (s *Server) serveHLSToken(w http.ResponseWriter, r *http.Request, rest string) {
	tokStr, name, ok := strings.Cut(rest, "/")
	if !ok {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	tok, ok := s.decodeToken(w, tokStr, TokenFile)
	if !ok {
		return
	}
	if name != path.Base(tok.Path) {
		writeError(w, http.StatusBadRequest, "name does not match token")
		return
	}
	if isPlaylistName(tok.Path) {
		c, _ := s.codec(w) // decodeToken had the key
		s.serveDocument(w, r, tok.Origin, tok.Path, s.hlsMapper(c, tok.Origin, "", stream.Key{}), hlsFormat)
		return
	}
	s.proxyFile(w, r, tok.Origin, tok.Path)
}

// isPlaylistName reports whether an origin path names an HLS playlist.
func isPlaylistName(p string) bool {
	return strings.HasSuffix(p, ".m3u8") || strings.HasSuffix(p, ".m3u")
}

// hlsMapper maps URIs of a playlist fetched from origin. A URI naming the
// playlist's own path (selfPath, "" for playlists reached by token) goes
// back to the stream URL routed by key with its query (SRS answers the
// first request with a master playlist pointing to
// "livestream.m3u8?hls_ctx=..."). Any other URI on the origin becomes
// "/_hls/<token>/<name>?<query>". URIs on other hosts are left alone.
func (s *Server) hlsMapper(c tokenCodec, origin, selfPath string, key stream.Key) uriMapper {
	signer := c.signer()
	return func(u *url.URL) (string, bool) {
		if !onOrigin(u, origin) {
			return "", false
		}
		p := u.EscapedPath()
		if selfPath != "" && p == selfPath {
			if q := withVhost(u.RawQuery, key); q != "" {
				return p + "?" + q, true
			}
			return p, true
		}
		tok, err := signer.Encode(Token{Kind: TokenFile, Origin: origin, Path: p})
		if err != nil {
			return "", false
		}
		out := hlsPrefix + tok + "/" + path.Base(p)
		if u.RawQuery != "" {
			out += "?" + u.RawQuery
		}
		return out, true
	}
}

// withVhost adds "vhost=" to a query when key's vhost is not the default
// and the query names none, so that the URL maps to the same key.
func withVhost(q string, key stream.Key) string {
	if key.Vhost == "" || key.Vhost == stream.DefaultVhost {
		return q
	}
	v, _ := url.ParseQuery(q)
	if v.Get("vhost") != "" || v.Get("domain") != "" {
		return q
	}
	if q != "" {
		q += "&"
	}
	return q + "vhost=" + url.QueryEscape(key.Vhost)
}

// onOrigin reports whether u is a plain http URL on origin ("host:port";
// a URL without a port means port 80), with no user info.
func onOrigin(u *url.URL, origin string) bool {
	if u.Scheme != "http" || u.User != nil || u.Opaque != "" {
		return false
	}
	host := u.Host
	if u.Port() == "" {
		host = strings.TrimSuffix(host, ":") + ":80"
	}
	return strings.EqualFold(host, origin)
}
