package rtmp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/internal/protocoltest"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/handshake"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

func recv(t testing.TB, ch chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received")
		return ""
	}
}

// expectClosed reads from nc until EOF or an error, failing if that does
// not happen within d.
func expectClosed(t testing.TB, nc net.Conn, d time.Duration) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, nc)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v", d)
	}
}

func TestStreamQueryReachesOrigin(t *testing.T) {
	o := startFakeOrigin(t, "")
	_, addr := startProxy(t, Config{Router: routeTo(o.Addr)})
	p := dialTestPeer(t, addr)
	info, err := p.start("rtmp://"+addr+"/live?vhost=v1", "s?secret=abc", true)
	if err != nil {
		t.Fatal(err)
	}
	if info.String("code") != codePublishStart {
		t.Fatalf("client got %v", info)
	}
	if got := recv(t, o.names); got != "s?secret=abc" {
		t.Fatalf("origin got stream name %q", got)
	}
	if got, want := recv(t, o.tcURLs), "rtmp://"+o.Addr+"/live?vhost=v1"; got != want {
		t.Fatalf("origin got tcUrl %q, want %q", got, want)
	}
}

// TestFFmpegQueryReachesOrigin: the same with FFmpeg as the publisher.
func TestFFmpegQueryReachesOrigin(t *testing.T) {
	harness.Need(t, "ffmpeg")
	o := startFakeOrigin(t, "")
	_, addr := startProxy(t, Config{Router: routeTo(o.Addr)})
	harness.PublishRTMP(t, "rtmp://"+addr+"/live/s?secret=abc")
	if got := recv(t, o.names); got != "s?secret=abc" {
		t.Fatalf("origin got stream name %q", got)
	}
}

// TestPlayRelay checks what a player receives through the proxy: the
// origin's Play.Reset and Play.Start and stream begin, and media with the
// message stream id mapped from the origin's (7) to the client's (1), large
// messages on a 3-byte chunk stream id with extended timestamps intact.
func TestPlayRelay(t *testing.T) {
	o := startFakeOrigin(t, "")
	big := payload(100000)
	o.media = []chunk.Message{
		{CSID: 6, Type: chunk.TypeVideo, Timestamp: 0, Payload: payload(5000)},
		{CSID: 400, Type: chunk.TypeVideo, Timestamp: 0x1000000, Payload: big},
		{CSID: 4, Type: chunk.TypeAudio, Timestamp: 0x1000017, Payload: payload(10)},
	}
	_, addr := startProxy(t, Config{Router: routeTo(o.Addr)})
	p := dialTestPeer(t, addr)
	info, err := p.start("rtmp://"+addr+"/live", "s", false)
	if err != nil {
		t.Fatal(err)
	}
	if info.String("code") != codePlayReset {
		t.Fatalf("first status %v", info)
	}
	began := p.began == 1
	var got []chunk.Message
	for len(got) < 3 {
		m, err := p.r.ReadMessage()
		if err != nil {
			t.Fatalf("after %d media messages: %v", len(got), err)
		}
		switch {
		case m.Type == chunk.TypeUserControl:
			if binary.BigEndian.Uint16(m.Payload) == chunk.EventStreamBegin {
				if sid := binary.BigEndian.Uint32(m.Payload[2:]); sid != 1 {
					t.Fatalf("stream begin for stream %d", sid)
				}
				began = true
			}
		case isCommand(&m):
			c, _ := parseCommand(&m)
			if c.Name == "onStatus" && c.info().String("code") != codePlayStart {
				t.Fatalf("status %v", c.info())
			}
		case m.Type == chunk.TypeVideo || m.Type == chunk.TypeAudio:
			if m.StreamID != 1 {
				t.Fatalf("media on stream %d", m.StreamID)
			}
			m.Payload = bytes.Clone(m.Payload)
			got = append(got, m)
		}
	}
	if !began {
		t.Fatal("no stream begin")
	}
	for i, want := range o.media {
		if got[i].Timestamp != want.Timestamp || !bytes.Equal(got[i].Payload, want.Payload) {
			t.Fatalf("media %d: %v, want %v", i, &got[i], &want)
		}
	}
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 13)
	}
	return b
}

