// Package httpstream is the HTTP stream proxy of srs-mesh: HTTP-FLV and
// HTTP-TS (streaming reverse proxy), HLS (.m3u8 playlists with .ts or fMP4
// segments) and DASH (.mpd with fMP4 segments) in front of SRS-compatible
// origins.
//
// A stream URL ("/app/stream.flv|.ts|.m3u8|.mpd") is routed by its stream key.
// Segment URLs do not name a stream reliably, so playlists and MPDs are
// rewritten to point segments at token URLs that any node can serve with no
// per-viewer state:
//
//	/_hls/<token>/<name>[?query]   token names one origin file (TokenFile)
//	/_dash/<token>/<rest>[?query]  token names an origin directory (TokenDir)
//
// A token carries the origin's HTTP endpoint and the origin path, signed
// with HMAC-SHA256 under Config.TokenSecret, which every node of a mesh
// shares. It holds no time, so a segment keeps one URI on every reload and
// every node (players such as hls.js require it), and a rewritten document
// is the same bytes from any node. The query the client sends on any URL is
// passed to the origin.
//
// Of the client's request headers only those an origin has use for reach it
// (see forwardable): Accept, Accept-Language, Range, If-Range,
// If-None-Match, If-Modified-Since, User-Agent, Referer, Origin,
// Cache-Control, Pragma, and Accept-Encoding for streams and segments;
// requests for playlists and MPDs leave out Accept-Encoding, ranges and
// revalidation, since the proxy needs the whole current document. The node
// sets X-Forwarded-For and X-Real-IP to the IP of the TCP peer,
// X-Forwarded-Proto to the connection's scheme and X-Forwarded-Host to the
// request's Host; what the client sends in them is never passed on. The
// origin's response headers reach the client, less hop-by-hop ones.
//
// Every answer allows cross-origin reads (web players run on other sites),
// OPTIONS preflights are answered, and Cache-Control lets a CDN share
// playlists for half their target duration and segments for
// Config.SegmentMaxAge.
//
// A node shares what it fetches between its viewers. Playlists and MPDs
// are reused, as the origin sent them, for requests with the same origin,
// path and query within a short TTL (Config.PlaylistCacheTTL); segments,
// init sections and keys are kept by origin object in an LRU bounded by
// Config.CacheBytes. Concurrent requests for what is not stored share one
// origin request, made with the first client's query and headers; the
// others' never reach the origin. Answers from the cache carry the
// origin's headers. Server.Stats has the counters.
//
// Playlist URIs are rewritten to absolute paths on the node; a variant that
// names the playlist's own path (SRS's "livestream.m3u8?hls_ctx=...") goes
// back to the stream URL, routed by key with its query. MPDs get a <BaseURL>
// naming a "/_dash/" directory token. DASH clients that ignore BaseURL still
// reach the origin by the segment's own path (nginx-rtmp's
// "/app/stream-<t>.m4v", SRS's "/app/stream/<name>.m4s"), routed by key.
//
// Answers the proxy makes itself are JSON ({"code":N,"message":"..."}): 400
// for a bad stream key or token, 403 for an expired token, 404 for unknown
// paths, 405 for methods other than GET and HEAD, 502 when the origin cannot
// be reached or sends an invalid document, 503 when no origin is routed.
// Anything the origin answers (a 404 included) is relayed as it is.
//
// With Config.FanOut, HTTP-FLV players share one origin request per
// stream and query on a node (package protocols/fanout): the first
// player's request opens it, and players with another query get their own,
// so that an origin's on_play check sees every distinct authorization.
// HTTP-TS and the audio-only streams keep one origin request per player.
package httpstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/internal/rawio"

	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/protocols/internal/drain"
	"github.com/srs-mesh/srs-mesh/protocols/internal/route"
	"github.com/srs-mesh/srs-mesh/stream"
)

// TokenAuthority is what segment tokens need from the mesh.
type TokenAuthority interface {
	// TokenKey returns the key every node signs and checks tokens with, or
	// false while this node does not know it yet.
	TokenKey() ([]byte, bool)
	// KnownHTTPOrigin reports whether hostport is the HTTP endpoint of an
	// origin of the mesh.
	KnownHTTPOrigin(hostport string) bool
}

