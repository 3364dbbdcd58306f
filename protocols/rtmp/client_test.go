package rtmp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/handshake"
)

// testPeer is a minimal RTMP endpoint built from this package's wire code,
// used as a client of the proxy and as a fake origin.
type testPeer struct {
	nc net.Conn
	r  *chunk.Reader
	w  *chunk.Writer
	// began is the stream id of the last stream begin event seen.
	began uint32
	// onMessage, when set, sees every message next reads.
	onMessage func(*chunk.Message)
}

func newTestPeer(nc net.Conn) *testPeer {
	return &testPeer{nc: nc, r: chunk.NewReader(nc, 16<<20, 4096), w: chunk.NewWriter(nc, 4096)}
}

func dialTestPeer(t testing.TB, addr string) *testPeer {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(15 * time.Second))
	return dialed(t, nc)
}

func dialed(t testing.TB, nc net.Conn) *testPeer {
	t.Helper()
	if err := handshake.Client(nc, 0); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return newTestPeer(nc)
}

func (p *testPeer) command(csid, sid uint32, vals ...any) error {
	b, err := amf0.AppendAll(nil, vals...)
	if err != nil {
		return err
	}
	if err := p.w.WriteMessage(&chunk.Message{CSID: csid, Type: chunk.TypeCommandAMF0, StreamID: sid, Payload: b}); err != nil {
		return err
	}
	return p.w.Flush()
}

// next returns the next command, skipping other messages.
func (p *testPeer) next() (command, chunk.Message, error) {
	for {
		m, err := p.r.ReadMessage()
		if err != nil {
			return command{}, m, err
		}
		if p.onMessage != nil {
			p.onMessage(&m)
		}
		if isUserControlStreamEvent(&m) && binary.BigEndian.Uint16(m.Payload) == chunk.EventStreamBegin {
			p.began = binary.BigEndian.Uint32(m.Payload[2:])
		}
		if isCommand(&m) {
			c, err := parseCommand(&m)
			return c, m, err
		}
	}
}

// until reads commands until one named name arrives.
func (p *testPeer) until(name string) (command, error) {
	for {
		c, _, err := p.next()
		if err != nil {
			return c, err
		}
		if c.Name == name {
			return c, nil
		}
	}
}

// start runs connect, createStream and publish or play as FFmpeg does, and
// returns the first onStatus on the stream.
func (p *testPeer) start(tcURL, name string, publish bool) (amf0.Object, error) {
	app := tcURL[len("rtmp://"):]
	if i := indexByte(app, '/'); i >= 0 {
		app = app[i+1:]
	}
	if err := p.command(3, 0, "connect", 1.0, amf0.Object{{Key: "app", Value: app}, {Key: "tcUrl", Value: tcURL}, {Key: "flashVer", Value: "FMLE/3.0"}}); err != nil {
		return nil, err
	}
	c, err := p.until("_result")
	if err != nil || c.Txn != 1 {
		return nil, fmt.Errorf("connect: %v %v", c, err)
	}
	if publish {
		p.command(3, 0, "releaseStream", 2.0, nil, name)
		p.command(3, 0, "FCPublish", 3.0, nil, name)
	}
	p.command(3, 0, "createStream", 4.0, nil)
	for {
		c, err = p.until("_result")
		if err != nil {
			return nil, err
		}
		if c.Txn == 4 {
			break
		}
	}
	sid, _ := c.arg(0).(float64)
	if publish {
		err = p.command(5, uint32(sid), "publish", 5.0, nil, name, "live")
	} else {
		err = p.command(5, uint32(sid), "play", 5.0, nil, name, -2000.0)
	}
	if err != nil {
		return nil, err
	}
	c, err = p.until("onStatus")
	if err != nil {
		return nil, err
	}
	return c.info(), nil
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// fakeOrigin is an RTMP origin that accepts publish and play and records
// the names and tcUrls it was given. refuse, when set, is the onStatus
// code it answers publish and play with, at level error.
type fakeOrigin struct {
	ln     net.Listener
	Addr   string
	names  chan string
	tcURLs chan string
	refuse string
	// media, when set, is written to players after Play.Start.
	media []chunk.Message
	// received gets a copy of every audio and video message published.
	received chan chunk.Message
	// pongs gets the time of every ping response.
	pongs chan uint32
	done  chan struct{}
	// ordered gets a copy of every audio, video and data message
	// published, in order (while it has room).
	ordered chan chunk.Message

	mu    sync.Mutex
	conns []net.Conn
	// busy: a publish of a name another connection publishes is refused,
	// as SRS refuses it; publishing holds the names being published.
	busy       bool
	publishing map[string]bool
	// stall: after accepting a publish, the origin reads nothing more.
	stall bool
}

// kill closes the listener and resets every connection the origin accepted,
// as a crashed origin's kernel does.
func (o *fakeOrigin) kill() {
	o.ln.Close() // a dead origin's port refuses connections
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, nc := range o.conns {
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		nc.Close()
	}
	o.conns = nil
}

// reset resets every connection while the origin keeps listening, as
// nginx-rtmp does to a session that sent a message above its max_message
// while more data is in flight.
func (o *fakeOrigin) reset() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, nc := range o.conns {
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		nc.Close()
	}
	o.conns = nil
}

