package rtmp

import (
	"errors"
	"io"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/stream"
)

// PublisherDrop reports a publisher that dropped: its connection ended
// (closed, reset or idle past the timeout) while it was publishing, without
// it having sent FCUnpublish, deleteStream or closeStream first, as an
// encoder that stops on purpose does (OBS, FFmpeg). A publish the node
// ended itself (a stall, see Config.PublishStall; the node shutting down)
// is not a drop.
type PublisherDrop struct {
	Key stream.Key
	// Peer is the publisher's address.
	Peer string
	// Origin is the id of the origin it published to.
	Origin string
	// Published is how long it published through this node.
	Published time.Duration
	// Err is what ended its connection (nil: it closed it).
	Err error
}

// PublisherDropObserver is told about publishers that dropped
// (Config.PublisherDrops); it is called from the session's goroutine and
// must not block.
type PublisherDropObserver interface {
	PublisherDropped(PublisherDrop)
}

// noteCommand records that the publisher unpublished when m, a command
// message, is one of the commands an encoder sends when it stops. Only
// commands are decoded, and encoders send few while publishing.
func (p *publisher) noteCommand(m *chunk.Message) {
	if p.unpublished {
		return
	}
	cmd, err := parseCommand(m)
	if err != nil {
		return
	}
	switch cmd.Name {
	case "FCUnpublish", "deleteStream", "closeStream":
		p.unpublished = true
	}
}

// reportDrop tells Config.PublisherDrops about the publisher's session
// that ended with err after published, when that end was a drop.
func (p *publisher) reportDrop(err error, published time.Duration) {
	ob := p.c.s.cfg.PublisherDrops
	if ob == nil || !p.readErr || p.unpublished || p.stalled.Load() || p.ctx.Err() != nil ||
		errors.Is(err, ErrMessageTooLarge) {
		return
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	ob.PublisherDropped(PublisherDrop{Key: p.c.req.Key, Peer: p.c.nc.RemoteAddr().String(), Origin: p.origin.ID,
		Published: published, Err: err})
}
