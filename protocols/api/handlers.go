package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/srs-mesh/srs-mesh/stream/httpjson"
)

// listKind is one of SRS's listed resources.
type listKind struct {
	path     string // "streams": /api/v1/streams/
	single   string // "stream": the field of a one-entry answer
	notFound int    // SRS's code for an unknown id
}

// apiError is the body of every error this package makes.
type apiError = httpjson.ErrorBody

// writeOriginSelectError answers a failed selectOrigins.
func writeOriginSelectError(w http.ResponseWriter, r *http.Request, err error) {
	httpjson.Error(w, http.StatusNotFound, fmt.Sprintf("%v %q", err, r.URL.Query().Get("origin")))
}

// header is the part of SRS's answers that names the server.
type header struct {
	Code    int    `json:"code"`
	Server  string `json:"server"`
	Service string `json:"service"`
	PID     string `json:"pid"`
}

func (s *Server) header() header {
	return header{Server: s.cfg.NodeID, Service: s.service, PID: s.pid}
}

// parseVersion splits "v1.2.3-rc1" into 1, 2, 3. Missing or malformed parts
// are 0.
func parseVersion(v string) (major, minor, revision int) {
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+ "); i >= 0 {
		v = v[:i]
	}
	parts := strings.SplitN(v, ".", 3)
	nums := [3]int{}
	for i, p := range parts {
		if n, err := strconv.Atoi(p); err == nil && n >= 0 {
			nums[i] = n
		}
	}
	return nums[0], nums[1], nums[2]
}

// handleVersions answers srs-mesh's version in SRS's shape.
func (s *Server) handleVersions(w http.ResponseWriter, r *http.Request) {
	major, minor, revision := parseVersion(s.cfg.Version)
	httpjson.Write(w, http.StatusOK, struct {
		header
		Data any `json:"data"`
	}{s.header(), map[string]any{
		"major": major, "minor": minor, "revision": revision,
		"version": s.cfg.Version, "product": "srs-mesh",
	}})
}

// handleSummaries answers every origin's summaries and cluster totals:
//
//	{"code":0,"server":..,"data":{"ok":true,"now_ms":..,
//	  "totals":{"origins":2,"origins_ok":1,"conn_srs":..,...},
//	  "origins":[{"id":..,"ok":true,"data":{<origin's data>}},{"id":..,"ok":false,"error":".."}]}}
func (s *Server) handleSummaries(w http.ResponseWriter, r *http.Request) {
	origins, err := s.selectOrigins(r)
	if err != nil {
		writeOriginSelectError(w, r, err)
		return
	}
	answers := s.forCaller(r, s.fanout(r.Context(), origins, http.MethodGet, "/api/v1/summaries", nil))
	results, totals := mergeSummaries(answers)
	httpjson.Write(w, http.StatusOK, struct {
		header
		Data any `json:"data"`
	}{s.header(), struct {
		OK      bool               `json:"ok"`
		NowMs   int64              `json:"now_ms"`
		Totals  map[string]float64 `json:"totals"`
		Origins []SummaryResult    `json:"origins"`
	}{true, time.Now().UnixMilli(), totals, results}})
}

// paging reads SRS's ?start=&count=. With neither, every entry is wanted
// (count -1); with either, missing ones take SRS's defaults (0 and 10).
func paging(q url.Values) (start, count int, err error) {
	_, hasStart := q["start"]
	_, hasCount := q["count"]
	if !hasStart && !hasCount {
		return 0, -1, nil
	}
	start, count = 0, 10
	if hasStart {
		if start, err = strconv.Atoi(q.Get("start")); err != nil || start < 0 {
			return 0, 0, errors.New("start must be a number >= 0")
		}
	}
	if hasCount {
		if count, err = strconv.Atoi(q.Get("count")); err != nil || count < 0 {
			return 0, 0, errors.New("count must be a number >= 0")
		}
	}
	return start, count, nil
}

