// Package api is the SRS-compatible HTTP API of srs-mesh (/api/v1/...): it
// answers cluster-wide questions by asking every origin, and proxies the rest
// of SRS's API to the origin a request names.
//
// Routes (all answers are JSON; CORS headers as SRS sends them; OPTIONS is
// answered with 200 and no body):
//
//	GET    /api/v1/versions        srs-mesh's own version, in SRS's shape
//	GET    /api/v1/summaries       every origin's summaries plus cluster totals
//	GET    /api/v1/streams         the streams of all origins, each entry with "origin" and "node"
//	GET    /api/v1/clients         the clients of all origins, likewise
//	GET    /api/v1/streams/{id}    the stream, found on whichever origin has it
//	DELETE /api/v1/streams/{id}    forwarded to the origin that has it (token)
//	GET    /api/v1/clients/{id}    the client, found on whichever origin has it
//	DELETE /api/v1/clients/{id}    kicks the client on the origin that has it (token)
//	*      /api/v1/...?origin=<id> proxied to that origin (the parameter is removed; token)
//
// When Config.Token is set, every request that may change an origin (any
// method but GET, HEAD and OPTIONS: DELETE, POST, PUT, PATCH...) and every
// request with ?origin= (which is proxied to that origin) must carry the
// token, as "Authorization: Bearer <token>" or "?token=<token>"; otherwise
// it is a 401 with a JSON error and a Bearer challenge (realm "srs-mesh").
// GET and HEAD without ?origin= (the cluster-wide answers: SRS's read API)
// and OPTIONS preflights need no token. The token is never sent to an
// origin or logged.
//
// When Config.Token is empty, those same calls are refused with a 403 and a
// JSON error, unless Config.OpenWrites says the port may take them from
// anyone (a port on loopback, or an operator who said --insecure).
//
// Reads that ask origins (summaries, streams, clients, one stream or
// client) are private while some known origin is sent credentials
// (Config.Credentials): that origin's API keeps its reads to those who hold
// them, and its answers name clients' addresses and URLs, which may hold
// publish tokens. Such reads follow the rule of writes: they need the token
// (401 with a JSON error and a Bearer challenge without it), and with no
// Token they are refused with a 403 unless Config.OpenWrites is set. The
// caller is refused before any origin is asked. Without credentials for any
// origin, reads are public, as SRS's read API is; /api/v1/versions, which
// asks no origin, always is.
//
// An origin that cannot be reached is named in answers with its transport's
// error (which holds its internal address) only to callers who may make the
// calls that need the token; anyone else reads "api: origin unreachable".
//
// Credentials an origin's API requires (SRS's http_api.auth) come from
// Config.Credentials, per origin, and are set as the Authorization header of
// every request sent to that origin; a client's own Authorization header is
// never forwarded in their place.
//
// A proxied call is built from the named origin's API endpoint (host:port,
// as the mesh replicates it), the checked path and the query without
// "origin" and "token"; the client's hop-by-hop headers, credentials
// (Authorization, Cookie, Proxy-*) and forwarding claims (Forwarded,
// X-Forwarded-*, X-Real-Ip) are dropped, and X-Forwarded-For,
// X-Forwarded-Host and X-Forwarded-Proto are set from the connection.
//
// Paths are checked before routing, on their escaped form: a path must be
// below /api/v1/ (the bare /api/v1 redirects to /api/v1/), and none of its
// segments may be empty ("//"; one trailing slash is kept, as SRS's
// collections answer at "/api/v1/streams/"), "." or ".." once decoded
// ("%2e%2e" included), or hold an encoded slash or backslash (%2f, %5c), a
// backslash, a control character (%00 included) or an encoded percent sign.
// Anything else is a 400 and reaches no origin.
//
// Aggregating answers ask every healthy origin (draining ones included)
// concurrently, each within Config.PerOriginTimeout and reading at most
// Config.MaxResponseBytes. An origin that fails is listed in the answer's
// "origins" array with "ok":false and its error; the answer is still a 200
// with what the other origins said. ?origin=<id> restricts an aggregating
// answer to one origin.
//
// SRS ids (vid-..., client ids) are per origin, so a stream or client is found
// by asking every origin; the first that answers HTTP 200 with code 0 owns it.
// ?origin=<id> skips the search.
//
// Errors made here are {"code":N,"message":"..."} with a 4xx or 5xx status:
// 400 for a bad path or a call that needs ?origin=, 404 for an unknown
// origin, 502 when the named origin cannot be reached, 503 when a stream or
// client is looked up while no origin can be asked. A stream or client that
// no origin has is a 404 with SRS's own codes (2048 for streams, 2049 for
// clients). Whatever an origin answers to a proxied call is relayed as it
// is.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
)

