// Package udpbatch reads and writes UDP sockets many datagrams per system
// call: recvmmsg and sendmmsg on Linux, one datagram per call elsewhere and
// on sockets that are not a *net.UDPConn. It also sizes socket buffers and
// reads the kernel's count of datagrams a socket dropped because its
// receive buffer was full (SO_RXQ_OVFL), so that a relay can tell its own
// loss from the network's. Where the kernel has them, and the caller asks
// (NewWriterGSO, NewReaderGRO), it also hands runs of same-sized datagrams
// to one destination to the kernel as one segmented send (UDP GSO), and
// lets the kernel coalesce what one sender sent (UDP GRO), detected per
// socket with a fallback to plain batches.
//
// A Reader and a Writer each belong to one goroutine; a socket may have one
// Reader and any number of Writers. Neither allocates per datagram nor
// starts goroutines.
package udpbatch

import (
	"errors"
	"net"
	"net/netip"
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
	if uc, ok := c.(*net.UDPConn); ok && batch > 1 {
		r.sys = newSysReader(uc, r.msgs)
	}
	return r
}

// NewReaderGRO is NewReader with UDP generic receive offload where the
// kernel has it (Linux 5.0 and later, with a *net.UDPConn and batch above
// 1): the kernel may then coalesce consecutive datagrams of one sender into
// one, and the Reader splits them again, so that Read and ReadEach hand
// over the datagrams as sent, at most batch at a time. The coalesced
// datagrams are read into the Reader's own buffers: up to 16 of 64 KiB
// each (1 MiB, instead of batch × size). Where the kernel refuses UDP_GRO
// it returns NewReader(c, batch, size); Coalescing says which.
func NewReaderGRO(c Conn, batch, size int) *Reader {
	batch = max(batch, 1)
	if uc, ok := c.(*net.UDPConn); ok && batch > 1 {
		r := &Reader{c: c, msgs: make([]Msg, batch)}
		if r.sys = newGROReader(uc, r.msgs); r.sys != nil {
			return r
		}
	}
	return NewReader(c, batch, size)
}

// Coalescing reports whether the kernel coalesces the datagrams this
// Reader reads (see NewReaderGRO).
func (r *Reader) Coalescing() bool { return r.sys != nil && r.sys.coalescing() }

// Batched reports whether reads take more than one datagram per call.
func (r *Reader) Batched() bool { return r.sys != nil }

// Read waits for at least one datagram and returns the datagrams read,
// which stay valid until the next Read. Errors are those of the socket
// (deadlines, net.ErrClosed, ICMP errors on a connected socket).
func (r *Reader) Read() ([]Msg, error) {
	if r.sys != nil {
		n, err := r.sys.read()
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

// ReadEach reads datagrams as Read does and hands every batch to handle,
// until handle returns false (ReadEach then returns nil) or the socket
// fails (ReadEach returns the error Read would). The batch handed to handle
// is valid until handle returns. Where reads are batched, a batch that did
// not fill the Reader's buffers means the socket was empty, so ReadEach
// waits for the next datagram straight away instead of first asking the
// socket once more as a loop around Read does: for a feed that arrives a
// datagram at a time that saves one of the three system calls per datagram
// (read, relay, read again to find nothing).
func (r *Reader) ReadEach(handle func([]Msg) bool) error {
	if r.sys == nil {
		for {
			ms, err := r.Read()
			if err != nil {
				return err
			}
			if !handle(ms) {
				return nil
			}
		}
	}
	return r.sys.each(func(n int) bool { return handle(r.msgs[:n]) })
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
	if uc, ok := c.(*net.UDPConn); ok {
		if uc.RemoteAddr() != nil {
			w.connected = uc
		}
		if batch > 1 {
			w.sys = newSysWriter(uc, batch, w.connected != nil)
		}
	}
	return w
}

// NewWriterGSO is NewWriter with UDP generic segmentation offload where
// the kernel has it (Linux 4.18 and later, with a *net.UDPConn and batch
// above 1): a run of datagrams of ms to one destination, all of one size
// but the last which may be shorter, goes to the kernel as one datagram
// that it cuts into the datagrams sent (at most 64 of them, and 64 KiB).
// Receivers see the same datagrams as from NewWriter. Support is checked
// here; if the kernel later refuses a segmented send (a device that cannot
// checksum it, a path MTU below the datagrams' size) the Writer sends that
// run and all later ones datagram by datagram, and FellBack reports it.
func NewWriterGSO(c Conn, batch int) *Writer {
	w := NewWriter(c, batch)
	if w.sys != nil {
		w.sys.enableGSO()
	}
	return w
}

// Segmenting reports whether the Writer currently sends runs of datagrams
// as one segmented send (see NewWriterGSO).
func (w *Writer) Segmenting() bool { return w.sys != nil && w.sys.segmenting() }

// FellBack reports whether the Writer segmented until the kernel refused
// it and now sends datagram by datagram.
func (w *Writer) FellBack() bool { return w.sys != nil && w.sys.fellBackGSO() }

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
