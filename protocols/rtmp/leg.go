package rtmp

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
)

// Buffer sizes of each direction of each leg.
const (
	readBufSize  = 16 << 10
	writeBufSize = 16 << 10
)

// Chunk sizes this proxy writes with, on each leg. Both are announced with
// SetChunkSize before the first message that could use them.
const (
	clientChunkSize = 60000
	originChunkSize = 60000
)

// Window acknowledgement size announced to clients, as SRS does.
const ackWindow = 2500000

// timedConn counts bytes and, when set, pushes the read or write deadline
// forward before each read or write, which implements the idle timeout
// without a timer goroutine.
type timedConn struct {
	net.Conn
	readIdle  time.Duration // 0: no read deadline is set here
	writeIdle time.Duration
	in, out   *atomic.Uint64
	// sessIn and sessOut, when set, count the same bytes for one session.
	sessIn, sessOut *atomic.Uint64
}

func (c *timedConn) Read(b []byte) (int, error) {
	if c.readIdle > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.readIdle))
	}
	n, err := c.Conn.Read(b)
	c.in.Add(uint64(n))
	if c.sessIn != nil {
		c.sessIn.Add(uint64(n))
	}
	return n, err
}

func (c *timedConn) Write(b []byte) (int, error) {
	if c.writeIdle > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.writeIdle))
	}
	n, err := c.Conn.Write(b)
	c.out.Add(uint64(n))
	if c.sessOut != nil {
		c.sessOut.Add(uint64(n))
	}
	return n, err
}

// leg is one connection of a session (client or origin) with its chunk
// state. Reading is done by one goroutine at a time; writes from the two
// relay goroutines (media one way, acknowledgements and pongs the other)
// are serialised by mu.
type leg struct {
	conn *timedConn
	r    *chunk.Reader

	mu      sync.Mutex
	w       *chunk.Writer
	scratch []byte

	pool *bufPool
	br   *bufio.Reader
	bw   *bufio.Writer

	// Acknowledgement state of the read side, used only by the reader.
	peerWindow uint32
	lastAck    uint64
}

func newLeg(nc net.Conn, in, out *atomic.Uint64, maxMessage uint32, pool *bufPool) *leg {
	tc := &timedConn{Conn: nc, in: in, out: out}
	br, bw := pool.get(tc)
	return &leg{
		conn: tc,
		r:    chunk.NewReader(br, maxMessage, readBufSize),
		w:    chunk.NewWriter(bw, writeBufSize),
		pool: pool, br: br, bw: bw,
	}
}

// Buffer sizes of a client leg during its set-up (connect, createStream,
// play or publish: commands of a few hundred bytes). A fan-out player
// never needs more; a session that relays gets the full-size buffers
// (grow) once its set-up is over. Thousands of players joining at once
// then cost the node a few KiB each while they set up, not 32.
const setupBufSize = 2 << 10

// newClientLeg is newLeg with set-up buffers: see setupBufSize.
func newClientLeg(nc net.Conn, in, out *atomic.Uint64, maxMessage uint32, pool *bufPool) *leg {
	tc := &timedConn{Conn: nc, in: in, out: out}
	br, bw := bufio.NewReaderSize(tc, setupBufSize), bufio.NewWriterSize(tc, setupBufSize)
	return &leg{
		conn: tc,
		r:    chunk.NewReader(br, maxMessage, readBufSize),
		w:    chunk.NewWriter(bw, writeBufSize),
		pool: pool, br: br, bw: bw,
	}
}

// grow gives a leg that set up on small buffers the full-size ones, for a
// session that relays: what the small reader holds already is read first.
func (l *leg) grow() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.br.Size() >= readBufSize {
		return nil
	}
	if err := l.w.Flush(); err != nil {
		return err
	}
	br, bw := l.pool.get(l.conn)
	if n := l.br.Buffered(); n > 0 {
		held, _ := l.br.Peek(n)
		br.Reset(&prefixReader{held: append([]byte(nil), held...), r: l.conn})
	}
	l.br, l.bw = br, bw
	l.r.Reset(br)
	l.w.Reset(bw)
	return nil
}

