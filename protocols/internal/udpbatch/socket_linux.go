//go:build linux

package udpbatch

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// socketTick is how often a Socket's blocked read wakes to look at its
// read deadline (Close and a deadline in the past wake it at once).
const socketTick = 200 * time.Millisecond

// Socket is a UDP socket outside the Go runtime's network poller: its
// reads block in the kernel on the reading goroutine's thread. A socket in
// the poller wakes the poller's thread for every datagram that arrives,
// even while its reader is not waiting (as when a Reader coalesces, see
// Reader.Coalesce); a Socket wakes only its reader, and only when the
// reader waits. It suits a socket with one reader that always reads, such
// as a relay's listener, at the price of a thread held by that reader.
//
// A Reader and Writers batch on a Socket as on a *net.UDPConn. Writes may
// come from any goroutine. SetReadDeadline is honoured within 200 ms, and
// at once for a deadline in the past, which also ends the socket's reads
// for good (a relay's way of stopping its reader). Close ends reads and
// writes. A Socket is not connected.
type Socket struct {
	fd    int
	inet6 bool
	local net.Addr

	// mu is held shared by every system call on fd and exclusively by
	// Close to close it, so fd is never reused under a call.
	mu       sync.RWMutex
	closed   atomic.Bool
	deadline atomic.Int64 // unix nanoseconds; 0: none
}

// Detach takes uc's socket out of the Go runtime's network poller and
// returns it as a Socket; uc is closed (the socket lives on). On error
// uc is left as it was. Detach fails on connected sockets and where the
// platform has no Socket (errors.ErrUnsupported).
func Detach(uc *net.UDPConn) (*Socket, error) {
	if uc.RemoteAddr() != nil {
		return nil, errors.New("udpbatch: cannot detach a connected socket")
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd, domain := -1, 0
	var serr error
	if err := rc.Control(func(f uintptr) {
		if domain, serr = unix.GetsockoptInt(int(f), unix.SOL_SOCKET, unix.SO_DOMAIN); serr != nil {
			return
		}
		fd, serr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, os.NewSyscallError("dup", serr)
	}
	tv := unix.NsecToTimeval(int64(socketTick))
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.SetNonblock(fd, true) // uc shares the file: leave it as it was
		unix.Close(fd)
		return nil, os.NewSyscallError("setsockopt", err)
	}
	s := &Socket{fd: fd, inet6: domain == unix.AF_INET6, local: uc.LocalAddr()}
	uc.Close() // the poller forgets the socket; fd keeps it open
	return s, nil
}

// LocalAddr is the socket's local address.
func (s *Socket) LocalAddr() net.Addr { return s.local }

// SyscallConn gives the socket's descriptor to batched reads and writes.
func (s *Socket) SyscallConn() (syscall.RawConn, error) { return socketConn{s}, nil }

// SetReadDeadline sets the time after which reads fail with
// os.ErrDeadlineExceeded (zero: none). A time not after now also wakes a
// blocked read and ends reading on the socket for good.
func (s *Socket) SetReadDeadline(t time.Time) error {
	if s.closed.Load() {
		return net.ErrClosed
	}
	if t.IsZero() {
		s.deadline.Store(0)
		return nil
	}
	s.deadline.Store(t.UnixNano())
	if !t.After(time.Now()) {
		s.mu.RLock()
		if !s.closed.Load() {
			unix.Shutdown(s.fd, unix.SHUT_RD) // ENOTCONN, yet it wakes the reader
		}
		s.mu.RUnlock()
	}
	return nil
}

// Close ends reads and writes and closes the socket.
func (s *Socket) Close() error {
	if s.closed.Swap(true) {
		return net.ErrClosed
	}
	unix.Shutdown(s.fd, unix.SHUT_RDWR) // wakes a blocked read
	s.mu.Lock()
	err := unix.Close(s.fd)
	s.mu.Unlock()
	return err
}

// expired reports whether the read deadline has passed.
func (s *Socket) expired() bool {
	d := s.deadline.Load()
	return d != 0 && time.Now().UnixNano() >= d
}

// ReadFromUDPAddrPort reads one datagram (unbatched; it allocates).
func (s *Socket) ReadFromUDPAddrPort(b []byte) (n int, from netip.AddrPort, err error) {
	var rerr error
	err = socketConn{s}.Read(func(fd uintptr) bool {
		var sa unix.Sockaddr
		n, sa, rerr = unix.Recvfrom(int(fd), b, 0)
		if rerr == unix.EAGAIN || rerr == unix.EINTR {
			return false
		}
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			from = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		case *unix.SockaddrInet6:
			from = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
		}
		return true
	})
	if err == nil && rerr != nil {
		err = os.NewSyscallError("recvfrom", rerr)
	}
	return n, from, err
}

// WriteToUDPAddrPort sends one datagram (unbatched; it allocates).
func (s *Socket) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	var sa unix.Sockaddr
	switch a := to.Addr(); {
	case s.inet6 && a.IsValid():
		sa = &unix.SockaddrInet6{Port: int(to.Port()), Addr: a.As16()}
	case a.Unmap().Is4():
		sa = &unix.SockaddrInet4{Port: int(to.Port()), Addr: a.Unmap().As4()}
	default:
		return 0, &net.AddrError{Err: "address family not supported by the socket", Addr: to.String()}
	}
	var werr error
	err := socketConn{s}.Write(func(fd uintptr) bool {
		werr = unix.Sendto(int(fd), b, 0, sa)
		return werr != unix.EINTR
	})
	if err == nil && werr != nil {
		err = os.NewSyscallError("sendto", werr)
	}
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

// socketConn is a Socket's syscall.RawConn. Its Read and Write call f
// until it returns true; f's system calls block (a read for at most
// socketTick).
type socketConn struct{ s *Socket }

func (c socketConn) Control(f func(fd uintptr)) error {
	c.s.mu.RLock()
	defer c.s.mu.RUnlock()
	if c.s.closed.Load() {
		return net.ErrClosed
	}
	f(uintptr(c.s.fd))
	return nil
}

func (c socketConn) Read(f func(fd uintptr) bool) error {
	s := c.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	for {
		switch {
		case s.closed.Load():
			return net.ErrClosed
		case s.expired():
			return os.ErrDeadlineExceeded
		}
		if f(uintptr(s.fd)) {
			// A read woken by Close or a past deadline read nothing.
			switch {
			case s.closed.Load():
				return net.ErrClosed
			case s.expired():
				return os.ErrDeadlineExceeded
			}
			return nil
		}
	}
}

func (c socketConn) Write(f func(fd uintptr) bool) error {
	s := c.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	for {
		if s.closed.Load() {
			return net.ErrClosed
		}
		if f(uintptr(s.fd)) {
			return nil
		}
	}
}
