package rtmp

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
)

// relay tells the client the session started and then relays messages
// between the legs until either side closes or fails. Each direction has its
// own reading goroutine; when one ends it closes both connections, which
// ends the other. relay returns after both have ended, with the error that
// ended the session first (nil for an orderly close).
func (c *conn) relay(o *originLeg) error {
	cl := c.client
	if c.publish {
		if err := c.sendStatus(levelStatus, codePublishStart, "Started publishing stream."); err != nil {
			return err
		}
	} else {
		for i := range o.pending {
			m := &o.pending[i]
			if m.StreamID == o.streamID {
				m.StreamID = c.clientStream
			}
			if isUserControlStreamEvent(m) {
				binary.BigEndian.PutUint32(m.Payload[2:], c.clientStream)
			}
			if err := cl.write(m, false); err != nil {
				return err
			}
		}
		o.pending = nil
		if err := cl.flush(); err != nil {
			return err
		}
	}

	// The side that sends media must keep sending; the other may be silent
	// for long (a player acknowledges rarely), and is watched through the
	// write deadline on the media direction instead.
	idle := c.s.cfg.IdleTimeout
	cl.conn.writeIdle, o.conn.writeIdle = idle, idle
	if c.publish {
		cl.conn.readIdle = idle
	} else {
		o.conn.readIdle = idle
	}

	var first error
	var once sync.Once
	stop := func(err error) {
		once.Do(func() { first = err })
		c.closeAll()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		stop(pump(o.leg, cl, o.streamID, c.clientStream))
	}()
	stop(clientReadErr(pump(cl, o.leg, c.clientStream, o.streamID)))
	wg.Wait()
	if isClosedErr(first) {
		return nil
	}
	return first
}

// pump reads messages from src and writes them to dst until an error,
// applying protocol control messages to src (chunk size, acknowledgement
// window, pings) instead of forwarding them, and mapping the session's
// message stream id from srcStream to dstStream. It flushes dst whenever src
// has no more buffered input, so bursts go out in few writes. It does not
// allocate once the legs' buffers have grown.
func pump(src, dst *leg, srcStream, dstStream uint32) error {
	for {
		m, err := src.r.ReadMessage()
		if err != nil {
			return err
		}
		if err := src.maybeAck(); err != nil {
			return err
		}
		if m.Type <= chunk.TypeSetPeerBandwidth {
			handled, err := src.handleControl(&m)
			if err != nil {
				return err
			}
			if handled {
				continue
			}
			if binary.BigEndian.Uint32(m.Payload[2:]) == srcStream {
				binary.BigEndian.PutUint32(m.Payload[2:], dstStream)
			}
		}
		if m.StreamID == srcStream {
			m.StreamID = dstStream
		}
		if err := dst.write(&m, src.r.Buffered() == 0); err != nil {
			return err
		}
	}
}

func isUserControlStreamEvent(m *chunk.Message) bool {
	if m.Type != chunk.TypeUserControl || len(m.Payload) < 6 {
		return false
	}
	switch binary.BigEndian.Uint16(m.Payload) {
	case chunk.EventStreamBegin, chunk.EventStreamEOF, chunk.EventStreamDry,
		chunk.EventSetBufferLength, chunk.EventStreamIsRecorded:
		return true
	}
	return false
}

// isClosedErr reports whether err is the ordinary end of a connection: the
// peer closed, or the other direction closed it.
func isClosedErr(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
