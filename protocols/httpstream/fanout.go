package httpstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/protocols/internal/route"
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
	// BytesOut counts the bytes written to players on connections taken
	// over from the HTTP server (HTTP/1.x players), which the server's own
	// response writers do not see.
	BytesOut uint64
}

// fanOutStats returns the fan-out counters; zero when it is off.
func (s *Server) fanOutStats() FanOutStats {
	if s.hubs == nil {
		return FanOutStats{}
	}
	st := s.hubs.Stats()
	return FanOutStats{Players: st.Subscribers, Upstreams: st.Upstreams, Dropped: st.Dropped, Kicked: st.Kicked,
		BytesOut: s.fanOutBytes.Load()}
}

// errOriginStatus is what a fan-out Opener returns when the origin
// answered other than 200; the answer itself goes to the player that
// opened.
var errOriginStatus = errors.New("httpstream: origin answered other than 200")

// protoUpstream is the protocol name under which shared upstreams are
// reported to Sessions.Track (as the RTMP server does).
const protoUpstream = "upstream"

// errOriginRTMP is what a fan-out Opener returns when the origin's RTMP
// play failed (unreachable, or refused).
var errOriginRTMP = errors.New("httpstream: origin RTMP play failed")

// errOriginRefused is what a fan-out Opener returns when the origin refused
// the RTMP play (its on_play hook said no).
var errOriginRefused = errors.New("httpstream: origin refused the play")

// maxFanOutQuery bounds the query of a player served from a shared
// upstream, and so the bytes of the hub registry's keys: at most
// fanout.DefaultMaxHubs (4,096) upstreams of 4 KiB queries, 16 MiB. Players
// with longer queries are relayed on their own.
const maxFanOutQuery = 4 << 10

// errNoHTTP is what a fan-out Opener returns for an origin with no HTTP
// endpoint (and no RTMP upstream to use instead).
var errNoHTTP = errors.New("httpstream: origin has no HTTP endpoint")

// errOriginUnreachable is what a fan-out Opener returns when the origin
// could not be reached.
var errOriginUnreachable = errors.New("httpstream: origin unreachable")

