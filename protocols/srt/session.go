package srt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/datarhei/gosrt/packet"

	"github.com/srs-mesh/srs-mesh/protocols/internal/route"
	"github.com/srs-mesh/srs-mesh/protocols/internal/udpbatch"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Session errors, reported in logs and mapped to rejection codes.
var (
	ErrOriginTimeout = errors.New("srt: origin did not complete the handshake in time")
	ErrOriginRefused = errors.New("srt: origin refused the connection")
	ErrBadOrigin     = errors.New("srt: origin has no usable SRT address")
)

// Handshake pacing, as libsrt does it: a request is resent every 250 ms
// until answered. A rejected session stays in the table for rejectLinger so
// that retransmitted conclusions get the same rejection instead of a new
// route.
const (
	handshakeResend = 250 * time.Millisecond
	rejectLinger    = time.Second
)

// session is one caller's SRT connection relayed to one origin. Its
// goroutine (run) is the state machine: route, handshake with the origin on
// the caller's behalf, then read the upstream socket and relay to the caller
// until SHUTDOWN, idle reclaim or server close. The listener loop only calls
// fromClient and retransmittedConclusion, which never block.
type session struct {
	srv     *Server
	key     sessKey // caller address and caller socket id
	peerKey sessKey // caller address and origin socket id; set by Server.establish
	info    stream.SRTRequestInfo
	log     *slog.Logger
	out     packetConn // the listener socket, to reach the caller
	// conclusion is the caller's first conclusion request, forwarded to the
	// origin with the origin's cookie patched in.
	conclusion []byte
	// clientIn and clientOut count the session's bytes from and to the
	// caller once established, for Sessions.
	clientIn, clientOut atomic.Uint64
	// sendErrors and overflow count the session's packets the node
	// dropped: sends that failed either way, and packets from the origin
	// the kernel dropped on the upstream socket's full receive buffer.
	sendErrors, overflow atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc

	lastSeen atomic.Int64           // unix nanoseconds of the last packet either way
	reply    atomic.Pointer[[]byte] // the answer given to the caller (origin's conclusion response or a rejection)

	// up and upW are set once by run before the session is established,
	// and used by the listener loop only after (Server.establish orders
	// the two). upW, the batch writer to the origin, belongs to the
	// listener loop.
	up        *net.UDPConn
	upW       *udpbatch.Writer
	gsoLost   bool // upW stopped segmenting (listener loop's)
	upMu      sync.Mutex
	closed    bool
	closeOnce sync.Once

	// standby is set by holdAsStandby when the session is held as its
	// stream's standby (standby.go), before the session is established.
	standby *standby
	// stallWatch is set while the session is watched for a stall, and
	// media is when the caller last sent a data packet (standby.go).
	stallWatch atomic.Bool
	media      atomic.Int64

	// origin and originAddr are used by run's goroutine only.
	origin     string
	originAddr netip.AddrPort
}

func newSession(s *Server, key sessKey, info stream.SRTRequestInfo, conclusion []byte) *session {
	ss := &session{
		srv:        s,
		key:        key,
		info:       info,
		out:        s.conn,
		conclusion: append([]byte(nil), conclusion...),
		log:        s.log.With("stream", info.Key.String(), "peer", key.addr, "mode", string(info.Mode)),
	}
	ss.ctx, ss.cancel = context.WithCancel(s.ctx)
	ss.lastSeen.Store(s.now().UnixNano())
	return ss
}

// toOrigin relays a batch of caller packets to the origin with one write.
// Called by the listener loop for established sessions only; it does not
// allocate.
func (ss *session) toOrigin(ms []udpbatch.Msg) {
	ss.lastSeen.Store(ss.srv.now().UnixNano())
	ss.noteMedia(ms)
	sent, n, _ := ss.upW.Write(ms)
	if !ss.gsoLost && ss.upW.FellBack() {
		ss.gsoLost = true
		ss.srv.noteNoGSO("the kernel refused a segmented send")
	}
	st := &ss.srv.stats
	st.pktIn.Add(uint64(sent))
	st.bytesIn.Add(uint64(n))
	ss.clientIn.Add(uint64(n))
	if failed := len(ms) - sent; failed > 0 {
		ss.sendErrors.Add(uint64(failed))
		st.sendErrors.Add(uint64(failed))
	}
}

