package rtmp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/protocols/internal/route"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Chunk streams of media written to fan-out players. They differ from the
// ones the leg's chunk.Writer uses (control, commands), whose header
// compression must not see these messages.
const (
	csidFanAudio = 6
	csidFanVideo = 7
	csidFanData  = 8
)

// fanStreamID is the message stream id of every fan-out player's play: the
// id identify answers createStream with.
const fanStreamID = 1

// rtmpQuery is what of a player's request goes into its hub key with the
// stream: the stream name's query, as an HTTP-FLV player's URL carries it,
// so that RTMP and HTTP-FLV players with the same query share an upstream;
// and, when the tcUrl has a query too, both, kept apart.
func rtmpQuery(req stream.RTMPRequest) string {
	if req.AppQuery == "" {
		return req.StreamQuery
	}
	return req.StreamQuery + "|tcurl?" + req.AppQuery
}

// ProtoUpstream is the protocol name under which shared upstreams are
// reported to Sessions.Track: one per upstream while it is open.
const ProtoUpstream = "upstream"

// OpenFLV opens an RTMP play of key (with query, as a player's stream name
// carries it) on origin's RTMP endpoint and returns it as a source of FLV
// tags, for HTTP-FLV players of origins that serve RTMP (nginx-rtmp serves
// no HTTP-FLV): it is a fanout.Upstream. The upstream is bounded by Config.DialTimeout to open and
// Config.IdleTimeout between messages; closing the source closes it.
func (s *Server) OpenFLV(ctx context.Context, origin stream.Origin, key stream.Key, query string) (fanout.Source, error) {
	if strings.ContainsAny(query, "/\\") {
		// SRS would read "s?a/b" as another app and stream than the key.
		return nil, fmt.Errorf("%w: a '/' in the query of %s", ErrBadStream, key)
	}
	name := key.Stream
	if query != "" {
		name += "?" + query
	}
	req := stream.RTMPRequest{Key: key, App: key.App, StreamQuery: query}
	c := &conn{s: s, log: s.log, req: req, tcURL: "rtmp:///" + key.App,
		connectObj: amf0.Object{{Key: "app", Value: key.App}, {Key: "flashVer", Value: "LNX 9,0,124,2"},
			{Key: "tcUrl", Value: "rtmp:///" + key.App}, {Key: "fpad", Value: false},
			{Key: "capabilities", Value: 15.0}, {Key: "audioCodecs", Value: 4071.0},
			{Key: "videoCodecs", Value: 252.0}, {Key: "videoFunction", Value: 1.0}},
		streamCmd: command{Name: "play", Args: []any{name}}}
	return s.openUpstream(ctx, c, origin, true)
}

// openUpstream dials origin for c's play (c is a detached copy of a
// player's set-up, never a live session's conn) and returns the leg as a
// Source; track says whether it is reported to Sessions as a shared
// upstream (a standby's watch of its stream is not one).
func (s *Server) openUpstream(ctx context.Context, c *conn, origin stream.Origin, track bool) (fanout.Source, error) {
	if origin.RTMP == "" {
		return nil, fmt.Errorf("%w: origin %s serves no RTMP", ErrOriginDown, origin.ID)
	}
	o, err := c.dialOrigin(ctx, origin.RTMP)
	if err != nil {
		if c.origin != nil {
			c.origin.conn.Close()
			c.origin.release()
		}
		var sc setupClosed
		if cleanRefusal(err) || errors.As(err, &sc) && originAnswers(origin) {
			// An error status, or a close during set-up by an origin
			// that still answers (nginx-rtmp's on_play saying no).
			err = fmt.Errorf("%w: %w", fanout.ErrRefused, err)
		}
		return nil, err
	}
	o.conn.readIdle = s.cfg.IdleTimeout
	o.conn.writeIdle = s.cfg.IdleTimeout
	var src fanout.Source = &upstream{o: o, nc: o.conn.Conn, max: int(s.cfg.originMaxMessage())}
	if s.cfg.Sessions != nil && track {
		src = fanout.Tracked(src, s.cfg.Sessions.Track(c.req.Key, ProtoUpstream, "", nil, nil))
	}
	return src, nil
}