func TestRefusals(t *testing.T) {
	refusing := startFakeOrigin(t, "NetStream.Publish.Denied")
	down, _ := net.Listen("tcp", "127.0.0.1:0")
	downAddr := down.Addr().String()
	down.Close()
	silent, _ := net.Listen("tcp", "127.0.0.1:0")
	defer silent.Close()

	tests := []struct {
		name    string
		route   func(context.Context, stream.Key) (stream.Origin, error)
		stream  string
		publish bool
		code    string
		desc    string
	}{
		{"router error", func(context.Context, stream.Key) (stream.Origin, error) {
			return stream.Origin{}, stream.ErrNoOrigin
		}, "s", true, codePublishFailed, "no healthy origin"},
		{"every origin full", func(context.Context, stream.Key) (stream.Origin, error) {
			return stream.Origin{}, fmt.Errorf("%w (no room for the new stream)", stream.ErrOriginsFull)
		}, "s", true, codePublishFailed, "every origin is at its max_streams"},
		{"router error on play", func(context.Context, stream.Key) (stream.Origin, error) {
			return stream.Origin{}, errors.New("mesh has no quorum")
		}, "s", false, codePlayFailed, "no quorum"},
		{"origin without rtmp", func(context.Context, stream.Key) (stream.Origin, error) {
			return stream.Origin{ID: "h"}, nil
		}, "s", true, codePublishFailed, "serves no RTMP"},
		{"bad name", nil, "a b", true, codePublishBadName, "bad stream name"},
		{"bad name on play", nil, "", false, codePlayNotFound, "bad stream name"},
		{"origin refuses", func(context.Context, stream.Key) (stream.Origin, error) {
			return stream.Origin{ID: "r", RTMP: refusing.Addr}, nil
		}, "s", true, codePublishFailed, "NetStream.Publish.Denied: refused by test origin"},
		{"origin down", func(context.Context, stream.Key) (stream.Origin, error) {
			return stream.Origin{ID: "d", RTMP: downAddr}, nil
		}, "s", true, codePublishFailed, "origin unreachable"},
		{"origin silent", func(context.Context, stream.Key) (stream.Origin, error) {
			return stream.Origin{ID: "s", RTMP: silent.Addr().String()}, nil
		}, "s", false, codePlayFailed, "handshake timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &fakeRouter{route: tt.route}
			if r.route == nil {
				r.route = func(context.Context, stream.Key) (stream.Origin, error) {
					t.Error("router called for a bad name")
					return stream.Origin{}, errors.New("unreachable")
				}
			}
			s, addr := startProxy(t, Config{Router: r, DialTimeout: 500 * time.Millisecond})
			p := dialTestPeer(t, addr)
			start := time.Now()
			info, err := p.start("rtmp://"+addr+"/live", tt.stream, tt.publish)
			if err != nil {
				t.Fatal(err)
			}
			if info.String("level") != levelError || info.String("code") != tt.code || !strings.Contains(info.String("description"), tt.desc) {
				t.Fatalf("status %v", info)
			}
			expectClosed(t, p.nc, 3*time.Second)
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("refusal took %v", d)
			}
			t.Logf("%s: %s", info.String("code"), info.String("description"))
			s.Close()
			if st := s.Stats(); st.ClientFailures+st.RouteFailures+st.OriginFailures != 1 {
				t.Fatalf("failure counters %+v", st)
			}
		})
	}
}

// TestFFmpegFailsFast: FFmpeg publishing a stream whose origin refuses or
// is down exits with an error quickly instead of hanging.
func TestFFmpegFailsFast(t *testing.T) {
	harness.Need(t, "ffmpeg")
	refusing := startFakeOrigin(t, "NetStream.Publish.Denied")
	down, _ := net.Listen("tcp", "127.0.0.1:0")
	downAddr := down.Addr().String()
	down.Close()
	for _, origin := range []string{refusing.Addr, downAddr} {
		_, addr := startProxy(t, Config{Router: routeTo(origin), DialTimeout: time.Second})
		pub := harness.PublishRTMP(t, "rtmp://"+addr+"/live/s")
		if err := pub.Wait(10 * time.Second); err == nil || strings.Contains(err.Error(), "still running") {
			t.Fatalf("ffmpeg: %v: %s", err, pub.Output())
		}
		t.Logf("ffmpeg: %s", strings.TrimSpace(pub.Output()))
	}
}

