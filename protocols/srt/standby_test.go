package srt

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	gosrt "github.com/datarhei/gosrt"

	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

func TestBudgetBounds(t *testing.T) {
	b := budget{max: 3}
	k := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "a"}
	now := time.Now()
	for i := range 3 {
		if !b.allow(k, now.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("event %d refused", i)
		}
	}
	if b.allow(k, now.Add(3*time.Second)) {
		t.Fatal("a fourth event within the window was allowed")
	}
	b.refund(k, now.Add(2*time.Second))
	if !b.allow(k, now.Add(4*time.Second)) {
		t.Fatal("a refunded event still counts")
	}
	if !b.allow(k, now.Add(budgetWindow+time.Second)) {
		t.Fatal("an event past the window still counts")
	}
	// The table is bounded in streams.
	for i := range maxBudgetKeys + 10 {
		b.allow(stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: fmt.Sprint(i)}, now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := len(b.by); n > maxBudgetKeys {
		t.Fatalf("budget remembers %d streams, more than %d", n, maxBudgetKeys)
	}
}

func TestStandbyClaimBounds(t *testing.T) {
	s, err := New(Config{Router: staticRouter("127.0.0.1:1"), BackupPublish: true,
		Live: func(context.Context, stream.Key, stream.Origin) (bool, error) { return true, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sess := func(name string) *session {
		info := stream.SRTRequestInfo{Key: stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: name}, Mode: stream.SRTPublish}
		return newSession(s, sessKey{}, info, nil)
	}
	a := sess("a")
	if !s.standbys.claim(a, "live/a", stream.Origin{}) {
		t.Fatal("the first standby of a stream was refused")
	}
	if s.standbys.claim(sess("a"), "live/a", stream.Origin{}) {
		t.Fatal("a second standby of a stream on one node was kept")
	}
	for i := 1; i < MaxStandbys; i++ {
		if !s.standbys.claim(sess(fmt.Sprint(i)), "", stream.Origin{}) {
			t.Fatalf("standby %d refused below the cap", i)
		}
	}
	if s.standbys.claim(sess("over"), "", stream.Origin{}) {
		t.Fatalf("a standby past MaxStandbys (%d) was kept", MaxStandbys)
	}
	a.releaseStandby()
	if n := s.standbys.count(); n != MaxStandbys-1 {
		t.Fatalf("%d standbys after a release, want %d", n, MaxStandbys-1)
	}
	if !s.standbys.claim(sess("a"), "live/a", stream.Origin{}) {
		t.Fatal("a released stream's slot was not free again")
	}
}

func TestPlayStreamID(t *testing.T) {
	for _, tc := range []struct {
		info stream.SRTRequestInfo
		want string
	}{
		{stream.SRTRequestInfo{Key: stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "s"}}, "#!::r=live/s,m=request"},
		{stream.SRTRequestInfo{Key: stream.Key{Vhost: "v.example", App: "app", Stream: "s"}, Params: [][2]string{{"secret", "x"}}},
			"#!::h=v.example,r=app/s,m=request,secret=x"},
	} {
		if got := playStreamID(tc.info); got != tc.want {
			t.Errorf("playStreamID(%v) = %q, want %q", tc.info, got, tc.want)
		}
	}
}

// srsLike is an SRT origin as SRS behaves for one stream: one
// publisher at a time (a second is accepted and closed at once), players
// get the publisher's packets and stay connected when it leaves.
type srsLike struct {
	ln gosrt.Listener
	wg sync.WaitGroup

	mu       sync.Mutex
	active   gosrt.Conn
	players  []gosrt.Conn
	got      [][]byte // payloads published, in order
	accepted int      // publishes accepted
	requests int      // connection requests seen
}

func startSRSLike(t *testing.T) *srsLike {
	t.Helper()
	ln, err := gosrt.Listen("srt", "127.0.0.1:0", gosrt.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	o := &srsLike{ln: ln}
	o.wg.Add(1)
	go o.accept()
	t.Cleanup(func() {
		ln.Close()
		o.mu.Lock()
		for _, p := range o.players {
			p.Close()
		}
		if o.active != nil {
			o.active.Close()
		}
		o.mu.Unlock()
		o.wg.Wait()
	})
	return o
}

func (o *srsLike) accept() {
	defer o.wg.Done()
	for {
		req, err := o.ln.Accept2()
		if err != nil {
			return
		}
		o.mu.Lock()
		o.requests++
		o.mu.Unlock()
		info, err := stream.FromSRTStreamID(req.StreamId())
		if err != nil {
			req.Reject(gosrt.REJX_BAD_REQUEST)
			continue
		}
		c, err := req.Accept()
		if err != nil {
			continue
		}
		o.mu.Lock()
		switch {
		case info.Mode != stream.SRTPublish:
			o.players = append(o.players, c)
			o.mu.Unlock()
		case o.active != nil: // busy: SRS closes it after the handshake
			o.mu.Unlock()
			c.Close()
		default:
			o.active = c
			o.accepted++
			o.mu.Unlock()
			o.wg.Add(1)
			go o.publish(c)
		}
	}
}

func (o *srsLike) publish(c gosrt.Conn) {
	defer o.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		o.mu.Lock()
		o.got = append(o.got, append([]byte(nil), buf[:n]...))
		players := append([]gosrt.Conn(nil), o.players...)
		o.mu.Unlock()
		for _, p := range players {
			p.Write(buf[:n])
		}
	}
	c.Close()
	o.mu.Lock()
	if o.active == c {
		o.active = nil
	}
	o.mu.Unlock()
}

func (o *srsLike) live(context.Context, stream.Key, stream.Origin) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.active != nil, nil
}