// detached returns a copy of c's set-up for opening upstreams that outlive
// c: the same connect and play, none of c's connections.
func (c *conn) detached() *conn {
	return &conn{s: c.s, log: c.s.log, connectObj: c.connectObj, connectArgs: c.connectArgs, tcURL: c.tcURL,
		streamCmd: c.streamCmd, req: c.req, clientStream: c.clientStream}
}

// upstream is an origin's play leg read as FLV tags: audio, video and AMF0
// data messages become tags; the origin's end of the stream
// (UnpublishNotify, Play.Stop, StreamEOF) is a clean end (io.EOF); anything
// else that ends the leg is an upstream failure (whether a clean end is the
// stream's move to another origin is fanout.Follow's question).
type upstream struct {
	o       *originLeg
	nc      net.Conn
	max     int
	pending int // o.pending messages already returned
	closed  bool
}

func (u *upstream) ReadHeader() ([]byte, error) { return fanout.Header(true, true), nil }

func (u *upstream) Close() error {
	return u.nc.Close()
}

func (u *upstream) ReadTag() (fanout.Tag, error) {
	for u.pending < len(u.o.pending) {
		m := &u.o.pending[u.pending]
		u.pending++
		if t, ok, err := u.message(m); ok || err != nil {
			return t, err
		}
	}
	u.o.pending = nil
	u.pending = 0
	for {
		m, err := u.o.r.ReadMessage()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the origin went without ending the stream
			}
			return fanout.Tag{}, err
		}
		if err := u.o.maybeAck(); err != nil {
			return fanout.Tag{}, err
		}
		if m.Type <= chunk.TypeSetPeerBandwidth {
			if _, err := u.o.handleControl(&m); err != nil {
				return fanout.Tag{}, err
			}
			if m.Type == chunk.TypeUserControl && len(m.Payload) >= 2 && binary.BigEndian.Uint16(m.Payload) == chunk.EventStreamEOF {
				return fanout.Tag{}, io.EOF
			}
			continue
		}
		if t, ok, err := u.message(&m); ok || err != nil {
			return t, err
		}
	}
}

// message turns m into a tag, reporting false for messages that are not
// media, and io.EOF for the origin's end of the stream.
func (u *upstream) message(m *chunk.Message) (fanout.Tag, bool, error) {
	switch m.Type {
	case chunk.TypeAudio, chunk.TypeVideo, chunk.TypeDataAMF0:
		if len(m.Payload) > u.max || len(m.Payload) > fanout.MaxFLVTagSize {
			return fanout.Tag{}, false, fmt.Errorf("%w: %d-byte message", ErrProtocol, len(m.Payload))
		}
		return fanout.NewTag(m.Type, m.Timestamp, m.Payload), true, nil
	case chunk.TypeCommandAMF0, chunk.TypeCommandAMF3:
		cmd, err := parseCommand(m)
		if err != nil || cmd.Name != "onStatus" {
			return fanout.Tag{}, false, nil
		}
		switch cmd.info().String("code") {
		case "NetStream.Play.UnpublishNotify", "NetStream.Play.Stop", "NetStream.Play.Complete":
			return fanout.Tag{}, false, io.EOF
		}
	}
	return fanout.Tag{}, false, nil
}

