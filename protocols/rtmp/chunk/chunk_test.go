package chunk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"
)

func newPair(maxLen uint32) (*bytes.Buffer, *Writer, func() *Reader) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 4096)
	return &buf, w, func() *Reader { return NewReader(&buf, maxLen, 4096) }
}

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)
	}
	return b
}

// TestBasicHeaderEveryCSID round-trips a message on every chunk stream id,
// and checks the basic header length at the 1/2/3-byte boundaries.
func TestBasicHeaderEveryCSID(t *testing.T) {
	for csid := uint32(2); csid <= MaxCSID; csid++ {
		var buf bytes.Buffer
		w := NewWriter(&buf, 64)
		m := Message{CSID: csid, Type: TypeVideo, StreamID: 1, Timestamp: 7, Payload: []byte{1, 2, 3}}
		if err := w.WriteMessage(&m); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		want := 1
		switch {
		case csid >= 320:
			want = 3
		case csid >= 64:
			want = 2
		}
		if got := buf.Len() - 11 - 3; got != want {
			t.Fatalf("csid %d: basic header %d bytes, want %d", csid, got, want)
		}
		got, err := NewReader(&buf, 100, 64).ReadMessage()
		if err != nil {
			t.Fatalf("csid %d: %v", csid, err)
		}
		if got.CSID != csid || !bytes.Equal(got.Payload, m.Payload) {
			t.Fatalf("csid %d: read back %v", csid, &got)
		}
	}
}

func TestBasicHeaderBytes(t *testing.T) {
	tests := []struct {
		csid uint32
		want []byte
	}{
		{2, []byte{0x02}},
		{63, []byte{0x3f}},
		{64, []byte{0x00, 0x00}},
		{319, []byte{0x00, 0xff}},
		{320, []byte{0x01, 0x00, 0x01}},
		{65599, []byte{0x01, 0xff, 0xff}},
	}
	for _, tt := range tests {
		if got := appendBasicHeader(nil, 0, tt.csid); !bytes.Equal(got, tt.want) {
			t.Errorf("csid %d: % x, want % x", tt.csid, got, tt.want)
		}
		if got := appendBasicHeader(nil, 3, tt.csid); got[0]>>6 != 3 {
			t.Errorf("csid %d: fmt bits lost", tt.csid)
		}
	}
	var w Writer
	for _, bad := range []uint32{0, 1, MaxCSID + 1} {
		if err := w.WriteMessage(&Message{CSID: bad}); !errors.Is(err, ErrBadCSID) {
			t.Errorf("csid %d: %v", bad, err)
		}
	}
}

// TestWriterHeaders checks the exact bytes of compressed headers: fmt 0 for
// a new chunk stream, fmt 1 for a new length, fmt 2 for the same length and
// type, fmt 3 for continuation chunks, and extended timestamps.
func TestWriterHeaders(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 1024)
	write := func(m Message) []byte {
		t.Helper()
		buf.Reset()
		if err := w.WriteMessage(&m); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		return bytes.Clone(buf.Bytes())
	}
	got := write(Message{CSID: 4, Type: TypeAudio, StreamID: 1, Timestamp: 1000, Payload: []byte{0xaf}})
	want := []byte{0x04, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x01, 0x08, 0x01, 0x00, 0x00, 0x00, 0xaf}
	if !bytes.Equal(got, want) {
		t.Fatalf("fmt 0:\n% x\nwant\n% x", got, want)
	}
	got = write(Message{CSID: 4, Type: TypeAudio, StreamID: 1, Timestamp: 1023, Payload: []byte{0xaf, 0x01}})
	want = []byte{0x44, 0x00, 0x00, 0x17, 0x00, 0x00, 0x02, 0x08, 0xaf, 0x01}
	if !bytes.Equal(got, want) {
		t.Fatalf("fmt 1:\n% x\nwant\n% x", got, want)
	}
	got = write(Message{CSID: 4, Type: TypeAudio, StreamID: 1, Timestamp: 1046, Payload: []byte{0xaf, 0x02}})
	want = []byte{0x84, 0x00, 0x00, 0x17, 0xaf, 0x02}
	if !bytes.Equal(got, want) {
		t.Fatalf("fmt 2:\n% x\nwant\n% x", got, want)
	}
	// Same delta again: still fmt 2, never fmt 3 at a message start.
	got = write(Message{CSID: 4, Type: TypeAudio, StreamID: 1, Timestamp: 1069, Payload: []byte{0xaf, 0x03}})
	if got[0] != 0x84 {
		t.Fatalf("message start with header byte %#x", got[0])
	}
	// Going back in time or changing stream id forces fmt 0.
	got = write(Message{CSID: 4, Type: TypeAudio, StreamID: 1, Timestamp: 5, Payload: []byte{0xaf, 0x03}})
	if got[0] != 0x04 {
		t.Fatalf("backwards timestamp: header byte %#x", got[0])
	}
	// Extended timestamp, split over three chunks: every fmt 3 chunk
	// repeats the extended field.
	w.SetChunkSize(2)
	w.Flush()
	buf.Reset()
	got = write(Message{CSID: 5, Type: TypeVideo, StreamID: 1, Timestamp: 0x01000000, Payload: []byte{1, 2, 3, 4, 5}})
	want = []byte{
		0x05, 0xff, 0xff, 0xff, 0x00, 0x00, 0x05, 0x09, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 1, 2,
		0xc5, 0x01, 0x00, 0x00, 0x00, 3, 4,
		0xc5, 0x01, 0x00, 0x00, 0x00, 5,
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("extended:\n% x\nwant\n% x", got, want)
	}
}

