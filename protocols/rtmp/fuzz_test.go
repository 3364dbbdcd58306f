package rtmp

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/handshake"
	"github.com/srs-mesh/srs-mesh/stream"
)

// clientSessionSeed is what FFmpeg sends to publish: C0, C1, C2, then
// connect, releaseStream, FCPublish, createStream and publish.
func clientSessionSeed(name string) []byte {
	var buf bytes.Buffer
	buf.WriteByte(handshake.Version)
	buf.Write(make([]byte, 2*handshake.Size))
	w := chunk.NewWriter(&buf, 4096)
	w.SetChunkSize(4096)
	cmd := func(sid uint32, vals ...any) {
		b, _ := amf0.AppendAll(nil, vals...)
		w.WriteMessage(&chunk.Message{CSID: 3, Type: chunk.TypeCommandAMF0, StreamID: sid, Payload: b})
	}
	cmd(0, "connect", 1.0, amf0.Object{{Key: "app", Value: "live"}, {Key: "tcUrl", Value: "rtmp://h/live"}})
	cmd(0, "releaseStream", 2.0, nil, name)
	cmd(0, "FCPublish", 3.0, nil, name)
	cmd(0, "createStream", 4.0, nil)
	cmd(1, "publish", 5.0, nil, name, "live")
	w.WriteMessage(&chunk.Message{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Payload: payload(300)})
	w.Flush()
	return buf.Bytes()
}

// FuzzClientSession feeds arbitrary bytes as a client to a server over
// net.Pipe. The router refuses, so the session never leaves the process.
// The server must not panic, and Close must end every goroutine.
func FuzzClientSession(f *testing.F) {
	f.Add(clientSessionSeed("s?secret=abc"))
	f.Add(clientSessionSeed("a b"))
	f.Add(append([]byte{3}, make([]byte, 1000)...))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	router := &fakeRouter{route: func(context.Context, stream.Key) (stream.Origin, error) {
		return stream.Origin{}, stream.ErrNoOrigin
	}}
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := New(Config{Router: router, Logger: testLogger(t), HandshakeTimeout: 200 * time.Millisecond, MaxMessageSize: 1 << 16})
		if err != nil {
			t.Fatal(err)
		}
		client, server := net.Pipe()
		s.accept(server)
		drained := make(chan struct{})
		go func() {
			io.Copy(io.Discard, client)
			close(drained)
		}()
		client.SetWriteDeadline(time.Now().Add(time.Second))
		client.Write(in)
		client.Close()
		<-drained
		s.Close()
		if st := s.Stats(); st.ConnsOpen != 0 {
			t.Fatalf("connections open after Close: %+v", st)
		}
	})
}
