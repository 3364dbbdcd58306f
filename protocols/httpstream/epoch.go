package httpstream

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/internal/route"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Epochs knows how many times a stream moved to another origin
// (Config.Epochs): the epoch of its replicated assignment, the same on
// every node, what to add to the current origin's HLS media sequence
// numbers (seqBase, replicated too), and when it last moved. With it, the playlists and manifests of
// a stream stay valid for a player across a move (see epochPlaylist and
// epochMPD), and a player's reload during a move waits for the new origin
// instead of failing (see Config.MoveHold).
type Epochs interface {
	StreamEpoch(key stream.Key) (epoch, seqBase uint64, moved time.Time)
}

// HLS tags epochPlaylist reads or writes.
var (
	tagMediaSeq   = []byte("#EXT-X-MEDIA-SEQUENCE:")
	tagDiscSeq    = []byte("#EXT-X-DISCONTINUITY-SEQUENCE:")
	tagDisc       = []byte("#EXT-X-DISCONTINUITY")
	tagInf        = []byte("#EXTINF:")
	tagStreamInf  = []byte("#EXT-X-STREAM-INF:")
	tagTargetDur  = []byte("#EXT-X-TARGETDURATION:")
	tagHeaderLine = []byte("#EXTM3U")
)

// epochPlaylist renumbers an HLS media playlist of a stream at epoch e > 0
// (the stream moved e times) with sequence base base, so that a player that
// keeps reloading across a move sees a valid continuation whichever node it
// asks:
//
//   - the media sequence becomes n + base, so it never goes backwards when
//     the new origin starts again from 0 (base is past the numbers the
//     previous origins can have reached; see state.Assignment.SeqBase) and
//     jumps ahead only by the few segments that bound leaves over;
//   - the first segment carries EXT-X-DISCONTINUITY (added unless the origin
//     wrote one there), and EXT-X-DISCONTINUITY-SEQUENCE becomes what makes
//     that segment's discontinuity number the origin's plus e. Every segment
//     of epoch e thus keeps one discontinuity number while the window
//     slides, and a later epoch's segments have larger ones.
//
// The result depends only on the playlist and e. Master playlists, playlists
// without segments and e == 0 are returned unchanged. Missing sequence tags
// count as 0 and are added after the header line.
func epochPlaylist(src []byte, e, base uint64) []byte {
	if e == 0 || bytes.Contains(src, tagStreamInf) || !bytes.Contains(src, tagInf) {
		return src
	}
	var seq, disc uint64
	seqLine, discLine := -1, -1
	firstSeg, headerEnd := -1, -1
	firstSegDisc := false
	lines := bytes.SplitAfter(src, []byte("\n"))
	for i, l := range lines {
		t := bytes.TrimSpace(l)
		switch {
		case headerEnd < 0 && bytes.HasPrefix(t, tagHeaderLine):
			headerEnd = i
		case bytes.HasPrefix(t, tagMediaSeq):
			if n, err := strconv.ParseUint(string(bytes.TrimSpace(t[len(tagMediaSeq):])), 10, 64); err == nil {
				seq, seqLine = n, i
			}
		case bytes.HasPrefix(t, tagDiscSeq):
			if n, err := strconv.ParseUint(string(bytes.TrimSpace(t[len(tagDiscSeq):])), 10, 64); err == nil {
				disc, discLine = n, i
			}
		case firstSeg < 0 && bytes.Equal(t, tagDisc):
			firstSegDisc = true
		case firstSeg < 0 && bytes.HasPrefix(t, tagInf):
			firstSeg = i
		}
	}
	if firstSeg < 0 || headerEnd < 0 {
		return src
	}
	eol := []byte("\n")
	if bytes.HasSuffix(lines[headerEnd], []byte("\r\n")) {
		eol = []byte("\r\n")
	}
	newDisc := disc + e
	if !firstSegDisc {
		newDisc--
	}
	seqTag := strconv.AppendUint(append([]byte(nil), tagMediaSeq...), seq+base, 10)
	discTag := strconv.AppendUint(append([]byte(nil), tagDiscSeq...), newDisc, 10)
	out := make([]byte, 0, len(src)+128)
	for i, l := range lines {
		switch i {
		case seqLine:
			out = append(append(out, seqTag...), lineEnd(l)...)
			continue
		case discLine:
			out = append(append(out, discTag...), lineEnd(l)...)
			continue
		case firstSeg:
			if !firstSegDisc {
				out = append(append(out, tagDisc...), eol...)
			}
		}
		out = append(out, l...)
		if i == headerEnd {
			if !bytes.HasSuffix(l, []byte("\n")) {
				out = append(out, eol...)
			}
			if seqLine < 0 {
				out = append(append(out, seqTag...), eol...)
			}
			if discLine < 0 {
				out = append(append(out, discTag...), eol...)
			}
		}
	}
	return out
}

