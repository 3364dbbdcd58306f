package chunk

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Writer splits messages into chunks for one direction of a connection,
// compressing headers against the previous message of each chunk stream. It
// is not safe for concurrent use; callers that write from several goroutines
// hold a lock around WriteMessage and Flush.
//
// The first chunk of a message always carries a fmt 0, 1 or 2 header, never
// fmt 3: readers disagree on what a fmt 3 header at the start of a message
// means, and this choice is read the same way by all of them.
type Writer struct {
	w         *bufio.Writer
	chunkSize uint32
	streams   map[uint32]*writeStream
	hdr       [3 + 11 + 4]byte
	ctl       [10]byte
	off       uint64
}

type writeStream struct {
	timestamp uint32
	length    uint32
	typ       uint8
	streamID  uint32
}

// NewWriter returns a Writer writing to w with the default chunk size. If w
// is not a *bufio.Writer it is wrapped in one of bufSize bytes. Nothing
// reaches w before Flush (or before the buffer fills).
func NewWriter(w io.Writer, bufSize int) *Writer {
	bw, ok := w.(*bufio.Writer)
	if !ok {
		bw = bufio.NewWriterSize(w, bufSize)
	}
	return &Writer{w: bw, chunkSize: DefaultChunkSize, streams: make(map[uint32]*writeStream)}
}

// ChunkSize is the chunk size the Writer currently uses.
func (w *Writer) ChunkSize() uint32 { return w.chunkSize }

// BytesWritten is the number of bytes written so far (buffered or not).
func (w *Writer) BytesWritten() uint64 { return w.off }

// Flush writes buffered bytes to the underlying writer.
func (w *Writer) Flush() error { return w.w.Flush() }

func (w *Writer) write(b []byte) error {
	n, err := w.w.Write(b)
	w.off += uint64(n)
	return err
}