// handleList answers the streams or clients of every origin:
//
//	{"code":0,"server":<node>,"service":..,"pid":..,
//	 "streams":[{<origin's entry>...,"origin":<id>,"node":<node>}],
//	 "origins":[{"id":..,"ok":true,"count":N},{"id":..,"ok":false,"error":".."}]}
//
// Entries come in origin id order, each origin's in its own order. ?start= and
// ?count= page through the merged list (each origin is asked for its first
// start+count entries); without them every origin is asked for up to
// DefaultFanoutCount entries and all are answered.
func (s *Server) handleList(l listKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		origins, err := s.selectOrigins(r)
		if err != nil {
			writeOriginSelectError(w, r, err)
			return
		}
		start, count, err := paging(r.URL.Query())
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, err.Error())
			return
		}
		ask := DefaultFanoutCount
		if count >= 0 {
			ask = min(start+count, MaxFanoutCount)
		}
		q := url.Values{"start": {"0"}, "count": {strconv.Itoa(ask)}}
		answers := s.fanout(r.Context(), origins, http.MethodGet, "/api/v1/"+l.path+"/", q)
		entries, results := mergeList(l.path, s.cfg.NodeID, s.forCaller(r, answers))
		for i, res := range results { // one result per answer, in order
			if !res.OK {
				why := res.Error
				if answers[i].Err != nil {
					why = answers[i].Err.Error() // what forCaller may have hidden
				}
				s.cfg.Logger.Debug("origin left out of "+l.path, "origin", res.ID, "error", why)
			}
		}
		entries = window(entries, start, count)
		body := struct {
			header
			Streams *[]json.RawMessage `json:"streams,omitempty"`
			Clients *[]json.RawMessage `json:"clients,omitempty"`
			Origins []OriginResult     `json:"origins"`
		}{header: s.header(), Origins: results}
		if l.path == "streams" {
			body.Streams = &entries
		} else {
			body.Clients = &entries
		}
		httpjson.Write(w, http.StatusOK, body)
	}
}

// handleOne answers GET of one stream or client, found on whichever origin
// has it (its entry gains "origin" and "node"), and forwards DELETE to that
// origin, relaying the origin's answer.
func (s *Server) handleOne(l listKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		origins, err := s.selectOrigins(r)
		if err != nil {
			writeOriginSelectError(w, r, err)
			return
		}
		// The id is one clean, decoded segment (checkPath): no '/', no
		// dot segment. originURL escapes it.
		id := r.PathValue("id")
		path := "/api/v1/" + l.path + "/" + id
		var doc map[string]json.RawMessage
		hit, found, failed := s.find(r.Context(), origins, path, func(a answer) bool {
			if a.Err != nil {
				return false
			}
			d, err := parseSRS(a.Body)
			if err != nil || len(d[l.single]) == 0 {
				return false
			}
			doc = d // only the accepted answer's document is kept
			return true
		})
		if !found {
			asked := 0
			for _, o := range origins {
				if askable(o) == nil {
					asked++
				}
			}
			if asked == 0 {
				httpjson.Error(w, http.StatusServiceUnavailable, ErrNoHealthyOrigin.Error())
				return
			}
			msg := fmt.Sprintf("%s %q not found on any origin", l.single, id)
			if len(failed) > 0 {
				var b strings.Builder
				for _, f := range s.forCaller(r, failed) {
					fmt.Fprintf(&b, "; %s: %v", f.ID, f.Err)
				}
				msg += " (some origins did not answer" + b.String() + ")"
			}
			httpjson.Write(w, http.StatusNotFound, apiError{Code: l.notFound, Message: msg})
			return
		}
		if r.Method == http.MethodGet {
			d, err := decorate(doc[l.single], hit.ID, s.cfg.NodeID)
			if err != nil {
				httpjson.Error(w, http.StatusBadGateway, hit.ID+": "+err.Error())
				return
			}
			doc[l.single] = d
			httpjson.Write(w, http.StatusOK, doc)
			return
		}
		var owner OriginInfo
		for _, o := range origins {
			if o.Origin.ID == hit.ID {
				owner = o
			}
		}
		a := s.fetch(r.Context(), owner, http.MethodDelete, path, nil)
		if a.Status == 0 {
			httpjson.Error(w, http.StatusBadGateway, hit.ID+": "+a.Err.Error())
			return
		}
		s.cfg.Logger.Info("deleted "+l.single, "id", id, "origin", hit.ID, "status", a.Status)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.Status)
		_, _ = w.Write(a.Body)
	}
}

