package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/srs-mesh/srs-mesh/mesh/clustertls"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/mesh/streams"
	"github.com/srs-mesh/srs-mesh/mesh/telemetry"
	"github.com/srs-mesh/srs-mesh/mesh/voters"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/stream/bearer"
	"github.com/srs-mesh/srs-mesh/stream/httpjson"
)

// Handler returns the system API of the node:
//
//	POST /api/v1/srs/register            SRS heartbeat (token)   -> {"code":0,"data":{"origin":"<id>"}}
//	POST /api/v1/srs/register/{token}    the same, token in the path (see below)
//	GET  /mesh/v1/status                 Status
//	GET  /mesh/v1/streams                streams.Cluster (asks every alive node, 1 s each; package telemetry)
//	GET  /mesh/v1/local/sessions         streams.Local (this node's live sessions)
//	GET  /mesh/v1/events[?limit=N]       Events (every node's event log, merged; default 100, at most 1000)
//	GET  /mesh/v1/local/events           LocalEvents (this node's event log)
//	GET  /mesh/v1/history                History (every node's last 15 minutes of throughput)
//	GET  /mesh/v1/local/history          LocalHistory (this node's)
//	POST /mesh/v1/origins/{id}/drain     (Authorization header)  -> {"code":0,"data":{"origin":"<id>","draining":true,"move":false}}
//	     ?move=true: also move the origin's live streams away, make-before-break
//	POST /mesh/v1/origins/{id}/undrain   (Authorization header)  -> {"code":0,"data":{"origin":"<id>","draining":false}}
//	GET  /healthz                        200 while the node runs
//	GET  /readyz                         200 with a leader and the log applied, else 503
//
// The GET routes are read-only and open like /mesh/v1/status: the system API
// is for operators and origins and is never exposed with the client ports
// (docs/security.md). What could help an attacker (why an origin is
// unhealthy: addresses and dial errors) is shown only to operators (see
// handleStatus).
//
// Errors are {"code":<HTTP status>,"message":"..."} with a 4xx or 5xx status.
// The token (Config.Token) is accepted as "Authorization: Bearer <token>" or
// "?token=<token>".
//
// SRS's heartbeat client posts to the path of heartbeat.url and drops its
// query, so registration also takes the token as the last path segment:
// heartbeat.url http://mesh:12025/api/v1/srs/register/<token>. A token in the
// path must be the right one (401 otherwise); an empty one ("register/")
// falls back to the header and query forms. When no token is configured, any
// path token is accepted, so SRS configs that carry a token keep working
// against a mesh that does not require one. The token is never logged.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/srs/register", n.method(http.MethodPost, n.guard.Require(n.handleRegister)))
	mux.HandleFunc("/api/v1/srs/register/{token...}", n.method(http.MethodPost, n.pathAuth(n.handleRegister)))
	mux.HandleFunc("/mesh/v1/status", n.method(http.MethodGet, n.handleStatus))
	mux.HandleFunc("/mesh/v1/streams", n.method(http.MethodGet, n.tel.HandleStreams))
	mux.HandleFunc(streams.PathLocal, n.method(http.MethodGet, n.tel.HandleLocalSessions))
	mux.HandleFunc("/mesh/v1/events", n.method(http.MethodGet, n.tel.HandleEvents))
	mux.HandleFunc(telemetry.PathLocalEvents, n.method(http.MethodGet, n.tel.HandleLocalEvents))
	mux.HandleFunc("/mesh/v1/history", n.method(http.MethodGet, n.tel.HandleHistory))
	mux.HandleFunc(telemetry.PathLocalHistory, n.method(http.MethodGet, n.tel.HandleLocalHistory))
	mux.HandleFunc("/mesh/v1/origins/{id}/drain", n.method(http.MethodPost, n.guard.RequireHeader(n.handleDrain(true))))
	mux.HandleFunc("/mesh/v1/origins/{id}/undrain", n.method(http.MethodPost, n.guard.RequireHeader(n.handleDrain(false))))
	mux.HandleFunc("/healthz", n.method(http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, map[string]any{"code": 0, "data": map[string]string{"status": "ok"}})
	}))
	mux.HandleFunc("/readyz", n.method(http.MethodGet, n.handleReady))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Error(w, http.StatusNotFound, "no such API: "+r.URL.Path)
	})
	return mux
}

