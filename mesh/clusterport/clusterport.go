// Package clusterport is the one TCP port that carries a node's cluster
// traffic: Raft, and the node-to-node HTTP API (write forwarding, graceful
// leave, cluster-wide queries). Members only: with a TLS configuration every
// connection is mutual TLS and a peer must present a certificate of the
// cluster CA before a byte of Raft or HTTP is read.
//
// After the (optional) TLS handshake the dialer writes one byte naming the
// service, and the listener hands the connection to that service's queue:
//
//	1  Raft (hashicorp/raft's network transport)
//	2  HTTP (the node's internal API)
//
// Handshakes are bounded in time and in number, so a peer that connects and
// says nothing holds a slot for Options.HandshakeTimeout at most.
package clusterport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Service names what a connection carries, in its first byte.
type Service byte

// Services.
const (
	ServiceRaft Service = 1
	ServiceHTTP Service = 2
)

// Limits.
const (
	// DefaultHandshakeTimeout bounds the TLS handshake and the service
	// byte.
	DefaultHandshakeTimeout = 5 * time.Second
	// MaxPending bounds connections that are handshaking at once; more
	// are closed at once.
	MaxPending = 256
	// queueLen is how many accepted connections wait for their service.
	queueLen = 64
)

// ErrClosed is returned by Accept once the port is closed.
var ErrClosed = errors.New("clusterport: closed")

// Port is a listening cluster port. Raft and HTTP return its two services.
type Port struct {
	ln        net.Listener
	tls       *tls.Config
	advertise net.Addr
	log       *slog.Logger
	dialer    *Dialer
	timeout   time.Duration

	raft, http *queue

	pending chan struct{} // one token per handshaking connection
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// Options configure a Port.
type Options struct {
	// Advertise is the address peers dial; default the listening address.
	Advertise *net.TCPAddr
	// ServerTLS (clustertls's Server) makes every accepted connection mutual
	// TLS, and ClientTLS (its Client) every dialed one. Both or neither:
	// without them the port is plain TCP, for loopback clusters and
	// explicitly insecure ones.
	ServerTLS, ClientTLS *tls.Config
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// HandshakeTimeout defaults to DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
}

// Listen opens a cluster port on addr.
func Listen(addr string, opts Options) (*Port, error) {
	if (opts.ServerTLS == nil) != (opts.ClientTLS == nil) {
		return nil, errors.New("clusterport: TLS needs both a server and a client configuration")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if opts.Advertise == nil {
		opts.Advertise = ln.Addr().(*net.TCPAddr)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	p := &Port{
		ln: ln, tls: opts.ServerTLS, advertise: opts.Advertise, log: opts.Logger, timeout: opts.HandshakeTimeout,
		dialer:  &Dialer{TLS: opts.ClientTLS},
		pending: make(chan struct{}, MaxPending),
		done:    make(chan struct{}),
	}
	p.raft = newQueue(p, ln.Addr())
	p.http = newQueue(p, ln.Addr())
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address the port listens on.
func (p *Port) Addr() net.Addr { return p.ln.Addr() }

// Dialer dials peers' cluster ports with this port's TLS configuration.
func (p *Port) Dialer() *Dialer { return p.dialer }

// Raft is the Raft service as a raft.StreamLayer.
func (p *Port) Raft() raft.StreamLayer { return raftLayer{p} }

// HTTP is the HTTP service as a net.Listener for an http.Server. Closing it
// closes the whole port.
func (p *Port) HTTP() net.Listener { return p.http }

// Close stops accepting, closes connections still handshaking and waits for
// the port's goroutines. Connections already handed to a service are the
// service's to close. It is safe to call more than once.
func (p *Port) Close() error {
	p.once.Do(func() {
		close(p.done)
		p.ln.Close()
	})
	p.wg.Wait()
	return nil
}

func (p *Port) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			p.log.Warn("cluster port accept failed", "err", err)
			select {
			case <-p.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		select {
		case p.pending <- struct{}{}:
		default:
			p.log.Warn("cluster port: too many connections handshaking; closing one", "peer", c.RemoteAddr().String())
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer func() { <-p.pending }()
			p.admit(c)
		}()
	}
}

// admit runs the handshake of one connection and queues it for its service.
func (p *Port) admit(c net.Conn) {
	c.SetDeadline(time.Now().Add(p.timeout))
	conn := c
	if p.tls != nil {
		tc := tls.Server(c, p.tls)
		if err := tc.Handshake(); err != nil {
			p.log.Warn("cluster port: TLS handshake refused", "peer", c.RemoteAddr().String(), "err", err)
			c.Close()
			return
		}
		conn = tc
	}
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil {
		p.log.Debug("cluster port: no service byte", "peer", c.RemoteAddr().String(), "err", err)
		conn.Close()
		return
	}
	conn.SetDeadline(time.Time{})
	var q *queue
	switch Service(b[0]) {
	case ServiceRaft:
		q = p.raft
	case ServiceHTTP:
		q = p.http
	default:
		p.log.Warn("cluster port: unknown service", "peer", c.RemoteAddr().String(), "service", b[0])
		conn.Close()
		return
	}
	select {
	case q.ch <- conn:
	case <-p.done:
		conn.Close()
	case <-time.After(p.timeout):
		p.log.Warn("cluster port: service busy; closing a connection", "peer", c.RemoteAddr().String(), "service", b[0])
		conn.Close()
	}
}

// queue is a service's net.Listener: the connections admitted for it.
type queue struct {
	p    *Port
	addr net.Addr
	ch   chan net.Conn
}

func newQueue(p *Port, addr net.Addr) *queue {
	return &queue{p: p, addr: addr, ch: make(chan net.Conn, queueLen)}
}

// Accept returns the next connection for the service, or ErrClosed.
func (q *queue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.p.done:
		return nil, ErrClosed
	}
}

// Close closes the port.
func (q *queue) Close() error { return q.p.Close() }

// Addr is the port's listening address.
func (q *queue) Addr() net.Addr { return q.addr }

// raftLayer adapts the port to raft.StreamLayer. Its Addr is the advertised
// address, which Raft tells its peers.
type raftLayer struct{ p *Port }

func (l raftLayer) Accept() (net.Conn, error) { return l.p.raft.Accept() }
func (l raftLayer) Close() error              { return l.p.Close() }
func (l raftLayer) Addr() net.Addr            { return l.p.advertise }

func (l raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.p.dialer.Dial(ctx, string(address), ServiceRaft)
}

// Dialer connects to peers' cluster ports. The zero value dials plain TCP.
type Dialer struct {
	// TLS, when not nil, is the client configuration (clustertls.Client).
	TLS *tls.Config
}

// Dial connects to the cluster port at addr, completes the TLS handshake
// (when configured) and names the service. ctx bounds all of it.
func (d *Dialer) Dial(ctx context.Context, addr string, svc Service) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(DefaultHandshakeTimeout))
	}
	conn := c
	if d.TLS != nil {
		tc := tls.Client(c, d.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("clusterport: TLS with %s: %w", addr, err)
		}
		conn = tc
	}
	if _, err := conn.Write([]byte{byte(svc)}); err != nil {
		conn.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return conn, nil
}