// lineEnd returns the "\n" or "\r\n" that ends l, or nothing.
func lineEnd(l []byte) []byte {
	_, eol := splitEOL(l)
	return eol
}

// holdWriter passes an answer through to w unless hold says that a retry
// may give a better one; then it swallows the answer (status, headers and
// body) and the caller tries again. hold is told the origin the node could
// not reach when the answer says so (see originUnreachable), else "".
type holdWriter struct {
	w           http.ResponseWriter
	h           http.Header
	hold        func(status int, unreachable string) bool
	unreachable string
	wrote       bool
	swallowed   bool
}

func newHoldWriter(w http.ResponseWriter, hold func(status int, unreachable string) bool) *holdWriter {
	return &holdWriter{w: w, h: http.Header{}, hold: hold}
}

func (h *holdWriter) Header() http.Header { return h.h }

func (h *holdWriter) WriteHeader(status int) {
	if h.wrote || h.swallowed {
		return
	}
	if h.hold(status, h.unreachable) {
		h.swallowed = true
		return
	}
	h.wrote = true
	dst := h.w.Header()
	for k, v := range h.h {
		dst[k] = v
	}
	h.w.WriteHeader(status)
}

func (h *holdWriter) Write(b []byte) (int, error) {
	if !h.wrote && !h.swallowed {
		h.WriteHeader(http.StatusOK)
	}
	if h.swallowed {
		return len(b), nil
	}
	return h.w.Write(b)
}

// Flush implements http.Flusher for the answers passed through.
func (h *holdWriter) Flush() {
	if f, ok := h.w.(http.Flusher); ok && h.wrote {
		f.Flush()
	}
}

// originUnreachable answers 502 "origin unreachable": no answer came from
// origin. Through a holdWriter, serveHeld learns which origin.
func originUnreachable(w http.ResponseWriter, origin string) {
	if h, ok := w.(*holdWriter); ok {
		h.unreachable = origin
	}
	writeError(w, http.StatusBadGateway, "origin unreachable")
}

// moveHoldRetry is the pause between two attempts to fetch a held document.
const moveHoldRetry = 250 * time.Millisecond

