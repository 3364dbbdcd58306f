package rtmp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/internal/rawio"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/handshake"
)

// Transaction ids of the commands this proxy sends to an origin.
const (
	txnConnect       = 1
	txnReleaseStream = 2
	txnFCPublish     = 3
	txnCreateStream  = 4
	txnStream        = 5
)

// originLeg is an origin connection that accepted the client's publish or play.
type originLeg struct {
	*leg
	streamID uint32 // the origin's message stream id for the session
	// pending holds what the origin sent on the stream before and with its
	// Play.Start (stream begin, Play.Reset, Play.Start), to be forwarded to
	// a player once the relay starts.
	pending []chunk.Message
}

// originStreamName is the stream name to send to the origin: the client's
// own name with its query, unless the client put the app into the stream
// name, in which case the app moves to the origin's tcUrl.
func (c *conn) originStreamName() string {
	name, _ := c.streamCmd.arg(0).(string)
	base, _, _ := strings.Cut(name, "?")
	if !strings.Contains(base, "/") {
		return name
	}
	if c.req.StreamQuery != "" {
		return c.req.Key.Stream + "?" + c.req.StreamQuery
	}
	return c.req.Key.Stream
}

// originConnectObject is the client's connect object with tcUrl pointing at
// the origin, keeping the app and its query (SRS takes ?vhost= from there).
func (c *conn) originConnectObject(addr string) amf0.Object {
	tc := "rtmp://" + addr + "/" + c.req.App
	if c.req.AppQuery != "" {
		tc += "?" + c.req.AppQuery
	}
	obj := slices.Clone(c.connectObj).Set("tcUrl", tc)
	if obj.String("app") == "" || c.tcURL == "" {
		obj = obj.Set("app", c.req.App)
	}
	return obj
}

// dialOrigin opens the origin leg and replays the session: handshake,
// connect, releaseStream and FCPublish (publishers), createStream, then the
// client's publish or play. It returns once the origin accepted, or an error
// saying why not (wrapping ErrOriginDown or ErrOriginRefused). The whole
// exchange is bounded by Config.DialTimeout.
func (c *conn) dialOrigin(ctx context.Context, addr string) (*originLeg, error) {
	o, err := c.openOriginLeg(ctx, addr)
	if err != nil {
		return nil, err
	}
	c.origin = o
	return o, nil
}

// openOriginLeg is dialOrigin without making the leg the session's: the
// caller owns the leg it returns. The exchange is bounded by
// Config.DialTimeout and by ctx. On failure the connection is closed and the
// leg's buffers are released.
func (c *conn) openOriginLeg(parent context.Context, addr string) (*originLeg, error) {
	return c.openLeg(parent, addr, c.setOrigin, nil)
}

// openLeg is openOriginLeg with the connection recorded by track (which
// reports false, having closed it, when the session is closing) and, when
// the set-up fails, forgotten by untrack (when not nil).
func (c *conn) openLeg(parent context.Context, addr string, track func(net.Conn) bool, untrack func(net.Conn)) (*originLeg, error) {
	ctx, cancel := context.WithTimeout(parent, c.s.cfg.DialTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	d := net.Dialer{}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrOriginDown, addr, err)
	}
	nc = rawio.Wrap(nc)
	if !track(nc) {
		return nil, fmt.Errorf("%w: session closed", ErrOriginDown)
	}
	// The connection's deadline bounds the set-up (and reports a timeout);
	// the caller's cancellation closes the connection.
	stop := context.AfterFunc(parent, func() { nc.Close() })
	nc.SetDeadline(deadline)
	st := &c.s.stats
	o := &originLeg{leg: newLeg(nc, &st.originBytesIn, &st.originBytesOut, c.s.cfg.originMaxMessage(), &c.s.bufs)}
	fail := func(err error) (*originLeg, error) {
		stop()
		nc.Close()
		if untrack != nil {
			untrack(nc)
		}
		o.release()
		return nil, err
	}
	if err := handshake.Client(o.conn, 0); err != nil {
		return fail(originErr(addr, "handshake", err))
	}
	if err := o.replay(c, addr); err != nil {
		return fail(originErr(addr, "set-up", err))
	}
	if !stop() {
		return fail(fmt.Errorf("%w: %s: set-up cancelled", ErrOriginDown, addr))
	}
	nc.SetDeadline(time.Time{})
	return o, nil
}

// setupClosed marks an origin that closed the connection during set-up: a
// refusal for the client's onStatus, but not a clean one (an origin that is
// going away closes connections too).
type setupClosed struct{ error }

func (e setupClosed) Unwrap() error { return e.error }

