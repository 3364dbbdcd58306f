package httpstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
)

// FanOutStats are the counters of HTTP-FLV fan-out (Config.FanOut).
type FanOutStats struct {
	// Players are the players served from a shared upstream, a gauge.
	Players int
	// Upstreams are the origin requests players share, a gauge.
	Upstreams int
	// Dropped counts the times a player fell behind and skipped tags to
	// the next keyframe.
	Dropped uint64
	// Kicked counts the players disconnected for staying too far behind.
	Kicked uint64
}

// fanOutStats returns the fan-out counters; zero when it is off.
func (s *Server) fanOutStats() FanOutStats {
	if s.hubs == nil {
		return FanOutStats{}
	}
	st := s.hubs.Stats()
	return FanOutStats{Players: st.Subscribers, Upstreams: st.Upstreams, Dropped: st.Dropped, Kicked: st.Kicked}
}

// errOriginStatus is what a fan-out Opener returns when the origin
// answered other than 200; the answer itself goes to the player that
// opened.
var errOriginStatus = errors.New("httpstream: origin answered other than 200")

// errOriginUnreachable is what a fan-out Opener returns when the origin
// could not be reached.
var errOriginUnreachable = errors.New("httpstream: origin unreachable")

// serveFLVFanOut serves an HTTP-FLV GET from the stream's shared upstream
// on this node (see Config.FanOut). Players share an upstream only when
// the origin, the path and the query are identical. The first one's
// request (its query and forwardable headers, its X-Forwarded-For) opens
// it; if the origin answers other than 200, that player gets the answer
// as it is and no upstream is kept. It returns false, having written
// nothing, when the player is to be relayed on its own: the hub registry is
// full, or the upstream it waited for failed to open.
func (s *Server) serveFLVFanOut(w http.ResponseWriter, r *http.Request, key stream.Key, origin string) bool {
	path := keyPath(key, ".flv")
	hubKey := origin + " " + path + "?" + r.URL.RawQuery
	var answer *http.Response // the origin's non-200 answer to this player's open
	opened := false
	open := func(ctx context.Context) (io.ReadCloser, any, error) {
		opened = true
		out, err := http.NewRequestWithContext(ctx, http.MethodGet, originURL(origin, path, r.URL.RawQuery), nil)
		if err != nil {
			return nil, nil, err
		}
		out.Header = originRequestHeader(r, nil)
		resp, err := s.transport.RoundTrip(out)
		if err != nil {
			s.log.Warn("origin unreachable", "origin", origin, "path", path, "err", err)
			return nil, nil, errOriginUnreachable
		}
		if resp.StatusCode != http.StatusOK {
			answer = resp
			return nil, nil, errOriginStatus
		}
		h := resp.Header.Clone()
		h.Del("Content-Length") // a shared live stream has no length
		return resp.Body, h, nil
	}
	sub, err := s.hubs.Subscribe(r.Context(), hubKey, open)
	switch {
	case err == nil:
	case answer != nil:
		defer answer.Body.Close()
		s.relay(w, r, answer, cacheNone)
		return true
	case opened && errors.Is(err, errOriginUnreachable):
		writeError(w, http.StatusBadGateway, "origin unreachable")
		return true
	case r.Context().Err() != nil:
		return true // the player left
	case opened:
		writeError(w, http.StatusBadGateway, "bad origin URL")
		return true
	default: // ErrFull, ErrUpstream, ErrClosed: relay on its own
		return false
	}
	defer sub.Close()
	end, sent := s.track(key, liveProto(".flv"))
	defer end()
	if h, ok := sub.Info().(http.Header); ok {
		copyHeader(w.Header(), h)
	}
	setCacheDefault(w.Header(), http.StatusOK, cacheNone)
	setCORS(w.Header())
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return true
	}
	var bufs net.Buffers
	out := new(net.Buffers) // one per player: WriteTo's receiver escapes
	for {
		var nerr error
		bufs, nerr = sub.Next(r.Context(), bufs[:0])
		if len(bufs) > 0 {
			if err := rc.SetWriteDeadline(time.Now().Add(s.writeTTL)); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return true
			}
			*out = bufs // WriteTo consumes its receiver; bufs keeps the array
			n, werr := out.WriteTo(w)
			if sent != nil {
				sent.Add(uint64(n))
			}
			clear(bufs)
			if werr != nil {
				return true
			}
			if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return true
			}
		}
		if nerr != nil {
			if nerr != io.EOF && r.Context().Err() == nil {
				s.log.Debug("shared FLV stream ended", "stream", key.String(), "err", nerr)
			}
			return true
		}
	}
}
