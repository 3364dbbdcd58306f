package srt

import (
	"github.com/datarhei/gosrt/packet"

	"github.com/srs-mesh/srs-mesh/protocols/internal/udpbatch"
)

// originBatch is the listener goroutine's batch of caller packets for
// established sessions. Packets join it as the batch read from the
// listener socket is dispatched; flush then sends each session's packets,
// in the order they came, with one call on the session's upstream socket.
// It holds at most listenBatch packets and allocates nothing once made.
type originBatch struct {
	sess []*session     // the session of each queued packet
	msgs []udpbatch.Msg // the queued packets, pointing into the read buffers
	out  []udpbatch.Msg // one session's packets, for its write
}

func (o *originBatch) init(n int) {
	o.sess = make([]*session, 0, n)
	o.msgs = make([]udpbatch.Msg, 0, n)
	o.out = make([]udpbatch.Msg, 0, n)
}

// add queues b for ss. b must stay valid until flush. A full batch is
// flushed first (only a caller of dispatch that never flushes could fill
// it).
func (o *originBatch) add(ss *session, b []byte) {
	if len(o.sess) == cap(o.sess) {
		o.flush(ss.srv)
	}
	o.sess = append(o.sess, ss)
	o.msgs = append(o.msgs, udpbatch.Msg{Buf: b, N: len(b)})
}

// flush sends the queued packets, one write per session, and closes the
// sessions whose caller sent a SHUTDOWN once it went on to the origin.
func (o *originBatch) flush(s *Server) {
	for i, ss := range o.sess {
		if ss == nil {
			continue
		}
		o.out = o.out[:0]
		shutdown := false
		for j := i; j < len(o.sess); j++ {
			if o.sess[j] != ss {
				continue
			}
			o.out = append(o.out, o.msgs[j])
			o.sess[j] = nil
			if isControl(o.msgs[j].Payload(), packet.CTRLTYPE_SHUTDOWN) {
				shutdown = true
			}
		}
		ss.toOrigin(o.out)
		if shutdown {
			ss.close("caller shutdown")
		}
	}
	clear(o.msgs) // drop the references to the read buffers
	clear(o.out)
	o.sess, o.msgs, o.out = o.sess[:0], o.msgs[:0], o.out[:0]
}
