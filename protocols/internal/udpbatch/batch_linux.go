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
	msgs  []Msg // what the headers read into
	oobSz int   // control bytes per header
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

	// With GRO, msgs are the super-packet slots and out the caller's
	// messages, which point into them: the slots the last call received
	// (pn) are split into out from slot pi, byte poff on.
	out          []Msg
	seg          []int // each slot's segment size (0: not coalesced)
	pn, pi, poff int
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
		r.oobSz = oobSize
		r.oob = make([]byte, r.oobSz*len(msgs))
	}
	r.init()
	return r
}

// groSlots bounds a GRO Reader's super-packet buffers: this many slots of
// groSlotSize bytes (1 MiB), whatever its batch.
const (
	groSlots    = 16
	groSlotSize = 1 << 16
)

// newGROReader returns a reader that asks the kernel to coalesce (UDP_GRO)
// and splits what it coalesced into out, or nil when the kernel refuses.
func newGROReader(uc *net.UDPConn, out []Msg) *linuxReader {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		gerr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1)
		if gerr == nil {
			// Without it the drop count stays 0.
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
		}
	}); err != nil || gerr != nil {
		return nil
	}
	n := min(len(out), groSlots)
	slots := make([]Msg, n)
	mem := make([]byte, n*groSlotSize)
	for i := range slots {
		slots[i].Buf = mem[i*groSlotSize : (i+1)*groSlotSize : (i+1)*groSlotSize]
	}
	r := &linuxReader{
		rc:    rc,
		msgs:  slots,
		out:   out,
		seg:   make([]int, n),
		hs:    make([]mmsghdr, n),
		iov:   make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		oobSz: 2 * oobSize, // SO_RXQ_OVFL and UDP_GRO, both 4 bytes
	}
	r.oob = make([]byte, r.oobSz*n)
	r.init()
	return r
}

// init points the headers at the buffers.
func (r *linuxReader) init() {
	msgs := r.msgs
	for i := range r.hs {
		r.iov[i].Base = &msgs[i].Buf[0]
		r.iov[i].SetLen(len(msgs[i].Buf))
		h := &r.hs[i].Hdr
		h.Iov = &r.iov[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		if r.oob != nil {
			h.Control = &r.oob[i*r.oobSz]
		}
	}
	r.recvF = r.recv
	r.eachF = r.recvEach
}

func (r *linuxReader) read() (int, error) {
	if r.out != nil && r.pi < r.pn {
		return r.split(), nil
	}
	r.reset()
	r.n, r.errno = 0, 0
	if err := r.rc.Read(r.recvF); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", r.errno)
	}
	r.decode(r.n)
	if r.out != nil {
		r.pn, r.pi, r.poff = r.n, 0, 0
		return r.split(), nil
	}
	return r.n, nil
}

// split fills out with the next datagrams of the slots received, each
// coalesced slot cut at its segment size, and returns how many.
func (r *linuxReader) split() int {
	k := 0
	for r.pi < r.pn && k < len(r.out) {
		m := &r.msgs[r.pi]
		l := m.N - r.poff
		if s := r.seg[r.pi]; s > 0 && s < l {
			l = s
		}
		end := r.poff + l
		o := &r.out[k]
		o.Buf, o.N, o.Addr = m.Buf[r.poff:end:end], l, m.Addr
		k++
		r.poff = end
		if r.poff >= m.N {
			r.pi++
			r.poff = 0
		}
	}
	return k
}

// reset restores what the kernel overwrote in the headers.
func (r *linuxReader) reset() {
	for i := range r.hs {
		h := &r.hs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		if r.oob != nil {
			h.SetControllen(r.oobSz)
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
		if r.seg != nil {
			r.seg[i] = 0
		}
		if r.oob != nil && r.hs[i].Hdr.Controllen > 0 {
			c := parseCmsgs(r.oob[i*r.oobSz : i*r.oobSz+min(int(r.hs[i].Hdr.Controllen), r.oobSz)])
			if c.hasDrops {
				r.drops += uint64(c.drops - r.lastDrops)
				r.lastDrops = c.drops
			}
			if r.seg != nil {
				r.seg[i] = c.seg
			}
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
		if r.out != nil && !r.handOut() {
			return true
		}
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
		if r.out != nil {
			r.pn, r.pi, r.poff = int(n), 0, 0
			if !r.handOut() {
				return true
			}
		} else if !r.handle(int(n)) {
			return true
		}
		if int(n) < len(r.hs) {
			return false // the socket was empty: wait
		}
	}
}

// handOut hands the received slots not yet handed over to handle, split,
// and reports whether handle wants more.
func (r *linuxReader) handOut() bool {
	for r.pi < r.pn {
		if !r.handle(r.split()) {
			return false
		}
	}
	return true
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

// cmsgs is what parseCmsgs found in a datagram's control messages.
type cmsgs struct {
	drops    uint32 // SO_RXQ_OVFL: the socket's drop counter when the datagram was queued
	hasDrops bool
	seg      int // UDP_GRO: the size of the coalesced datagrams (0: none)
}

// parseCmsgs reads the control messages the kernel wrote for one datagram.
// It ignores messages it does not know and stops at a malformed one.
func parseCmsgs(b []byte) cmsgs {
	var c cmsgs
	for len(b) >= unix.SizeofCmsghdr {
		var h unix.Cmsghdr
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&h)), unix.SizeofCmsghdr), b)
		l := uint64(h.Len)
		if l < uint64(unix.CmsgLen(0)) || l > uint64(len(b)) {
			break
		}
		data := b[unix.CmsgLen(0):l]
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && len(data) >= 4:
			c.drops, c.hasDrops = binary.NativeEndian.Uint32(data), true
		case h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && len(data) >= 4:
			if v := int32(binary.NativeEndian.Uint32(data)); v > 0 {
				c.seg = int(v)
			}
		}
		next := unix.CmsgSpace(len(data))
		if next >= len(b) {
			break
		}
		b = b[next:]
	}
	return c
}

