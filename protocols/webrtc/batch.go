package webrtc

import "github.com/srs-mesh/srs-mesh/protocols/internal/udpbatch"

// originBatch is the listener's batch of client packets for known flows.
// Packets join it as the batch read from the relay socket is dispatched;
// flush then sends each session's packets, in the order they came, with one
// call on the session's upstream socket. It holds at most listenBatch
// packets and allocates nothing once made. It is used under
// Server.batchMu.
type originBatch struct {
	sess []*relaySession // the session of each queued packet
	msgs []udpbatch.Msg  // the queued packets, pointing into the read buffers
	out  []udpbatch.Msg  // one session's packets, for its write
}

func (o *originBatch) init(n int) {
	o.sess = make([]*relaySession, 0, n)
	o.msgs = make([]udpbatch.Msg, 0, n)
	o.out = make([]udpbatch.Msg, 0, n)
}

// add queues p for rs. p must stay valid until flush. A full batch is
// flushed first.
func (o *originBatch) add(s *Server, rs *relaySession, p []byte) {
	if len(o.sess) == cap(o.sess) {
		o.flush(s)
	}
	o.sess = append(o.sess, rs)
	o.msgs = append(o.msgs, udpbatch.Msg{Buf: p, N: len(p)})
}

// flush sends the queued packets, one write per session.
func (o *originBatch) flush(s *Server) {
	for i, rs := range o.sess {
		if rs == nil {
			continue
		}
		o.out = o.out[:0]
		for j := i; j < len(o.sess); j++ {
			if o.sess[j] == rs {
				o.out = append(o.out, o.msgs[j])
				o.sess[j] = nil
			}
		}
		rs.toOrigin(s, o.out)
	}
	clear(o.msgs) // drop the references to the read buffers
	clear(o.out)
	o.sess, o.msgs, o.out = o.sess[:0], o.msgs[:0], o.out[:0]
}
