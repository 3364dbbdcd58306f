package httpstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Request headers not forwarded when fetching a document to rewrite: the
// proxy needs the whole, uncompressed, current document (a 304 would leave
// the client with tokens that expire).
var documentDropHeaders = []string{"Accept-Encoding", "Range", "If-Range", "If-None-Match", "If-Modified-Since"}

// Response headers that describe the origin's bytes, not the rewritten ones.
var documentRespDropHeaders = []string{"Content-Length", "Content-Encoding", "Content-Md5", "Etag", "Last-Modified", "Accept-Ranges", "Content-Range"}

// rewriter is rewritePlaylist or rewriteMPD.
type rewriter func(src []byte, base *url.URL, m uriMapper) ([]byte, error)

// cachePolicy gives the Cache-Control of a rewritten document:
// playlistCacheControl or mpdCacheControl.
type cachePolicy func(doc []byte) string

// docFormat is what serving a document needs to know of its format.
type docFormat struct {
	rewrite      rewriter
	cacheControl cachePolicy
	// ttl says how long the origin's document may be reused when
	// Config.PlaylistCacheTTL is zero: playlistTTL or mpdTTL.
	ttl func(doc []byte) time.Duration
	// contentType is the Content-Type when the origin sends none.
	contentType string
}

// The document formats.
var (
	hlsFormat  = docFormat{rewritePlaylist, playlistCacheControl, playlistTTL, "application/vnd.apple.mpegurl"}
	dashFormat = docFormat{rewriteMPD, mpdCacheControl, mpdTTL, "application/dash+xml"}
)

// serveDocument answers a playlist or MPD: the origin's document at origin
// path p, fetched with GET (so that HEAD answers carry the rewritten
// length), rewritten with m, with a corrected Content-Length and the
// Cache-Control of f. Non-200 answers from the origin are relayed
// unchanged, so a 404 stays a 404.
//
// With the document cache, the origin's document (as it came, before
// rewriting) is reused for requests with the same origin, path and query
// (the query carries per-viewer state, such as SRS's hls_ctx and auth
// tokens, so different queries never share a document) within its TTL
// (see Config.PlaylistCacheTTL), and concurrent requests for it share one
// origin request, made with the first client's headers. Only 200 answers
// are stored. The answer is the same bytes with or without the cache.
//
// The answer depends only on the origin's document and the mesh's token key,
// so every node, and every reload within the origin's update interval, gives
// the same bytes.
func (s *Server) serveDocument(w http.ResponseWriter, r *http.Request, origin, p string, m uriMapper, f docFormat) {
	c := s.docs
	if c == nil {
		s.serveDocumentDirect(w, r, origin, p, m, f)
		return
	}
	query := r.URL.RawQuery
	hdr := originRequestHeader(r, documentDropHeaders)
	obj, err := s.shared(r.Context(), c, origin+" "+p+"?"+query, func(ctx context.Context) (*object, time.Duration, error) {
		obj, err := s.fetchObject(ctx, c, hdr, origin, p, query)
		if err != nil {
			return nil, 0, err
		}
		return obj, s.documentTTL(obj.body, f), nil
	})
	switch {
	case err == nil && obj.status == http.StatusOK:
		s.writeDocument(w, r, origin, p, m, f, obj.header, obj.body)
	case err == nil:
		s.writeObject(w, r, obj, cacheNone)
	case r.Context().Err() != nil:
	case errors.Is(err, errNotBuffered):
		s.serveDocumentDirect(w, r, origin, p, m, f)
	case errors.Is(err, errUnreachable):
		originUnreachable(w, origin)
	default:
		writeError(w, http.StatusBadGateway, "origin closed the document early")
	}
}

// serveDocumentDirect is serveDocument with a request of its own to the
// origin.
func (s *Server) serveDocumentDirect(w http.ResponseWriter, r *http.Request, origin, p string, m uriMapper, f docFormat) {
	resp, ok := s.fetch(w, r, http.MethodGet, origin, p, r.URL.RawQuery, documentDropHeaders)
	if !ok {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.relay(w, r, resp, cacheNone)
		return
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPlaylistSize+1))
	if err != nil {
		if r.Context().Err() == nil {
			writeError(w, http.StatusBadGateway, "origin closed the document early")
		}
		return
	}
	s.writeDocument(w, r, origin, p, m, f, resp.Header, body)
}

// writeDocument answers r with the origin's 200 document body (at most
// MaxPlaylistSize, else 502), with headers header, rewritten.
func (s *Server) writeDocument(w http.ResponseWriter, r *http.Request, origin, p string, m uriMapper, f docFormat, header http.Header, body []byte) {
	if len(body) > MaxPlaylistSize {
		writeError(w, http.StatusBadGateway, "origin document too large")
		return
	}
	base := &url.URL{Scheme: "http", Host: origin, RawQuery: r.URL.RawQuery}
	base.Path, _ = url.PathUnescape(p)
	base.RawPath = p
	out, err := f.rewrite(body, base, m)
	if err != nil {
		s.log.Warn("cannot rewrite origin document", "origin", origin, "path", p, "err", err)
		writeError(w, http.StatusBadGateway, "origin sent an invalid document")
		return
	}
	h := w.Header()
	copyHeader(h, header)
	for _, k := range documentRespDropHeaders {
		h.Del(k)
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", f.contentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(out)))
	h.Set("Cache-Control", f.cacheControl(body))
	setCORS(h)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(out)
	}
}
