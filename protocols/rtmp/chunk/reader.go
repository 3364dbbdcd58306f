package chunk

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Reader reassembles messages from the chunks of one direction of a
// connection. It is not safe for concurrent use.
type Reader struct {
	r         *bufio.Reader
	chunkSize uint32
	maxLen    uint32
	off       uint64
	streams   map[uint32]*readStream
	hdr       [11]byte
}

// readStream is the header state of one chunk stream.
type readStream struct {
	timestamp uint32 // of the message being read or last read
	field     uint32 // last timestamp field: absolute (fmt 0) or delta (fmt 1, 2)
	length    uint32
	typ       uint8
	streamID  uint32
	extended  bool // last fmt 0-2 header carried an extended timestamp
	inMessage bool // some chunks of a message have been read
	buf       []byte
}

// NewReader returns a Reader reading chunks from r with the default chunk
// size. Messages longer than maxMessage bytes are rejected with
// ErrMessageTooLarge before any of their payload is buffered. If r is not a
// *bufio.Reader it is wrapped in one of bufSize bytes.
func NewReader(r io.Reader, maxMessage uint32, bufSize int) *Reader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, bufSize)
	}
	return &Reader{r: br, chunkSize: DefaultChunkSize, maxLen: maxMessage, streams: make(map[uint32]*readStream)}
}

// ChunkSize is the chunk size the peer currently writes with.
func (r *Reader) ChunkSize() uint32 { return r.chunkSize }

// BytesRead is the number of bytes consumed so far, for acknowledgements.
func (r *Reader) BytesRead() uint64 { return r.off }

// Buffered is the number of bytes read from the connection but not yet
// consumed. A relay flushes its writer when this is zero.
func (r *Reader) Buffered() int { return r.r.Buffered() }

func (r *Reader) fail(csid uint32, err error) error {
	return fmt.Errorf("%w (chunk stream %d, offset %d)", err, csid, r.off)
}

func (r *Reader) read(b []byte) error {
	n, err := io.ReadFull(r.r, b)
	r.off += uint64(n)
	if err == io.ErrUnexpectedEOF {
		return io.EOF
	}
	return err
}

// ReadMessage reads chunks until a message is complete and returns it. The
// payload aliases the Reader's buffer and is valid until the next call.
// SetChunkSize and Abort messages are applied by the Reader and returned
// too. I/O errors are returned as they are (io.EOF when the peer closed,
// also in the middle of a chunk); protocol errors wrap the package's errors.
func (r *Reader) ReadMessage() (Message, error) {
	for {
		m, done, err := r.readChunk()
		if err != nil || !done {
			if err != nil {
				return Message{}, err
			}
			continue
		}
		switch m.Type {
		case TypeSetChunkSize:
			if len(m.Payload) < 4 {
				return Message{}, r.fail(m.CSID, ErrShortControl)
			}
			n := binary.BigEndian.Uint32(m.Payload)
			if n == 0 || n > MaxChunkSize {
				return Message{}, r.fail(m.CSID, fmt.Errorf("%w: %d", ErrBadChunkSize, n))
			}
			r.chunkSize = n
		case TypeAbort:
			if len(m.Payload) < 4 {
				return Message{}, r.fail(m.CSID, ErrShortControl)
			}
			if st := r.streams[binary.BigEndian.Uint32(m.Payload)]; st != nil {
				st.inMessage = false
				st.buf = st.buf[:0]
			}
		}
		return m, nil
	}
}