// TestReaderVectors feeds hand-made chunk sequences, including interleaved
// chunk streams and forms this package's Writer never produces.
func TestReaderVectors(t *testing.T) {
	type msg struct {
		CSID      uint32
		Type      uint8
		StreamID  uint32
		Timestamp uint32
		Payload   []byte
	}
	tests := []struct {
		name string
		in   []byte
		want []msg
	}{
		{
			name: "fmt 0 then fmt 3 starting a new message (delta repeats the field)",
			in: []byte{
				0x04, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x08, 0x01, 0x00, 0x00, 0x00, 0xaa,
				0xc4, 0xbb,
			},
			want: []msg{{4, 8, 1, 10, []byte{0xaa}}, {4, 8, 1, 20, []byte{0xbb}}},
		},
		{
			name: "fmt 1, fmt 2, fmt 3 deltas",
			in: []byte{
				0x06, 0x00, 0x00, 0x64, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 0x01,
				0x46, 0x00, 0x00, 0x28, 0x00, 0x00, 0x02, 0x09, 0x02, 0x02,
				0x86, 0x00, 0x00, 0x1e, 0x03, 0x03,
				0xc6, 0x04, 0x04,
			},
			want: []msg{
				{6, 9, 1, 100, []byte{1}},
				{6, 9, 1, 140, []byte{2, 2}},
				{6, 9, 1, 170, []byte{3, 3}},
				{6, 9, 1, 200, []byte{4, 4}},
			},
		},
		{
			name: "interleaved chunk streams with chunk size 2",
			in: []byte{
				0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0, 0, 0, 2, // SetChunkSize 2
				0x04, 0, 0, 1, 0, 0, 3, 0x08, 1, 0, 0, 0, 'a', 'b',
				0x05, 0, 0, 2, 0, 0, 3, 0x09, 1, 0, 0, 0, 'x', 'y',
				0xc4, 'c',
				0xc5, 'z',
			},
			want: []msg{
				{2, 1, 0, 0, []byte{0, 0, 0, 2}},
				{4, 8, 1, 1, []byte("abc")},
				{5, 9, 1, 2, []byte("xyz")},
			},
		},
		{
			name: "extended timestamp with fmt 3 continuation",
			in: []byte{
				0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0, 0, 0, 2,
				0x05, 0xff, 0xff, 0xff, 0, 0, 3, 0x09, 1, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 'a', 'b',
				0xc5, 0x12, 0x34, 0x56, 0x78, 'c',
			},
			want: []msg{
				{2, 1, 0, 0, []byte{0, 0, 0, 2}},
				{5, 9, 1, 0x12345678, []byte("abc")},
			},
		},
		{
			name: "extended delta in fmt 1, repeated by fmt 3 at a message start",
			in: []byte{
				0x05, 0, 0, 0, 0, 0, 1, 0x09, 1, 0, 0, 0, 'a',
				0x45, 0xff, 0xff, 0xff, 0, 0, 1, 0x09, 0x01, 0x00, 0x00, 0x00, 'b',
				0xc5, 0x01, 0x00, 0x00, 0x00, 'c',
			},
			want: []msg{
				{5, 9, 1, 0, []byte("a")},
				{5, 9, 1, 0x01000000, []byte("b")},
				{5, 9, 1, 0x02000000, []byte("c")},
			},
		},
		{
			name: "two- and three-byte basic headers",
			in: []byte{
				0x00, 0x00, 0, 0, 1, 0, 0, 1, 0x08, 1, 0, 0, 0, 'a',
				0x01, 0xff, 0xff, 0, 0, 2, 0, 0, 1, 0x08, 1, 0, 0, 0, 'b',
			},
			want: []msg{{64, 8, 1, 1, []byte("a")}, {65599, 8, 1, 2, []byte("b")}},
		},
		{
			name: "abort drops a partial message",
			in: []byte{
				0x04, 0, 0, 1, 0, 0, 200, 0x08, 1, 0, 0, 0,
			},
			want: nil,
		},
		{
			name: "empty message",
			in:   []byte{0x03, 0, 0, 0, 0, 0, 0, 0x14, 0, 0, 0, 0},
			want: []msg{{3, 20, 0, 0, nil}},
		},
	}
	// The abort case: 128 bytes of the 200-byte message, then Abort, then
	// a fresh message on the same chunk stream.
	abort := &tests[6]
	abort.in = append(abort.in, make([]byte, 128)...)
	abort.in = append(abort.in, 0x02, 0, 0, 0, 0, 0, 4, 0x02, 0, 0, 0, 0, 0, 0, 0, 4)
	abort.in = append(abort.in, 0x04, 0, 0, 2, 0, 0, 1, 0x08, 1, 0, 0, 0, 'z')
	abort.want = []msg{{2, 2, 0, 0, []byte{0, 0, 0, 4}}, {4, 8, 1, 2, []byte("z")}}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tt.in), 1<<20, 16)
			var got []msg
			for {
				m, err := r.ReadMessage()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("after %d messages: %v", len(got), err)
				}
				got = append(got, msg{m.CSID, m.Type, m.StreamID, m.Timestamp, bytes.Clone(m.Payload)})
			}
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestReaderErrors(t *testing.T) {
	setChunk := func(n uint32) []byte {
		b := []byte{0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0}
		return binary.BigEndian.AppendUint32(b, n)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"chunk size 0", setChunk(0), ErrBadChunkSize},
		{"chunk size above max", setChunk(MaxChunkSize + 1), ErrBadChunkSize},
		{"chunk size top bit", setChunk(0x80000000), ErrBadChunkSize},
		{"short set chunk size", []byte{0x02, 0, 0, 0, 0, 0, 2, 0x01, 0, 0, 0, 0, 0, 1}, ErrShortControl},
		{"message too large", []byte{0x04, 0, 0, 0, 0x10, 0, 1, 0x09, 1, 0, 0, 0}, ErrMessageTooLarge},
		{"fmt 1 on fresh chunk stream", []byte{0x44, 0, 0, 0, 0, 0, 1, 0x09, 'a'}, ErrNoPreviousHeader},
		{"fmt 3 on fresh chunk stream", []byte{0xc4, 'a'}, ErrNoPreviousHeader},
		{"header mid message", []byte{
			0x04, 0, 0, 0, 0, 1, 0, 0x09, 1, 0, 0, 0}, ErrHeaderMidMessage},
		{"truncated header", []byte{0x04, 0, 0}, io.EOF},
		{"truncated basic header", []byte{0x01, 0xff}, io.EOF},
		{"truncated payload", []byte{0x04, 0, 0, 0, 0, 0, 9, 0x09, 1, 0, 0, 0, 'a'}, io.EOF},
	}
	// Mid-message header: 128 bytes of a 256-byte message, then fmt 0 again.
	mid := &tests[7]
	mid.in = append(mid.in, make([]byte, 128)...)
	mid.in = append(mid.in, 0x04, 0, 0, 0, 0, 0, 1, 0x09, 1, 0, 0, 0, 'x')
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tt.in), 1<<20, 16)
			var err error
			for err == nil {
				_, err = r.ReadMessage()
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	// Too many chunk streams.
	var in []byte
	for csid := 2; csid < 2+MaxChunkStreams+1; csid++ {
		in = append(in, appendBasicHeader(nil, 0, uint32(csid))...)
		in = append(in, 0, 0, 0, 0, 0, 0, 0x08, 1, 0, 0, 0)
	}
	r := NewReader(bytes.NewReader(in), 1<<20, 16)
	var err error
	for err == nil {
		_, err = r.ReadMessage()
	}
	if !errors.Is(err, ErrTooManyChunkStream) {
		t.Fatalf("many chunk streams: %v", err)
	}
}