// retransmittedConclusion answers a conclusion the caller sent again: with
// the cached answer once there is one, and not at all while the origin
// handshake is still running (the session resends to the origin itself).
func (ss *session) retransmittedConclusion() {
	if r := ss.reply.Load(); r != nil && ss.out != nil {
		ss.out.WriteToUDPAddrPort(*r, ss.key.addr)
	}
}

// close ends the session: it cancels the session's context and unblocks
// its upstream read; run notices, says goodbye if it must, and closes the
// upstream socket. close never blocks and takes no server lock.
func (ss *session) close(reason string) {
	ss.closeOnce.Do(func() {
		ss.log.Debug("srt session closing", "reason", reason)
		ss.cancel()
		ss.upMu.Lock()
		ss.closed = true
		if ss.up != nil {
			ss.up.SetReadDeadline(time.Unix(1, 0))
		}
		ss.upMu.Unlock()
	})
}

func (ss *session) closeUp() {
	ss.upMu.Lock()
	defer ss.upMu.Unlock()
	if ss.up != nil {
		ss.up.Close()
	}
}

func (ss *session) setUp(up *net.UDPConn) bool {
	ss.upMu.Lock()
	defer ss.upMu.Unlock()
	if ss.closed {
		return false
	}
	ss.up = up
	return true
}

// run is the session's goroutine.
func (ss *session) run() {
	defer ss.srv.wg.Done()
	defer ss.srv.remove(ss)
	defer ss.closeUp()
	defer ss.close("done")
	defer ss.releaseStandby()

	buf := make([]byte, maxPacket)
	resp, err := ss.handshake(buf)
	if err != nil {
		code, reason := uint32(rejxGatewayTO), RejectOriginTimeout
		var route routeError
		switch {
		case ss.ctx.Err() != nil:
			code, reason = rejClose, RejectClosing
		case errors.As(err, &route):
			code, reason = rejxUnavail, RejectNoOrigin
		case errors.Is(err, ErrOriginRefused), errors.Is(err, ErrBadOrigin):
			code, reason = rejxGateway, RejectOriginRefused
		}
		ss.reject(appendRejection(nil, ss.conclusion, ss.srv.listenerID, code), reason, err)
		return
	}
	hs, _ := parseHandshake(resp) // validated by handshake
	if _, rejected := rejectionReason(hs.Type); rejected {
		ss.reject(append([]byte(nil), resp...), RejectOriginRejects, fmt.Errorf("origin rejected: %s", hs.Type))
		return
	}
	ss.upW = udpbatch.NewWriterGSO(ss.up, listenBatch)
	if !ss.upW.Segmenting() {
		ss.srv.noteNoGSO("the kernel has no UDP_SEGMENT")
	}
	if !ss.srv.establish(ss, hs.SocketID) {
		return
	}
	cached := append([]byte(nil), resp...)
	ss.reply.Store(&cached)
	ss.send(cached)
	ss.log.Info("srt session established", "origin", ss.origin, "origin_addr", ss.originAddr,
		"origin_socket", hs.SocketID, "encrypted", hs.HasKM)
	if t := ss.srv.cfg.Sessions; t != nil && ss.standby == nil { // a standby reports itself
		kind := stream.KindPlay
		if ss.info.Mode == stream.SRTPublish {
			kind = stream.KindPublish
		}
		if end := t.Track(ss.info.Key, "srt", kind, &ss.clientIn, &ss.clientOut); end != nil {
			defer end()
		}
	}
	stopStall := ss.watchStall(hs.SocketID)
	ss.relay()
	stopStall()
	if ss.srv.ctx.Err() != nil {
		// The server is going away: tell both ends now rather than let
		// them time out.
		ss.send(shutdownPacket(ss.key.id))
		ss.up.Write(shutdownPacket(hs.SocketID))
	}
}