// prefixReader reads held, then r.
type prefixReader struct {
	held []byte
	r    io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.held) > 0 {
		n := copy(b, p.held)
		p.held = p.held[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// release returns the leg's I/O buffers to the pool. The leg must not be
// used afterwards.
func (l *leg) release() {
	l.pool.put(l.br, l.bw)
	l.br, l.bw = nil, nil
}

// bufPool recycles the buffered readers and writers of closed legs, so that
// connection churn does not allocate 32 KiB per leg.
type bufPool struct {
	r, w sync.Pool
}

func (p *bufPool) get(c io.ReadWriter) (*bufio.Reader, *bufio.Writer) {
	br, _ := p.r.Get().(*bufio.Reader)
	if br == nil {
		br = bufio.NewReaderSize(c, readBufSize)
	} else {
		br.Reset(c)
	}
	bw, _ := p.w.Get().(*bufio.Writer)
	if bw == nil {
		bw = bufio.NewWriterSize(c, writeBufSize)
	} else {
		bw.Reset(c)
	}
	return br, bw
}

func (p *bufPool) put(br *bufio.Reader, bw *bufio.Writer) {
	if br != nil && br.Size() == readBufSize {
		br.Reset(nil)
		p.r.Put(br)
	}
	if bw != nil && bw.Size() == writeBufSize {
		bw.Reset(nil)
		p.w.Put(bw)
	}
}

// Buffer sizes of a leg that only writes what chunk.Writer frames
// (commands, control) and reads acknowledgements: a fan-out player's.
const leanBufSize = 128

// shrink gives the leg's buffers back to the pool and continues with lean
// ones; it is for a fan-out player, whose
// media bypasses the buffers, so that a player costs a few KiB.
func (l *leg) shrink() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.w.Flush(); err != nil {
		return err
	}
	// Nothing reads through the leg once a fan-out player plays (see
	// playerPoll, which discards what the player sends): what the reader
	// holds (a buffer length, an acknowledgement sent after play) is
	// dropped with it, and the reader keeps only its byte count.
	l.pool.put(l.br, l.bw)
	l.br, l.bw = bufio.NewReaderSize(l.conn, 16), bufio.NewWriterSize(l.conn, leanBufSize)
	l.r.Reset(l.br)
	l.r.Forget()
	l.w.Reset(l.bw)
	l.scratch = nil // the set-up's commands; endPlay's makes its own
	return nil
}

// write writes m and, when flush is true, flushes the leg.
func (l *leg) write(m *chunk.Message, flush bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.w.WriteMessage(m); err != nil {
		return err
	}
	if flush {
		return l.w.Flush()
	}
	return nil
}

func (l *leg) flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Flush()
}

// writeCommand encodes and writes an AMF0 command message. It is used during
// set-up, not on the relay path.
func (l *leg) writeCommand(csid, streamID uint32, name string, txn float64, obj any, args ...any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, err := amf0.AppendAll(l.scratch[:0], name, txn, obj)
	if err == nil {
		b, err = amf0.AppendAll(b, args...)
	}
	if err != nil {
		return err
	}
	l.scratch = b
	return l.w.WriteMessage(&chunk.Message{CSID: csid, Type: chunk.TypeCommandAMF0, StreamID: streamID, Payload: b})
}

// handleControl applies a protocol control or user control message read
// from this leg. It reports whether the message was consumed here; user
// control stream events are not, and travel on to the other leg.
func (l *leg) handleControl(m *chunk.Message) (bool, error) {
	switch m.Type {
	case chunk.TypeSetChunkSize, chunk.TypeAbort, chunk.TypeAck, chunk.TypeSetPeerBandwidth:
		// Chunk size and abort were applied by the reader; the rest
		// concern this leg only.
		return true, nil
	case chunk.TypeWindowAckSize:
		if len(m.Payload) >= 4 {
			l.peerWindow = binary.BigEndian.Uint32(m.Payload)
		}
		return true, nil
	case chunk.TypeUserControl:
		if len(m.Payload) < 2 {
			return true, nil
		}
		switch binary.BigEndian.Uint16(m.Payload) {
		case chunk.EventPingRequest:
			var t uint32
			if len(m.Payload) >= 6 {
				t = binary.BigEndian.Uint32(m.Payload[2:])
			}
			l.mu.Lock()
			err := l.w.WriteUserControl(chunk.EventPingResponse, t)
			if err == nil {
				err = l.w.Flush()
			}
			l.mu.Unlock()
			return true, err
		case chunk.EventStreamBegin, chunk.EventStreamEOF, chunk.EventStreamDry,
			chunk.EventSetBufferLength, chunk.EventStreamIsRecorded:
			return len(m.Payload) < 6, nil
		}
		return true, nil
	}
	return false, nil
}

// maybeAck sends an Acknowledgement when the peer asked for one (with
// WindowAckSize) and a window's worth of bytes has been read since the last.
func (l *leg) maybeAck() error {
	if l.peerWindow == 0 {
		return nil
	}
	n := l.r.BytesRead()
	if n-l.lastAck < uint64(l.peerWindow) {
		return nil
	}
	l.lastAck = n
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.w.WriteControl(chunk.TypeAck, uint32(n)); err != nil {
		return err
	}
	return l.w.Flush()
}
