package sfu

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/webrtc"
)

// maxAddrsPerUfrag bounds the client addresses (ICE candidates, NAT
// rebindings) one viewer may map on the shared port.
const maxAddrsPerUfrag = 4

// portQueue bounds the packets waiting for pion's reader on the shared port.
const portQueue = 1024

// port is the node's WebRTC UDP port as the viewers' pion stack sees it:
// a net.PacketConn whose packets the relay hands over (it implements
// webrtc.Tap) and whose writes go out through the relay's socket. It knows
// the local ICE ufrags of the node's viewers, and the client addresses that
// sent a Binding request naming one: those flows are the SFU's.
type port struct {
	local *net.UDPAddr
	write func(p []byte, to netip.AddrPort) (int, error)
	in    chan portPacket
	done  chan struct{}
	once  sync.Once

	mu     sync.RWMutex
	ufrags map[string]*flow          // local ufrag -> the viewer's flow
	addrs  map[netip.AddrPort]string // client address -> local ufrag

	dropped   atomic.Uint64 // packets pion's reader was too slow for
	integrity atomic.Uint64 // Binding requests from a new address without a valid MESSAGE-INTEGRITY
}

// flow is one viewer's ICE credentials and mapped client addresses.
type flow struct {
	pwd   []byte
	addrs []netip.AddrPort
}

type portPacket struct {
	b    []byte
	from netip.AddrPort
}

func newPort(local *net.UDPAddr, write func([]byte, netip.AddrPort) (int, error)) *port {
	return &port{local: local, write: write, in: make(chan portPacket, portQueue), done: make(chan struct{}),
		ufrags: map[string]*flow{}, addrs: map[netip.AddrPort]string{}}
}

// add makes Binding requests naming ufrag (as "ufrag:peer") the SFU's;
// pwd is the ICE password of the node's answer, which signs them.
func (p *port) add(ufrag, pwd string) {
	p.mu.Lock()
	if _, ok := p.ufrags[ufrag]; !ok {
		p.ufrags[ufrag] = &flow{pwd: []byte(pwd)}
	}
	p.mu.Unlock()
}

// remove forgets ufrag and the client addresses mapped to it.
func (p *port) remove(ufrag string) {
	p.mu.Lock()
	if f := p.ufrags[ufrag]; f != nil {
		for _, a := range f.addrs {
			if p.addrs[a] == ufrag {
				delete(p.addrs, a)
			}
		}
	}
	delete(p.ufrags, ufrag)
	p.mu.Unlock()
}

// ClaimBinding implements webrtc.Tap: a Binding request whose USERNAME
// starts with one of the viewers' ufrags is the SFU's. From an address not
// yet mapped to that viewer it must carry a MESSAGE-INTEGRITY made with the
// viewer's ICE password (else it is dropped and counted), so that nobody
// who merely saw the ufrag can take the viewer's media; it then maps the
// address to the viewer, which keeps its latest maxAddrsPerUfrag ones.
func (p *port) ClaimBinding(b, user []byte, from netip.AddrPort) bool {
	local, _, ok := bytes.Cut(user, []byte(":"))
	if !ok {
		return false
	}
	p.mu.RLock()
	f := p.ufrags[string(local)]
	mapped := f != nil && p.addrs[from] == string(local)
	p.mu.RUnlock()
	if f == nil {
		return false
	}
	if !mapped {
		if len(f.pwd) > 0 && webrtc.STUNCheckIntegrity(b, f.pwd) != nil {
			p.integrity.Add(1)
			return true
		}
		u := string(local)
		p.mu.Lock()
		if f = p.ufrags[u]; f != nil {
			if len(f.addrs) == maxAddrsPerUfrag {
				if p.addrs[f.addrs[0]] == u {
					delete(p.addrs, f.addrs[0])
				}
				f.addrs = f.addrs[1:]
			}
			if old, ok := p.addrs[from]; ok && old != u {
				if of := p.ufrags[old]; of != nil {
					of.addrs = without(of.addrs, from)
				}
			}
			f.addrs = append(f.addrs, from)
			p.addrs[from] = u
		}
		p.mu.Unlock()
	}
	p.deliver(b, from)
	return true
}

func without(s []netip.AddrPort, a netip.AddrPort) []netip.AddrPort {
	out := s[:0]
	for _, x := range s {
		if x != a {
			out = append(out, x)
		}
	}
	return out
}

// Take implements webrtc.Tap: any packet from a mapped client address is
// the SFU's.
func (p *port) Take(b []byte, from netip.AddrPort) bool {
	p.mu.RLock()
	_, ok := p.addrs[from]
	p.mu.RUnlock()
	if ok {
		p.deliver(b, from)
	}
	return ok
}

// deliver copies b (the relay reuses its buffer) for pion's reader, or
// drops it when the reader is behind.
func (p *port) deliver(b []byte, from netip.AddrPort) {
	select {
	case p.in <- portPacket{b: bytes.Clone(b), from: from}:
	default:
		p.dropped.Add(1)
	}
}

// ReadFrom implements net.PacketConn for pion's UDP mux.
func (p *port) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case pk := <-p.in:
		return copy(b, pk.b), net.UDPAddrFromAddrPort(pk.from), nil
	case <-p.done:
		return 0, nil, net.ErrClosed
	}
}

// WriteTo implements net.PacketConn: it sends through the relay's socket.
func (p *port) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.AddrError{Err: "not a UDP address", Addr: addr.String()}
	}
	select {
	case <-p.done:
		return 0, net.ErrClosed
	default:
	}
	ap := ua.AddrPort()
	return p.write(b, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
}

// Close ends ReadFrom and WriteTo; the relay's socket stays open.
func (p *port) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

func (p *port) LocalAddr() net.Addr              { return p.local }
func (p *port) SetDeadline(time.Time) error      { return nil }
func (p *port) SetReadDeadline(time.Time) error  { return nil }
func (p *port) SetWriteDeadline(time.Time) error { return nil }