// last returns the last payload published and the publishes accepted.
func (o *srsLike) last() ([]byte, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.got) == 0 {
		return nil, o.accepted
	}
	return o.got[len(o.got)-1], o.accepted
}

type standbyRecorder struct {
	mu  sync.Mutex
	evs []StandbyEvent
}

func (r *standbyRecorder) Standby(ev StandbyEvent) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

func (r *standbyRecorder) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.evs {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// encoder publishes a payload of its own every 10 ms until stopped
// (stall: it stops sending and stays connected).
type encoder struct {
	conn  gosrt.Conn
	done  chan struct{}
	stall chan struct{}
	wg    sync.WaitGroup
}

func startEncoder(t *testing.T, addr, sid string, tag byte) *encoder {
	t.Helper()
	cfg := gosrt.DefaultConfig()
	cfg.StreamId = sid
	c, err := gosrt.Dial("srt", addr, cfg)
	if err != nil {
		t.Fatalf("encoder %c: %v", tag, err)
	}
	e := &encoder{conn: c, done: make(chan struct{}), stall: make(chan struct{})}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		payload := bytes.Repeat([]byte{tag}, 1316)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-e.done:
				return
			case <-e.stall:
				<-e.done
				return
			case <-tk.C:
				c.Write(payload)
			}
		}
	}()
	t.Cleanup(e.close)
	return e
}

func (e *encoder) close() {
	select {
	case <-e.done:
		return
	default:
	}
	close(e.done)
	e.wg.Wait()
	e.conn.Close()
}