// serveFLVFanOut serves an HTTP-FLV GET from the stream's shared upstream
// on this node (see Config.FanOut). Players share an upstream only when the
// stream and the query are identical (fanout.StreamKey), whatever their protocol.
// The first one's request opens it: an RTMP play of origin (with the
// query) when Config.RTMPUpstream is set and origin serves RTMP, else a GET
// of the origin's .flv with the player's query and forwardable headers and
// its X-Forwarded-For; if the origin answers that GET other than 200, the
// player gets the answer as it is and no upstream is kept. When a shared
// upstream re-attaches after its origin failed, it routes the stream anew
// and opens it the same way. It returns false, having written nothing,
// when the player is to be relayed on its own: the hub registry is full,
// the query is longer than maxFanOutQuery (the registry keeps it while the
// upstream lives), or the upstream it waited for failed to open.
func (s *Server) serveFLVFanOut(w http.ResponseWriter, r *http.Request, key stream.Key, origin stream.Origin) bool {
	path := keyPath(key, ".flv")
	query := r.URL.RawQuery
	if len(query) > maxFanOutQuery {
		return false
	}
	hdr := originRequestHeader(r, nil)
	var answer *http.Response // the origin's non-200 answer to this player's open
	opened := false
	reroute := func(ctx context.Context) (stream.Origin, error) {
		return route.For(s.router, true)(ctx, key)
	}
	open := fanout.Follow(origin, reroute, s.fetchTimeout, func(ctx context.Context, o stream.Origin, first bool) (fanout.Source, any, error) {
		opened = true
		if s.rtmpUp != nil && o.RTMP != "" {
			src, err := s.rtmpUp(ctx, o, key, query)
			if errors.Is(err, fanout.ErrRefused) {
				return nil, nil, errOriginRefused
			}
			if err != nil {
				s.log.Warn("origin RTMP play failed", "origin", o.ID, "stream", key.String(), "err", err)
				return nil, nil, errOriginRTMP
			}
			return src, http.Header{"Content-Type": {"video/x-flv"}}, nil
		}
		if o.HTTP == "" {
			return nil, nil, errNoHTTP
		}
		out, err := http.NewRequestWithContext(ctx, http.MethodGet, originURL(o.HTTP, path, query), nil)
		if err != nil {
			return nil, nil, err
		}
		out.Header = hdr.Clone()
		resp, err := s.transport.RoundTrip(out)
		if err != nil {
			s.log.Warn("origin unreachable", "origin", o.HTTP, "path", path, "err", err)
			return nil, nil, errOriginUnreachable
		}
		if resp.StatusCode != http.StatusOK {
			if first {
				answer = resp
			} else {
				resp.Body.Close()
			}
			return nil, nil, errOriginStatus
		}
		h := resp.Header.Clone()
		h.Del("Content-Length") // a shared live stream has no length
		src := fanout.FLVSource(resp.Body, fanout.DefaultMaxTagSize)
		if s.sessions != nil {
			src = fanout.Tracked(src, s.sessions.Track(key, protoUpstream, "", nil, nil))
		}
		return src, h, nil
	})
	sub, err := s.hubs.Subscribe(r.Context(), fanout.StreamKey(key, query), open)
	switch {
	case err == nil:
	case answer != nil:
		defer answer.Body.Close()
		s.relay(w, r, answer, cacheNone)
		return true
	case opened && errors.Is(err, errOriginUnreachable), opened && errors.Is(err, errOriginRTMP):
		writeError(w, http.StatusBadGateway, "origin unreachable")
		return true
	case opened && errors.Is(err, errOriginRefused):
		writeError(w, http.StatusForbidden, "the origin refused the play")
		return true
	case opened && errors.Is(err, errNoHTTP):
		writeError(w, http.StatusServiceUnavailable, "origin has no HTTP endpoint")
		return true
	case r.Context().Err() != nil:
		return true // the player left
	case opened:
		writeError(w, http.StatusBadGateway, "bad origin URL")
		return true
	default: // ErrFull, ErrUpstream, ErrClosed: relay on its own
		return false
	}
	end, sent := s.track(key, liveProto(".flv"))
	handedOff := false
	defer func() {
		if !handedOff {
			sub.Close()
			end()
		}
	}()
	if h, ok := sub.Info().(http.Header); ok {
		copyHeader(w.Header(), h)
	}
	setCacheDefault(w.Header(), http.StatusOK, cacheNone)
	setCORS(w.Header())
	if r.ProtoMajor == 1 {
		if nc, _, err := http.NewResponseController(w).Hijack(); err == nil {
			// The player is served by a goroutine of the server's that
			// holds only the connection and the subscription: this
			// handler returns, so that the HTTP server's buffers, the
			// request and the handler's stack are freed rather than kept
			// for the player's lifetime.
			h := w.Header().Clone()
			handedOff = true
			s.wg.Add(1)       // within this request's own count: never from zero
			s.hijacked.Join() // the HTTP server's Shutdown no longer sees it
			over := func() {
				nc.Close()
				end()
				s.hijacked.Leave()
				s.wg.Done()
			}
			if err := s.writeFLVHead(nc, h); err != nil {
				sub.Close()
				over()
				return true
			}
			// The registry's writers serve the player (flvPlayer): it
			// costs no goroutine while it waits for the stream. A
			// connection without a descriptor (TLS) gets a goroutine.
			pl := &flvPlayer{s: s, sent: sent, over: over}
			if s.hubs.Push(s.ctx, sub, nc, pl, fanout.PushOptions{Idle: s.writeTTL, Discard: true}) {
				return true
			}
			go func() {
				defer over()
				defer sub.Close()
				s.writeFLVRaw(s.ctx, nc, sub, key, sent)
			}()
			return true
		}
	}
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

// DrainPlayers waits until the HTTP-FLV players whose connections the
// server took over (see writeFLVRaw) have ended, or ctx ends (then it
// returns ctx.Err() and they keep playing until Close). http.Server's
// Shutdown does not wait for them; a node's drain calls both.
func (s *Server) DrainPlayers(ctx context.Context) error {
	return s.hijacked.Drain(ctx)
}

// flvPlayer is an HTTP-FLV player on a hijacked HTTP/1.x connection that
// the registry's writers serve (fanout.Registry.Push): the body is the
// shared tags as they are, delimited by the connection's close (see
// writeFLVHead).
type flvPlayer struct {
	s    *Server
	sent *atomic.Uint64
	over func()
}

func (p *flvPlayer) Frame(dst, tags net.Buffers) net.Buffers { return append(dst, tags...) }

func (p *flvPlayer) Wrote(n int) {
	p.s.fanOutBytes.Add(uint64(n))
	if p.sent != nil {
		p.sent.Add(uint64(n))
	}
}

func (p *flvPlayer) End(error) { p.over() }

// writeFLVHead writes the response head of a shared FLV stream on a
// hijacked HTTP/1.x connection. The body is delimited by the connection's
// close (Connection: close), as HTTP/1.0 streams are: no chunked framing,
// so a player costs one writev per batch of tags and no copy.
func (s *Server) writeFLVHead(nc net.Conn, h http.Header) error {
	h = h.Clone()
	h.Del("Content-Length")
	h.Del("Transfer-Encoding")
	h.Set("Connection", "close")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "video/x-flv")
	}
	head := []byte("HTTP/1.1 200 OK\r\n")
	var hb headBuffer
	hb.b = head
	h.Write(&hb)
	hb.b = append(hb.b, "\r\n"...)
	nc.SetWriteDeadline(time.Now().Add(s.writeTTL))
	_, err := nc.Write(hb.b)
	nc.SetWriteDeadline(time.Time{})
	return err
}