// serveHeld serves a stream's playlist or MPD (suffix ".m3u8" or ".mpd")
// with serve, holding the request while the stream moves between origins,
// so that a player reloading across a move waits for the new origin's
// first document instead of giving up:
//
//   - within MoveHold and moveHoldWindow of a move (inMoveWindow), a
//     request first waits for the stream's retry loop (see holdTable),
//     which probes the new origin every moveHoldRetry until it has the
//     document; once a probe found it, requests for the rest of the window
//     go through at once. An answer the origin could not give (502, 503)
//     is swallowed, and the request waits for the stream's loop, then asks
//     again, once;
//   - outside it, only an answer that says the node got no answer from the
//     stream's origin (502, originUnreachable: the origin died, and the
//     stream has not moved off it yet) is swallowed: the request waits for
//     that origin's loop, which probes it until it answers, or until the
//     stream moves (its epoch changes; it then waits as in its move
//     window), and asks again, once; when no probe got an answer and the
//     stream is still routed to that origin, it gets the 502 without
//     asking again. Any other answer, a 502 or 503 of the origin's own
//     included, goes to the client as it is.
//
// A request waits at most MoveHold in all; then, or when the loop ends, it
// asks the origin and its answer goes to the client as it is. Retries are
// thus the loops', one per moved stream and document or per unreachable
// origin, bounded per move or window (maxHoldProbes), never one per
// request, per query or per stream name a client makes up.
func (s *Server) serveHeld(w http.ResponseWriter, r *http.Request, key stream.Key, suffix string, serve func(http.ResponseWriter)) {
	if s.moveHold <= 0 {
		serve(w)
		return
	}
	deadline := time.Now().Add(s.moveHold)
	k := holdKey{key: key, suffix: suffix}
	if s.inMoveWindow(key) {
		if l := s.joinHold(k, true); l != nil && !waitHold(r, l, deadline, nil) {
			return
		}
	}
	var l *holdLoop
	var dead string       // the origin whose loop the request waits for
	var moved func() bool // whether the stream moved since, then
	hw := newHoldWriter(w, func(status int, unreachable string) bool {
		if status != http.StatusBadGateway && status != http.StatusServiceUnavailable || !time.Now().Before(deadline) {
			return false
		}
		switch {
		case s.inMoveWindow(key):
			l = s.joinHold(k, false)
		case status == http.StatusBadGateway && unreachable != "":
			dead, moved = unreachable, s.movedSince(key)
			l = s.joinOrigin(unreachable, k)
		}
		return l != nil
	})
	serve(hw)
	if !hw.swallowed || !waitHold(r, l, deadline, moved) {
		return
	}
	if dead != "" {
		switch {
		case s.inMoveWindow(key):
			// The stream moved off the unreachable origin: wait for the new
			// origin's document as any request in the move window.
			if l := s.joinHold(k, true); l != nil && !waitHold(r, l, deadline, nil) {
				return
			}
		case !moved() && !l.answered() && s.routesTo(r, key, dead):
			// No probe got an answer and the stream is still there:
			// asking again would only add a request to a dead origin.
			originUnreachable(w, dead)
			return
		}
	}
	serve(w)
}

// routesTo reports whether key's stream is routed to the origin with HTTP
// address origin now.
func (s *Server) routesTo(r *http.Request, key stream.Key, origin string) bool {
	o, err := route.For(s.router, true)(r.Context(), key)
	return err == nil && o.HTTP == origin
}

// movedSince returns a function that reports whether key's stream moved
// (its epoch or its last move changed) since movedSince was called: a
// replica read, no request.
func (s *Server) movedSince(key stream.Key) func() bool {
	e0, _, m0 := s.epoch(key)
	return func() bool {
		e, _, m := s.epoch(key)
		return e != e0 || !m.Equal(m0)
	}
}

// waitHold waits for l to end, or until deadline, or, when moved is set,
// until it reports true (asked every moveHoldRetry), and reports false
// when r's client went away first.
func waitHold(r *http.Request, l *holdLoop, deadline time.Time, moved func() bool) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	var tick <-chan time.Time
	if moved != nil {
		tk := time.NewTicker(moveHoldRetry)
		defer tk.Stop()
		tick = tk.C
	}
	for {
		select {
		case <-l.done:
			return true
		case <-t.C:
			return true
		case <-tick:
			if moved() {
				return true
			}
		case <-r.Context().Done():
			return false
		}
	}
}

// moveHoldWindow is how long after a move a 404 from the new origin is taken
// for a document not written yet: the time an origin needs for its first
// segments.
const moveHoldWindow = 10 * time.Second