// TestStandbyTakesOver: a second SRT publisher of a live stream is held at
// the node as the standby; the origin gets nothing of it until the active
// publisher stalls (it stays connected and sends nothing), which the node
// ends after PublishStall; then the standby publishes and the origin gets
// its payloads. The same again with a third encoder as the standby of
// the one that took over.
func TestStandbyTakesOver(t *testing.T) {
	origin := startSRSLike(t)
	rec := &standbyRecorder{}
	_, addr := startServer(t, Config{Router: staticRouter(origin.ln.Addr().String()), BackupPublish: true,
		Live: origin.live, PublishStall: 500 * time.Millisecond, Standbys: rec})
	const sid = "#!::r=live/b,m=publish"
	a := startEncoder(t, addr.String(), sid, 'A')
	testkit.WaitFor(t, 10*time.Second, "the origin gets the first encoder", func() bool {
		p, _ := origin.last()
		return len(p) > 0 && p[0] == 'A'
	})
	b := startEncoder(t, addr.String(), sid, 'B')
	testkit.WaitFor(t, 10*time.Second, "the second encoder kept as the standby", func() bool { return rec.count(StandbyKept) == 1 })
	// Give the standby time to send; the origin must get none of it.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if p, n := origin.last(); p[0] != 'A' || n != 1 {
			t.Fatalf("the origin got the standby's media (%c) or a second publish (%d) while the active one was live", p[0], n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(a.stall)
	testkit.WaitFor(t, 10*time.Second, "the standby takes over", func() bool {
		p, _ := origin.last()
		return len(p) > 0 && p[0] == 'B'
	})
	if rec.count(StandbyStalled) != 1 || rec.count(StandbyPromoted) != 1 {
		t.Fatalf("events: %+v", rec.evs)
	}

	// A third encoder is the new standby; the one that took over stalls
	// too, its node ends it, and the third takes over.
	startEncoder(t, addr.String(), sid, 'C')
	testkit.WaitFor(t, 10*time.Second, "the third encoder kept as the standby", func() bool { return rec.count(StandbyKept) == 2 })
	if p, _ := origin.last(); p[0] != 'B' {
		t.Fatalf("the origin got %c while the second encoder was active", p[0])
	}
	close(b.stall)
	testkit.WaitFor(t, 10*time.Second, "the third encoder takes over", func() bool {
		p, _ := origin.last()
		return len(p) > 0 && p[0] == 'C'
	})
	if rec.count(StandbyStalled) != 2 || rec.count(StandbyPromoted) != 2 {
		t.Fatalf("events: %+v", rec.evs)
	}
}

// TestStandbyNotLive: with the stream not live, a publisher is relayed to
// the origin as before, even with backup publishing on.
func TestStandbyNotLive(t *testing.T) {
	origin := startSRSLike(t)
	rec := &standbyRecorder{}
	_, addr := startServer(t, Config{Router: staticRouter(origin.ln.Addr().String()), BackupPublish: true,
		Live: origin.live, Standbys: rec})
	startEncoder(t, addr.String(), "#!::r=live/n,m=publish", 'A')
	testkit.WaitFor(t, 10*time.Second, "the origin gets the encoder", func() bool {
		p, _ := origin.last()
		return len(p) > 0
	})
	if n := rec.count(StandbyKept); n != 0 {
		t.Fatalf("%d standbys kept for a stream that was not live", n)
	}
}

// tsPkt builds a 188-byte TS packet of pid with payload, an adaptation
// field with the random access indicator when rai.
func tsPkt(pid uint16, pusi, rai bool, payload []byte) []byte {
	b := make([]byte, 4, tsPacket)
	b[0] = tsSync
	b[1] = byte(pid>>8) & 0x1f
	if pusi {
		b[1] |= 0x40
	}
	b[2] = byte(pid)
	b[3] = 0x10
	if rai {
		b[3] = 0x30
		b = append(b, 1, 0x40)
	}
	b = append(b, payload...)
	for len(b) < tsPacket {
		b = append(b, 0xff)
	}
	return b[:tsPacket]
}

// psi is a PSI payload: pointer field, table, 5 header bytes, body, CRC.
func psi(table byte, body []byte) []byte {
	n := 5 + len(body) + 4
	p := []byte{0, table, 0xb0 | byte(n>>8), byte(n), 0, 1, 0xc1, 0, 0}
	p = append(p, body...)
	return append(p, 0, 0, 0, 0)
}

func patPkt(pmt uint16) []byte {
	return tsPkt(0, true, false, psi(0, []byte{0, 0, 0xe0, 0x10, 0, 1, 0xe0 | byte(pmt>>8), byte(pmt)}))
}

func pmtPkt(pmt, video, audio uint16) []byte {
	body := []byte{0xe1, 0x00, 0xf0, 0x00, // PCR PID, no program info
		0x0f, 0xe0 | byte(audio>>8), byte(audio), 0xf0, 0x00, // AAC
		0x1b, 0xe0 | byte(video>>8), byte(video), 0xf0, 0x00} // H.264
	return tsPkt(pmt, true, false, psi(2, body))
}

func TestParsePSI(t *testing.T) {
	if pid, ok := parsePAT(tsPayload(patPkt(0x1000))); !ok || pid != 0x1000 {
		t.Errorf("PAT: %#x %v", pid, ok)
	}
	if pid, ok := parsePMT(tsPayload(pmtPkt(0x1000, 0x100, 0x101))); !ok || pid != 0x100 {
		t.Errorf("PMT: %#x %v", pid, ok)
	}
	for name, p := range map[string][]byte{
		"empty":            nil,
		"pointer past end": {200},
		"wrong table":      psi(2, []byte{0, 1, 0xe0, 0x10}),
		"length past end":  {0, 0, 0xbf, 0xff, 0, 1, 0xc1, 0, 0},
		"short length":     {0, 0, 0xb0, 0x03, 0, 1, 0xc1},
		"network only":     psi(0, []byte{0, 0, 0xe0, 0x10}),
	} {
		if pid, ok := parsePAT(p); ok {
			t.Errorf("PAT %s: parsed %#x", name, pid)
		}
	}
	for name, p := range map[string][]byte{
		"empty":               nil,
		"no video":            psi(2, []byte{0xe1, 0, 0xf0, 0, 0x0f, 0xe1, 0x01, 0xf0, 0}),
		"info past end":       psi(2, []byte{0xe1, 0, 0xf0, 0x40}),
		"es info past end":    psi(2, []byte{0xe1, 0, 0xf0, 0, 0x0f, 0xe1, 0x01, 0xf0, 0x40, 0x1b, 0xe1, 0x00, 0xf0, 0}),
		"truncated es header": psi(2, []byte{0xe1, 0, 0xf0, 0, 0x1b, 0xe1}),
	} {
		if pid, ok := parsePMT(p); ok {
			t.Errorf("PMT %s: parsed %#x", name, pid)
		}
	}
}

func TestGOPCache(t *testing.T) {
	var g gopCache
	pat, pmt := patPkt(0x1000), pmtPkt(0x1000, 0x100, 0x101)
	key := tsPkt(0x100, true, true, []byte("key"))
	delta := tsPkt(0x100, true, false, []byte("delta"))
	audio := tsPkt(0x101, true, true, []byte("audio"))
	join := func(ps ...[]byte) []byte {
		var b []byte
		for _, p := range ps {
			b = append(b, p...)
		}
		return b
	}
	g.write(join(pat, pmt, delta, audio)) // no key frame yet
	if r := g.replay(); r != nil {
		t.Fatalf("replayed %d payloads before a key frame", len(r))
	}
	g.write(join(pat, pmt, delta, key, audio, delta))
	g.write(join(delta, audio))
	r := g.replay()
	want := join(pat, pmt, key, audio, delta, delta, audio)
	if got := join(r...); !bytes.Equal(got, want) {
		t.Fatalf("replay: %d bytes, want %d", len(got), len(want))
	}
	for _, p := range r {
		if len(p) > 7*tsPacket || len(p)%tsPacket != 0 {
			t.Fatalf("a replayed payload of %d bytes", len(p))
		}
	}
	if g.replay() != nil {
		t.Fatal("a replay did not forget the GOP")
	}
	// A payload that is not whole TS packets drops the GOP.
	g.write(join(pat, pmt, key))
	g.write(key[:100])
	if g.replay() != nil {
		t.Fatal("a GOP survived a broken payload")
	}
	// The GOP is bounded: past maxGOPBytes it is dropped until the next
	// key frame.
	g.write(join(pat, pmt, key))
	for range maxGOPBytes/(7*tsPacket) + 10 {
		g.write(join(delta, delta, delta, delta, delta, delta, delta))
	}
	if len(g.gop) > maxGOPBytes || g.replay() != nil {
		t.Fatalf("a GOP past its bound was kept (%d bytes)", len(g.gop))
	}
	g.write(join(key, delta))
	if got := join(g.replay()...); !bytes.Equal(got, join(pat, pmt, key, delta)) {
		t.Fatal("the cache did not start again at the next key frame")
	}
}

// FuzzGOPCache: any payload leaves the cache within its bound, and a
// replay of whole TS packets.
func FuzzGOPCache(f *testing.F) {
	f.Add(append(append(patPkt(0x1000), pmtPkt(0x1000, 0x100, 0x101)...), tsPkt(0x100, true, true, []byte("key"))...))
	f.Add(tsPkt(0, true, false, []byte{200}))
	f.Add(tsPkt(0x1000, true, false, psi(2, []byte{0xe1, 0, 0xf0, 0xff})))
	f.Add([]byte{tsSync})
	f.Fuzz(func(t *testing.T, p []byte) {
		var g gopCache
		g.write(patPkt(0x1000))
		g.write(pmtPkt(0x1000, 0x100, 0x101))
		g.write(p)
		g.write(p)
		if len(g.gop) > maxGOPBytes {
			t.Fatalf("GOP of %d bytes", len(g.gop))
		}
		for _, r := range g.replay() {
			if len(r)%tsPacket != 0 || len(r) > 7*tsPacket {
				t.Fatalf("replayed payload of %d bytes", len(r))
			}
		}
	})
}

// TestStandbyNotEncrypted: an encrypted caller of a live stream is not
// held (the node could not read its stream): it goes to the origin as
// before.
func TestStandbyNotEncrypted(t *testing.T) {
	origin := startSRSLike(t)
	rec := &standbyRecorder{}
	_, addr := startServer(t, Config{Router: staticRouter(origin.ln.Addr().String()), BackupPublish: true,
		Live: func(context.Context, stream.Key, stream.Origin) (bool, error) { return true, nil }, Standbys: rec})
	cfg := gosrt.DefaultConfig()
	cfg.StreamId = "#!::r=live/e,m=publish"
	cfg.Passphrase = "a passphrase of the caller"
	cfg.ConnectionTimeout = 2 * time.Second
	if c, err := gosrt.Dial("srt", addr.String(), cfg); err == nil {
		c.Close()
	}
	if n := rec.count(StandbyKept); n != 0 {
		t.Fatalf("%d encrypted callers kept as standbys", n)
	}
	origin.mu.Lock()
	defer origin.mu.Unlock()
	if origin.requests != 1 {
		t.Fatalf("the origin saw %d connection requests, want the encrypted caller's", origin.requests)
	}
}

// TestStandbyListenerRefusesStrangers: the standby listener takes only
// the connections of the sessions the node holds; a local process that
// calls it directly, even with a stream's id, is rejected.
func TestStandbyListenerRefusesStrangers(t *testing.T) {
	s, _ := startServer(t, Config{Router: staticRouter("127.0.0.1:1"), BackupPublish: true,
		Live: func(context.Context, stream.Key, stream.Origin) (bool, error) { return true, nil }})
	cfg := gosrt.DefaultConfig()
	cfg.StreamId = "#!::r=live/x,m=publish"
	cfg.ConnectionTimeout = 2 * time.Second
	c, err := gosrt.Dial("srt", s.standbys.addr.String(), cfg)
	if err == nil {
		c.Close()
		t.Fatal("the standby listener accepted a caller it holds no session of")
	}
}

// TestStandbyOff: without BackupPublish the server opens no standby
// listener and asks no origin anything.
func TestStandbyOff(t *testing.T) {
	asked := false
	s, err := New(Config{Router: staticRouter("127.0.0.1:1"),
		Live: func(context.Context, stream.Key, stream.Origin) (bool, error) { asked = true; return true, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.standbys != nil {
		t.Fatal("a standby listener without BackupPublish")
	}
	ss := newSession(s, sessKey{}, stream.SRTRequestInfo{Key: stream.Key{App: "live", Stream: "s"}, Mode: stream.SRTPublish}, nil)
	if ss.holdAsStandby(context.Background(), stream.Origin{}) || asked {
		t.Fatal("a publisher held, or the origin asked, without BackupPublish")
	}
}