// shutdownPacket is an SRT SHUTDOWN control packet for socket dest.
func shutdownPacket(dest uint32) []byte {
	b := make([]byte, headerLen+4)
	binary.BigEndian.PutUint16(b[0:], 0x8000|uint16(packet.CTRLTYPE_SHUTDOWN))
	binary.BigEndian.PutUint32(b[offDestID:], dest)
	return b
}

// routeError marks a Router failure.
type routeError struct{ err error }

func (e routeError) Error() string { return "route: " + e.err.Error() }
func (e routeError) Unwrap() error { return e.err }

// handshake routes the stream and performs the caller-listener handshake
// with the origin on the caller's behalf, all within HandshakeTimeout. It
// returns the origin's answer to the caller's conclusion: a conclusion
// response or a rejection, both addressed to the caller's socket id.
func (ss *session) handshake(buf []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.cfg.HandshakeTimeout)
	defer cancel()
	router := ss.srv.cfg.Router
	publish := ss.info.Mode == stream.SRTPublish
	routeFn := route.For(router, !publish)
	if publish {
		// The assignment is written once the origin accepted (below).
		routeFn = route.Publish(router, ss.srv.cfg.Publisher)
	}
	origin, err := routeFn(ctx, ss.info.Key)
	if err != nil {
		return nil, routeError{err}
	}
	held := publish && ss.holdAsStandby(ctx, origin)
	var addr netip.AddrPort
	if held {
		addr = ss.srv.standbys.addr
	} else if addr, err = resolveUDP(ctx, origin.SRT); err != nil {
		return nil, err
	}
	ss.origin, ss.originAddr = origin.ID, addr
	up, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOriginRefused, err)
	}
	ss.srv.sizeBuffers(up, "upstream")
	if !ss.setUp(up) {
		up.Close()
		return nil, context.Canceled
	}
	if held {
		ss.srv.standbys.expect(ss.standby, upstreamAddr(up))
	}
	deadline, _ := ctx.Deadline()

	induction := appendInductionRequest(make([]byte, 0, hsMinLen), ss.conclusion, addr.Addr())
	resp, hs, err := ss.exchange(induction, buf, deadline, func(hs handshake) bool {
		return hs.Type == packet.HSTYPE_INDUCTION
	})
	if err != nil {
		return nil, err
	}
	if _, rejected := rejectionReason(hs.Type); rejected {
		return resp, nil
	}
	conclusion := append([]byte(nil), ss.conclusion...)
	setCookie(conclusion, hs.Cookie)
	resp, hs, err = ss.exchange(conclusion, buf, deadline, func(hs handshake) bool {
		return hs.Type == packet.HSTYPE_CONCLUSION
	})
	if _, rejected := rejectionReason(hs.Type); err != nil || rejected || !publish || held {
		return resp, err
	}
	// The origin accepted the publish: now the mesh may assign the
	// stream. One assigned elsewhere meanwhile is refused here; the
	// caller's retry goes to its origin.
	assigned, err := route.Accepted(ctx, ss.srv.cfg.Publisher, ss.info.Key, origin)
	if err == nil && assigned.ID != origin.ID {
		err = fmt.Errorf("%w: %s was assigned to origin %s meanwhile", ErrOriginRefused, ss.info.Key, assigned.ID)
	}
	if err != nil {
		ss.up.Write(shutdownPacket(hs.SocketID))
		return nil, err
	}
	return resp, nil
}