// handleProxy sends any other /api/v1/ call to the origin named by ?origin=
// (see proxyURL and stripClientHeaders) and relays the answer. A relative
// redirect keeps ?origin= so that following it comes back to the same
// origin.
func (s *Server) handleProxy(w http.ResponseWriter, r *http.Request) {
	if !r.URL.Query().Has("origin") {
		var ids []string
		for _, o := range sortedOrigins(s.cfg.Origins.Origins()) {
			ids = append(ids, o.Origin.ID)
		}
		httpjson.Error(w, http.StatusBadRequest, fmt.Sprintf("%v: %s: add ?origin=<id> (origins: %s)", ErrOriginParamNeeded, r.URL.Path, strings.Join(ids, ", ")))
		return
	}
	origins, err := s.selectOrigins(r)
	if err != nil {
		writeOriginSelectError(w, r, err)
		return
	}
	o := origins[0]
	if o.Origin.API == "" {
		httpjson.Error(w, http.StatusBadGateway, fmt.Sprintf("%s: %v", o.Origin.ID, ErrNoAPIEndpoint))
		return
	}
	id := o.Origin.ID
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = proxyURL(o, pr.In.URL)
			pr.Out.Host = o.Origin.API
			stripClientHeaders(pr.Out.Header)
			if c := s.credentials(id); c != "" {
				pr.Out.Header.Set("Authorization", c)
			}
			pr.SetXForwarded()
		},
		Transport: s.client.Transport,
		ModifyResponse: func(res *http.Response) error {
			for k := range res.Header {
				if strings.HasPrefix(k, "Access-Control-") {
					res.Header.Del(k) // ours are already set
				}
			}
			if loc, err := url.Parse(res.Header.Get("Location")); err == nil && loc.Host == "" && strings.HasPrefix(loc.Path, "/") {
				q := loc.Query()
				q.Set("origin", id)
				loc.RawQuery = q.Encode()
				res.Header.Set("Location", loc.String())
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.cfg.Logger.Warn("proxy to origin failed", "origin", id, "path", r.URL.Path, "error", err)
			httpjson.Error(w, http.StatusBadGateway, fmt.Sprintf("origin %s: %v", id, err))
		},
	}
	ctx, cancel := s.timeoutCtx(r.Context())
	defer cancel()
	rp.ServeHTTP(w, r.WithContext(ctx))
}

// proxyURL is the URL a proxied call is sent to: the origin's API endpoint
// (host:port, as the mesh replicates it), the request's path (clean and
// decoded by checkPath) and its query without "origin" and "token". Nothing
// else of the client's URL is used.
func proxyURL(o OriginInfo, in *url.URL) *url.URL {
	q := in.Query()
	q.Del("origin")
	q.Del("token")
	return &url.URL{Scheme: "http", Host: o.Origin.API, Path: in.Path, RawQuery: q.Encode()}
}

// stripClientHeaders removes from the headers of a proxied call those that
// are not the origin's business or that would let a client speak for the
// node: hop-by-hop headers (RFC 9110 section 7.6.1, and any the Connection
// header names), credentials (Authorization, Cookie, Proxy-*) and the
// client's forwarding claims (Forwarded, X-Forwarded-*, X-Real-Ip). Names
// are compared case-insensitively with '_' taken as '-', as some servers
// read them.
func stripClientHeaders(h http.Header) {
	var named []string
	for _, v := range h.Values("Connection") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				named = append(named, headerName(f))
			}
		}
	}
	for k := range h {
		name := headerName(k)
		switch {
		case slices.Contains(named, name),
			strings.HasPrefix(name, "proxy-"),
			strings.HasPrefix(name, "x-forwarded-"):
			delete(h, k)
			continue
		}
		switch name {
		case "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
			"authorization", "cookie", "forwarded", "x-real-ip":
			delete(h, k)
		}
	}
}

// headerName is the form of a header name stripClientHeaders compares.
func headerName(k string) string {
	return strings.ReplaceAll(strings.ToLower(k), "_", "-")
}
