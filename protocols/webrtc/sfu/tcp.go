package sfu

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
)

// capListener accepts at most max connections at a time: one beyond is
// closed at once and counted. Its connections give their slot back when
// closed.
type capListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused atomic.Uint64
}

// Accept returns the next connection within the cap.
func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.refused.Add(1)
			c.Close()
			continue
		}
		return &capConn{Conn: c, l: l}, nil
	}
}

type capConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *capConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// tcpPriority is the priority of the passive TCP candidate added to
// answers: a host candidate's type preference (126), a lower local
// preference than UDP's (RFC 6544 section 4.2), component 1; clients
// that can use UDP prefer it.
const tcpPriority = 126<<24 | 0x1fff<<8 | 255

// addTCPCandidate adds, after each candidate of an answer, a passive
// TCP host candidate for cand (ICE-TCP, RFC 6544).
func addTCPCandidate(sdp []byte, cand netip.AddrPort) []byte {
	line := "a=candidate:tcp1 1 tcp " + strconv.Itoa(tcpPriority) + " " + cand.Addr().Unmap().String() + " " +
		strconv.Itoa(int(cand.Port())) + " typ host tcptype passive"
	out := make([]byte, 0, len(sdp)+2*len(line))
	for len(sdp) > 0 {
		i := bytes.IndexByte(sdp, '\n')
		var l []byte
		if i < 0 {
			l, sdp = sdp, nil
		} else {
			l, sdp = sdp[:i+1], sdp[i+1:]
		}
		out = append(out, l...)
		if bytes.HasPrefix(l, []byte("a=candidate:")) {
			eol := "\r\n"
			if !bytes.HasSuffix(l, []byte("\r\n")) {
				eol = "\n"
			}
			out = append(out, line...)
			out = append(out, eol...)
		}
	}
	return out
}
