package proxyproto

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultTimeout is how long a trusted peer may take to send its header.
const DefaultTimeout = 5 * time.Second

// ErrUntrusted is the error of a connection from a peer outside
// Config.Trusted that starts with a PROXY protocol signature: the header is
// refused, never parsed.
var ErrUntrusted = errors.New("proxyproto: PROXY protocol header from an untrusted peer")

// Config configures a Listener.
type Config struct {
	// Trusted are the networks of the load balancers whose headers are
	// honoured. A peer outside them is its own client.
	Trusted []netip.Prefix
	// Timeout bounds reading a trusted peer's header. Default
	// DefaultTimeout.
	Timeout time.Duration
	// OnRefuse, when not nil, is called once for every connection refused
	// for its header: peer is the TCP peer, err wraps ErrUntrusted or an
	// error of Read (ErrNoHeader when a trusted peer sent none); a trusted
	// peer that closes before sending a byte (a TCP health check) is not
	// reported. It is called from the goroutine that first reads the
	// connection.
	OnRefuse func(peer netip.AddrPort, err error)
}

// Listener wraps a net.Listener of TCP connections in PROXY protocol mode:
//
//   - a connection from a trusted peer must start with a header, version 1
//     or 2, within Timeout. Its RemoteAddr is then the client the header
//     names (the peer itself for LOCAL and UNKNOWN headers, a balancer's
//     health checks). Without a valid header the connection is refused: its
//     reads fail and it serves nothing.
//   - a connection from any other peer is a client itself: its RemoteAddr is
//     its peer. If it starts with a PROXY signature it is refused, so that a
//     client can never name its own address.
//
// Accept never blocks on a client: the header is read by the first Read (or,
// from a trusted peer, RemoteAddr) of the connection, in the goroutine that
// serves it. A trusted peer's header is read under a deadline of Timeout (or
// the server's read deadline, if earlier), and the server's read deadline
// is restored after it. An untrusted peer's first bytes are looked at under
// the server's own deadline, as its first read would be; the bytes are
// then read by the server as they came.
type Listener struct {
	net.Listener
	cfg Config
}

// NewListener wraps ln; see Listener.
func NewListener(ln net.Listener, cfg Config) *Listener {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Listener{Listener: ln, cfg: cfg}
}

// Accept returns the next connection, wrapped.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	peer := addrPort(c.RemoteAddr())
	return &Conn{Conn: c, cfg: &l.cfg, peer: peer, trusted: Trusted(l.cfg.Trusted, peer.Addr())}, nil
}

// Trusted reports whether a is inside one of the prefixes (IPv4-mapped IPv6
// addresses count as IPv4).
func Trusted(prefixes []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// addrPort is the IP and port of a TCP address; the zero AddrPort for any
// other.
func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// Conn is a connection accepted by a Listener. Reads go through a small
// buffer until the bytes read with the header are consumed, then straight
// to the connection.
type Conn struct {
	net.Conn
	cfg     *Config
	peer    netip.AddrPort
	trusted bool

	once   sync.Once
	br     *bufio.Reader
	remote net.Addr // the client a trusted header named; nil: the peer
	err    error    // why the connection was refused

	mu           sync.Mutex
	readDeadline time.Time // the last one the server set
	inHeader     bool      // the header's own deadline is on the connection
}

// Read reads from the connection after its header (see Listener).
func (c *Conn) Read(p []byte) (int, error) {
	c.once.Do(c.readHeader)
	if c.err != nil {
		return 0, c.err
	}
	if c.br.Buffered() > 0 {
		return c.br.Read(p)
	}
	return c.Conn.Read(p)
}

// RemoteAddr is the client's address: the one a trusted peer's header
// names, or the TCP peer. For a trusted peer it waits for the header (at
// most Timeout); code that must not wait, such as an accept loop, reads
// RawConn().RemoteAddr(), the peer.
func (c *Conn) RemoteAddr() net.Addr {
	if !c.trusted {
		return c.Conn.RemoteAddr()
	}
	c.once.Do(c.readHeader)
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// SetDeadline sets the connection's deadlines; during the header only the
// write deadline takes effect at once, the read deadline after it.
func (c *Conn) SetDeadline(t time.Time) error {
	if c.recordRead(t) {
		return c.Conn.SetWriteDeadline(t)
	}
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline sets the read deadline; during the header it takes
// effect after it.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.recordRead(t) {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

// recordRead remembers the server's read deadline and reports whether the
// header's own deadline is on the connection now.
func (c *Conn) recordRead(t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDeadline = t
	return c.inHeader
}

// CloseWrite half-closes the TCP connection underneath, when it can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// RawConn is the connection underneath, for writers (writev); reads must
// go through c.
func (c *Conn) RawConn() net.Conn { return c.Conn }

// readHeader runs once, before the first read: it reads a trusted peer's
// header, or makes sure an untrusted peer sends none, under the header's
// deadline, then restores the server's read deadline.
func (c *Conn) readHeader() {
	c.br = bufio.NewReaderSize(c.Conn, 256)
	if !c.trusted {
		// Under the server's own deadline: a client that waits before
		// its first byte is served as it was without this listener. An
		// error here is the one the server's read gets next.
		if found, _ := Detect(c.br); found {
			c.refuse(fmt.Errorf("%w %s", ErrUntrusted, c.peer))
		}
		return
	}
	c.mu.Lock()
	c.inHeader = true
	d := time.Now().Add(c.cfg.Timeout)
	if t := c.readDeadline; !t.IsZero() && t.Before(d) {
		d = t
	}
	c.mu.Unlock()
	c.Conn.SetReadDeadline(d)
	defer func() {
		c.mu.Lock()
		c.inHeader = false
		t := c.readDeadline
		c.mu.Unlock()
		c.Conn.SetReadDeadline(t)
	}()
	h, err := Read(c.br)
	switch {
	case err == io.EOF:
		// Connected and closed without a byte (a balancer's TCP health
		// check): nothing to refuse.
		c.err = io.EOF
	case err != nil:
		c.refuse(fmt.Errorf("PROXY protocol header from %s: %w", c.peer, err))
	case !h.Local:
		c.remote = net.TCPAddrFromAddrPort(h.Source)
	}
}

// refuse records why the connection is refused and reports it.
func (c *Conn) refuse(err error) {
	c.err = err
	if c.cfg.OnRefuse != nil {
		c.cfg.OnRefuse(c.peer, err)
	}
}