// writeFLVRaw serves a shared FLV stream on a hijacked HTTP/1.x connection
// whose head was written (writeFLVHead): the tags with writev on the
// connection itself until the stream, the client (a write fails) or ctx
// ends. It runs on a goroutine of its own, owned by the server, for the
// connections fanout.Registry.Push does not take (TLS). The body bytes
// count into sent too when it is not nil (the session's meter).
func (s *Server) writeFLVRaw(ctx context.Context, nc net.Conn, sub *fanout.Subscriber, key stream.Key, sent *atomic.Uint64) {
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	defer stop()
	raw := nc
	if u, ok := nc.(interface{ RawConn() net.Conn }); ok {
		raw = u.RawConn()
	}
	var bufs net.Buffers
	out := new(net.Buffers) // one per player: WriteTo's receiver escapes
	for {
		var nerr error
		bufs, nerr = sub.Next(ctx, bufs[:0])
		if len(bufs) > 0 {
			raw.SetWriteDeadline(time.Now().Add(s.writeTTL))
			var werr error
			for b := bufs; len(b) > 0 && werr == nil; {
				// The runtime keeps a connection's largest iovec
				// array for its lifetime: a writev is kept short.
				k := min(len(b), fanWritev)
				*out = b[:k] // WriteTo consumes its receiver; bufs keeps the array
				var n int64
				n, werr = out.WriteTo(raw)
				s.fanOutBytes.Add(uint64(n))
				if sent != nil {
					sent.Add(uint64(n))
				}
				b = b[k:]
			}
			clear(bufs)
			if cap(bufs) > fanIOV {
				bufs = nil // a burst's array (a fast start) is not kept for the player's lifetime
			}
			if werr != nil {
				return
			}
		}
		if nerr != nil {
			if nerr != io.EOF && ctx.Err() == nil {
				s.log.Debug("shared FLV stream ended", "stream", key.String(), "err", nerr)
			}
			return
		}
	}
}

// fanIOV is the largest buffer list a hijacked player keeps between
// writes; a longer one (a fast start's GOP) is freed once written.
const fanIOV = 64

// fanWritev bounds the buffers of one writev to a hijacked player. The
// runtime caches a connection's iovec array at the largest size it wrote
// with (16 bytes a buffer), for the connection's lifetime: a fast start's
// GOP in one writev would leave each player a few KiB of it.
const fanWritev = 16

// headBuffer collects a response head (http.Header.Write needs an
// io.Writer).
type headBuffer struct{ b []byte }

func (h *headBuffer) Write(p []byte) (int, error) {
	h.b = append(h.b, p...)
	return len(p), nil
}