// cleanRefusal reports whether err is an origin's own answer refusing the
// session: an _error or an error onStatus.
func cleanRefusal(err error) bool {
	var sc setupClosed
	return errors.Is(err, ErrOriginRefused) && !errors.As(err, &sc)
}

// originErr classifies an origin leg failure for the client's onStatus.
func originErr(addr, step string, err error) error {
	switch {
	case errors.Is(err, ErrOriginRefused):
		return err
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w: %s: %s timed out", ErrOriginDown, addr, step)
	case errors.Is(err, io.EOF):
		return setupClosed{fmt.Errorf("%w: %s: connection closed during %s", ErrOriginRefused, addr, step)}
	}
	return fmt.Errorf("%w: %s: %s: %v", ErrOriginDown, addr, step, err)
}

func (o *originLeg) replay(c *conn, addr string) error {
	name := c.originStreamName()
	o.mu.Lock()
	err := o.w.SetChunkSize(originChunkSize)
	o.mu.Unlock()
	if err != nil {
		return err
	}
	connectArgs := append([]any(nil), c.connectArgs...)
	if err := o.writeCommand(csidCommand, 0, "connect", txnConnect, c.originConnectObject(addr), connectArgs...); err != nil {
		return err
	}
	if c.publish {
		if err := o.writeCommand(csidCommand, 0, "releaseStream", txnReleaseStream, nil, name); err != nil {
			return err
		}
		if err := o.writeCommand(csidCommand, 0, "FCPublish", txnFCPublish, nil, name); err != nil {
			return err
		}
	}
	if err := o.writeCommand(csidCommand, 0, "createStream", txnCreateStream, nil); err != nil {
		return err
	}
	if err := o.flush(); err != nil {
		return err
	}

	created := false
	for {
		m, err := o.r.ReadMessage()
		if err != nil {
			return err
		}
		if handled, err := o.handleControl(&m); handled || err != nil {
			if err != nil {
				return err
			}
			continue
		}
		if err := o.maybeAck(); err != nil {
			return err
		}
		if !isCommand(&m) {
			if created && !c.publish && (m.StreamID == o.streamID || isUserControlStreamEvent(&m)) {
				o.keep(&m)
			}
			continue
		}
		cmd, err := parseCommand(&m)
		if err != nil {
			return err
		}
		switch {
		case cmd.Name == "_error" && (cmd.Txn == txnReleaseStream || cmd.Txn == txnFCPublish):
			// Optional calls some servers do not implement.
		case cmd.Name == "_error":
			return fmt.Errorf("%w: %s", ErrOriginRefused, describe(&cmd, "command "+txnName(cmd.Txn)+" failed"))
		case cmd.Name == "_result" && cmd.Txn == txnCreateStream:
			sid, ok := cmd.arg(0).(float64)
			if !ok || sid < 0 || sid > 0xffffffff {
				return fmt.Errorf("%w: createStream result %v", ErrProtocol, cmd.arg(0))
			}
			o.streamID = uint32(sid)
			created = true
			args := append([]any(nil), c.streamCmd.Args...)
			if len(args) == 0 {
				args = []any{name}
			} else {
				args[0] = name
			}
			if err := o.writeCommand(csidStream, o.streamID, c.streamCmd.Name, txnStream, nil, args...); err != nil {
				return err
			}
			if err := o.flush(); err != nil {
				return err
			}
		case cmd.Name == "onStatus":
			info := cmd.info()
			if info.String("level") == levelError {
				return fmt.Errorf("%w: %s", ErrOriginRefused, describe(&cmd, "error status"))
			}
			code := info.String("code")
			if !c.publish && created && m.StreamID == o.streamID {
				o.keep(&m)
			}
			if c.publish && code == codePublishStart || !c.publish && code == codePlayStart {
				return nil
			}
		}
	}
}

// keep queues a copy of m for the player.
func (o *originLeg) keep(m *chunk.Message) {
	cp := *m
	cp.Payload = bytes.Clone(m.Payload)
	o.pending = append(o.pending, cp)
}

// describe renders the code and description of an _error or onStatus.
func describe(cmd *command, fallback string) string {
	info := cmd.info()
	code, desc := info.String("code"), info.String("description")
	switch {
	case code != "" && desc != "":
		return code + ": " + desc
	case code != "":
		return code
	case desc != "":
		return desc
	}
	return fallback
}

func txnName(txn float64) string {
	switch txn {
	case txnConnect:
		return "connect"
	case txnReleaseStream:
		return "releaseStream"
	case txnFCPublish:
		return "FCPublish"
	case txnCreateStream:
		return "createStream"
	case txnStream:
		return "publish/play"
	}
	return fmt.Sprint(txn)
}
