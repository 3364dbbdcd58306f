package httpstream

import (
	"bytes"
	"net/http"
	"strconv"
	"time"
)

// Cross-origin access. Web players (hls.js, dash.js, mpegts.js) run on pages
// served from other origins than the node, so every answer, the proxy's own
// errors included, allows any origin to read it, as SRS does with
// "crossdomain on". No credentials are involved: the player's authorization
// is the stream URL's query, which the origin checks. An origin that sends
// its own Access-Control-Allow-Origin keeps it.
const (
	corsExposeHeaders = "Content-Length, Content-Range, Content-Type, Date, Accept-Ranges"
	corsAllowMethods  = "GET, HEAD, OPTIONS"
	// corsMaxAge is how long a browser may reuse a preflight answer.
	corsMaxAge = "600"
	// maxPreflightHeaders bounds the request headers a preflight may ask
	// for; a longer list is answered without them.
	maxPreflightHeaders = 1024
)

// Cache-Control values of the answers the proxy shapes. SRS sends none for
// playlists and segments, so a shared cache would guess; these are explicit
// and no looser than what the documents allow.
const (
	// cacheNone is for answers that must not be reused: errors, the
	// per-viewer master playlists of SRS's hls_ctx, live FLV/TS streams.
	cacheNone = "no-cache"
	// DefaultSegmentMaxAge is how long a shared cache may keep a segment the
	// origin sent without Cache-Control. Segment names are unique while a
	// stream is published, but an origin may reuse them after a republish,
	// so the age stays well below a typical playlist window.
	DefaultSegmentMaxAge = 30 * time.Second
)

// setCORS adds the cross-origin headers to h unless the origin already set
// its own policy.
func setCORS(h http.Header) {
	if h.Get("Access-Control-Allow-Origin") == "" {
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	}
}

// servePreflight answers a CORS preflight (OPTIONS) for any stream URL with
// 204: GET and HEAD from any origin, with the request headers the browser
// asked for (players send Range).
func servePreflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", corsAllowMethods)
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" && len(req) <= maxPreflightHeaders {
		h.Set("Access-Control-Allow-Headers", req)
	}
	h.Set("Access-Control-Max-Age", corsMaxAge)
	h.Set("Allow", corsAllowMethods)
	h.Set("Cache-Control", cacheNone)
	w.WriteHeader(http.StatusNoContent)
}

// setCacheDefault sets Cache-Control to def unless the origin sent one. An
// answer other than 2xx is never cached.
func setCacheDefault(h http.Header, status int, def string) {
	if status/100 != 2 {
		h.Set("Cache-Control", cacheNone)
		return
	}
	if h.Get("Cache-Control") == "" && def != "" {
		h.Set("Cache-Control", def)
	}
}

// maxAge renders "public, max-age=N" for d, at least one second.
func maxAge(d time.Duration) string {
	return "public, max-age=" + strconv.Itoa(max(int(d/time.Second), 1))
}

// playlistCacheControl says how long a rewritten playlist may be cached. A
// media playlist may be reused for half its target duration (RFC 8216
// section 6.2.2 lets a client reload no sooner than that, and a shared
// cache then serves every viewer the same bytes); a master playlist, which
// SRS makes per viewer (hls_ctx), is not reused.
func playlistCacheControl(doc []byte) string {
	target, ok := targetDuration(doc)
	if !ok {
		return cacheNone
	}
	return maxAge(target / 2)
}

// targetDuration finds #EXT-X-TARGETDURATION in a media playlist.
func targetDuration(doc []byte) (time.Duration, bool) {
	const tag = "#EXT-X-TARGETDURATION:"
	i := bytes.Index(doc, []byte(tag))
	if i < 0 {
		return 0, false
	}
	v := doc[i+len(tag):]
	n := 0
	for n < len(v) && n < 6 && v[n] >= '0' && v[n] <= '9' {
		n++
	}
	if n < len(v) && v[n] >= '0' && v[n] <= '9' {
		return 0, false // more digits than any sane target duration
	}
	secs, err := strconv.Atoi(string(v[:n]))
	if err != nil || secs <= 0 {
		return 0, false
	}
	return time.Duration(secs) * time.Second, true
}

// mpdCacheControl says how long a rewritten MPD may be cached: a dynamic
// (live) MPD for one second, so that players polling at their
// minimumUpdatePeriod see new segments at once; a static one for a minute.
func mpdCacheControl(doc []byte) string {
	if bytes.Contains(doc, []byte(`type="dynamic"`)) {
		return maxAge(time.Second)
	}
	return maxAge(time.Minute)
}