// TestBadClients: garbage, stalls and oversized values close the offending
// connection, and the server keeps serving others.
func TestBadClients(t *testing.T) {
	base := runtime.NumGoroutine()
	o := startFakeOrigin(t, "")
	s, addr := startProxy(t, Config{Router: routeTo(o.Addr), HandshakeTimeout: 300 * time.Millisecond, MaxMessageSize: 1 << 20})
	afterHandshake := func(t *testing.T) net.Conn {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		if err := handshake.Client(nc, 0); err != nil {
			t.Fatal(err)
		}
		return nc
	}
	raw := func(t *testing.T, b []byte) net.Conn {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.Write(b)
		return nc
	}
	setChunk := func(n uint32) []byte {
		return binary.BigEndian.AppendUint32([]byte{0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0}, n)
	}
	tests := []struct {
		name string
		conn func(t *testing.T) net.Conn
	}{
		{"http request", func(t *testing.T) net.Conn { return raw(t, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) }},
		{"random bytes", func(t *testing.T) net.Conn { return raw(t, payload(5000)) }},
		{"version 3 then garbage", func(t *testing.T) net.Conn { return raw(t, append([]byte{3}, payload(4000)...)) }},
		{"stall before C0", func(t *testing.T) net.Conn { return raw(t, nil) }},
		{"stall mid C1", func(t *testing.T) net.Conn { return raw(t, append([]byte{3}, make([]byte, 700)...)) }},
		{"stall after handshake", afterHandshake},
		{"chunk size 0x7fffffff", func(t *testing.T) net.Conn {
			nc := afterHandshake(t)
			nc.Write(setChunk(0x7fffffff))
			return nc
		}},
		{"chunk size 0", func(t *testing.T) net.Conn {
			nc := afterHandshake(t)
			nc.Write(setChunk(0))
			return nc
		}},
		{"message length 16 MiB", func(t *testing.T) net.Conn {
			nc := afterHandshake(t)
			nc.Write([]byte{0x03, 0, 0, 0, 0xff, 0xff, 0xff, 0x14, 0, 0, 0, 0})
			return nc
		}},
		{"compressed header first", func(t *testing.T) net.Conn {
			nc := afterHandshake(t)
			nc.Write([]byte{0xc3, 1, 2, 3})
			return nc
		}},
		{"bad amf", func(t *testing.T) net.Conn {
			nc := afterHandshake(t)
			nc.Write([]byte{0x03, 0, 0, 0, 0, 0, 3, 0x14, 0, 0, 0, 0, 0x02, 0xff, 0xff})
			return nc
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// HandshakeTimeout is 300 ms; the defaults that would close a
			// stalled connection otherwise are 10 s or more.
			expectClosed(t, tt.conn(t), 5*time.Second)
			// Others are still served.
			p := dialTestPeer(t, addr)
			if info, err := p.start("rtmp://"+addr+"/live", "ok", true); err != nil || info.String("code") != codePublishStart {
				t.Fatalf("good client after bad one: %v %v", info, err)
			}
		})
	}
	s.Close()
	if st := s.Stats(); st.ClientFailures+st.OversizedMessages < uint64(len(tests)) || st.OversizedMessages == 0 || st.ConnsOpen != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := testkit.GoroutinesBack(base+4, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestMaxConns(t *testing.T) {
	o := startFakeOrigin(t, "")
	s, addr := startProxy(t, Config{Router: routeTo(o.Addr), MaxConns: 1})
	p := dialTestPeer(t, addr)
	if _, err := p.start("rtmp://"+addr+"/live", "s", true); err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	expectClosed(t, nc, 3*time.Second)
	if st := s.Stats(); st.ConnsRefused != 1 || st.ConnsOpen != 1 || st.Publishers != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestIdleAndClose: a publisher that goes silent is dropped after the idle
// timeout; Close ends active sessions and every goroutine.
func TestIdleAndClose(t *testing.T) {
	base := runtime.NumGoroutine()
	o := startFakeOrigin(t, "")
	sess := &protocoltest.Sessions{Tracked: make(chan protocoltest.Session, 4)}
	ended := func(name string) func() bool {
		return func() bool {
			live, _ := sess.Count(stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: name}, "rtmp")
			return live == 0
		}
	}
	_, addr := startProxy(t, Config{Router: routeTo(o.Addr), Sessions: sess, IdleTimeout: 300 * time.Millisecond})
	idle := dialTestPeer(t, addr)
	if _, err := idle.start("rtmp://"+addr+"/live", "idle", true); err != nil {
		t.Fatal(err)
	}
	waitChan(t, sess.Tracked)
	expectClosed(t, idle.nc, 3*time.Second)
	testkit.WaitFor(t, 10*time.Second, "idle session ended", ended("idle"))

	// Close ends a live session.
	s, err := New(Config{Router: routeTo(o.Addr), Sessions: sess, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	addr = ln.Addr().String()
	pl := dialTestPeer(t, addr)
	if _, err := pl.start("rtmp://"+addr+"/live", "p", false); err != nil {
		t.Fatal(err)
	}
	waitChan(t, sess.Tracked)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	testkit.WaitFor(t, 10*time.Second, "played session ended", ended("p"))
	expectClosed(t, pl.nc, 3*time.Second)
	if st := s.Stats(); st.ConnsOpen != 0 || st.Publishers != 0 || st.Players != 0 {
		t.Fatalf("stats after Close %+v", st)
	}
	idle.nc.Close()
	pl.nc.Close()
	if err := testkit.GoroutinesBack(base+4, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func waitChan[T any](t testing.TB, ch chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting")
		var zero T
		return zero
	}
}

// TestPublishRelayChunking: a publisher that changes its chunk size in the
// middle of the stream, uses 2- and 3-byte chunk stream ids and extended
// timestamps, and sends ping-worthy traffic, reaches the origin intact. The
// origin's ping is answered by the proxy on the origin leg.
func TestPublishRelayChunking(t *testing.T) {
	o := startFakeOrigin(t, "")
	_, addr := startProxy(t, Config{Router: routeTo(o.Addr)})
	p := dialTestPeer(t, addr)
	if info, err := p.start("rtmp://"+addr+"/live", "c", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	var sent []chunk.Message
	ts := uint32(0xfffff0)
	for i := 0; i < 60; i++ {
		if i%10 == 0 {
			if err := p.w.SetChunkSize([]uint32{1, 128, 4096, 77, 65536, 3}[i/10]); err != nil {
				t.Fatal(err)
			}
		}
		ts += 7
		csid := []uint32{4, 6, 64, 319, 320, 65599}[i%6]
		m := chunk.Message{CSID: csid, Type: uint8(chunk.TypeAudio + i%2), StreamID: 1, Timestamp: ts, Payload: payload(1 + i*997%9000)}
		m.Payload[0] = byte(i)
		if err := p.w.WriteMessage(&m); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m)
	}
	if err := p.command(3, 0, "ping", 0.0, nil); err != nil {
		t.Fatal(err)
	}
	for i, want := range sent {
		select {
		case got := <-o.received:
			if got.Timestamp != want.Timestamp || got.Type != want.Type || got.StreamID != 7 || !bytes.Equal(got.Payload, want.Payload) {
				t.Fatalf("message %d: got %v, want %v", i, &got, &want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("origin received %d of %d messages", i, len(sent))
		}
	}
	select {
	case v := <-o.pongs:
		if v != 1234 {
			t.Fatalf("pong %d", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong from the proxy")
	}
}

// TestAcknowledgements: a client that announces a window gets
// Acknowledgements from the proxy as it publishes.
func TestAcknowledgements(t *testing.T) {
	o := startFakeOrigin(t, "")
	_, addr := startProxy(t, Config{Router: routeTo(o.Addr)})
	p := dialTestPeer(t, addr)
	p.w.WriteControl(chunk.TypeWindowAckSize, 4000)
	if info, err := p.start("rtmp://"+addr+"/live", "a", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	for i := 0; i < 10; i++ {
		p.w.WriteMessage(&chunk.Message{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Timestamp: uint32(i * 40), Payload: payload(2000)})
	}
	p.w.Flush()
	var acks []uint32
	for len(acks) < 3 {
		m, err := p.r.ReadMessage()
		if err != nil {
			t.Fatalf("after %d acks: %v", len(acks), err)
		}
		if m.Type == chunk.TypeAck {
			acks = append(acks, binary.BigEndian.Uint32(m.Payload))
		}
	}
	for i := 1; i < len(acks); i++ {
		if acks[i]-acks[i-1] < 4000 {
			t.Fatalf("acks %v closer than the window", acks)
		}
	}
}

func TestParseCommand(t *testing.T) {
	amf0Body := []byte{0x02, 0, 4, 'p', 'l', 'a', 'y', 0x00, 0x40, 0x14, 0, 0, 0, 0, 0, 0, 0x05, 0x02, 0, 1, 's'}
	tests := []struct {
		name string
		m    chunk.Message
		want command
		err  bool
	}{
		{"amf0", chunk.Message{Type: chunk.TypeCommandAMF0, Payload: amf0Body}, command{Name: "play", Txn: 5, Args: []any{"s"}}, false},
		{"amf3 envelope", chunk.Message{Type: chunk.TypeCommandAMF3, Payload: append([]byte{0}, amf0Body...)}, command{Name: "play", Txn: 5, Args: []any{"s"}}, false},
		{"empty", chunk.Message{Type: chunk.TypeCommandAMF0}, command{}, true},
		{"name not a string", chunk.Message{Type: chunk.TypeCommandAMF0, Payload: []byte{0x05}}, command{}, true},
		{"truncated", chunk.Message{Type: chunk.TypeCommandAMF0, Payload: amf0Body[:10]}, command{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCommand(&tt.m)
			if (err != nil) != tt.err {
				t.Fatalf("err %v", err)
			}
			if err != nil {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("error %v does not wrap ErrProtocol", err)
				}
				return
			}
			if got.Name != tt.want.Name || got.Txn != tt.want.Txn || got.Obj != nil || len(got.Args) != 1 || got.Args[0] != tt.want.Args[0] {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

// TestDrain: Drain stops accepting at once (Serve returns nil, a new client
// is refused) and returns once the live session ends by itself; with an
// expired context it returns the context's error and leaves the session
// running.
func TestDrain(t *testing.T) {
	o := startFakeOrigin(t, "")
	s, err := New(Config{Router: routeTo(o.Addr), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	addr := ln.Addr().String()
	pl := dialTestPeer(t, addr)
	if _, err := pl.start("rtmp://"+addr+"/live", "p", true); err != nil {
		t.Fatal(err)
	}

	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Drain(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("Drain with an expired context = %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve after Drain: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("a new client connected while draining")
	}
	if err := pl.command(3, 0, "_checkbw", 9.0, nil); err != nil {
		t.Fatalf("the live session ended with the drain: %v", err)
	}

	done := make(chan error, 1)
	go func() { done <- s.Drain(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Drain returned %v with a session live", err)
	case <-time.After(100 * time.Millisecond):
	}
	pl.nc.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return after the last session ended")
	}
}

// TestMeteredSessions: a publisher's bytes are counted for its session as
// they reach the proxy, for the stream's bit rate.
func TestMeteredSessions(t *testing.T) {
	o := startFakeOrigin(t, "")
	ms := &protocoltest.Sessions{Tracked: make(chan protocoltest.Session, 1)}
	_, addr := startProxy(t, Config{Router: routeTo(o.Addr), Sessions: ms})
	p := dialTestPeer(t, addr)
	if info, err := p.start("rtmp://"+addr+"/live", "m", true); err != nil || info.String("code") != codePublishStart {
		t.Fatalf("%v %v", info, err)
	}
	c := waitChan(t, ms.Tracked)
	if c.Proto != "rtmp" || c.Kind != stream.KindPublish {
		t.Errorf("tracked a %q %q session, want an rtmp publisher", c.Proto, c.Kind)
	}
	start := c.In.Load()
	for i := range 20 {
		m := chunk.Message{CSID: 4, Type: chunk.TypeVideo, StreamID: 1, Timestamp: uint32(i), Payload: payload(10_000)}
		if err := p.w.WriteMessage(&m); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 10*time.Second, "200 kB counted", func() bool { return c.In.Load()-start >= 200_000 })
	if c.Out.Load() == 0 {
		t.Error("nothing counted toward the client, not even Publish.Start")
	}
}
