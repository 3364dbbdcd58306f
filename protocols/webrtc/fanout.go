package webrtc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/srs-mesh/srs-mesh/stream"
)

// Viewers terminates play offers (WHEP and SRS's /rtc/v1/play/) at the node
// instead of relaying them to the origin (Config.Viewers): one upstream per
// stream, fanned out to every viewer of the node. Package sfu implements it.
type Viewers interface {
	// Play answers a viewer's offer for key. query is the play request's
	// query (WHEP's URL, or the query of SRS's streamurl): viewers of one
	// key with different queries do not share an upstream. Errors wrap
	// ErrViewerLimit, ErrBadOffer, ErrNoStream or stream.ErrNoOrigin when
	// they are one of those.
	Play(ctx context.Context, key stream.Key, query url.Values, offer []byte) (ViewerAnswer, error)
	// Stop ends the viewer id and reports whether this node had it.
	Stop(id string) bool
}

// Standbys keeps a WHIP publisher as its stream's standby (a backup
// encoder, Config.Standbys) when the origin refused its publish because the
// stream is live there: the node answers the offer itself, holds the
// session, and publishes it to the origin when the active publisher ends.
// Package sfu implements it. A standby is ended with Viewers.Stop (its
// ViewerParam).
type Standbys interface {
	// Standby answers a refused publisher's offer for key at the node and
	// keeps it as key's standby. query is the WHIP request's query, sent
	// on to the origin when the standby publishes. Errors wrap
	// ErrNotStandby when the publisher is not kept (the stream is not live
	// at its origin, or has a standby on this node, or the node keeps as
	// many as it may): the origin's refusal then stands.
	Standby(ctx context.Context, key stream.Key, query url.Values, offer []byte) (ViewerAnswer, error)
}

// ErrNotStandby says a refused publisher is not kept as a standby.
var ErrNotStandby = errors.New("webrtc: not kept as a standby")

// keepStandby offers a WHIP publish that the origin refused (status; 0:
// the origin closed the request unanswered, as SRS does for a busy stream)
// to Config.Standbys. It reports whether it answered the client: false
// leaves the origin's refusal to be passed on. Refusals of authorization
// (401, 403) and other 4xx but 400 and 409 are not a busy stream and are
// passed on at once.
func (s *Server) keepStandby(w http.ResponseWriter, r *http.Request, ex offerExchange, sdpOffer []byte, status int) bool {
	if s.cfg.Standbys == nil || ex.play || pathOf(r) != PathWHIP {
		return false
	}
	if status/100 == 4 && status != http.StatusConflict && status != http.StatusBadRequest {
		return false
	}
	ans, err := s.cfg.Standbys.Standby(r.Context(), ex.offer.key, r.URL.Query(), sdpOffer)
	if err != nil {
		if !errors.Is(err, ErrNotStandby) {
			ex.log.Warn("refused publisher not kept as a standby", "err", err)
		}
		return false
	}
	s.st.answers.Add(1)
	rq := ViewerParam + "=" + url.QueryEscape(ans.ID)
	if ans.Session != "" {
		rq += "&" + SessionParam + "=" + url.QueryEscape(ans.Session)
	}
	ex.log.Info("publisher kept at the node as the stream's standby", "standby", ans.ID)
	w.Header().Set("Location", (&url.URL{Path: PathSession, RawQuery: rq}).String())
	w.Header().Set("Content-Type", "application/sdp")
	w.WriteHeader(http.StatusCreated)
	w.Write(ans.SDP)
	return true
}

// ViewerAnswer is what Viewers.Play answered.
type ViewerAnswer struct {
	// SDP is the answer, with the node's candidate.
	SDP []byte
	// ID names the viewer on the node that answered (ViewerParam).
	ID string
	// Session, when not empty, is the viewer's ICE session in the
	// SessionStore, whose Resource ends the viewer through its node
	// (SessionParam): a DELETE through another node reaches it.
	Session string
}

// Tap takes the UDP flows of the node's own WebRTC peers (Config.Viewers)
// off the relay's port (Config.Tap). Both methods run on the relay's read
// loop: they must not block, and must copy p to keep it.
type Tap interface {
	// ClaimBinding reports whether a STUN Binding request p whose
	// USERNAME is user belongs to the tap, and takes it if so.
	ClaimBinding(p, user []byte, from netip.AddrPort) bool
	// Take reports whether p from an address the relay does not know
	// belongs to one of the tap's flows, and takes it if so.
	Take(p []byte, from netip.AddrPort) bool
}