func (r *linuxReader) dropped() uint64 { return r.drops }

func (r *linuxReader) coalescing() bool { return r.out != nil }

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

	// With GSO, a header may carry a run of datagrams (first, count) with
	// a UDP_SEGMENT control message. gso turns off for good when the
	// kernel refuses a segmented send; fellBack says it did.
	gso      bool
	fellBack bool
	maxSegs  int
	oob      []byte // gsoOOB bytes per header
	first    []int
	count    []int
}

// maxGSOBytes bounds a segmented send: a UDP datagram's payload over IPv6
// (the kernel refuses more than 64 KiB with the headers).
const maxGSOBytes = 1<<16 - 1 - 8 - 40

// maxGSOSegs is the kernel's limit of segments per send (UDP_MAX_SEGMENTS).
const maxGSOSegs = 64

// gsoOOB holds one UDP_SEGMENT control message (a uint16).
var gsoOOB = unix.CmsgSpace(2)

// enableGSO turns segmentation on when the kernel knows UDP_SEGMENT, and
// reports whether it did.
func (w *linuxWriter) enableGSO() bool {
	var serr error
	if err := w.rc.Control(func(fd uintptr) {
		_, serr = unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT)
	}); err != nil || serr != nil {
		return false
	}
	n := len(w.hs)
	w.gso, w.maxSegs = true, maxGSOSegs
	w.oob = make([]byte, gsoOOB*n)
	w.first, w.count = make([]int, n), make([]int, n)
	for i := 0; i < n; i++ {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&w.oob[i*gsoOOB]))
		h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
	}
	return true
}

func (w *linuxWriter) segmenting() bool { return w.gso }

// writeGSO is write for a Writer that segments: each run of datagrams to
// one destination, of one size but the last which may be shorter, goes as
// one segmented send. When the kernel refuses one (EIO: the device cannot
// checksum it; EINVAL: the path's MTU or the kernel's limits), the Writer
// stops segmenting and sends the run again datagram by datagram.
func (w *linuxWriter) writeGSO(ms []Msg) (sent, bytes int, err error) {
	for len(ms) > 0 {
		k, e := 0, 0 // datagrams and headers of this call
		for k < len(ms) && k < len(w.iov) && e < len(w.hs) {
			start := k
			size := ms[k].N
			total := size
			k++
			for w.gso && size > 0 && k < len(ms) && k < len(w.iov) && k-start < w.maxSegs {
				n := ms[k].N
				if n == 0 || n > size || total+n > maxGSOBytes {
					break
				}
				if !w.connected && ms[k].Addr != ms[start].Addr {
					break
				}
				total += n
				k++
				if n < size {
					break // a shorter datagram ends a run
				}
			}
			for i := start; i < k; i++ {
				p := ms[i].Payload()
				w.iov[i].Base = nil
				if len(p) > 0 {
					w.iov[i].Base = &p[0]
				}
				w.iov[i].SetLen(len(p))
			}
			h := &w.hs[e].Hdr
			h.Iov = &w.iov[start]
			h.SetIovlen(k - start)
			h.Name, h.Namelen = nil, 0
			if !w.connected {
				if n := w.putAddr(&w.names[e], ms[start].Addr); n > 0 {
					h.Name, h.Namelen = (*byte)(unsafe.Pointer(&w.names[e])), n
				}
			}
			h.Control = nil
			h.SetControllen(0)
			if k-start > 1 {
				c := w.oob[e*gsoOOB : (e+1)*gsoOOB]
				binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(size))
				h.Control = &c[0]
				h.SetControllen(gsoOOB)
			}
			w.first[e], w.count[e] = start, k-start
			e++
		}
		w.off, w.end = 0, e
		retry := -1
		for w.off < w.end {
			w.n, w.errno = 0, 0
			if rerr := w.rc.Write(w.sendF); rerr != nil {
				w.release(k)
				return sent, bytes, rerr
			}
			if w.errno != 0 {
				if w.count[w.off] > 1 && (w.errno == unix.EIO || w.errno == unix.EINVAL) {
					w.gso, w.fellBack = false, true
					retry = w.first[w.off]
					break
				}
				err = os.NewSyscallError("sendmmsg", w.errno)
				if w.count[w.off] > 1 {
					// A run was refused (a pending ICMP error, say): as
					// in a plain batch, its first datagram is lost and
					// the rest go.
					retry = w.first[w.off] + 1
					break
				}
				// The datagram at off was refused; the rest still go.
				w.off++
				continue
			}
			for j := w.off; j < w.off+w.n; j++ {
				bytes += int(w.hs[j].Len)
				sent += w.count[j]
			}
			w.off += w.n
		}
		w.release(k)
		if retry >= 0 {
			ms = ms[retry:]
			continue
		}
		ms = ms[k:]
	}
	return sent, bytes, err
}

func (w *linuxWriter) fellBackGSO() bool { return w.fellBack }

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
	if w.oob != nil {
		return w.writeGSO(ms)
	}
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