// playShared serves c's play from the stream's shared upstream on this
// node. It returns false, having sent nothing, when the player is to be
// relayed on its own (the registry is full, or an upstream it waited for
// failed to open); otherwise the session is over when it returns.
func (c *conn) playShared(ctx context.Context, origin stream.Origin) bool {
	s := c.s
	up := c.detached()
	key := up.req.Key
	open := fanout.Follow(origin, func(ctx context.Context) (stream.Origin, error) {
		return route.For(s.cfg.Router, true)(ctx, key)
	}, s.cfg.DialTimeout, func(ctx context.Context, o stream.Origin, _ bool) (fanout.Source, any, error) {
		src, err := s.openUpstream(ctx, up.detached(), o, true)
		return src, nil, err
	})
	c.nc.SetDeadline(time.Now().Add(s.cfg.DialTimeout + time.Second))
	sub, err := s.hubs.Subscribe(ctx, fanout.StreamKey(c.req.Key, rtmpQuery(c.req)), open)
	switch {
	case err == nil:
	case errors.Is(err, fanout.ErrFull), errors.Is(err, fanout.ErrUpstream), errors.Is(err, fanout.ErrClosed):
		return false
	default:
		s.stats.originFailures.Add(1)
		c.log.Warn("origin leg failed", "addr", origin.RTMP, "err", err)
		c.refuse(err.Error())
		return true
	}
	c.nc.SetDeadline(time.Time{})
	// The set-up is replayed from up (the hub keeps its opener), never
	// from c: what a player holds while it plays is only its connection.
	c.connectObj, c.connectArgs, c.streamCmd = nil, nil, command{}

	end := func() {}
	if s.cfg.Sessions != nil {
		// Set before playFrom's goroutines start; they only add.
		c.client.conn.sessIn, c.client.conn.sessOut = &c.clientIn, &c.clientOut
		end = s.cfg.Sessions.Track(c.req.Key, "rtmp", stream.KindPlay, &c.clientIn, &c.clientOut)
	}
	st := &s.stats
	st.players.Add(1)
	c.log.Info("playing from shared upstream")
	// A logger with the session's attributes costs a player about half a
	// KiB for its lifetime: the one line it logs at its end names them.
	c.log = s.log
	originID := origin.ID
	// The play itself runs once serve has returned (conn.play): the
	// registry's writers serve the player (fanPlayer), or a goroutine of
	// its own when the connection gives no descriptor (RTMPS).
	c.play = func(done func()) {
		start := time.Now()
		over := func(err error) {
			sub.Close()
			c.closeAll()
			c.logEnd(start, originID, err)
			end()
			st.players.Add(-1)
			done()
		}
		if err := c.startPlay(); err != nil {
			over(err)
			return
		}
		p := &fanPlayer{c: c, w: c.newFanWriter(), over: over}
		if s.hubs.Push(ctx, sub, c.client.conn.Conn, p, fanout.PushOptions{Idle: s.cfg.IdleTimeout, Discard: true}) {
			return
		}
		go func() { over(c.playFrom(ctx, sub)) }()
	}
	return true
}

// fanPlayer is a fan-out player that the registry's writers serve
// (fanout.Registry.Push): it costs no goroutine while it waits for the
// stream. Nothing else writes to the client once the play started, and
// what the player sends is read and discarded by the writers.
type fanPlayer struct {
	c    *conn
	w    fanWriter
	over func(error)
}

func (p *fanPlayer) Frame(dst, tags net.Buffers) net.Buffers { return p.w.frame(dst, tags) }

func (p *fanPlayer) Wrote(n int) { p.w.out.Add(uint64(n)) }

// End ends the session; at the stream's clean end the player is told
// first, as an origin tells its players.
func (p *fanPlayer) End(err error) {
	switch {
	case err == io.EOF:
		p.c.endPlay()
		err = nil
	case errors.Is(err, fanout.ErrGone), errors.Is(err, context.Canceled):
		err = nil
	}
	p.over(err)
}

// newFanWriter returns the writer of c's fan-out play. The media bypasses
// the leg's counting connection (writev on the raw one): it counts toward
// the server's and the session's bytes here.
func (c *conn) newFanWriter() fanWriter {
	return fanWriter{l: c.client, sid: c.clientStream, idle: c.s.cfg.IdleTimeout, out: addBoth{&c.s.stats.bytesOut, &c.clientOut}}
}

// logEnd logs the end of a fan-out player's session. It is not inlined,
// so that its frame is not part of the frames the player parks under.
//
//go:noinline
func (c *conn) logEnd(start time.Time, origin string, err error) {
	if isClosedErr(err) {
		err = nil
	}
	c.log.Info("session ended", "peer", c.nc.RemoteAddr().String(), "stream", c.req.Key.String(), "origin", origin, "publish", false, "duration", time.Since(start).Round(time.Millisecond),
		"in", c.client.r.BytesRead(), "out", c.client.w.BytesWritten(), "reason", err)
}