// Origins is the mesh's view of the origins, as this package needs it.
type Origins interface {
	// Origins returns every known origin with its replicated health. The
	// caller does not modify the slice.
	Origins() []OriginInfo
}

// OriginInfo is one origin and its health as the mesh sees it.
type OriginInfo struct {
	Origin   stream.Origin
	Healthy  bool
	Draining bool
}

// Defaults of Config.
const (
	DefaultPerOriginTimeout = 2 * time.Second
	DefaultMaxResponseBytes = 8 << 20
	// DefaultFanoutCount is the page size asked of every origin when the
	// client names no count (SRS's own default is 10).
	DefaultFanoutCount = 1000
	// MaxFanoutCount bounds start+count asked of one origin.
	MaxFanoutCount = 100000
)

// SRS error codes reused in answers.
const (
	codeStreamNotFound = 2048 // ERROR_RTMP_STREAM_NOT_FOUND
	codeClientNotFound = 2049 // ERROR_RTMP_CLIENT_NOT_FOUND
)

// Errors.
var (
	ErrNoOrigins         = errors.New("api: Config.Origins is required")
	ErrUnknownOrigin     = errors.New("api: unknown origin")
	ErrNoAPIEndpoint     = errors.New("api: origin has no HTTP API endpoint")
	ErrOriginUnhealthy   = errors.New("api: origin is unhealthy; not asked")
	ErrResponseTooLarge  = errors.New("api: origin answer too large")
	ErrOriginStatus      = errors.New("api: origin answered an HTTP error")
	ErrOriginCode        = errors.New("api: origin answered a non-zero code")
	ErrBadOriginAnswer   = errors.New("api: origin answer is not SRS JSON")
	ErrNoHealthyOrigin   = errors.New("api: no healthy origin with an HTTP API")
	ErrOriginParamNeeded = errors.New("api: this call goes to one origin")
	ErrBadPath           = errors.New("api: bad path")
	ErrUnauthorized      = errors.New("api: this call needs the mesh's token")
	ErrWritesClosed      = errors.New("api: this call can change an origin, and this node takes such calls only with a token, which it was not given")
	ErrReadsClosed       = errors.New("api: this call reads origins whose API needs credentials, and this node answers it only with a token, which it was not given")
	// ErrOriginUnreachable wraps the transport's error of a request to an
	// origin that could not be reached or broke off its answer.
	ErrOriginUnreachable = errors.New("api: origin unreachable")
)

// Config configures a Server.
type Config struct {
	// Origins is required.
	Origins Origins
	// NodeID names this node in answers ("server", and "node" on entries).
	NodeID string
	// Logger defaults to a logger that discards.
	Logger *slog.Logger
	// HTTPClient carries requests to origins. Default: a client of its own
	// (released by Close). Its own Timeout, if any, applies on top of
	// PerOriginTimeout. Redirects are never followed.
	HTTPClient *http.Client
	// PerOriginTimeout bounds each request to an origin, connect to last
	// byte. Default DefaultPerOriginTimeout.
	PerOriginTimeout time.Duration
	// MaxResponseBytes bounds what is read from one origin when its answer
	// is merged. Default DefaultMaxResponseBytes. Proxied answers are
	// streamed and not bounded.
	MaxResponseBytes int64
	// Version is srs-mesh's version ("1.2.3", "v1.2.3-rc1", "dev"),
	// answered by /api/v1/versions. Default "0.0.0-dev".
	Version string
	// Token is the mesh's bearer token. When set, every request but GET,
	// HEAD and OPTIONS, every request with ?origin=, and the reads of
	// origins with credentials must carry it (see the package doc).
	// Empty: see OpenWrites.
	Token string
	// OpenWrites, with an empty Token, lets anyone make the calls that
	// would need the token (writes, ?origin= calls, and the reads of
	// origins with credentials): right only for a port nobody else can
	// reach (loopback) or an operator who said so. False (the default)
	// refuses them with 403; with a Token it is ignored.
	OpenWrites bool
	// Credentials returns the Authorization header value to send to an
	// origin's API ("Bearer <token>", "Basic <base64>"), or "" for none.
	// It is asked for every request to that origin, and for every known
	// origin on every read that asks origins (an origin with credentials
	// makes them private; see the package doc), and must be cheap and safe
	// for concurrent use. Nil: no origin is sent credentials.
	Credentials func(originID string) string
}

