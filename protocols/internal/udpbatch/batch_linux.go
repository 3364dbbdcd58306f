//go:build linux

package udpbatch

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr: Go pads it as C does on every Linux ABI.
type mmsghdr struct {
	Hdr unix.Msghdr
	Len uint32
}

// The batch system calls are made raw (unix.RawSyscall6), without telling
// the Go scheduler: the sockets are non-blocking, so recvmmsg and sendmmsg
// return at once (EAGAIN when they would wait, and the caller waits in the
// poller). A scheduler-aware call wakes the runtime's monitor thread
// whenever it sleeps, which on a paced feed is before every datagram and
// costs more thread switches than the call itself.

// oobSize holds one SO_RXQ_OVFL control message (a uint32).
var oobSize = unix.CmsgSpace(4)

type sysReader = *linuxReader

type sysWriter = *linuxWriter

// linuxReader reads with recvmmsg. Its headers point into the Reader's
// buffers once, at creation; a read only resets the lengths the kernel
// overwrote.
type linuxReader struct {
	rc    syscall.RawConn
	msgs  []Msg
	hs    []mmsghdr
	iov   []unix.Iovec
	names []unix.RawSockaddrInet6
	oob   []byte // oobSize per message, nil without SO_RXQ_OVFL
	recvF func(fd uintptr) bool
	eachF func(fd uintptr) bool

	n      int
	errno  syscall.Errno
	handle func(n int) bool // each's, while it runs

	lastDrops uint32 // the kernel's counter, as last seen
	drops     uint64
}

func newSysReader(uc *net.UDPConn, msgs []Msg) *linuxReader {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &linuxReader{
		rc:    rc,
		msgs:  msgs,
		hs:    make([]mmsghdr, len(msgs)),
		iov:   make([]unix.Iovec, len(msgs)),
		names: make([]unix.RawSockaddrInet6, len(msgs)),
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
	}); err == nil && serr == nil {
		r.oob = make([]byte, oobSize*len(msgs))
	}
	for i := range r.hs {
		r.iov[i].Base = &msgs[i].Buf[0]
		r.iov[i].SetLen(len(msgs[i].Buf))
		h := &r.hs[i].Hdr
		h.Iov = &r.iov[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		if r.oob != nil {
			h.Control = &r.oob[i*oobSize]
		}
	}
	r.recvF = r.recv
	r.eachF = r.recvEach
	return r
}

func (r *linuxReader) read() (int, error) {
	r.reset()
	r.n, r.errno = 0, 0
	if err := r.rc.Read(r.recvF); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", r.errno)
	}
	r.decode(r.n)
	return r.n, nil
}

// reset restores what the kernel overwrote in the headers.
func (r *linuxReader) reset() {
	for i := range r.hs {
		h := &r.hs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		if r.oob != nil {
			h.SetControllen(oobSize)
		}
		h.Flags = 0
		r.hs[i].Len = 0
	}
}

// decode fills the first n messages from their headers.
func (r *linuxReader) decode(n int) {
	for i := 0; i < n; i++ {
		m := &r.msgs[i]
		m.N = int(r.hs[i].Len)
		m.Addr = sockaddrToAddrPort(&r.names[i], r.hs[i].Hdr.Namelen)
		if r.oob != nil && r.hs[i].Hdr.Controllen > 0 {
			r.noteDrops(r.oob[i*oobSize : (i+1)*oobSize])
		}
	}
}

// each reads batches and hands them to handle within one RawConn.Read, so
// that the poller's readiness is reset only once: after a batch that did
// not fill the headers (the socket was empty) recvEach asks the poller to
// wait, and the poller wakes it at once if a datagram came meanwhile.
func (r *linuxReader) each(handle func(n int) bool) error {
	r.handle, r.errno = handle, 0
	err := r.rc.Read(r.eachF)
	r.handle = nil
	if err != nil {
		return err
	}
	if r.errno != 0 {
		return os.NewSyscallError("recvmmsg", r.errno)
	}
	return nil
}

// recvEach is each's RawConn.Read callback: it returns true to end each
// (handle said stop, or an error), false to wait for the next datagram.
func (r *linuxReader) recvEach(fd uintptr) bool {
	for {
		r.reset()
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hs[0])), uintptr(len(r.hs)), 0, 0, 0)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			r.errno = e
			return true
		}
		r.decode(int(n))
		if !r.handle(int(n)) {
			return true
		}
		if int(n) < len(r.hs) {
			return false // the socket was empty: wait
		}
	}
}

// recv is the RawConn.Read callback: false asks the poller to wait.
func (r *linuxReader) recv(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hs[0])), uintptr(len(r.hs)), 0, 0, 0)
		switch e {
		case 0:
			r.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			r.errno = e
			return true
		}
	}
}

