package rtmp

import (
	"bytes"
	"net"
	"sync/atomic"
	"testing"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
)

// readerConn is a net.Conn whose reads come from r.
type readerConn struct {
	net.Conn
	r *bytes.Reader
}

func (c readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// TestLegGrow: a client leg that set up on small buffers reads on, after
// grow, from where it was, the bytes its small reader held included.
func TestLegGrow(t *testing.T) {
	var wire bytes.Buffer
	cw := chunk.NewWriter(&wire, 1<<10)
	var want [][]byte
	for i := range 8 {
		p := bytes.Repeat([]byte{byte(i)}, 700)
		want = append(want, p)
		if err := cw.WriteMessage(&chunk.Message{CSID: 3, Type: chunk.TypeCommandAMF0, StreamID: 0, Payload: p}); err != nil {
			t.Fatal(err)
		}
	}
	cw.Flush()
	var in, out atomic.Uint64
	var pool bufPool
	l := newClientLeg(readerConn{r: bytes.NewReader(wire.Bytes())}, &in, &out, 1<<20, &pool)
	if l.br.Size() != setupBufSize {
		t.Fatalf("set-up reader of %d bytes, want %d", l.br.Size(), setupBufSize)
	}
	for i, p := range want {
		if i == 1 {
			if l.br.Buffered() == 0 {
				t.Fatal("nothing held by the small reader: the test does not test grow")
			}
			if err := l.grow(); err != nil {
				t.Fatal(err)
			}
			if l.br.Size() != readBufSize || l.bw.Size() != writeBufSize {
				t.Fatalf("after grow: buffers of %d and %d bytes", l.br.Size(), l.bw.Size())
			}
		}
		m, err := l.r.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(m.Payload, p) {
			t.Fatalf("message %d: %d bytes, not the ones written", i, len(m.Payload))
		}
	}
}