// track starts a live player session of key with the Sessions, if any, and
// returns its end and the counter of body bytes sent to the client (nil
// without Sessions). A player sends nothing the node reads: its in counter
// stays 0.
func (s *Server) track(key stream.Key, proto string) (end func(), out *atomic.Uint64) {
	if s.sessions == nil {
		return func() {}, nil
	}
	in, out := new(atomic.Uint64), new(atomic.Uint64)
	return s.sessions.Track(key, proto, stream.KindPlay, in, out), out
}

// meteredWriter counts the body bytes written through it into n.
type meteredWriter struct {
	http.ResponseWriter
	n *atomic.Uint64
}

func (w meteredWriter) Write(b []byte) (int, error) {
	k, err := w.ResponseWriter.Write(b)
	w.n.Add(uint64(k))
	return k, err
}

// Unwrap lets http.ResponseController reach the connection (flushes and
// deadlines).
func (w meteredWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Config configures a Server. Zero durations take the defaults below.
type Config struct {
	// Router is required.
	Router stream.Router
	// Epochs, when not nil, keeps a stream's playlists and manifests valid
	// for players across a move between origins (see Epochs and
	// MoveHold). nil: documents pass as their origin wrote them, and
	// MoveHold is off.
	Epochs Epochs
	// Sessions, when not nil, is told about every live stream response,
	// with its byte counters.
	Sessions stream.Sessions
	// Logger defaults to slog.Default(). The caller narrows it (e.g. with
	// "proto"); the server adds per-request attributes.
	Logger *slog.Logger
	// Tokens, when set, supplies the HMAC key of segment tokens (the mesh
	// replicates a random one; it may be unknown just after start, and
	// documents are answered 503 until it is) and the origins a token may
	// name: a token for any other HTTP endpoint is refused.
	Tokens TokenAuthority
	// TokenSecret is the HMAC key of segment tokens when Tokens is nil.
	// Every node of a mesh must use the same secret so that any node serves
	// any node's tokens. Without Tokens, a token may name any origin.
	// Required.
	TokenSecret []byte
	// DialTimeout bounds connecting to an origin. Default DefaultDialTimeout.
	DialTimeout time.Duration
	// WriteTimeout bounds each write of a streamed body (FLV, TS) to the
	// client: a player that stops reading for this long is dropped, and
	// its origin request ends with it. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// Transport carries requests to origins. Default: an http.Transport
	// using DialTimeout. Redirects are never followed; they reach the client.
	Transport http.RoundTripper
	// SegmentMaxAge is the Cache-Control max-age of segments, init sections
	// and keys whose origin sent no Cache-Control. Default
	// DefaultSegmentMaxAge.
	SegmentMaxAge time.Duration
	// CacheBytes bounds the memory of the segment cache: segments, init
	// sections and keys (everything served through "/_hls/" and "/_dash/"
	// tokens and the DASH path fallback) are kept by origin object (the
	// origin's HTTP endpoint and path, not the token and not the query) for
	// SegmentMaxAge, the least recently used going first. Objects larger
	// than MaxCacheObject or half of CacheBytes are relayed uncached. The
	// same amount bounds the bodies being fetched into the cache. Default
	// DefaultCacheBytes; negative disables the cache, and every segment
	// request then goes to the origin.
	CacheBytes int64
	// PlaylistCacheTTL is how long an origin's playlist or MPD is reused
	// for requests with the same origin, path and query. Zero derives it
	// from each document: half the target duration of a media playlist,
	// half the minimumUpdatePeriod of an MPD (one second without one), one
	// second for a master playlist or a document that says neither; at
	// most 30 s. Negative disables the document cache.
	PlaylistCacheTTL time.Duration
	// FanOut, when not nil, serves HTTP-FLV players (GET of
	// "/app/stream.flv") of a stream from one origin request per node:
	// players whose stream and query are identical share it (see
	// serveFLVFanOut), so a player never rides on the origin's approval of
	// another query. New players get the metadata, sequence headers and
	// current GOP first; a player that falls behind skips to the next
	// keyframe, and one that stays behind is disconnected. The registry is
	// the caller's, shared with the RTMP server so that RTMP and HTTP-FLV
	// players of a stream share one upstream; its Config bounds the
	// upstreams and says how long they linger, and the caller closes it
	// after the Server. HTTP-TS, audio-only streams and HEAD requests are
	// relayed one origin request per player, as every HTTP-FLV player is
	// when FanOut is nil.
	FanOut *fanout.Registry
	// RTMPUpstream, when not nil, opens the shared upstream of HTTP-FLV
	// players as an RTMP play of the origin whenever the origin serves
	// RTMP (the RTMP server's OpenFLV), so that origins without HTTP-FLV
	// (nginx-rtmp) serve HTTP-FLV players, and RTMP and HTTP-FLV players
	// share one upstream. Origins with no RTMP endpoint are asked over
	// HTTP.
	RTMPUpstream fanout.Upstream
	// MoveHold bounds how long a playlist or MPD request waits while its
	// stream moves between origins (see Server.serveHeld): an origin that
	// gives no answer, or the new origin of a stream that moved without
	// the document yet, is asked again until then. It applies only with
	// Epochs. Default DefaultMoveHold; negative
	// disables it.
	MoveHold time.Duration
	// ViewerWindow is how long an HLS or DASH viewer counts in the
	// estimate of viewers (Stats.Viewers) after its last request. Default
	// DefaultViewerWindow.
	ViewerWindow time.Duration
	// Now is the clock that ends version 1 tokens (see Token) and expires
	// cached answers. Default time.Now.
	Now func() time.Time
}

// Defaults for Config.
const (
	DefaultDialTimeout  = 3 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	DefaultMoveHold     = 4 * time.Second
	// originHeaderTimeout bounds the wait for an origin's response headers.
	originHeaderTimeout = 10 * time.Second
)

// Configuration errors.
var (
	ErrNoRouter = errors.New("httpstream: Config.Router is required")
	ErrNoSecret = errors.New("httpstream: Config.Tokens or Config.TokenSecret is required")
)

// Server proxies HTTP streams to origins. It is safe for concurrent use.
type Server struct {
	router    stream.Router
	epochs    Epochs // nil: no renumbering
	sessions  stream.Sessions
	log       *slog.Logger
	tokens    tokenCodec
	authority TokenAuthority // nil: tokens is the key and names any origin
	writeTTL  time.Duration
	segCache  string // Cache-Control of segments the origin left unset
	transport http.RoundTripper
	now       func() time.Time
	moveHold  time.Duration // 0: no hold

	segments     *objectCache     // nil: disabled
	segTTL       time.Duration    // how long a segment is stored
	docs         *objectCache     // nil: disabled
	docTTL       time.Duration    // 0: derived from each document
	fetchTimeout time.Duration    // bounds a shared fetch
	pieces       sync.Pool        // write buffers of cached answers (timedWriter)
	hubs         *fanout.Registry // Config.FanOut: shared FLV upstreams, the caller's
	fanOutBytes  atomic.Uint64    // written to hijacked FLV players
	moved        sessionMap       // new SRS sessions of players of moved streams
	holds        holdTable        // retry loops of documents held across moves
	viewers      *viewerTable     // estimate of HLS and DASH viewers
	hijacked     drain.Group      // FLV players on connections taken over
	rtmpUp       fanout.Upstream

	ctx    context.Context // canceled by Close; ends every response
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // one per request in flight
}

// New validates cfg, applies defaults and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Router == nil {
		return nil, ErrNoRouter
	}
	if len(cfg.TokenSecret) == 0 && cfg.Tokens == nil {
		return nil, ErrNoSecret
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.SegmentMaxAge <= 0 {
		cfg.SegmentMaxAge = DefaultSegmentMaxAge
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.MoveHold == 0 {
		cfg.MoveHold = DefaultMoveHold
	}
	if cfg.ViewerWindow <= 0 {
		cfg.ViewerWindow = DefaultViewerWindow
	}
	if cfg.Epochs == nil || cfg.MoveHold < 0 {
		cfg.MoveHold = 0
	}
	if cfg.Transport == nil {
		d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
		cfg.Transport = &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				nc, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return rawio.Wrap(nc), nil
			},
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: originHeaderTimeout,
		}
	}
	s := &Server{
		router:    cfg.Router,
		epochs:    cfg.Epochs,
		sessions:  cfg.Sessions,
		log:       cfg.Logger,
		tokens:    tokenCodec{key: append([]byte(nil), cfg.TokenSecret...)},
		authority: cfg.Tokens,
		writeTTL:  cfg.WriteTimeout,
		segCache:  maxAge(cfg.SegmentMaxAge),
		transport: cfg.Transport,
		now:       cfg.Now,
		moveHold:  cfg.MoveHold,
		moved:     sessionMap{now: cfg.Now},
		viewers:   newViewerTable(cfg.ViewerWindow, maxViewers, cfg.Now),

		segments:     newObjectCache(cfg.CacheBytes, maxCacheEntries, MaxCacheObject, cfg.Now),
		segTTL:       cfg.SegmentMaxAge,
		docTTL:       max(cfg.PlaylistCacheTTL, 0),
		fetchTimeout: fetchTimeout,
	}
	if cfg.PlaylistCacheTTL >= 0 {
		s.docs = newObjectCache(maxDocCacheBytes, maxDocCacheEntries, MaxPlaylistSize, cfg.Now)
	}
	s.hubs, s.rtmpUp = cfg.FanOut, cfg.RTMPUpstream
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Handler returns the handler serving every stream URL. Paths it does not
// know get a 404 JSON answer.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Close ends every streaming response, waits for the handlers in flight to
// return and refuses new requests with 503. It is safe to call twice.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if t, ok := s.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return nil
}