// internalHandler is the node-to-node API, served on the cluster port only
// (mutual TLS when Config.TLS is set, so only members reach it):
//
//	POST /mesh/v1/internal/apply   a command a follower forwards (token)
//	POST /mesh/v1/internal/leave   a member's graceful leave (token; with TLS, only its own)
//	GET  /mesh/v1/local/sessions   this node's live sessions, for /mesh/v1/streams
//	GET  /mesh/v1/local/events     this node's event log, for /mesh/v1/events
//	GET  /mesh/v1/local/history    this node's history, for /mesh/v1/history
func (n *Node) internalHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(pathInternalApply, n.method(http.MethodPost, n.guard.Require(n.handleInternalApply)))
	mux.HandleFunc(pathInternalLeave, n.method(http.MethodPost, n.guard.Require(n.handleInternalLeave)))
	mux.HandleFunc(voters.PathProgress, n.method(http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		n.voters.HandleProgress(w, r) // n.voters is set once Raft runs, before any member knows this one
	}))
	mux.HandleFunc(streams.PathLocal, n.method(http.MethodGet, n.tel.HandleLocalSessions))
	mux.HandleFunc(telemetry.PathLocalEvents, n.method(http.MethodGet, n.tel.HandleInternalLocalEvents))
	mux.HandleFunc(telemetry.PathLocalHistory, n.method(http.MethodGet, n.tel.HandleLocalHistory))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Error(w, http.StatusNotFound, "no such internal API: "+r.URL.Path)
	})
	return mux
}

// method rejects other methods with a JSON 405 (HEAD is allowed for GET).
func (n *Node) method(m string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != m && !(m == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", m)
			httpjson.Error(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
			return
		}
		h(w, r)
	}
}

// pathAuth is auth for routes whose last path segment, {token...}, may carry
// the token (the only form SRS's heartbeat can send).
func (n *Node) pathAuth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got := r.PathValue("token")
		if got == "" {
			n.guard.Require(h)(w, r)
			return
		}
		if n.cfg.Token == "" {
			if n.pathTokenIgnored.CompareAndSwap(false, true) {
				n.log.Info("registration URL carries a token but none is configured; accepting it", "path", redactedRegisterPath)
			}
			h(w, r)
			return
		}
		if !bearer.Match(got, n.cfg.Token) {
			n.log.Debug("registration with a wrong token in the path", "path", redactedRegisterPath, "peer", r.RemoteAddr)
			bearer.Challenge(w)
			httpjson.Error(w, http.StatusUnauthorized, ErrUnauthorized.Error())
			return
		}
		n.log.Debug("registration with the token in the path", "path", redactedRegisterPath, "peer", r.RemoteAddr)
		h(w, r)
	}
}

// redactedRegisterPath is what logs show of a registration path with a token.
const redactedRegisterPath = "/api/v1/srs/register/<redacted>"

// writeErrorFor maps a Node error to an HTTP status.
func writeErrorFor(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrClosed), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	case errors.Is(err, ErrUnknownOrigin):
		status = http.StatusNotFound
	case errors.Is(err, ErrRegistrationRefused):
		status = http.StatusForbidden
	case errors.Is(err, ErrBadCommand), errors.Is(err, stream.ErrRegistration):
		status = http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized):
		status = http.StatusBadGateway
	}
	httpjson.Error(w, status, err.Error())
}

func (n *Node) handleRegister(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, stream.MaxRegistrationBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpjson.Error(w, http.StatusRequestEntityTooLarge, "registration body larger than "+strconv.Itoa(stream.MaxRegistrationBytes)+" bytes")
			return
		}
		httpjson.Error(w, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	remoteIP, _, _ := net.SplitHostPort(r.RemoteAddr)
	o, load, err := stream.ParseHeartbeat(body, remoteIP)
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := n.Heartbeat(r.Context(), o, load); err != nil {
		n.log.Warn("origin registration failed", "origin", o.ID, "err", err)
		writeErrorFor(w, err)
		return
	}
	httpjson.OK(w, map[string]string{"origin": o.ID})
}