// withDefaults fills in zero fields.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.PerOriginTimeout <= 0 {
		c.PerOriginTimeout = DefaultPerOriginTimeout
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.Version == "" {
		c.Version = "0.0.0-dev"
	}
	return c
}

// Server answers the SRS HTTP API for a mesh. It is safe for concurrent use.
type Server struct {
	cfg       Config
	client    *http.Client
	ownClient bool
	service   string // SRS's "service": a random id of this process's server
	pid       string
	handler   http.Handler
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Origins == nil {
		return nil, ErrNoOrigins
	}
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, pid: strconv.Itoa(os.Getpid())}
	var b [4]byte
	_, _ = rand.Read(b[:])
	s.service = hex.EncodeToString(b[:])
	base := cfg.HTTPClient
	if base == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// Origins are reached directly: a proxy named by the environment
		// (HTTP_PROXY) would be handed their credentials.
		tr.Proxy = nil
		tr.IdleConnTimeout = 30 * time.Second
		tr.MaxIdleConnsPerHost = 4
		base = &http.Client{Transport: tr}
		s.ownClient = true
	}
	// A copy that never follows redirects: SRS redirects "/api/v1/streams"
	// to "/api/v1/streams/", and a proxied redirect must reach the client.
	c := *base
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.client = &c
	s.handler = s.routes()
	return s, nil
}

// Handler returns the handler of /api/v1/. Paths outside it, and paths
// inside it that are not clean (see the package doc), get a JSON 400.
func (s *Server) Handler() http.Handler { return s.handler }

// Close releases idle connections to origins held by the default client. The
// handler stays usable.
func (s *Server) Close() {
	if s.ownClient {
		s.client.CloseIdleConnections()
	}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, p := range []string{"/api/v1/versions", "/api/v1/versions/{$}"} {
		mux.HandleFunc("GET "+p, s.handleVersions)
	}
	for _, p := range []string{"/api/v1/summaries", "/api/v1/summaries/{$}"} {
		mux.HandleFunc("GET "+p, s.privateRead(s.handleSummaries))
	}
	kinds := []listKind{
		{path: "streams", single: "stream", notFound: codeStreamNotFound},
		{path: "clients", single: "client", notFound: codeClientNotFound},
	}
	for _, l := range kinds {
		mux.HandleFunc("GET /api/v1/"+l.path, s.privateRead(s.handleList(l)))
		mux.HandleFunc("GET /api/v1/"+l.path+"/{$}", s.privateRead(s.handleList(l)))
		mux.HandleFunc("GET /api/v1/"+l.path+"/{id}", s.privateRead(s.handleOne(l)))
		mux.HandleFunc("DELETE /api/v1/"+l.path+"/{id}", s.handleOne(l))
	}
	// Every other path below /api/v1/ is proxied; checkPath lets no path
	// outside it through but apiRoot, which the mux redirects to /api/v1/.
	mux.HandleFunc("/api/v1/", s.handleProxy)
	return cors(checkPath(preflight(s.requireToken(mux))))
}

// cors adds the headers SRS adds to every API answer, errors included.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Headers", "*")
		h.Set("Access-Control-Allow-Methods", "*")
		h.Set("Access-Control-Expose-Headers", "*")
		h.Set("Access-Control-Allow-Credentials", "false")
		next.ServeHTTP(w, r)
	})
}

// preflight answers OPTIONS with 200 and no body, as SRS does. It is never
// sent to an origin.
func preflight(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// selectOrigins returns the origins a request asks: the one named by
// ?origin=, or all of them, sorted by id.
func (s *Server) selectOrigins(r *http.Request) ([]OriginInfo, error) {
	all := sortedOrigins(s.cfg.Origins.Origins())
	name, named := r.URL.Query()["origin"]
	if !named {
		return all, nil
	}
	id := ""
	if len(name) > 0 {
		id = name[0]
	}
	for _, o := range all {
		if o.Origin.ID == id {
			return []OriginInfo{o}, nil
		}
	}
	return nil, ErrUnknownOrigin
}

// askable reports why an origin is not asked in a fan-out (nil: ask it).
func askable(o OriginInfo) error {
	switch {
	case o.Origin.API == "":
		return ErrNoAPIEndpoint
	case !o.Healthy:
		return ErrOriginUnhealthy
	}
	return nil
}

// credentials is the Authorization header value for origin id, or "".
func (s *Server) credentials(id string) string {
	if s.cfg.Credentials == nil {
		return ""
	}
	return s.cfg.Credentials(id)
}

// timeoutCtx bounds one request to one origin.
func (s *Server) timeoutCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.PerOriginTimeout)
}
