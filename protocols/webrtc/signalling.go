package webrtc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/internal/route"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Signalling paths. Mount the Handler on "/rtc/v1/"; a request whose path
// lost that prefix (http.StripPrefix) gets it back, so that the origin sees
// the path the client used.
const (
	PathWHIP     = "/rtc/v1/whip/"
	PathWHEP     = "/rtc/v1/whep/"
	PathWHIPPlay = "/rtc/v1/whip-play/"
	PathPublish  = "/rtc/v1/publish/"
	PathPlay     = "/rtc/v1/play/"
	// PathSession is the resource path the node hands out when the origin's
	// Location is not itself under /rtc/v1/.
	PathSession = "/rtc/v1/session/"
)

// SessionParam is the query parameter of a rewritten Location that names the
// session ("answerUfrag:offerUfrag"); a DELETE carrying it ends the session.
const SessionParam = "mesh_session"

// maxBody bounds offers, answers and JSON bodies.
const maxBody = 256 << 10

// Signalling errors.
var (
	ErrNoSession = errors.New("webrtc: no such session")
	errBadJSON   = errors.New("webrtc: malformed JSON body")
)

// Handler returns the signalling handler: WHIP, WHEP, SRS's JSON publish and
// play API, DELETE of the resources it handed out, and CORS preflight.
//
// Offers are limited per client address (Config.OfferRate): past the limit
// they get 429 with a Retry-After header. An offer whose session the store
// refuses (the mesh's table full of sessions relays carry) gets 503, and the
// WHIP/WHEP resource the origin handed out is deleted. Errors are
// {"code":<status>,"message":...}.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	setCORS(w.Header())
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusOK)
		return
	}
	if s.ctx.Err() != nil {
		s.fail(w, http.StatusServiceUnavailable, ErrClosed.Error())
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/rtc/v1/") {
		u := *r.URL
		u.Path, u.RawPath = "/rtc/v1/"+strings.TrimPrefix(u.Path, "/"), ""
		r = r.WithContext(r.Context())
		r.URL = &u
	}
	path := r.URL.Path
	if !strings.HasSuffix(path, "/") {
		path += "/"
	}
	switch {
	case r.Method == http.MethodDelete:
		s.serveDelete(w, r)
	case r.Method != http.MethodPost:
		s.fail(w, http.StatusMethodNotAllowed, "method not allowed")
	case s.live.Draining():
		s.fail(w, http.StatusServiceUnavailable, "node is draining; offer to another node")
	case path == PathWHIP || path == PathWHEP || path == PathWHIPPlay:
		if s.admitOffer(w, r) {
			s.serveWHIP(w, r)
		}
	case path == PathPublish || path == PathPlay:
		if s.admitOffer(w, r) {
			s.serveJSON(w, r)
		}
	default:
		s.fail(w, http.StatusNotFound, "no such API: "+r.URL.Path)
	}
}

// setCORS allows any origin, as SRS does, so that browser pages served from
// elsewhere can signal.
func setCORS(h http.Header) {
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, HEAD, PUT, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "*")
	h.Set("Access-Control-Expose-Headers", "Location, Content-Type")
	h.Set("Access-Control-Allow-Private-Network", "true")
}

// fail writes {"code":status,"message":msg}.
func (s *Server) fail(w http.ResponseWriter, status int, msg string) {
	s.st.signallingErrors.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{status, msg})
	w.Write(b)
}

// offer is what the signalling handlers learned from a client request.
type offer struct {
	key   stream.Key
	ufrag string
}

// parseOffer validates an offer SDP and derives the stream key.
func parseOffer(sdpOffer []byte, q url.Values, streamURL string) (offer, int, error) {
	ufrag, err := ParseSDP(sdpOffer)
	if err != nil {
		return offer{}, http.StatusBadRequest, fmt.Errorf("bad offer: %w", err)
	}
	key, err := stream.FromWebRTC(q, streamURL)
	if err != nil {
		return offer{}, http.StatusBadRequest, fmt.Errorf("bad stream: %w", err)
	}
	return offer{key: key, ufrag: ufrag}, 0, nil
}

// offerExchange is an offer that reached its origin, and the origin's reply.
type offerExchange struct {
	offer  offer
	play   bool
	origin stream.Origin
	resp   *http.Response
	answer []byte
	log    *slog.Logger
}