// handleStatus answers the status document. Why an origin is unhealthy (a
// dial error names addresses and ports) is shown only to operators: with a
// token, requests that carry it; without one, requests from loopback.
// Everyone else sees healthy or unhealthy.
func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	st := n.Status()
	if !n.guard.Operator(r) {
		for i := range st.Origins {
			if st.Origins[i].HealthReason != "" {
				st.Origins[i].HealthReason = "unhealthy"
			}
		}
	}
	if !n.guard.Operator(r) {
		telemetry.Redact(st.RecentEvents)
	}
	httpjson.Write(w, http.StatusOK, st)
}

func (n *Node) handleReady(w http.ResponseWriter, r *http.Request) {
	if n.leaving.Load() {
		httpjson.Error(w, http.StatusServiceUnavailable, "node is draining")
		return
	}
	if h, ok := n.fsm.Halted(); ok {
		httpjson.Error(w, http.StatusServiceUnavailable, "replicated state halted: "+h.Reason)
		return
	}
	if !n.ready() {
		httpjson.Error(w, http.StatusServiceUnavailable, "no leader or log not applied yet")
		return
	}
	httpjson.OK(w, map[string]string{"status": "ready"})
}

func (n *Node) handleDrain(draining bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if id == "" {
			httpjson.Error(w, http.StatusBadRequest, "missing origin id")
			return
		}
		move := false
		if draining {
			switch r.URL.Query().Get("move") {
			case "", "0", "false":
			case "1", "true":
				move = true
			default:
				httpjson.Error(w, http.StatusBadRequest, "move must be true or false")
				return
			}
		}
		set := func(ctx context.Context, id string) error { return n.SetDraining(ctx, id, draining) }
		if move {
			set = n.Evacuate
		}
		if err := set(r.Context(), id); err != nil {
			writeErrorFor(w, err)
			return
		}
		httpjson.OK(w, map[string]any{"origin": id, "draining": draining, "move": move})
	}
}

// handleInternalApply applies a command forwarded by a follower: 403 for a
// command followers never forward, 421 when this node is not the leader (the
// follower retries elsewhere), 412 for a type that a member cannot apply
// yet or when this replica halted (gate); it never forwards again, so
// forwarding cannot loop.
func (n *Node) handleInternalApply(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, state.MaxCommandBytes))
	if err != nil {
		httpjson.Error(w, http.StatusRequestEntityTooLarge, "command too large")
		return
	}
	c, err := state.Decode(data)
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if !state.Forwardable(c.Type()) {
		httpjson.Error(w, http.StatusForbidden, "command "+c.Type().String()+" is the leader's own and is never forwarded")
		return
	}
	if !n.IsLeader() {
		httpjson.Error(w, http.StatusMisdirectedRequest, ErrNotLeader.Error())
		return
	}
	if err := n.gate(c.Type()); err != nil {
		httpjson.Error(w, http.StatusPreconditionFailed, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RouteTimeout)
	defer cancel()
	if mv, ok := c.(*state.MoveCmd); ok && !n.originFailing(ctx, mv.From) {
		// A member's word is not enough to move a stream: the leader
		// checks that the origin failed, as the asking node did.
		httpjson.Error(w, http.StatusConflict, ErrOriginAnswers.Error()+": "+mv.From)
		return
	}
	f := n.raft.Apply(data, n.cfg.RouteTimeout)
	if err := f.Error(); err != nil {
		if ctx.Err() == nil && !n.IsLeader() {
			httpjson.Error(w, http.StatusMisdirectedRequest, err.Error())
			return
		}
		httpjson.Error(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	res, _ := f.Response().(state.Result)
	res.Index = f.Index()
	httpjson.OK(w, res)
}

func (n *Node) handleInternalLeave(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || req.ID == "" {
		httpjson.Error(w, http.StatusBadRequest, "body must be {\"id\":\"<node id>\"}")
		return
	}
	if n.cfg.TLS != nil {
		if peer, err := clustertls.PeerOfRequest(r); err != nil || peer != req.ID {
			httpjson.Error(w, http.StatusForbidden, "a member may only ask to remove itself")
			return
		}
	}
	removed, err := n.removeOnLeave(req.ID)
	if errors.Is(err, ErrNotLeader) {
		httpjson.Error(w, http.StatusMisdirectedRequest, err.Error())
		return
	}
	if err != nil {
		httpjson.Error(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	httpjson.OK(w, map[string]any{"id": req.ID, "removed": removed})
}