// WriteMessage writes m as chunks on chunk stream m.CSID (2..MaxCSID).
func (w *Writer) WriteMessage(m *Message) error {
	if m.CSID < 2 || m.CSID > MaxCSID {
		return fmt.Errorf("%w: %d", ErrBadCSID, m.CSID)
	}
	if uint64(len(m.Payload)) > 0xffffff {
		return fmt.Errorf("%w: %d bytes", ErrMessageTooLarge, len(m.Payload))
	}
	length := uint32(len(m.Payload))
	st := w.streams[m.CSID]
	var format uint8
	var field uint32
	switch {
	case st == nil:
		st = &writeStream{}
		w.streams[m.CSID] = st
		field = m.Timestamp
	case m.StreamID != st.streamID || m.Timestamp < st.timestamp:
		field = m.Timestamp
	case m.Type == st.typ && length == st.length:
		format, field = 2, m.Timestamp-st.timestamp
	default:
		format, field = 1, m.Timestamp-st.timestamp
	}
	*st = writeStream{timestamp: m.Timestamp, length: length, typ: m.Type, streamID: m.StreamID}

	extended := field >= extendedTimestamp
	ts := field
	if extended {
		ts = extendedTimestamp
	}
	h := appendBasicHeader(w.hdr[:0], format, m.CSID)
	if format <= 2 {
		h = append(h, byte(ts>>16), byte(ts>>8), byte(ts))
	}
	if format <= 1 {
		h = append(h, byte(length>>16), byte(length>>8), byte(length), m.Type)
	}
	if format == 0 {
		h = binary.LittleEndian.AppendUint32(h, m.StreamID)
	}
	if extended {
		h = binary.BigEndian.AppendUint32(h, field)
	}
	p := m.Payload
	for first := true; first || len(p) > 0; first = false {
		if !first {
			h = appendBasicHeader(w.hdr[:0], 3, m.CSID)
			if extended {
				h = binary.BigEndian.AppendUint32(h, field)
			}
		}
		if err := w.write(h); err != nil {
			return err
		}
		n := min(uint32(len(p)), w.chunkSize)
		if err := w.write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// SetChunkSize sends a SetChunkSize message and uses size for every chunk
// written after it.
func (w *Writer) SetChunkSize(size uint32) error {
	if size == 0 || size > MaxChunkSize {
		return fmt.Errorf("%w: %d", ErrBadChunkSize, size)
	}
	if err := w.writeControl(TypeSetChunkSize, size); err != nil {
		return err
	}
	w.chunkSize = size
	return nil
}

// WriteControl writes a protocol control message with one 32-bit value:
// Abort, Acknowledgement or WindowAckSize. SetChunkSize must go through
// SetChunkSize, so that the Writer adopts the size it announces.
func (w *Writer) WriteControl(typ uint8, v uint32) error {
	if typ == TypeSetChunkSize {
		return ErrSetChunkSize
	}
	return w.writeControl(typ, v)
}

func (w *Writer) writeControl(typ uint8, v uint32) error {
	binary.BigEndian.PutUint32(w.ctl[:4], v)
	return w.WriteMessage(&Message{CSID: ControlCSID, Type: typ, Payload: w.ctl[:4]})
}

// WriteSetPeerBandwidth writes a SetPeerBandwidth message (limit type 0
// hard, 1 soft, 2 dynamic).
func (w *Writer) WriteSetPeerBandwidth(size uint32, limit uint8) error {
	binary.BigEndian.PutUint32(w.ctl[:4], size)
	w.ctl[4] = limit
	return w.WriteMessage(&Message{CSID: ControlCSID, Type: TypeSetPeerBandwidth, Payload: w.ctl[:5]})
}

// WriteUserControl writes a user control message: an event type and its
// 32-bit data (a stream id, or a stream id and a buffer length, or a time).
func (w *Writer) WriteUserControl(event uint16, data ...uint32) error {
	if len(data) > 2 {
		data = data[:2]
	}
	binary.BigEndian.PutUint16(w.ctl[:2], event)
	n := 2
	for _, d := range data {
		binary.BigEndian.PutUint32(w.ctl[n:], d)
		n += 4
	}
	return w.WriteMessage(&Message{CSID: ControlCSID, Type: TypeUserControl, Payload: w.ctl[:n]})
}

// AppendHeader appends the type 0 chunk header of a message (basic header,
// full message header and, for timestamps from 0xffffff up, the extended
// timestamp) to dst. A writer that frames a message itself sends this
// header, then the payload in pieces of the chunk size, each after the
// first preceded by AppendContinuation's header. It must use chunk streams
// that its Writer does not, as a Writer compresses headers against the
// last message it wrote on a chunk stream.
func AppendHeader(dst []byte, csid uint32, typ uint8, streamID, timestamp uint32, length int) []byte {
	ts := min(timestamp, extendedTimestamp)
	dst = appendBasicHeader(dst, 0, csid)
	dst = append(dst, byte(ts>>16), byte(ts>>8), byte(ts), byte(length>>16), byte(length>>8), byte(length), typ)
	dst = binary.LittleEndian.AppendUint32(dst, streamID)
	if timestamp >= extendedTimestamp {
		dst = binary.BigEndian.AppendUint32(dst, timestamp)
	}
	return dst
}

// AppendContinuation appends the type 3 chunk header that precedes each
// chunk of a message after its first (with the extended timestamp again
// when the message has one, as FFmpeg and SRS expect).
func AppendContinuation(dst []byte, csid uint32, timestamp uint32) []byte {
	dst = appendBasicHeader(dst, 3, csid)
	if timestamp >= extendedTimestamp {
		dst = binary.BigEndian.AppendUint32(dst, timestamp)
	}
	return dst
}

// Reset makes the Writer write to bw from now on, keeping its chunk size
// and header state; what the old buffer held must have been flushed.
func (w *Writer) Reset(bw *bufio.Writer) { w.w = bw }