// exchange validates the offer SDP, routes its stream and forwards body to
// the origin. On failure it has answered the client and returns false.
func (s *Server) exchange(w http.ResponseWriter, r *http.Request, sdpOffer, body []byte, streamURL string) (offerExchange, bool) {
	of, status, err := parseOffer(sdpOffer, r.URL.Query(), streamURL)
	if err != nil {
		s.fail(w, status, err.Error())
		return offerExchange{}, false
	}
	play := strings.Contains(r.URL.Path, "/whep/") || strings.Contains(r.URL.Path, "/whip-play/") || strings.HasSuffix(strings.TrimSuffix(r.URL.Path, "/"), "/play")
	o, status, err := s.route(r.Context(), of.key, play)
	if err != nil {
		s.fail(w, status, err.Error())
		return offerExchange{}, false
	}
	log := s.log.With("stream", of.key.String(), "origin", o.ID, "peer", r.RemoteAddr)
	resp, ans, err := s.forward(r, o, body)
	if err != nil {
		// SRS closes the request of a second WHIP publisher of a live
		// stream without an answer ("stream busy").
		if s.keepStandby(w, r, offerExchange{offer: of, play: play, origin: o, log: log}, sdpOffer, 0) {
			return offerExchange{}, false
		}
		log.Warn("origin signalling failed", "err", err)
		s.fail(w, http.StatusBadGateway, "origin: "+err.Error())
		return offerExchange{}, false
	}
	return offerExchange{offer: of, play: play, origin: o, resp: resp, answer: ans, log: log}, true
}

// accepted tells the Publisher that the origin accepted a publish offer
// (route.Accepted), which writes the stream's assignment; a play needs
// nothing. When the stream was assigned to another origin meanwhile, the
// origin's session (resource, when it named one) is deleted and the client
// gets 503: its retry goes to the stream's origin. It reports whether the
// exchange may go on; otherwise it has answered the client.
func (s *Server) accepted(w http.ResponseWriter, r *http.Request, ex offerExchange, resource string) bool {
	if ex.play {
		return true
	}
	assigned, err := route.Accepted(r.Context(), s.cfg.Publisher, ex.offer.key, ex.origin)
	if err == nil && assigned.ID != ex.origin.ID {
		err = fmt.Errorf("stream %s was assigned to origin %s meanwhile; retry", ex.offer.key, assigned.ID)
	}
	if err != nil {
		ex.log.Warn("publish not recorded", "err", err)
		s.deleteAtOrigin(resource)
		s.fail(w, http.StatusServiceUnavailable, err.Error())
		return false
	}
	return true
}

// session is the ICE session of an exchange whose origin answered with
// answerSDP, of ufrag ansUfrag: keyed "ansUfrag:offerUfrag", relayed to the
// origin's WebRTC endpoint, checked with the answer's ICE password, created
// now. Resource is the caller's to set when the origin handed one out.
func (ex offerExchange) session(ansUfrag string, answerSDP []byte) stream.RTCSession {
	return stream.RTCSession{
		Ufrag:         ansUfrag + ":" + ex.offer.ufrag,
		OriginID:      ex.origin.ID,
		OriginRTC:     ex.origin.RTC,
		Key:           ex.offer.key.String(),
		Pwd:           ICEPwd(answerSDP),
		CreatedUnixMs: time.Now().UnixMilli(),
	}
}

// route asks the Router for the stream's origin (RoutePlay for a play),
// or the Publisher, when there is one, for a publish's (RoutePublish; the
// caller then calls accepted).
func (s *Server) route(ctx context.Context, key stream.Key, play bool) (stream.Origin, int, error) {
	fn := route.For(s.cfg.Router, play)
	if !play {
		fn = route.Publish(s.cfg.Router, s.cfg.Publisher)
	}
	o, err := fn(ctx, key)
	switch {
	case errors.Is(err, stream.ErrNoOrigin):
		return o, http.StatusServiceUnavailable, err
	case errors.Is(err, context.DeadlineExceeded):
		return o, http.StatusGatewayTimeout, err
	case err != nil:
		return o, http.StatusNotFound, fmt.Errorf("no route for stream %s: %w", key, err)
	case o.API == "" || o.RTC == "":
		return o, http.StatusBadGateway, fmt.Errorf("origin %s serves no WebRTC", o.ID)
	}
	return o, 0, nil
}

// forward sends the client's request (method, path, query, body) to the
// origin's API and reads the whole answer.
func (s *Server) forward(r *http.Request, o stream.Origin, body []byte) (*http.Response, []byte, error) {
	u := "http://" + o.API + r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for _, h := range []string{"Content-Type", "Authorization", "User-Agent"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := s.httpClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, nil, err
	}
	if len(b) > maxBody {
		return nil, nil, fmt.Errorf("origin answer larger than %d bytes", maxBody)
	}
	return resp, b, nil
}

// readBody reads a bounded request body.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
}

