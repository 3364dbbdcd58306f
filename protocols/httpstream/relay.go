package httpstream

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1 (plus the
// legacy ones proxies still see); they never cross the proxy.
var hopHeaders = []string{
	"Connection",
	"Keep-Alive",
	"Proxy-Connection",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// relay copies the origin's status and headers to the client and streams
// the body, flushing after every read so that the first bytes (an FLV header
// and its first tags) reach the player at once. It returns when either side
// ends; the caller closes resp.Body, which ends the origin leg. cache is the
// Cache-Control of a 2xx answer the origin sent none for.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, resp *http.Response, cache string) {
	copyHeader(w.Header(), resp.Header)
	setCacheDefault(w.Header(), resp.StatusCode, cache)
	setCORS(w.Header())
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if err := rc.SetWriteDeadline(time.Now().Add(s.writeTTL)); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
			if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return
			}
		}
		if rerr != nil {
			if rerr != io.EOF && r.Context().Err() == nil {
				s.log.Debug("origin stream ended", "err", rerr)
			}
			return
		}
	}
}

// copyHeader adds src's end-to-end headers to dst: hop-by-hop headers, and
// any header that src's Connection header names, are left out. It copies an
// origin's response headers to the client.
func copyHeader(dst, src http.Header) {
	named := connectionNamed(src)
next:
	for k, vv := range src {
		for _, h := range hopHeaders {
			if k == h {
				continue next
			}
		}
		for _, h := range named {
			if k == h {
				continue next
			}
		}
		dst[k] = append(dst[k], vv...)
	}
}
