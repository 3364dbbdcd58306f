package sfu

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/srs-mesh/srs-mesh/protocols/internal/udpbatch"
)

// Bounds of the shared port's send queue (see sender).
const (
	// sendQueue is the most packets waiting for the socket. Beyond it
	// writers wait, as they would for a full socket buffer.
	sendQueue = 4096
	// sendBuf is the size of a queued packet's buffer: pion's SRTP
	// packets fit (its MTU is 1200 bytes, plus the SRTP tag); a larger
	// packet gets a buffer of its own, not kept for reuse. The queue thus
	// holds at most about sendQueue*sendBuf bytes in buffers.
	sendBuf = 1500
	// sendBatch is the most packets of one sendmmsg call.
	sendBatch = 64
	// sendFree is the most idle buffers kept for reuse.
	sendFree = 1024
)

// sender writes the packets pion sends from the shared port (SRTP, DTLS,
// STUN, in the order pion wrote them) to the port's socket from one
// goroutine, as many per system call as have queued since the previous
// one: when the fan-out writes a packet to hundreds of viewers, a call
// carries up to sendBatch of them instead of one sendto each. Queueing
// copies the packet, for pion reuses its buffer; with sendQueue packets
// queued it waits for the socket, as a write on a socket whose buffer is
// full does.
type sender struct {
	w      *udpbatch.Writer
	wake   chan struct{} // capacity 1: packets are queued
	failed atomic.Uint64 // packets the socket refused

	mu      sync.Mutex
	space   sync.Cond      // signalled when the writer took the queue, or closed
	pending []udpbatch.Msg // queued packets, oldest first
	spare   []udpbatch.Msg // the writer's previous batch, reused
	free    [][]byte       // buffers of sendBuf bytes for reuse
	closed  bool
}

func newSender(c *net.UDPConn) *sender {
	s := &sender{w: udpbatch.NewWriter(c, sendBatch), wake: make(chan struct{}, 1),
		pending: make([]udpbatch.Msg, 0, sendBatch), spare: make([]udpbatch.Msg, 0, sendBatch)}
	s.space.L = &s.mu
	return s
}

// send queues a copy of p for to, waiting while the queue is full. It
// fails with net.ErrClosed once the sender stopped.
func (s *sender) send(p []byte, to netip.AddrPort) (int, error) {
	s.mu.Lock()
	for len(s.pending) >= sendQueue && !s.closed {
		s.space.Wait()
	}
	if s.closed {
		s.mu.Unlock()
		return 0, net.ErrClosed
	}
	var b []byte
	if n := len(s.free); n > 0 && len(p) <= sendBuf {
		b, s.free = s.free[n-1], s.free[:n-1]
	} else {
		b = make([]byte, max(len(p), sendBuf))
	}
	s.pending = append(s.pending, udpbatch.Msg{Buf: b, N: copy(b, p), Addr: to})
	wake := len(s.pending) == 1
	s.mu.Unlock()
	if wake {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// run writes the queued packets until done is closed, then refuses
// more.
func (s *sender) run(done <-chan struct{}) {
	for {
		select {
		case <-done:
			s.close()
			return
		case <-s.wake:
		}
		for {
			s.mu.Lock()
			batch := s.pending
			s.pending, s.spare = s.spare[:0], nil
			s.space.Broadcast()
			s.mu.Unlock()
			if len(batch) == 0 {
				s.mu.Lock()
				s.spare = batch
				s.mu.Unlock()
				break
			}
			sent, _, err := s.w.Write(batch)
			if err != nil {
				s.failed.Add(uint64(len(batch) - sent))
			}
			s.mu.Lock()
			for i := range batch {
				if cap(batch[i].Buf) == sendBuf && len(s.free) < sendFree {
					s.free = append(s.free, batch[i].Buf[:sendBuf])
				}
			}
			clear(batch)
			s.spare = batch[:0]
			s.mu.Unlock()
			if errors.Is(err, net.ErrClosed) {
				// The relay closed its socket: the node is stopping.
				s.close()
				<-done
				return
			}
		}
	}
}

// close makes send fail from now on, waking the senders that wait.
func (s *sender) close() {
	s.mu.Lock()
	s.closed = true
	s.pending, s.free = nil, nil
	s.space.Broadcast()
	s.mu.Unlock()
}
