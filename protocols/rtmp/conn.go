package rtmp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/internal/route"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/handshake"
	"github.com/srs-mesh/srs-mesh/stream"
)

// conn is one client session: set-up with the client, the origin leg, and
// the relay between them.
type conn struct {
	s   *Server
	nc  net.Conn
	log *slog.Logger

	client *leg
	origin *originLeg // once dialled, also when set-up with it failed

	// What the client asked for, learnt during set-up.
	connectTxn   float64
	connectObj   amf0.Object
	connectArgs  []any // arguments after the connect object
	tcURL        string
	publish      bool
	streamCmd    command // the publish or play command
	clientStream uint32  // message stream id of the client's publish/play
	req          stream.RTMPRequest

	mu       sync.Mutex
	originNC net.Conn // set once the origin is dialled
	// teeNCs are the connections of the publisher's other origin legs
	// (warm replicas, a planned move's target).
	teeNCs map[net.Conn]struct{}
	closed bool

	// clientIn and clientOut count the session's bytes from and to the
	// client once it relays, for Sessions.
	clientIn, clientOut atomic.Uint64

	// play, when set by serve, is the rest of a fan-out player's session:
	// the caller of serve runs it once serve has returned, and it calls
	// done once the session is over, on whichever goroutine ends it. It
	// does what serve's own ending would have done.
	play func(done func())
}

func newConn(s *Server, nc net.Conn) *conn {
	return &conn{
		s:   s,
		nc:  nc,
		log: s.log.With("peer", nc.RemoteAddr().String()),
	}
}

// closeAll closes the client and origin connections; it unblocks every
// read and write of the session. Safe to call more than once and from any
// goroutine.
func (c *conn) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.nc.Close()
	if c.originNC != nil {
		c.originNC.Close()
	}
	for nc := range c.teeNCs {
		nc.Close()
	}
}

// addTee records a tee leg's connection so that closeAll reaches it. It
// reports false (and closes nc) when the session is already closing.
func (c *conn) addTee(nc net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		nc.Close()
		return false
	}
	if c.teeNCs == nil {
		c.teeNCs = map[net.Conn]struct{}{}
	}
	c.teeNCs[nc] = struct{}{}
	return true
}

// dropTee closes a tee leg's connection and forgets it.
func (c *conn) dropTee(nc net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nc.Close()
	delete(c.teeNCs, nc)
}

// setOrigin records the origin connection so that closeAll reaches it. It
// reports false (and closes nc) when the session is already closing.
func (c *conn) setOrigin(nc net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		nc.Close()
		return false
	}
	c.originNC = nc
	return true
}

// serve runs the whole session and returns when both connections are closed
// and every goroutine of the session has ended; or, for a fan-out player,
// once it is set up, leaving the rest of the session in c.play for the
// caller to run (the caller must run it).
func (c *conn) serve(ctx context.Context) {
	stop := context.AfterFunc(ctx, c.closeAll)
	st := &c.s.stats
	c.client = newClientLeg(c.nc, &st.bytesIn, &st.bytesOut, c.s.cfg.MaxMessageSize, &c.s.bufs)
	end := func() {
		stop()
		c.closeAll()
		// Every goroutine that used the legs has ended by now.
		c.client.release()
		if c.origin != nil {
			c.origin.release()
		}
	}
	defer func() {
		if c.play == nil {
			end()
			return
		}
		play := c.play
		c.play = func(done func()) {
			play(func() {
				end()
				done()
			})
		}
	}()
	deadline := time.Now().Add(c.s.cfg.HandshakeTimeout)
	c.nc.SetDeadline(deadline)
	kind, err := handshake.Server(c.client.conn, uint32(0))
	if err != nil {
		st.clientFailures.Add(1)
		c.log.Debug("handshake failed", "handshake", kind, "err", err)
		return
	}
	if kind == handshake.Complex {
		st.complexHandshakes.Add(1)
	}
	c.log.Debug("handshake done", "handshake", kind)
	if err := c.identify(); err != nil {
		if !c.oversized(err) {
			st.clientFailures.Add(1)
			c.log.Info("client set-up failed", "err", err)
		}
		return
	}
	c.log = c.log.With("stream", c.req.Key.String())

	rctx, cancel := context.WithDeadline(ctx, deadline)
	routeFn := route.For(c.s.cfg.Router, !c.publish)
	if c.publish {
		// The assignment is written once the origin accepted (accepted).
		routeFn = route.Publish(c.s.cfg.Router, c.s.cfg.Publisher)
	}
	origin, err := routeFn(rctx, c.req.Key)
	cancel()
	if err != nil {
		st.routeFailures.Add(1)
		c.log.Warn("no origin for stream", "err", err)
		c.refuse(fmt.Sprintf("no origin for %s: %v", c.req.Key, err))
		return
	}
	if origin.RTMP == "" {
		st.routeFailures.Add(1)
		c.log.Warn("origin has no RTMP endpoint", "origin", origin.ID)
		c.refuse(fmt.Sprintf("origin %s of %s serves no RTMP", origin.ID, c.req.Key))
		return
	}
	c.log = c.log.With("origin", origin.ID)

	if !c.publish && c.s.hubs != nil && c.playShared(ctx, origin) {
		return
	}
	if err := c.client.grow(); err != nil {
		st.clientFailures.Add(1)
		c.log.Info("client set-up failed", "err", err)
		return
	}

	// The client waits for our answer while the origin leg opens; its
	// writes must not block longer than that.
	c.nc.SetDeadline(time.Now().Add(c.s.cfg.DialTimeout + time.Second))
	o, err := c.dialOrigin(ctx, origin.RTMP)
	if err != nil && c.publish {
		if sb, serr := c.keepStandby(ctx, origin, err); serr == nil {
			c.serveStandby(ctx, sb)
			return
		}
	}
	if err == nil && c.publish {
		o, origin, err = c.accepted(ctx, o, origin)
	}
	if err != nil {
		st.originFailures.Add(1)
		c.log.Warn("origin leg failed", "addr", origin.RTMP, "err", err)
		c.refuse(err.Error())
		return
	}
	c.nc.SetDeadline(time.Time{})

	c.serveRelay(ctx, o, origin, nil)
}