// enter registers a request in flight; it fails once Close has begun.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// URL prefixes of token routes.
const (
	hlsPrefix  = "/_hls/"
	dashPrefix = "/_dash/"
)

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		writeError(w, http.StatusServiceUnavailable, "server is shutting down")
		return
	}
	defer s.wg.Done()
	if r.Method == http.MethodOptions {
		servePreflight(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", corsAllowMethods)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	// Requests end when the client goes away or the server closes.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	rc := http.NewResponseController(w)
	stop := context.AfterFunc(s.ctx, func() {
		cancel()
		rc.SetWriteDeadline(time.Now()) // unblock a write to a stalled client
	})
	defer stop()
	r = r.WithContext(ctx)

	p := r.URL.EscapedPath()
	switch {
	case strings.HasPrefix(p, hlsPrefix):
		s.viewers.note(viewerHLS, r)
		s.serveHLSToken(w, r, p[len(hlsPrefix):])
		return
	case strings.HasPrefix(p, dashPrefix):
		s.viewers.note(viewerDASH, r)
		s.serveDASHToken(w, r, p[len(dashPrefix):])
		return
	}
	key, suffix, err := stream.FromHTTPPath(r.URL.Path, r.URL.RawQuery)
	if errors.Is(err, stream.ErrUnknownSuffix) {
		if key, ok := dashSegmentKey(r.URL.Path, r.URL.RawQuery); ok {
			s.viewers.note(viewerDASH, r)
			s.serveDASHByPath(w, r, key)
			return
		}
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch suffix {
	case ".flv", ".ts", ".aac", ".mp3":
		s.serveLive(w, r, key, suffix)
	case ".m3u8":
		s.viewers.note(viewerHLS, r)
		s.servePlaylistByKey(w, r, key)
	case ".mpd":
		s.viewers.note(viewerDASH, r)
		s.serveMPDByKey(w, r, key)
	default:
		writeError(w, http.StatusNotFound, "not found")
	}
}

// route asks the router for key's origin and returns its HTTP endpoint, or
// writes the error answer (503) and returns "".
func (s *Server) route(w http.ResponseWriter, r *http.Request, key stream.Key) string {
	o, ok := s.routeOrigin(w, r, key)
	if !ok {
		return ""
	}
	if o.HTTP == "" {
		writeError(w, http.StatusServiceUnavailable, "origin has no HTTP endpoint")
		return ""
	}
	return o.HTTP
}

// routeOrigin is route returning the whole origin record, whatever
// endpoints it has.
func (s *Server) routeOrigin(w http.ResponseWriter, r *http.Request, key stream.Key) (stream.Origin, bool) {
	// Every HTTP stream URL is a play.
	o, err := route.For(s.router, true)(r.Context(), key)
	if err != nil {
		if r.Context().Err() == nil {
			s.log.Warn("no origin", "stream", key.String(), "err", err)
			writeError(w, http.StatusServiceUnavailable, noOriginMessage(err))
		}
		return stream.Origin{}, false
	}
	return o, true
}

// noOriginMessage is the message of the 503 answered when the router found
// no origin: it says so when every origin is at its max_streams.
func noOriginMessage(err error) string {
	if errors.Is(err, stream.ErrOriginsFull) {
		return "every origin is at its max_streams: the mesh takes no new stream"
	}
	return "no origin for stream"
}

// keyPath is the escaped origin path of key's stream with a suffix.
func keyPath(key stream.Key, suffix string) string {
	return escapePath(key.Path() + suffix)
}

// apiError is the JSON body of every error the proxy itself answers.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// writeError answers with status and a short JSON message.
func writeError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(apiError{Code: status, Message: msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(b)+1))
	h.Set("Cache-Control", cacheNone)
	setCORS(h)
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