// fanPlay is what a fan-out player's loop keeps, on the heap: the frames a
// player parks under stay small, so that its goroutine's stack shrinks to
// its minimum between writes (a stack is shrunk only when less than a
// quarter of it is in use).
type fanPlay struct {
	poll playerPoll
	w    fanWriter
	bufs net.Buffers
}

// playFrom writes the hub's tags to a client whose play started until the
// stream or the client ends, on the caller's goroutine, polling what the
// client sends (playerPoll). It is the play of a connection that
// fanout.Registry.Push does not take (RTMPS).
func (c *conn) playFrom(ctx context.Context, sub *fanout.Subscriber) error {
	cl := c.client
	p := &fanPlay{w: c.newFanWriter()}
	var werr error
	for {
		var nerr error
		p.bufs, nerr = sub.Next(ctx, p.bufs[:0])
		if len(p.bufs) > 0 {
			werr = p.w.write(p.bufs)
			clear(p.bufs)
			if cap(p.bufs) > fanIOV {
				p.bufs = nil // a burst's array is not kept for the player's lifetime
			}
			if werr == nil {
				werr = p.poll.read(cl.conn.Conn)
			}
			if werr != nil {
				break
			}
		}
		if nerr != nil {
			if nerr == io.EOF {
				c.endPlay()
			} else if ctx.Err() == nil {
				werr = nerr
			}
			break
		}
	}
	return werr
}

// startPlay tells the player its play started and drops the leg's set-up
// buffers. It is not inlined, so that its frame is not part of the frames
// the player parks under.
//
//go:noinline
func (c *conn) startPlay() error {
	cl := c.client
	sid := c.clientStream
	cl.mu.Lock()
	err := cl.w.WriteUserControl(chunk.EventStreamBegin, sid)
	cl.mu.Unlock()
	if err != nil {
		return err
	}
	for _, code := range [...]string{codePlayReset, codePlayStart} {
		if err := cl.writeCommand(csidStream, sid, "onStatus", 0, nil, status(levelStatus, code, "Playing "+c.req.Key.Stream+".")); err != nil {
			return err
		}
	}
	return cl.shrink()
}

// playerPoll reads what a fan-out player sends, from the goroutine that
// writes to it, so that a player costs one goroutine: acknowledgements,
// buffer lengths and pings need no answer from a node that only writes
// media, and are discarded. A player that closes its connection is seen by
// the next poll or the next write, whichever fails first.
type playerPoll struct {
	last time.Time
	buf  [64]byte
}

// playerPollEvery is how often playerPoll reads.
const playerPollEvery = time.Second

// read discards what nc holds, waiting at most a millisecond, at most once
// per playerPollEvery. It returns nil, or the error that says the player
// is gone.
func (p *playerPoll) read(nc net.Conn) error {
	if now := time.Now(); now.Sub(p.last) < playerPollEvery {
		return nil
	} else {
		p.last = now
	}
	defer nc.SetReadDeadline(time.Time{})
	for range playerPollReads { // a player that floods the node gets no more of its time
		nc.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := nc.Read(p.buf[:]); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}
	}
	return nil
}

// playerPollReads bounds the reads of one poll.
const playerPollReads = 64

// endPlay tells the player the stream ended, as an origin does on unpublish.
func (c *conn) endPlay() {
	cl := c.client
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	cl.mu.Lock()
	cl.w.WriteUserControl(chunk.EventStreamEOF, c.clientStream)
	cl.mu.Unlock()
	cl.writeCommand(csidStream, c.clientStream, "onStatus", 0, nil,
		status(levelStatus, "NetStream.Play.UnpublishNotify", c.req.Key.Stream+" is now unpublished."))
	cl.flush()
}

