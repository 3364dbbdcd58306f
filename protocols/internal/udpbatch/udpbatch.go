// Package udpbatch reads and writes UDP sockets many datagrams per system
// call: recvmmsg and sendmmsg on Linux, one datagram per call elsewhere and
// on sockets that are not a *net.UDPConn. It also sizes socket buffers and
// reads the kernel's count of datagrams a socket dropped because its
// receive buffer was full (SO_RXQ_OVFL), so that a relay can tell its own
// loss from the network's.
//
// A Reader and a Writer each belong to one goroutine; a socket may have one
// Reader and any number of Writers. Neither allocates per datagram nor
// starts goroutines.
package udpbatch

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// Msg is one datagram of a batch.
type Msg struct {
	// Buf is the datagram's buffer. A Reader owns it and reads up to
	// len(Buf) bytes into it; a Writer sends Buf[:N].
	Buf []byte
	// N is the datagram's length.
	N int
	// Addr is the sender (read) or the destination (write; ignored on a
	// connected socket).
	Addr netip.AddrPort
}

// Payload returns Buf[:N].
func (m *Msg) Payload() []byte { return m.Buf[:m.N] }

// Conn is the socket as a Reader or Writer uses it when it cannot batch.
// *net.UDPConn satisfies it; with one, Linux batches.
type Conn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// Reader reads datagrams from one socket into its own buffers, up to a
// batch per call. It belongs to one goroutine.
type Reader struct {
	c    Conn
	msgs []Msg
	sys  sysReader // nil when the socket cannot be batched

	// Coalescing (see Coalesce): after a Read of fewer than below
	// datagrams, the next Read first waits window.
	window  time.Duration
	below   int
	pending bool
}

// NewReader returns a Reader of c with batch buffers of size bytes each.
// batch below 1 is 1. On Linux, with a *net.UDPConn, reads are batched
// and the socket's kernel drop counter is enabled (see Dropped).
func NewReader(c Conn, batch, size int) *Reader {
	batch = max(batch, 1)
	r := &Reader{c: c, msgs: make([]Msg, batch)}
	mem := make([]byte, batch*size)
	for i := range r.msgs {
		r.msgs[i].Buf = mem[i*size : (i+1)*size : (i+1)*size]
	}
	if sc := batchable(c); sc != nil && batch > 1 {
		r.sys = newSysReader(sc, r.msgs)
	}
	return r
}

// Batched reports whether reads take more than one datagram per call.
func (r *Reader) Batched() bool { return r.sys != nil }

// Read waits for at least one datagram and returns the datagrams read,
// which stay valid until the next Read. Errors are those of the socket
// (deadlines, net.ErrClosed, ICMP errors on a connected socket).
func (r *Reader) Read() ([]Msg, error) {
	if r.sys != nil {
		if r.pending {
			r.sys.wait(r.window)
		}
		n, err := r.sys.read()
		r.pending = r.window > 0 && n > 0 && n < r.below
		return r.msgs[:n], err
	}
	m := &r.msgs[0]
	n, from, err := r.c.ReadFromUDPAddrPort(m.Buf)
	if err != nil {
		return nil, err
	}
	m.N, m.Addr = n, from
	return r.msgs[:1], nil
}

// Coalesce lets datagrams of a paced feed accumulate so that they are read
// and handled several per wakeup rather than one: after a Read that
// returned fewer than below datagrams (below is capped at the batch size),
// the next Read first waits window and then takes everything that arrived
// meanwhile, or waits for the next datagram as usual when none did. The
// wait is a sleep in the kernel by the reading thread, which costs less
// than the Go runtime's timers and netpoller wakeups it replaces. A Read
// that fills below or more of the batch is followed by no wait, so a busy
// socket is drained at full speed.
//
// A datagram is thus delayed by at most window (plus the kernel's timer
// slack, about 50 µs). While it waits, the socket's receive buffer must
// hold window's worth of traffic; at rates where a window's worth exceeds
// below datagrams the reads fill the batch and no longer wait. A window of
// 0 (the default) turns coalescing off. Coalescing applies where reads are
// batched (Batched); elsewhere Coalesce has no effect. A deadline set on
// the socket is noticed once the wait ends.
func (r *Reader) Coalesce(window time.Duration, below int) {
	r.window = max(window, 0)
	r.below = min(max(below, 1), len(r.msgs))
	r.pending = false
}

// Dropped returns how many datagrams the kernel dropped on the socket
// because its receive buffer was full, since the Reader was made, as far as
// the reads so far have learned (the count arrives with each datagram). It
// is 0 where the kernel does not report it.
func (r *Reader) Dropped() uint64 {
	if r.sys == nil {
		return 0
	}
	return r.sys.dropped()
}

// Writer sends batches of datagrams on one socket. It belongs to one
// goroutine; several Writers may share a socket.
type Writer struct {
	c         Conn
	connected *net.UDPConn // c, when it is a connected socket
	sys       sysWriter    // nil when the socket cannot be batched
}

// NewWriter returns a Writer of c for batches of up to batch datagrams.
// On a connected *net.UDPConn every datagram goes to the connected peer.
func NewWriter(c Conn, batch int) *Writer {
	w := &Writer{c: c}
	if uc, ok := c.(*net.UDPConn); ok && uc.RemoteAddr() != nil {
		w.connected = uc
	}
	if sc := batchable(c); sc != nil && batch > 1 {
		w.sys = newSysWriter(sc, batch, w.connected != nil)
	}
	return w
}

// syscallConn is a socket whose descriptor the batched reads and writes
// use.
type syscallConn interface {
	SyscallConn() (syscall.RawConn, error)
}

// batchable returns c when it is a socket that can be batched: a
// *net.UDPConn or a *Socket.
func batchable(c Conn) syscallConn {
	switch c := c.(type) {
	case *net.UDPConn:
		if c != nil {
			return c
		}
	case *Socket:
		if c != nil {
			return c
		}
	}
	return nil
}

// Write sends every datagram of ms, in order, and returns how many were
// sent and their bytes. A Writer of a nil Conn sends nothing and returns
// net.ErrClosed. A datagram the socket refuses (an ICMP error, a
// destination it cannot reach) is skipped and its error is returned after
// the rest were sent; a closed socket stops the batch. A full send buffer
// waits, as a single write does.
func (w *Writer) Write(ms []Msg) (sent, bytes int, err error) {
	if w.c == nil {
		// No socket (a server that is not serving): nothing is sent.
		return 0, 0, net.ErrClosed
	}
	if w.sys != nil {
		return w.sys.write(ms)
	}
	for i := range ms {
		var werr error
		if w.connected != nil {
			_, werr = w.connected.Write(ms[i].Payload())
		} else {
			_, werr = w.c.WriteToUDPAddrPort(ms[i].Payload(), ms[i].Addr)
		}
		if werr != nil {
			err = werr
			if errors.Is(werr, net.ErrClosed) {
				return sent, bytes, err
			}
			continue
		}
		sent++
		bytes += ms[i].N
	}
	return sent, bytes, err
}