// exchange sends req to the origin every handshakeResend until a handshake
// addressed to the caller's socket arrives for which want is true (or that
// is a rejection), or deadline passes.
func (ss *session) exchange(req, buf []byte, deadline time.Time, want func(handshake) bool) ([]byte, handshake, error) {
	for {
		if ss.ctx.Err() != nil {
			return nil, handshake{}, ss.ctx.Err()
		}
		if _, err := ss.up.Write(req); err != nil && !isRefused(err) {
			return nil, handshake{}, fmt.Errorf("%w: %v", ErrOriginRefused, err)
		}
		resend := time.Now().Add(handshakeResend)
		for {
			ss.up.SetReadDeadline(earliest(resend, deadline))
			n, err := ss.up.Read(buf)
			if err != nil {
				var ne net.Error
				switch {
				case ss.ctx.Err() != nil:
					return nil, handshake{}, ss.ctx.Err()
				case errors.As(err, &ne) && ne.Timeout():
				case isRefused(err):
					return nil, handshake{}, fmt.Errorf("%w: %v", ErrOriginRefused, err)
				default:
					return nil, handshake{}, err
				}
				if !time.Now().Before(deadline) {
					return nil, handshake{}, ErrOriginTimeout
				}
				break // resend
			}
			hs, err := parseHandshake(buf[:n])
			if err != nil || (hs.DestID != ss.key.id && hs.DestID != 0) {
				continue // stray packet: keep waiting
			}
			if _, rejected := rejectionReason(hs.Type); rejected || want(hs) {
				ss.up.SetReadDeadline(time.Time{})
				return buf[:n], hs, nil
			}
		}
	}
}

// relay copies origin packets to the caller, a batch per read and write,
// until the session closes or the origin shuts it down. Its buffers are
// made once; nothing is allocated per packet.
func (ss *session) relay() {
	if ss.out == nil {
		return
	}
	r := udpbatch.NewReader(ss.up, sessionBatch, maxPacket)
	w := udpbatch.NewWriter(ss.out, sessionBatch)
	st := &ss.srv.stats
	var overflow uint64
	shutdown := false
	handle := func(ms []udpbatch.Msg) bool {
		ss.lastSeen.Store(ss.srv.now().UnixNano())
		for i := range ms {
			ms[i].Addr = ss.key.addr
			if ms[i].N >= headerLen && isControl(ms[i].Payload(), packet.CTRLTYPE_SHUTDOWN) {
				ms, shutdown = ms[:i+1], true
				break
			}
		}
		sent, n, _ := w.Write(ms)
		st.pktOut.Add(uint64(sent))
		st.bytesOut.Add(uint64(n))
		ss.clientOut.Add(uint64(n))
		if failed := len(ms) - sent; failed > 0 {
			ss.sendErrors.Add(uint64(failed))
			st.sendErrors.Add(uint64(failed))
		}
		if d := r.Dropped(); d > overflow {
			ss.overflow.Add(d - overflow)
			st.upOverflow.Add(d - overflow)
			overflow = d
		}
		return !shutdown
	}
	for {
		err := r.ReadEach(handle)
		if shutdown {
			ss.log.Debug("origin shut the session down")
			return
		}
		if err != nil && isRefused(err) && ss.ctx.Err() == nil {
			continue // a late ICMP error; idle reclaim ends a dead origin
		}
		return
	}
}

// reject answers the caller with rej, keeps answering retransmits with it
// for rejectLinger, and ends the session.
func (ss *session) reject(rej []byte, reason string, err error) {
	ss.srv.stats.reject(reason)
	ss.log.Info("srt caller rejected", "reason", reason, "origin", ss.origin, "origin_addr", ss.originAddr, "err", err)
	ss.reply.Store(&rej)
	ss.send(rej)
	t := time.NewTimer(rejectLinger)
	defer t.Stop()
	select {
	case <-ss.ctx.Done():
	case <-t.C:
	}
}

func (ss *session) send(b []byte) bool {
	if ss.out == nil {
		return false
	}
	_, err := ss.out.WriteToUDPAddrPort(b, ss.key.addr)
	return err == nil
}

// resolveUDP turns an origin's "host:port" into an address, resolving names
// within ctx.
func resolveUDP(ctx context.Context, hostport string) (netip.AddrPort, error) {
	if hostport == "" {
		return netip.AddrPort{}, fmt.Errorf("%w: empty SRT endpoint", ErrBadOrigin)
	}
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %q: %v", ErrBadOrigin, hostport, err)
	}
	pn, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %q: %v", ErrBadOrigin, hostport, err)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: %q: %v", ErrBadOrigin, hostport, err)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(pn)), nil
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
