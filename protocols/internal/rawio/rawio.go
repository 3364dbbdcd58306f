// Package rawio gives a node's origin connections reads that are raw
// system calls on their non-blocking sockets.
//
// A read through the net package tells the Go scheduler that it enters a
// system call, and the first such call after the process went idle wakes
// the runtime's monitor thread and resets its period to 20 µs: it then
// sleeps and wakes some fifty times before it slows down again. A node
// that relays streams goes idle between an origin's batches of media (SRS
// writes a batch every 350 ms by default), so each batch cost it those
// wake-ups. A raw read returns at once on a non-blocking socket (EAGAIN
// when there is nothing to read, and the reader then waits in the network
// poller as before), so the monitor thread is left asleep.
package rawio

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Conn is a connection whose Read is a raw read(2) on its descriptor. The
// rest is the connection's own: writes, deadlines (which bound reads as
// before), Close.
type Conn struct {
	net.Conn
	rc syscall.RawConn
}

// Wrap returns nc with raw reads when it gives its descriptor (a TCP
// connection), else nc itself.
func Wrap(nc net.Conn) net.Conn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nc
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nc
	}
	return &Conn{Conn: nc, rc: rc}
}

// Read reads into b, waiting in the network poller while the socket has
// nothing. It returns io.EOF once the peer has closed its side.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait until readable, or the deadline
			}
			n, errno = int(r), e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, os.NewSyscallError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// RawConn returns the wrapped connection.
func (c *Conn) RawConn() net.Conn { return c.Conn }