// fanWriter writes tags (shared buffers) to a player as RTMP messages,
// without copying them: each is a type 0 chunk header and the tag's body
// in chunk-size pieces, written with writev. Headers are built in a
// per-player arena reused for every batch, so a batch allocates nothing.
type fanWriter struct {
	l     *leg
	sid   uint32
	idle  time.Duration
	out   interface{ Add(uint64) uint64 }
	arena []byte
	iov   net.Buffers
	wr    net.Buffers // WriteTo's receiver, kept to avoid an allocation
}

// addBoth adds to two counters and returns the first one's new value.
type addBoth struct{ first, second *atomic.Uint64 }

func (a addBoth) Add(n uint64) uint64 {
	a.second.Add(n)
	return a.first.Add(n)
}

// fanArena is the size of a fan-out player's header arena between batches;
// a batch with more headers (a fast start's GOP) gets one of its size,
// not kept.
const fanArena = 256

// fanIOV bounds the tag list a player keeps between batches; a longer one
// (a fast start's GOP) is freed once written.
const fanIOV = 64

// fanWritev bounds the buffers of one writev (a header and a piece of body
// each), so that a player's iovec stays small after a burst (a fast
// start's GOP) as well: the runtime caches a connection's iovec array at
// the largest size it wrote with, 16 bytes a buffer, for the connection's
// lifetime.
const fanWritev = 16

// write writes the tags in bufs (an FLV header among them is skipped):
// first what the leg's Writer holds (control messages, commands), then the
// media, under the leg's lock.
func (w *fanWriter) write(bufs net.Buffers) error {
	w.iov = w.frame(w.iov[:0], bufs)
	l := w.l
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.w.Flush()
	raw := l.conn.Conn
	if u, ok := raw.(interface{ RawConn() net.Conn }); ok {
		raw = u.RawConn() // the TCP connection under a PROXY protocol one
	}
	for b := w.iov; len(b) > 0 && err == nil; {
		k := min(len(b), fanWritev)
		if w.idle > 0 {
			raw.SetWriteDeadline(time.Now().Add(w.idle))
		}
		w.wr = b[:k]
		var n int64
		n, err = w.wr.WriteTo(raw)
		w.out.Add(uint64(n))
		b = b[k:]
	}
	clear(w.iov)
	w.iov = w.iov[:0]
	if cap(w.iov) > 2*fanIOV {
		w.iov = nil // a burst's array is not kept for the player's lifetime
	}
	return err
}

// frame appends to dst the RTMP messages of tags (an FLV header among them
// is skipped), without copying them: each is a type 0 chunk header and the
// tag's body in chunk-size pieces. The headers are built in w.arena, reused
// by the next call.
func (w *fanWriter) frame(dst, tags net.Buffers) net.Buffers {
	chunkSize := int(w.l.w.ChunkSize())
	need := 0
	for _, b := range tags {
		if _, _, body, ok := fanout.TagInfo(b); ok {
			need += 16 + 5*(max(1, (len(body)+chunkSize-1)/chunkSize)-1)
		}
	}
	if cap(w.arena) < need || cap(w.arena) > fanArena && need <= fanArena {
		w.arena = make([]byte, 0, max(need, fanArena)) // a burst's is not kept
	}
	w.arena = w.arena[:0]
	for _, b := range tags {
		typ, ts, body, ok := fanout.TagInfo(b)
		if !ok {
			continue // the FLV header
		}
		csid := uint32(csidFanData)
		switch typ {
		case fanout.TagAudio:
			csid = csidFanAudio
		case fanout.TagVideo:
			csid = csidFanVideo
		}
		start := len(w.arena)
		w.arena = chunk.AppendHeader(w.arena, csid, typ, w.sid, ts, len(body))
		dst = append(dst, w.arena[start:len(w.arena):len(w.arena)])
		for p := body; len(p) > 0; {
			n := min(len(p), chunkSize)
			dst = append(dst, p[:n])
			p = p[n:]
			if len(p) > 0 {
				start := len(w.arena)
				w.arena = chunk.AppendContinuation(w.arena, csid, ts)
				dst = append(dst, w.arena[start:len(w.arena):len(w.arena)])
			}
		}
	}
	return dst
}