// serveRelay relays the session on its origin leg o, counted and logged;
// sb, when not nil, is the standby whose publish it is.
func (c *conn) serveRelay(ctx context.Context, o *originLeg, origin stream.Origin, sb *standby) {
	st := &c.s.stats
	if c.s.cfg.Sessions != nil {
		// Set before the relay's goroutines start; they only add.
		c.client.conn.sessIn, c.client.conn.sessOut = &c.clientIn, &c.clientOut
		kind := stream.KindPlay
		if c.publish {
			kind = stream.KindPublish
		}
		end := c.s.cfg.Sessions.Track(c.req.Key, "rtmp", kind, &c.clientIn, &c.clientOut)
		defer end()
	}
	gauge := &st.players
	if c.publish {
		gauge = &st.publishers
	}
	gauge.Add(1)
	defer gauge.Add(-1)
	start := time.Now()
	c.log.Info("relaying", "publish", c.publish)
	var err error
	if c.publish {
		err = c.relayPublish(ctx, o, origin, sb)
	} else {
		err = c.relay(o)
	}
	c.oversized(err)
	c.log.Info("session ended", "publish", c.publish, "duration", time.Since(start).Round(time.Millisecond),
		"in", c.client.r.BytesRead(), "out", c.client.w.BytesWritten(), "reason", err)
}

// accepted tells the Publisher that origin accepted the client's publish on
// leg o (route.Accepted), which writes the stream's assignment. When the
// stream is assigned to another origin (a client of another node was
// first), the leg is closed and the publish is replayed there. It returns
// the leg and origin to relay to.
func (c *conn) accepted(ctx context.Context, o *originLeg, origin stream.Origin) (*originLeg, stream.Origin, error) {
	c.nc.SetDeadline(time.Now().Add(c.s.cfg.HandshakeTimeout + c.s.cfg.DialTimeout))
	actx, cancel := context.WithTimeout(ctx, c.s.cfg.HandshakeTimeout)
	assigned, err := route.Accepted(actx, c.s.cfg.Publisher, c.req.Key, origin)
	cancel()
	if err != nil {
		return nil, origin, fmt.Errorf("%w: %s: %v", ErrNoOrigin, c.req.Key, err)
	}
	if assigned.ID == origin.ID {
		return o, origin, nil
	}
	c.log.Info("stream assigned to another origin meanwhile; publishing there", "from", origin.ID, "to", assigned.ID)
	o.conn.Conn.Close()
	o.release()
	c.origin = nil
	if assigned.RTMP == "" {
		return nil, assigned, fmt.Errorf("%w: origin %s of %s serves no RTMP", ErrNoOrigin, assigned.ID, c.req.Key)
	}
	o, err = c.dialOrigin(ctx, assigned.RTMP)
	return o, assigned, err
}

// clientReadErr marks an error of reading the client as ErrMessageTooLarge
// when the client sent a message above Config.MaxMessageSize.
func clientReadErr(err error) error {
	if errors.Is(err, chunk.ErrMessageTooLarge) {
		return fmt.Errorf("%w: %w", ErrMessageTooLarge, err)
	}
	return err
}