// Errors of Viewers.Play, mapped to HTTP statuses by the signalling.
var (
	ErrViewerLimit = errors.New("webrtc: viewer limit reached")
	ErrBadOffer    = errors.New("webrtc: offer not acceptable")
	ErrNoStream    = errors.New("webrtc: stream not found at its origin")
)

// ViewerParam is the query parameter of a fanned-out viewer's Location: a
// DELETE carrying it through the node that answered ends the viewer (with
// SessionParam, through any node). Who may: whoever holds the Location; a
// viewer's id is 96 random bits that only the answer's Location carries.
const ViewerParam = "mesh_viewer"

// WriteToUDPAddrPort sends p from the relay's socket (for the Tap's peers).
// It fails with ErrClosed before ServeUDP and after Close.
func (s *Server) WriteToUDPAddrPort(p []byte, to netip.AddrPort) (int, error) {
	s.mu.RLock()
	pc, closed := s.pc, s.closed
	s.mu.RUnlock()
	if pc == nil || closed {
		return 0, ErrClosed
	}
	return pc.WriteToUDPAddrPort(p, to)
}

// fanOutPlay answers a play offer through Config.Viewers. It reports false
// when the offer is not for it (no Viewers configured, or a publish).
func (s *Server) fanOutPlay(w http.ResponseWriter, r *http.Request, sdpOffer []byte, streamURL string) (answer []byte, location string, ok bool) {
	of, status, err := parseOffer(sdpOffer, r.URL.Query(), streamURL)
	if err != nil {
		s.fail(w, status, err.Error())
		return nil, "", false
	}
	q := r.URL.Query()
	if streamURL != "" {
		if u, err := url.Parse(streamURL); err == nil {
			q = u.Query()
		}
	}
	ans, err := s.cfg.Viewers.Play(r.Context(), of.key, q, sdpOffer)
	if err != nil {
		status := http.StatusBadGateway
		switch {
		case errors.Is(err, ErrViewerLimit), errors.Is(err, stream.ErrNoOrigin):
			status = http.StatusServiceUnavailable
		case errors.Is(err, ErrBadOffer):
			status = http.StatusBadRequest
		case errors.Is(err, ErrNoStream):
			status = http.StatusNotFound
		case errors.Is(err, context.DeadlineExceeded):
			status = http.StatusGatewayTimeout
		}
		s.log.Warn("viewer refused", "stream", of.key.String(), "peer", r.RemoteAddr, "err", err)
		s.fail(w, status, err.Error())
		return nil, "", false
	}
	s.st.answers.Add(1)
	rq := ViewerParam + "=" + url.QueryEscape(ans.ID)
	if ans.Session != "" {
		rq += "&" + SessionParam + "=" + url.QueryEscape(ans.Session)
	}
	loc := (&url.URL{Path: PathSession, RawQuery: rq}).String()
	s.log.Info("viewer answered at the node", "stream", of.key.String(), "viewer", ans.ID, "peer", r.RemoteAddr)
	return ans.SDP, loc, true
}

// isPlay reports whether a signalling path is a play (WHEP, SRS's play).
func isPlay(path string) bool {
	return path == PathWHEP || path == PathWHIPPlay || path == PathPlay
}

// stopViewer ends a fanned-out viewer named by a DELETE's ViewerParam
// when this node has it, and reports whether it answered the client: a
// viewer of another node is ended through its stored session
// (SessionParam), whose Resource is that node's.
func (s *Server) stopViewer(w http.ResponseWriter, id string, session string) bool {
	if s.cfg.Viewers != nil && s.cfg.Viewers.Stop(id) {
		w.WriteHeader(http.StatusOK)
		return true
	}
	if session == "" {
		s.fail(w, http.StatusNotFound, ErrNoSession.Error())
		return true
	}
	return false
}

// pathOf is the request's path with a trailing slash.
func pathOf(r *http.Request) string {
	p := r.URL.Path
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}

// fanOutJSON answers SRS's JSON play API through Config.Viewers, in SRS's
// reply format: {"code":0,"server":..,"sessionid":..,"sdp":..}.
func (s *Server) fanOutJSON(w http.ResponseWriter, r *http.Request, req srsRequest) {
	ans, loc, ok := s.fanOutPlay(w, r, []byte(req.SDP), req.StreamURL)
	if !ok {
		return
	}
	id := ""
	if u, err := url.Parse(loc); err == nil {
		id = u.Query().Get(ViewerParam)
	}
	out, err := json.Marshal(struct {
		Code      int    `json:"code"`
		Server    string `json:"server"`
		SessionID string `json:"sessionid"`
		SDP       string `json:"sdp"`
	}{0, "srs-mesh", id, string(ans)})
	if err != nil {
		s.fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}