// noteDrops reads an SO_RXQ_OVFL control message: the socket's drop
// counter when the datagram was queued.
func (r *linuxReader) noteDrops(oob []byte) {
	if len(oob) < unix.SizeofCmsghdr+4 {
		return
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	if h.Level != unix.SOL_SOCKET || h.Type != unix.SO_RXQ_OVFL {
		return
	}
	v := binary.NativeEndian.Uint32(oob[unix.CmsgLen(0):])
	r.drops += uint64(v - r.lastDrops)
	r.lastDrops = v
}

func (r *linuxReader) dropped() uint64 { return r.drops }

// sockaddrToAddrPort decodes a sockaddr the kernel wrote, as
// net.UDPConn.ReadFromUDPAddrPort would (IPv4 peers of an IPv6 socket stay
// IPv4-mapped).
func sockaddrToAddrPort(sa *unix.RawSockaddrInet6, n uint32) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		if n < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}
		}
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), port)
	case unix.AF_INET6:
		if n < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}
		}
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		ip := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(ip, port)
	}
	return netip.AddrPort{}
}

// linuxWriter sends with sendmmsg.
type linuxWriter struct {
	rc        syscall.RawConn
	connected bool
	inet6     bool // the socket is AF_INET6: IPv4 destinations go IPv4-mapped
	hs        []mmsghdr
	iov       []unix.Iovec
	names     []unix.RawSockaddrInet6
	sendF     func(fd uintptr) bool

	off, end int // the headers the current call sends
	n        int
	errno    syscall.Errno
}

func newSysWriter(uc *net.UDPConn, batch int, connected bool) *linuxWriter {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &linuxWriter{
		rc:        rc,
		connected: connected,
		hs:        make([]mmsghdr, batch),
		iov:       make([]unix.Iovec, batch),
		names:     make([]unix.RawSockaddrInet6, batch),
	}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil || serr != nil {
		return nil
	}
	w.inet6 = domain == unix.AF_INET6
	for i := range w.hs {
		h := &w.hs[i].Hdr
		h.Iov = &w.iov[i]
		h.SetIovlen(1)
	}
	w.sendF = w.send
	return w
}

func (w *linuxWriter) write(ms []Msg) (sent, bytes int, err error) {
	for len(ms) > 0 {
		k := min(len(ms), len(w.hs))
		for i := 0; i < k; i++ {
			p := ms[i].Payload()
			w.iov[i].Base = nil
			if len(p) > 0 {
				w.iov[i].Base = &p[0]
			}
			w.iov[i].SetLen(len(p))
			h := &w.hs[i].Hdr
			h.Name, h.Namelen = nil, 0
			if !w.connected {
				if n := w.putAddr(&w.names[i], ms[i].Addr); n > 0 {
					h.Name, h.Namelen = (*byte)(unsafe.Pointer(&w.names[i])), n
				}
			}
		}
		w.off, w.end = 0, k
		for w.off < w.end {
			w.n, w.errno = 0, 0
			if rerr := w.rc.Write(w.sendF); rerr != nil {
				w.release(k)
				return sent, bytes, rerr
			}
			if w.errno != 0 {
				// The datagram at off was refused; the rest still go.
				err = os.NewSyscallError("sendmmsg", w.errno)
				w.off++
				continue
			}
			for j := w.off; j < w.off+w.n; j++ {
				bytes += int(w.hs[j].Len)
			}
			sent += w.n
			w.off += w.n
		}
		w.release(k)
		ms = ms[k:]
	}
	return sent, bytes, err
}

// release drops the headers' references to the caller's buffers.
func (w *linuxWriter) release(k int) {
	for i := 0; i < k; i++ {
		w.iov[i].Base = nil
	}
}

// send is the RawConn.Write callback: false asks the poller to wait.
func (w *linuxWriter) send(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.hs[w.off])), uintptr(w.end-w.off), 0, 0, 0)
		switch e {
		case 0:
			w.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			w.errno = e
			return true
		}
	}
}

// putAddr encodes a destination for the socket's family and returns its
// length, or 0 when the socket cannot reach it (the kernel then refuses the
// datagram).
func (w *linuxWriter) putAddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort) uint32 {
	addr := ap.Addr()
	if !addr.IsValid() {
		return 0
	}
	if !w.inet6 {
		addr = addr.Unmap()
		if !addr.Is4() {
			return 0
		}
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: addr.As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:], ap.Port())
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: addr.As16()}
	if z := addr.Zone(); z != "" {
		if id, err := strconv.ParseUint(z, 10, 32); err == nil {
			sa.Scope_id = uint32(id)
		} else if ifi, err := net.InterfaceByName(z); err == nil {
			sa.Scope_id = uint32(ifi.Index)
		}
	}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	return unix.SizeofSockaddrInet6
}

// bufferSizes returns the socket's receive and send buffer sizes as the
// kernel reports them. Linux doubles what was asked (for its bookkeeping)
// and reports the doubled size, so they are halved here.
func bufferSizes(uc *net.UDPConn) (rcv, snd int, err error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var rerr, serr error
	if err := rc.Control(func(fd uintptr) {
		rcv, rerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		snd, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	}); err != nil {
		return 0, 0, err
	}
	if rerr != nil {
		return 0, 0, rerr
	}
	if serr != nil {
		return 0, 0, serr
	}
	return rcv / 2, snd / 2, nil
}