// serveWHIP proxies a WHIP or WHEP offer (body application/sdp).
func (s *Server) serveWHIP(w http.ResponseWriter, r *http.Request) {
	s.st.offers.Add(1)
	body, err := readBody(w, r)
	if err != nil {
		s.fail(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	if s.cfg.Viewers != nil && isPlay(pathOf(r)) {
		if ans, loc, ok := s.fanOutPlay(w, r, body, ""); ok {
			w.Header().Set("Location", loc)
			w.Header().Set("Content-Type", "application/sdp")
			w.WriteHeader(http.StatusCreated)
			w.Write(ans)
		}
		return
	}
	ex, ok := s.exchange(w, r, body, body, "")
	if !ok {
		return
	}
	o, resp, ans, log := ex.origin, ex.resp, ex.answer, ex.log
	if resp.StatusCode/100 != 2 {
		if s.keepStandby(w, r, ex, body, resp.StatusCode) {
			return
		}
		// The origin refused: pass its answer through.
		copyHeader(w.Header(), resp.Header, "Content-Type")
		w.WriteHeader(resp.StatusCode)
		w.Write(ans)
		return
	}
	ansUfrag, err := ParseSDP(ans)
	if err != nil {
		log.Warn("origin answered a bad SDP", "err", err)
		s.fail(w, http.StatusBadGateway, "origin answer: "+err.Error())
		return
	}
	sess := ex.session(ansUfrag, ans)
	location := ""
	if loc := resp.Header.Get("Location"); loc != "" {
		sess.Resource, location = rewriteLocation(r.URL, o.API, loc, sess.Ufrag)
	}
	if !s.accepted(w, r, ex, sess.Resource) {
		return
	}
	if err := s.cfg.Store.PutRTCSession(r.Context(), sess); err != nil {
		log.Warn("cannot store session", "err", err)
		s.deleteAtOrigin(sess.Resource)
		s.fail(w, http.StatusServiceUnavailable, "cannot store session: "+err.Error())
		return
	}
	s.st.answers.Add(1)
	log.Info("answered", "ufrag", sess.Ufrag, "path", r.URL.Path)
	if location != "" {
		w.Header().Set("Location", location)
	}
	w.Header().Set("Content-Type", "application/sdp")
	copyHeader(w.Header(), resp.Header, "ETag", "Link")
	w.WriteHeader(resp.StatusCode)
	w.Write(RewriteSDP(ans, s.cfg.Candidate))
}

// rewriteLocation resolves the origin's Location against the request sent to
// the origin and returns that absolute URL (the session's Resource) and the
// Location the client gets: the origin's path and query when the path is
// under /rtc/v1/ (else PathSession), plus SessionParam naming the session,
// relative to the node so that the DELETE comes back through the mesh.
func rewriteLocation(reqURL *url.URL, originAPI, loc, ufrag string) (resource, location string) {
	base := &url.URL{Scheme: "http", Host: originAPI, Path: reqURL.Path, RawQuery: reqURL.RawQuery}
	ref, err := url.Parse(loc)
	if err != nil {
		return "", PathSession + "?" + SessionParam + "=" + url.QueryEscape(ufrag)
	}
	abs := base.ResolveReference(ref)
	rel := &url.URL{Path: PathSession}
	if strings.HasPrefix(abs.Path, "/rtc/v1/") {
		rel.Path, rel.RawPath, rel.RawQuery = abs.Path, abs.RawPath, abs.RawQuery
	}
	q := SessionParam + "=" + url.QueryEscape(ufrag)
	if rel.RawQuery != "" {
		rel.RawQuery += "&" + q
	} else {
		rel.RawQuery = q
	}
	return abs.String(), rel.String()
}

// serveDelete ends a session: it forwards the DELETE to the origin's resource
// and deletes the session from the store and from this node's relay (other
// nodes notice on their next sweep). The session is found by SessionParam;
// without a stored session, a Location that names the stream (SRS's
// ?app=&stream=) is routed by its key.
func (s *Server) serveDelete(w http.ResponseWriter, r *http.Request) {
	s.st.deletes.Add(1)
	q := r.URL.Query()
	if id := q.Get(ViewerParam); id != "" && s.stopViewer(w, id, q.Get(SessionParam)) {
		return
	}
	ufrag := q.Get(SessionParam)
	target := ""
	if sess, ok := s.cfg.Store.LookupRTCSession(ufrag); ok && ufrag != "" {
		target = sess.Resource
	} else if q.Get("stream") != "" && r.URL.Path != PathSession {
		key, err := stream.FromWebRTC(q, "")
		if err != nil {
			s.fail(w, http.StatusBadRequest, err.Error())
			return
		}
		o, status, err := s.route(r.Context(), key, true) // a DELETE adds no stream
		if err != nil {
			s.fail(w, status, err.Error())
			return
		}
		target = (&url.URL{Scheme: "http", Host: o.API, Path: r.URL.Path, RawPath: r.URL.RawPath,
			RawQuery: withoutParam(r.URL.RawQuery, SessionParam)}).String()
	} else {
		s.fail(w, http.StatusNotFound, ErrNoSession.Error())
		return
	}
	status := http.StatusOK
	if target != "" {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodDelete, target, nil)
		if err != nil {
			s.fail(w, http.StatusBadGateway, err.Error())
			return
		}
		if v := r.Header.Get("Authorization"); v != "" {
			req.Header.Set("Authorization", v)
		}
		resp, err := s.httpClient.Do(req)
		if err != nil {
			// The origin is gone; the session is over all the same.
			s.log.Warn("origin DELETE failed", "resource", target, "err", err)
			status = http.StatusBadGateway
		} else {
			io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
			resp.Body.Close()
			status = resp.StatusCode
		}
	}
	if ufrag != "" {
		if err := s.cfg.Store.DeleteRTCSession(r.Context(), ufrag); err != nil {
			s.fail(w, http.StatusServiceUnavailable, "cannot delete session: "+err.Error())
			return
		}
		s.dropSession(ufrag)
	}
	if status == http.StatusBadGateway {
		s.fail(w, status, "origin did not answer the DELETE")
		return
	}
	w.WriteHeader(status)
}

// withoutParam removes every name=... pair from a raw query, keeping the
// others as they were sent.
func withoutParam(rawQuery, name string) string {
	var keep []string
	for _, kv := range strings.Split(rawQuery, "&") {
		if kv == "" || kv == name || strings.HasPrefix(kv, name+"=") {
			continue
		}
		keep = append(keep, kv)
	}
	return strings.Join(keep, "&")
}

// deleteAtOrigin ends an answered session at the origin when the node cannot
// keep it (the store refused it). Best effort.
func (s *Server) deleteAtOrigin(resource string) {
	if resource == "" {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, DefaultHTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, resource, nil)
	if err != nil {
		return
	}
	if resp, err := s.httpClient.Do(req); err == nil {
		resp.Body.Close()
	}
}

// srsRequest is the part of SRS's JSON publish/play request the node reads.
type srsRequest struct {
	SDP       string `json:"sdp"`
	StreamURL string `json:"streamurl"`
}

// serveJSON proxies SRS's JSON API (/rtc/v1/publish/, /rtc/v1/play/). The
// request body is forwarded unchanged; in the answer only "sdp" is rewritten,
// every other field is kept.
func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request) {
	s.st.offers.Add(1)
	body, err := readBody(w, r)
	if err != nil {
		s.fail(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	var req srsRequest
	if err := json.Unmarshal(body, &req); err != nil {
		s.fail(w, http.StatusBadRequest, fmt.Sprintf("%v: %v", errBadJSON, err))
		return
	}
	if s.cfg.Viewers != nil && isPlay(pathOf(r)) {
		s.fanOutJSON(w, r, req)
		return
	}
	ex, ok := s.exchange(w, r, []byte(req.SDP), body, req.StreamURL)
	if !ok {
		return
	}
	resp, ans, log := ex.resp, ex.answer, ex.log
	var fields map[string]json.RawMessage
	var res struct {
		Code int    `json:"code"`
		SDP  string `json:"sdp"`
	}
	if resp.StatusCode/100 != 2 || json.Unmarshal(ans, &fields) != nil || json.Unmarshal(ans, &res) != nil ||
		res.Code != 0 || res.SDP == "" {
		// An error from the origin (or nothing we understand): pass it on.
		copyHeader(w.Header(), resp.Header, "Content-Type")
		w.WriteHeader(resp.StatusCode)
		w.Write(ans)
		return
	}
	ansUfrag, err := ParseSDP([]byte(res.SDP))
	if err != nil {
		s.fail(w, http.StatusBadGateway, "origin answer: "+err.Error())
		return
	}
	sess := ex.session(ansUfrag, []byte(res.SDP))
	if !s.accepted(w, r, ex, "") {
		return
	}
	if err := s.cfg.Store.PutRTCSession(r.Context(), sess); err != nil {
		s.fail(w, http.StatusServiceUnavailable, "cannot store session: "+err.Error())
		return
	}
	fields["sdp"], _ = json.Marshal(string(RewriteSDP([]byte(res.SDP), s.cfg.Candidate)))
	out, err := json.Marshal(fields)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.st.answers.Add(1)
	log.Info("answered", "ufrag", sess.Ufrag, "path", r.URL.Path)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
}

// copyHeader copies the named headers from src to dst.
func copyHeader(dst, src http.Header, names ...string) {
	for _, n := range names {
		if v := src.Values(n); len(v) > 0 {
			dst[http.CanonicalHeaderKey(n)] = append([]string(nil), v...)
		}
	}
}