// TestRoundTripChunkSizeChanges writes a sequence of messages on several
// chunk streams while the chunk size changes, and reads them back.
func TestRoundTripChunkSizeChanges(t *testing.T) {
	buf, w, reader := newPair(1 << 20)
	var sent []Message
	sizes := []uint32{128, 1, 7, 4096, 60000, 3}
	ts := uint32(0)
	for i := 0; i < 300; i++ {
		if i%50 == 0 {
			if err := w.SetChunkSize(sizes[i/50]); err != nil {
				t.Fatal(err)
			}
		}
		ts += uint32(i % 40)
		if i == 150 {
			ts = 0xfffffe // crosses into extended timestamps
		}
		csids := []uint32{3, 4, 6, 63, 64, 319, 320, 65599}
		m := Message{CSID: csids[i%len(csids)], Type: uint8(8 + i%2), StreamID: uint32(1 + i%3/2), Timestamp: ts, Payload: payload(i*37%5000, byte(i))}
		if err := w.WriteMessage(&m); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m)
	}
	w.Flush()
	r := reader()
	for i, want := range sent {
		var got Message
		var err error
		for {
			got, err = r.ReadMessage()
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if got.Type != TypeSetChunkSize {
				break
			}
		}
		if got.CSID != want.CSID || got.Type != want.Type || got.StreamID != want.StreamID || got.Timestamp != want.Timestamp || !bytes.Equal(got.Payload, want.Payload) {
			t.Fatalf("message %d: got %v, want %v", i, &got, &want)
		}
	}
	if r.ChunkSize() != 3 {
		t.Fatalf("reader chunk size %d", r.ChunkSize())
	}
	if buf.Len() != 0 || r.BytesRead() != w.BytesWritten() {
		t.Fatalf("read %d of %d bytes", r.BytesRead(), w.BytesWritten())
	}
}