// oversized counts and logs a session that ended because its client sent a
// message above Config.MaxMessageSize, and reports whether err says so.
// Nothing of that message reached the origin: the reader refuses it from
// its header on.
func (c *conn) oversized(err error) bool {
	if !errors.Is(err, ErrMessageTooLarge) {
		return false
	}
	c.s.stats.oversized.Add(1)
	c.log.Warn("client sent a message larger than --rtmp-max-message; session refused", "max", c.s.cfg.MaxMessageSize, "err", err)
	return true
}

// identify answers the client's commands until it publishes or plays, and
// derives the stream key.
func (c *conn) identify() error {
	cl := c.client
	for {
		m, err := cl.r.ReadMessage()
		if err != nil {
			return clientReadErr(err)
		}
		if handled, err := cl.handleControl(&m); handled || err != nil {
			if err != nil {
				return err
			}
			continue
		}
		if !isCommand(&m) {
			continue
		}
		cmd, err := parseCommand(&m)
		if err != nil {
			return err
		}
		switch cmd.Name {
		case "connect":
			if err := c.onConnect(&cmd); err != nil {
				return err
			}
		case "releaseStream", "FCPublish", "FCUnpublish", "_checkbw", "getStreamLength":
			if err := cl.writeCommand(csidCommand, m.StreamID, "_result", cmd.Txn, nil, amf0.Undefined{}); err != nil {
				return err
			}
		case "createStream":
			if err := cl.writeCommand(csidCommand, m.StreamID, "_result", cmd.Txn, nil, 1.0); err != nil {
				return err
			}
		case "publish", "play":
			if c.connectObj == nil {
				return fmt.Errorf("%w: %s before connect", ErrProtocol, cmd.Name)
			}
			c.publish = cmd.Name == "publish"
			c.streamCmd = cmd
			c.clientStream = m.StreamID
			name, _ := cmd.arg(0).(string)
			tcURL := c.tcURL
			if tcURL == "" {
				tcURL = "rtmp:///" + c.connectObj.String("app")
			}
			req, err := stream.FromRTMP(tcURL, name)
			if err != nil {
				code := codePlayNotFound
				if c.publish {
					code = codePublishBadName
				}
				c.sendStatus(levelError, code, fmt.Sprintf("bad stream name %q: %v", name, err))
				c.lingerClose()
				return fmt.Errorf("%w: %q: %w", ErrBadStream, name, err)
			}
			c.req = req
			return nil
		default:
			// deleteStream, closeStream and unknown calls need no answer
			// before the stream is known.
		}
		if err := cl.flush(); err != nil {
			return err
		}
	}
}

// onConnect records the client's connect command and answers it as SRS
// does: window size, peer bandwidth, chunk size, then _result.
func (c *conn) onConnect(cmd *command) error {
	if c.connectObj != nil {
		return fmt.Errorf("%w: second connect", ErrProtocol)
	}
	obj, _ := cmd.Obj.(amf0.Object)
	if obj == nil {
		return fmt.Errorf("%w: connect without command object", ErrProtocol)
	}
	c.connectObj = obj
	c.connectTxn = cmd.Txn
	c.connectArgs = cmd.Args
	c.tcURL = obj.String("tcUrl")
	enc, _ := obj.Number("objectEncoding")

	cl := c.client
	cl.mu.Lock()
	err := errors.Join(
		cl.w.WriteControl(chunk.TypeWindowAckSize, ackWindow),
		cl.w.WriteSetPeerBandwidth(ackWindow, 2),
		cl.w.SetChunkSize(clientChunkSize),
	)
	cl.mu.Unlock()
	if err != nil {
		return err
	}
	props := amf0.Object{{Key: "fmsVer", Value: fmsVersion}, {Key: "capabilities", Value: fmsCapabilities}, {Key: "mode", Value: 1.0}}
	info := status(levelStatus, codeConnectSuccess, connectSuccessDetail).Set("objectEncoding", enc)
	return cl.writeCommand(csidCommand, 0, "_result", cmd.Txn, props, info)
}

// sendStatus writes an onStatus to the client on its publish/play stream.
func (c *conn) sendStatus(level, code, description string) error {
	if err := c.client.writeCommand(csidStream, c.clientStream, "onStatus", 0, nil, status(level, code, description)); err != nil {
		return err
	}
	return c.client.flush()
}

// refuse tells the client why its publish or play failed and closes the
// connection gracefully, so the message is not lost to a reset.
func (c *conn) refuse(description string) {
	code := codePlayFailed
	if c.publish {
		code = codePublishFailed
	}
	c.nc.SetDeadline(time.Now().Add(time.Second))
	c.sendStatus(levelError, code, description)
	c.lingerClose()
}

// lingerClose half-closes the client connection and discards what it still
// sends for a short while, so that the last message reaches it before the
// connection is torn down.
func (c *conn) lingerClose() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.nc.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(c.nc, 1<<20))
}
