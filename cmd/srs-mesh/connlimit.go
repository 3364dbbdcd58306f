package main

import (
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Refusing a connection over the cap: the answer, how long a refused client
// may take to read it, and how many refusals may be in flight at once (more
// are closed without an answer).
const (
	refuseBody     = `{"code":503,"message":"too many connections"}` + "\n" // as stream/httpjson writes it
	refuseTimeout  = time.Second
	maxRefusing    = 128
	refuseMaxDrain = 64 << 10
)

var refuseAnswer = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Length: " + strconv.Itoa(len(refuseBody)) + "\r\n" +
	"Connection: close\r\n\r\n" + refuseBody)

// connLimit is a net.Listener that keeps at most max of its connections open
// at once. A connection over the cap is answered 503 and closed by a
// goroutine of its own, under a short deadline, so that a slow client never
// holds up Accept. A connection's slot is freed on its first Close.
type connLimit struct {
	net.Listener
	max      int64
	onRefuse func() // called once per refused connection; may be nil

	open     atomic.Int64
	refused  atomic.Uint64
	refusing chan struct{}
}

func newConnLimit(ln net.Listener, max int, onRefuse func()) *connLimit {
	return &connLimit{Listener: ln, max: int64(max), onRefuse: onRefuse, refusing: make(chan struct{}, maxRefusing)}
}

// Accept returns the next connection within the cap; the ones over it are
// refused on the way.
func (l *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &limitedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.refused.Add(1)
		if l.onRefuse != nil {
			l.onRefuse()
		}
		select {
		case l.refusing <- struct{}{}:
			go func() {
				defer func() { <-l.refusing }()
				refuse(c)
			}()
		default:
			c.Close()
		}
	}
}

// Open is the number of connections open now.
func (l *connLimit) Open() int64 { return l.open.Load() }

// Refused is the number of connections refused so far.
func (l *connLimit) Refused() uint64 { return l.refused.Load() }

// refuse writes the 503 answer to c and closes it, within refuseTimeout.
// It half-closes first and reads what the client sent until the client
// closes too: closing a socket with unread input resets the connection,
// which can destroy the answer before the client has read it.
func refuse(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(refuseTimeout))
	if _, err := c.Write(refuseAnswer); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	io.Copy(io.Discard, io.LimitReader(c, refuseMaxDrain))
}

// limitedConn is a connection that holds a slot of its connLimit until it
// is closed.
type limitedConn struct {
	net.Conn
	l       *connLimit
	release sync.Once
}

// Close closes the connection and frees its slot; closing it again frees
// nothing more.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release.Do(func() { c.l.open.Add(-1) })
	return err
}

// CloseWrite half-closes a TCP connection. net/http uses it to end a
// response before closing, so that the client reads it rather than a reset.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// RawConn returns the TCP connection underneath (through a wrapper that
// has one, such as a PROXY protocol connection's), so that a writer that
// owns the connection (a hijacked HTTP-FLV player) can use writev on it.
// It must still be closed, and read, through c. (Not NetConn: *tls.Conn has
// that method, and the bytes under TLS must never be written past it.)
func (c *limitedConn) RawConn() net.Conn {
	if r, ok := c.Conn.(interface{ RawConn() net.Conn }); ok {
		return r.RawConn()
	}
	return c.Conn
}