// readChunk reads one chunk; done reports whether it completed a message.
func (r *Reader) readChunk() (Message, bool, error) {
	if err := r.read(r.hdr[:1]); err != nil {
		return Message{}, false, err
	}
	format := r.hdr[0] >> 6
	csid := uint32(r.hdr[0] & 0x3f)
	switch csid {
	case 0:
		if err := r.read(r.hdr[:1]); err != nil {
			return Message{}, false, err
		}
		csid = 64 + uint32(r.hdr[0])
	case 1:
		if err := r.read(r.hdr[:2]); err != nil {
			return Message{}, false, err
		}
		csid = 64 + uint32(r.hdr[0]) + uint32(r.hdr[1])<<8
	}
	st := r.streams[csid]
	if st == nil {
		if format != 0 {
			return Message{}, false, r.fail(csid, ErrNoPreviousHeader)
		}
		if len(r.streams) >= MaxChunkStreams {
			return Message{}, false, r.fail(csid, ErrTooManyChunkStream)
		}
		st = &readStream{}
		r.streams[csid] = st
	}
	if format < 3 && st.inMessage {
		return Message{}, false, r.fail(csid, ErrHeaderMidMessage)
	}
	var field uint32
	switch format {
	case 0:
		if err := r.read(r.hdr[:11]); err != nil {
			return Message{}, false, err
		}
		field = be24(r.hdr[0:])
		st.length = be24(r.hdr[3:])
		st.typ = r.hdr[6]
		st.streamID = binary.LittleEndian.Uint32(r.hdr[7:])
	case 1:
		if err := r.read(r.hdr[:7]); err != nil {
			return Message{}, false, err
		}
		field = be24(r.hdr[0:])
		st.length = be24(r.hdr[3:])
		st.typ = r.hdr[6]
	case 2:
		if err := r.read(r.hdr[:3]); err != nil {
			return Message{}, false, err
		}
		field = be24(r.hdr[0:])
	}
	if format < 3 {
		st.extended = field == extendedTimestamp
	}
	if st.extended {
		// Present after fmt 0-2 headers that said so, and after every
		// fmt 3 header that follows one of them.
		if err := r.read(r.hdr[:4]); err != nil {
			return Message{}, false, err
		}
		if format < 3 {
			field = binary.BigEndian.Uint32(r.hdr[:4])
		}
	}
	if !st.inMessage {
		// First chunk of a message: compute its timestamp. A fmt 3 header
		// repeats the previous timestamp field as a delta, as FFmpeg and
		// SRS do.
		switch format {
		case 0:
			st.timestamp = field
			st.field = field
		case 1, 2:
			st.timestamp += field
			st.field = field
		case 3:
			st.timestamp += st.field
		}
		if st.length > r.maxLen {
			return Message{}, false, r.fail(csid, fmt.Errorf("%w: %d > %d", ErrMessageTooLarge, st.length, r.maxLen))
		}
		st.buf = st.buf[:0]
		st.inMessage = true
	}
	n := st.length - uint32(len(st.buf))
	if n > r.chunkSize {
		n = r.chunkSize
	}
	have := len(st.buf)
	if cap(st.buf)-have < int(n) {
		// Grow to what has arrived, not to the declared length, so that
		// a peer cannot reserve memory it does not send.
		nb := make([]byte, have, max(2*cap(st.buf), have+int(n)))
		copy(nb, st.buf)
		st.buf = nb
	}
	st.buf = st.buf[:have+int(n)]
	if err := r.read(st.buf[have:]); err != nil {
		return Message{}, false, err
	}
	if uint32(len(st.buf)) < st.length {
		return Message{}, false, nil
	}
	st.inMessage = false
	return Message{CSID: csid, Type: st.typ, StreamID: st.streamID, Timestamp: st.timestamp, Payload: st.buf}, true, nil
}

func be24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }

// Reset makes the Reader read from br from now on, keeping its chunk size
// and chunk stream state; the old buffer must hold no unread bytes
// (Buffered() == 0).
func (r *Reader) Reset(br *bufio.Reader) { r.r = br }

// Forget drops the state of every chunk stream (and the buffers of the
// messages last read on them), keeping the chunk size and the byte count:
// for a reader that will read no more messages, or only from the start of
// new chunk streams.
func (r *Reader) Forget() { r.streams = make(map[uint32]*readStream) }