// kick closes every connection gracefully while the origin keeps
// listening, as an operator's kick of a publisher does.
func (o *fakeOrigin) kick() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, nc := range o.conns {
		nc.Close()
	}
	o.conns = nil
}

func startFakeOrigin(t testing.TB, refuse string) *fakeOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &fakeOrigin{ln: ln, Addr: ln.Addr().String(), names: make(chan string, 16), tcURLs: make(chan string, 16), refuse: refuse,
		received: make(chan chunk.Message, 1024), pongs: make(chan uint32, 16), done: make(chan struct{}),
		ordered: make(chan chunk.Message, 4096)}
	go func() {
		defer close(o.done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go o.serve(nc)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-o.done })
	return o
}

// hold records a publish of name; it reports false when o is busy and
// another connection publishes name.
func (o *fakeOrigin) hold(name string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.publishing == nil {
		o.publishing = map[string]bool{}
	}
	if o.busy && o.publishing[name] {
		return false
	}
	o.publishing[name] = true
	return true
}

func (o *fakeOrigin) release(name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.publishing, name)
}

func (o *fakeOrigin) serve(nc net.Conn) {
	defer nc.Close()
	o.mu.Lock()
	o.conns = append(o.conns, nc)
	o.mu.Unlock()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := handshake.Server(nc, 0); err != nil {
		return
	}
	p := newTestPeer(nc)
	p.w.SetChunkSize(4096)
	p.w.WriteControl(chunk.TypeWindowAckSize, 5000000)
	p.onMessage = func(m *chunk.Message) {
		if m.Type == chunk.TypeAudio || m.Type == chunk.TypeVideo || m.Type == chunk.TypeDataAMF0 {
			cp := *m
			cp.Payload = bytes.Clone(m.Payload)
			select {
			case o.ordered <- cp:
			default:
			}
		}
		switch {
		case m.Type == chunk.TypeAudio || m.Type == chunk.TypeVideo:
			cp := *m
			cp.Payload = bytes.Clone(m.Payload)
			select {
			case o.received <- cp:
			default:
			}
		case m.Type == chunk.TypeUserControl && len(m.Payload) >= 6 && binary.BigEndian.Uint16(m.Payload) == chunk.EventPingResponse:
			o.pongs <- binary.BigEndian.Uint32(m.Payload[2:])
		}
	}
	for {
		c, m, err := p.next()
		if err != nil {
			return
		}
		if c.Name == "sayStatus" {
			// Test hook: the origin sends the publisher an error status.
			p.command(5, m.StreamID, "onStatus", 0.0, nil, status(levelError, "NetStream.Test.Said", "said"))
		}
		if c.Name == "ping" {
			// Test hook: the publisher asks the origin to ping the proxy.
			p.w.WriteUserControl(chunk.EventPingRequest, 1234)
			p.w.Flush()
		}
		switch c.Name {
		case "connect":
			obj, _ := c.Obj.(amf0.Object)
			o.tcURLs <- obj.String("tcUrl")
			p.command(3, 0, "_result", c.Txn, nil, status("status", codeConnectSuccess, "ok"))
		case "createStream":
			p.command(3, 0, "_result", c.Txn, nil, 7.0)
		case "publish", "play":
			name, _ := c.arg(0).(string)
			o.names <- name
			if o.refuse != "" {
				p.command(5, m.StreamID, "onStatus", 0.0, nil, status(levelError, o.refuse, "refused by test origin"))
				continue
			}
			if c.Name == "publish" && !o.hold(name) {
				p.command(5, m.StreamID, "onStatus", 0.0, nil, status(levelError, "NetStream.Publish.BadName", "stream busy"))
				continue
			}
			if c.Name == "publish" {
				defer o.release(name)
				p.command(5, m.StreamID, "onStatus", 0.0, nil, status(levelStatus, codePublishStart, "go"))
				if o.stall {
					<-o.done
					return
				}
				continue
			}
			p.w.WriteUserControl(chunk.EventStreamBegin, m.StreamID)
			p.command(5, m.StreamID, "onStatus", 0.0, nil, status(levelStatus, codePlayReset, "reset"))
			p.command(5, m.StreamID, "onStatus", 0.0, nil, status(levelStatus, codePlayStart, "start"))
			for i := range o.media {
				mm := o.media[i]
				mm.StreamID = m.StreamID
				p.w.WriteMessage(&mm)
			}
			p.w.Flush()
		}
	}
}