// epoch returns key's epoch, sequence base and last move from the
// Config's Epochs, when it has one.
func (s *Server) epoch(key stream.Key) (e, seqBase uint64, moved time.Time) {
	if s.epochs != nil {
		return s.epochs.StreamEpoch(key)
	}
	return 0, 0, time.Time{}
}

// hlsEpochFormat is hlsFormat with the rewriting followed by the epoch
// renumbering of key's stream (epochPlaylist).
func (s *Server) hlsEpochFormat(key stream.Key) docFormat {
	e, seqBase, _ := s.epoch(key)
	if e == 0 {
		return hlsFormat
	}
	f := hlsFormat
	f.rewrite = func(src []byte, base *url.URL, m uriMapper) ([]byte, error) {
		out, err := rewritePlaylist(src, base, m)
		if err != nil {
			return nil, err
		}
		return epochPlaylist(out, e, seqBase), nil
	}
	return f
}

// epochMPD marks the Periods of a DASH MPD of a stream at epoch e > 0 (the
// stream moved e times) as new ones: each Period directly under the MPD gets
// the id "<origin's id>-e<e>", or "e<e>" when it had none. A player that
// keeps reloading the MPD across a move thus sees a new Period start where
// the new origin's media starts (the new origin's timeline starts afresh),
// instead of an old Period whose timeline jumped. The result depends only on
// the MPD and e; e == 0 returns src. src must be well formed (it went
// through rewriteMPD).
func epochMPD(src []byte, e uint64) ([]byte, error) {
	if e == 0 {
		return src, nil
	}
	dec := xml.NewDecoder(bytes.NewReader(src))
	out := make([]byte, 0, len(src)+64)
	last, depth := 0, 0
	suffix := "e" + strconv.FormatUint(e, 10)
	for {
		start := int(dec.InputOffset())
		tok, err := dec.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotMPD, err)
		}
		end := int(dec.InputOffset())
		switch t := tok.(type) {
		case xml.StartElement:
			raw := src[start:end]
			if depth == 1 && t.Name.Local == "Period" {
				out = append(out, src[last:start]...)
				out = appendPeriodID(out, raw, t, suffix)
				last = end
			}
			depth++ // a self-closing tag is followed by its EndElement
		case xml.EndElement:
			depth--
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("%w: unbalanced elements", ErrNotMPD)
	}
	return append(out, src[last:]...), nil
}

// appendPeriodID appends the raw Period start tag with its id attribute
// suffixed by "-"+suffix, or with id=suffix added after the element name.
func appendPeriodID(out, raw []byte, t xml.StartElement, suffix string) []byte {
	for _, span := range scanAttrs(raw) {
		if string(raw[span.nameStart:span.nameEnd]) != "id" {
			continue
		}
		var id string
		for _, a := range t.Attr {
			if a.Name.Space == "" && a.Name.Local == "id" {
				id = a.Value
			}
		}
		out = append(out, raw[:span.valStart]...)
		out = appendXMLEscaped(out, id+"-"+suffix)
		return append(out, raw[span.valEnd:]...)
	}
	name := 1
	for name < len(raw) && !isXMLSpace(raw[name]) && raw[name] != '/' && raw[name] != '>' {
		name++
	}
	out = append(out, raw[:name]...)
	out = append(out, ` id="`...)
	out = append(out, suffix...)
	out = append(out, '"')
	return append(out, raw[name:]...)
}

// dashEpochFormat is dashFormat with the rewriting followed by the epoch
// marking of key's stream (epochMPD).
func (s *Server) dashEpochFormat(key stream.Key) docFormat {
	e, _, _ := s.epoch(key)
	if e == 0 {
		return dashFormat
	}
	f := dashFormat
	f.rewrite = func(src []byte, base *url.URL, m uriMapper) ([]byte, error) {
		out, err := rewriteMPD(src, base, m)
		if err != nil {
			return nil, err
		}
		return epochMPD(out, e)
	}
	return f
}
