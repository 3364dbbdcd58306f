package httpstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// Request headers not forwarded when fetching a segment into the cache:
// the cache needs the whole object, as it is, whatever this client holds.
var segmentDropHeaders = []string{"Accept-Encoding", "Range", "If-Range", "If-None-Match", "If-Modified-Since"}

// proxyFile serves one origin file (a segment, init section or key) at
// origin path p. With the segment cache, a GET is answered from the stored
// object, or from one origin request that concurrent GETs for the same
// object share (with the first client's headers and query), which is then
// stored if complete, 200 and small enough. HEAD and Range requests are
// answered from a stored object, or relayed uncached. Conditional requests
// are answered by the node from the stored object's ETag and
// Last-Modified.
func (s *Server) proxyFile(w http.ResponseWriter, r *http.Request, origin, p string) {
	c := s.segments
	if c == nil {
		s.relayFile(w, r, origin, p)
		return
	}
	key := origin + " " + p
	if r.Method != http.MethodGet || r.Header.Get("Range") != "" {
		if obj := c.lookup(key); obj != nil {
			s.serveObject(w, r, obj)
			return
		}
		c.misses.Add(1)
		s.relayFile(w, r, origin, p)
		return
	}
	query := r.URL.RawQuery
	hdr := originRequestHeader(r, segmentDropHeaders)
	hdr.Set("Accept-Encoding", "identity")
	obj, err := s.shared(r.Context(), c, key, func(ctx context.Context) (*object, time.Duration, error) {
		obj, err := s.fetchObject(ctx, c, hdr, origin, p, query)
		return obj, s.segTTL, err
	})
	switch {
	case err == nil:
		s.serveObject(w, r, obj)
	case r.Context().Err() != nil:
	case errors.Is(err, errNotBuffered):
		s.relayFile(w, r, origin, p)
	case errors.Is(err, errUnreachable):
		writeError(w, http.StatusBadGateway, "origin unreachable")
	default:
		writeError(w, http.StatusBadGateway, "origin closed the segment early")
	}
}

// relayFile relays one origin file with the client's method, headers
// (Range included) and query.
func (s *Server) relayFile(w http.ResponseWriter, r *http.Request, origin, p string) {
	resp, ok := s.fetch(w, r, r.Method, origin, p, r.URL.RawQuery, nil)
	if !ok {
		return
	}
	defer resp.Body.Close()
	s.relay(w, r, resp, s.segCache)
}

// serveObject answers r with a segment's object: the origin's headers and
// Cache-Control (else the segment default), CORS, and for a 200 object
// the answer http.ServeContent gives (ranges, conditional requests, HEAD).
func (s *Server) serveObject(w http.ResponseWriter, r *http.Request, obj *object) {
	if obj.status != http.StatusOK {
		s.writeObject(w, r, obj, s.segCache)
		return
	}
	h := w.Header()
	copyHeader(h, obj.header)
	h.Del("Content-Length") // ServeContent sets it for what it sends
	setCacheDefault(h, obj.status, s.segCache)
	setCORS(h)
	http.ServeContent(s.timed(w), r, "", obj.modTime, bytes.NewReader(obj.body))
}

// writeObject answers r with obj as the origin sent it, as relay would
// have: cache is the Cache-Control of a 2xx answer the origin sent none
// for.
func (s *Server) writeObject(w http.ResponseWriter, r *http.Request, obj *object, cache string) {
	h := w.Header()
	copyHeader(h, obj.header)
	setCacheDefault(h, obj.status, cache)
	setCORS(h)
	w.WriteHeader(obj.status)
	if r.Method != http.MethodHead {
		s.timed(w).Write(obj.body)
	}
}

// timedWriter writes a body in pieces, each within the server's write
// timeout, so that a client that stops reading is dropped (as relay drops
// it). An error status it is asked to write is made no-cache.
type timedWriter struct {
	http.ResponseWriter
	rc     *http.ResponseController
	ttl    time.Duration
	pieces *sync.Pool // of *[]byte of writePiece bytes
}

// writePiece is the most timedWriter writes within one deadline.
const writePiece = 256 << 10

func (s *Server) timed(w http.ResponseWriter) *timedWriter {
	return &timedWriter{ResponseWriter: w, rc: http.NewResponseController(w), ttl: s.writeTTL, pieces: &s.pieces}
}

func (t *timedWriter) WriteHeader(code int) {
	if code/100 != 2 && code != http.StatusNotModified {
		t.Header().Set("Cache-Control", cacheNone)
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *timedWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if err := t.rc.SetWriteDeadline(time.Now().Add(t.ttl)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return n, err
		}
		m, err := t.ResponseWriter.Write(p[n:min(len(p), n+writePiece)])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// ReadFrom copies r in pieces of writePiece (http.ServeContent copies
// through it).
func (t *timedWriter) ReadFrom(r io.Reader) (int64, error) {
	bp, _ := t.pieces.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, writePiece)
		bp = &b
	}
	defer t.pieces.Put(bp)
	buf := *bp
	var n int64
	for {
		m, rerr := io.ReadFull(r, buf)
		if m > 0 {
			w, err := t.Write(buf[:m])
			n += int64(w)
			if err != nil {
				return n, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

func (t *timedWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
