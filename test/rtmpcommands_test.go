package e2e

import (
	"fmt"
	"net"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/handshake"
)

// rtmpCommands is a minimal RTMP client for tests that speak the command
// exchange themselves (connect, createStream, publish) and read the
// server's answers: a handshaken connection with its chunk reader and
// writer.
type rtmpCommands struct {
	nc net.Conn
	r  *chunk.Reader
	w  *chunk.Writer
}

// dialRTMPCommands dials addr within dialTimeout, sets a deadline of
// deadline on the whole exchange and does the client handshake. The caller
// closes the connection.
func dialRTMPCommands(addr string, dialTimeout, deadline time.Duration) (*rtmpCommands, error) {
	nc, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(deadline))
	if err := handshake.Client(nc, 0); err != nil {
		nc.Close()
		return nil, err
	}
	return &rtmpCommands{nc: nc, r: chunk.NewReader(nc, 1<<20, 4096), w: chunk.NewWriter(nc, 4096)}, nil
}

// Close closes the connection.
func (c *rtmpCommands) Close() error { return c.nc.Close() }

// send writes one AMF0 command on message stream sid and flushes it.
func (c *rtmpCommands) send(sid uint32, vals ...any) error {
	b, err := amf0.AppendAll(nil, vals...)
	if err != nil {
		return err
	}
	if err := c.w.WriteMessage(&chunk.Message{CSID: 3, Type: chunk.TypeCommandAMF0, StreamID: sid, Payload: b}); err != nil {
		return err
	}
	return c.w.Flush()
}

// until reads commands until one named name arrives and returns its
// values; other messages are skipped.
func (c *rtmpCommands) until(name string) ([]any, error) {
	for {
		m, err := c.r.ReadMessage()
		if err != nil {
			return nil, fmt.Errorf("waiting for %s: %w", name, err)
		}
		if m.Type != chunk.TypeCommandAMF0 {
			continue
		}
		vals, err := amf0.DecodeAll(m.Payload)
		if err != nil {
			return nil, err
		}
		if len(vals) > 0 && vals[0] == name {
			return vals, nil
		}
	}
}