func TestWriterControl(t *testing.T) {
	_, w, reader := newPair(100)
	if err := w.SetChunkSize(0); !errors.Is(err, ErrBadChunkSize) {
		t.Fatal(err)
	}
	if err := w.SetChunkSize(MaxChunkSize + 1); !errors.Is(err, ErrBadChunkSize) {
		t.Fatal(err)
	}
	if err := w.WriteControl(TypeSetChunkSize, 10); !errors.Is(err, ErrSetChunkSize) {
		t.Fatal(err)
	}
	w.WriteControl(TypeWindowAckSize, 2500000)
	w.WriteSetPeerBandwidth(2500000, 2)
	w.WriteUserControl(EventStreamBegin, 1)
	w.WriteUserControl(EventSetBufferLength, 1, 3000)
	w.Flush()
	r := reader()
	want := [][]byte{
		{0x00, 0x26, 0x25, 0xa0},
		{0x00, 0x26, 0x25, 0xa0, 2},
		{0, 0, 0, 0, 0, 1},
		{0, 3, 0, 0, 0, 1, 0, 0, 0x0b, 0xb8},
	}
	for i, w := range want {
		m, err := r.ReadMessage()
		if err != nil || m.CSID != ControlCSID || m.StreamID != 0 || !bytes.Equal(m.Payload, w) {
			t.Fatalf("control %d: %v %v % x", i, err, &m, m.Payload)
		}
	}
}

// TestSteadyStateAllocs: once buffers have grown, writing and reading a
// message allocates nothing.
func TestSteadyStateAllocs(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 64<<10)
	r := NewReader(&buf, 1<<20, 64<<10)
	w.SetChunkSize(4096)
	video := Message{CSID: 6, Type: TypeVideo, StreamID: 1, Payload: payload(10000, 1)}
	audio := Message{CSID: 4, Type: TypeAudio, StreamID: 1, Payload: payload(300, 2)}
	step := func() {
		video.Timestamp += 40
		audio.Timestamp += 23
		w.WriteMessage(&video)
		w.WriteMessage(&audio)
		w.Flush()
		for i := 0; i < 2; i++ {
			if _, err := r.ReadMessage(); err != nil {
				t.Fatal(err)
			}
		}
	}
	step()
	step()
	if n := testing.AllocsPerRun(200, step); n != 0 {
		t.Fatalf("%v allocations per message pair", n)
	}
}

func FuzzChunkReader(f *testing.F) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 4096)
	w.SetChunkSize(64)
	w.WriteMessage(&Message{CSID: 3, Type: TypeCommandAMF0, Payload: payload(200, 0)})
	w.WriteMessage(&Message{CSID: 400, Type: TypeVideo, StreamID: 1, Timestamp: 0x1000000, Payload: payload(130, 0)})
	w.WriteMessage(&Message{CSID: 400, Type: TypeVideo, StreamID: 1, Timestamp: 0x1000010, Payload: payload(130, 0)})
	w.WriteControl(TypeAbort, 3)
	w.Flush()
	f.Add(buf.Bytes())
	f.Add([]byte{0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0x04, 0, 0, 0, 0, 0, 3, 0x08, 1, 0, 0, 0, 1, 0xc4, 2, 0xc4, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), 1<<16, 64)
		for {
			m, err := r.ReadMessage()
			if err != nil {
				return
			}
			if len(m.Payload) > 1<<16 {
				t.Fatalf("payload %d bytes above the limit", len(m.Payload))
			}
			if r.BytesRead() > uint64(len(in)) {
				t.Fatalf("consumed %d of %d bytes", r.BytesRead(), len(in))
			}
		}
	})
}
