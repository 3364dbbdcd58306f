package httpstream

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/protocols/internal/protocoltest"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// flvTag returns an FLV tag's wire bytes.
func flvTag(typ uint8, ts uint32, body []byte) []byte {
	b := []byte{typ, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body)),
		byte(ts >> 16), byte(ts >> 8), byte(ts), byte(ts >> 24), 0, 0, 0}
	b = append(b, body...)
	return binary.BigEndian.AppendUint32(b, uint32(11+len(body)))
}

// flvOrigin is an origin streaming a synthetic FLV (metadata, sequence
// headers, then GOPs of a keyframe and inter frames, one tag every tick)
// for every .flv GET, counting requests by path and query. A query of
// "deny" is answered 403.
type flvOrigin struct {
	*httptest.Server
	tagSize int
	tick    time.Duration
	sent    atomic.Int64 // tags written, all requests
	open    atomic.Int32 // requests in progress

	mu       sync.Mutex
	requests map[string]int
}

func newFLVOrigin(t *testing.T, tagSize int, tick time.Duration) *flvOrigin {
	o := &flvOrigin{tagSize: tagSize, tick: tick, requests: map[string]int{}}
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *flvOrigin) count(pathQuery string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.requests[pathQuery]
}

func (o *flvOrigin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.requests[r.URL.RequestURI()]++
	o.mu.Unlock()
	if r.URL.RawQuery == "deny" {
		http.Error(w, "denied by on_play", http.StatusForbidden)
		return
	}
	o.open.Add(1)
	defer o.open.Add(-1)
	w.Header().Set("Content-Type", "video/x-flv")
	w.Write(flvHeader)
	meta := append([]byte{2, 0, 10}, "onMetaData\x08\x00\x00\x00\x00\x00\x00\x09"...)
	for _, b := range [][]byte{flvTag(18, 0, meta), flvTag(9, 0, []byte{0x17, 0, 0, 0, 0, 1}), flvTag(8, 0, []byte{0xaf, 0, 0x12, 0x10})} {
		w.Write(b)
	}
	w.(http.Flusher).Flush()
	key := append([]byte{0x17, 1, 0, 0, 0}, make([]byte, o.tagSize)...)
	inter := append([]byte{0x27, 1, 0, 0, 0}, make([]byte, o.tagSize)...)
	tk := time.NewTicker(o.tick)
	defer tk.Stop()
	for i := uint32(0); ; i++ {
		body := inter
		if i%25 == 0 {
			body = key
		}
		if _, err := w.Write(flvTag(9, i*40, body)); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		o.sent.Add(1)
		select {
		case <-tk.C:
		case <-r.Context().Done():
			return
		}
	}
}

func fanOutProxy(t *testing.T, origin string, sess stream.Sessions) (*Server, *httptest.Server) {
	t.Helper()
	return serveProxy(t, Config{Router: staticRouter(origin), Sessions: sess, TokenSecret: []byte("k"), Logger: quietLogger,
		FanOut: newFanOut(t, true)})
}

// newFanOut returns a registry of shared upstreams whose upstreams linger
// 100 ms, closed after the test's proxy (when made before serveProxy), or
// nil when on is false.
func newFanOut(t *testing.T, on bool) *fanout.Registry {
	if !on {
		return nil
	}
	r := fanout.NewRegistry(fanout.Config{Linger: 100 * time.Millisecond})
	t.Cleanup(func() { r.Close() })
	return r
}

// player reads an FLV answer and counts its tags; it checks the stream
// starts with the header, then the metadata and sequence headers.
type player struct {
	tags atomic.Int64
	err  error
	done chan struct{}
}

func play(ctx context.Context, t *testing.T, url string) *player {
	p := &player{done: make(chan struct{})}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil { // t.Errorf, not Fatal: players start in goroutines
		t.Errorf("%s: %v", url, err)
		close(p.done)
		return p
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "video/x-flv" {
		resp.Body.Close()
		t.Errorf("%s: status %d, headers %v", url, resp.StatusCode, resp.Header)
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		defer resp.Body.Close()
		fr := fanout.NewReader(resp.Body, 1<<20)
		if _, p.err = fr.ReadHeader(); p.err != nil {
			return
		}
		want := []fanout.Kind{fanout.KindMetadata, fanout.KindVideoSeq, fanout.KindAudioSeq, fanout.KindKeyframe}
		for i := 0; ; i++ {
			tag, err := fr.ReadTag()
			if err != nil {
				if ctx.Err() == nil {
					p.err = err
				}
				return
			}
			if i < len(want) && tag.Kind != want[i] {
				p.err = fmt.Errorf("tag %d is of kind %d, want %d", i, tag.Kind, want[i])
				return
			}
			p.tags.Add(1)
		}
	}()
	return p
}

// Twenty players of one stream share one origin request; each is a
// session; they leave and the upstream closes after the linger.
func TestFanOutSharesUpstream(t *testing.T) {
	origin := newFLVOrigin(t, 100, 5*time.Millisecond)
	sess := &protocoltest.Sessions{}
	s, proxy := fanOutProxy(t, hostOf(origin.Server), sess)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const n = 20
	players := make([]*player, n)
	var wg sync.WaitGroup
	for i := range players {
		wg.Add(1)
		go func() {
			defer wg.Done()
			players[i] = play(ctx, t, proxy.URL+"/live/s.flv?token=a")
		}()
	}
	wg.Wait()
	if err := testkit.Poll(5*time.Second, func() error {
		for i, p := range players {
			if n := p.tags.Load(); n < 30 {
				return fmt.Errorf("player %d has %d tags", i, n)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if c := origin.count("/live/s.flv?token=a"); c != 1 {
		t.Errorf("origin saw %d requests, want 1", c)
	}
	key := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "s"}
	if a, _ := sess.Count(key, "flv"); a != n {
		t.Errorf("%d sessions, want %d", a, n)
	}
	if st := s.Stats().FanOut; st.Players != n || st.Upstreams != 1 {
		t.Errorf("Stats = %+v", st)
	}
	cancel()
	for _, p := range players {
		<-p.done
		if p.err != nil {
			t.Errorf("player: %v", p.err)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "origin request closed after the linger", func() bool { return origin.open.Load() == 0 })
	testkit.WaitFor(t, 5*time.Second, "sessions end", func() bool { a, _ := sess.Count(key, "flv"); return a == 0 })
	if st := s.Stats().FanOut; st.Players != 0 || st.Upstreams != 0 {
		t.Errorf("after the players left: Stats = %+v", st)
	}
}

// Players with different queries get their own upstreams; a query the
// origin refuses gets the origin's answer, and no upstream is kept.
func TestFanOutPerQuery(t *testing.T) {
	origin := newFLVOrigin(t, 100, 5*time.Millisecond)
	s, proxy := fanOutProxy(t, hostOf(origin.Server), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a1 := play(ctx, t, proxy.URL+"/live/s.flv?token=a")
	a2 := play(ctx, t, proxy.URL+"/live/s.flv?token=a")
	b := play(ctx, t, proxy.URL+"/live/s.flv?token=b")
	c := play(ctx, t, proxy.URL+"/live/s.flv")
	for _, q := range []string{"?token=a", "?token=b", ""} {
		if n := origin.count("/live/s.flv" + q); n != 1 {
			t.Errorf("origin saw %d requests for %q, want 1", n, q)
		}
	}
	for range 2 {
		resp, err := http.Get(proxy.URL + "/live/s.flv?deny")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || string(body) != "denied by on_play\n" {
			t.Errorf("refused player: %d %q", resp.StatusCode, body)
		}
	}
	if n := origin.count("/live/s.flv?deny"); n != 2 {
		t.Errorf("origin saw %d refused requests, want 2 (none kept)", n)
	}
	if st := s.Stats().FanOut; st.Upstreams != 3 || st.Players != 4 {
		t.Errorf("Stats = %+v, want 3 upstreams, 4 players", st)
	}
	cancel()
	for _, p := range []*player{a1, a2, b, c} {
		<-p.done
	}
}

// A player that stops reading does not hold the others back: once it has
// fallen behind (the hub drops or kicks it), the origin keeps sending and
// the reading player keeps receiving, counted in tags, not per second.
func TestFanOutStalledPlayer(t *testing.T) {
	origin := newFLVOrigin(t, 16<<10, 5*time.Millisecond)
	s, proxy := fanOutProxy(t, hostOf(origin.Server), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	good := play(ctx, t, proxy.URL+"/live/s.flv")

	c, err := net.Dial("tcp", hostOf(proxy))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET /live/s.flv HTTP/1.1\r\nHost: x\r\n\r\n")
	testkit.WaitFor(t, 5*time.Second, "two players", func() bool { return s.Stats().FanOut.Players == 2 })
	testkit.WaitFor(t, 20*time.Second, "the stalled player falls behind", func() bool {
		st := s.Stats().FanOut
		return st.Dropped+st.Kicked > 0
	})

	// The reading player gets only what the hub delivers, so its count
	// stops if the hub waits for the stalled player, however much the TCP
	// buffers between origin and hub still take.
	const more = 200
	sent0, got0 := origin.sent.Load(), good.tags.Load()
	if err := testkit.Poll(30*time.Second, func() error {
		if sent, got := origin.sent.Load()-sent0, good.tags.Load()-got0; sent < more || got < more {
			return fmt.Errorf("since the stalled player fell behind the origin sent %d tags and the reading player got %d, want %d each",
				sent, got, more)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if n := origin.count("/live/s.flv"); n != 1 {
		t.Errorf("origin saw %d requests, want 1", n)
	}
	cancel()
	<-good.done
	if good.err != nil {
		t.Errorf("reading player: %v", good.err)
	}
}

// Without FanOut every player has its own origin request.
func TestFanOutOff(t *testing.T) {
	origin := newFLVOrigin(t, 100, 5*time.Millisecond)
	_, proxy := proxyFor(t, hostOf(origin.Server), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := play(ctx, t, proxy.URL+"/live/s.flv")
	b := play(ctx, t, proxy.URL+"/live/s.flv")
	testkit.WaitFor(t, 5*time.Second, "two origin requests", func() bool { return origin.count("/live/s.flv") == 2 })
	cancel()
	<-a.done
	<-b.done
}

// When the origin ends the stream, every player's response ends, and the
// next player opens a new upstream.
func TestFanOutUpstreamEnd(t *testing.T) {
	release := make(chan struct{})
	var requests atomic.Int32
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "video/x-flv")
		w.Write(flvHeader)
		w.Write(flvTag(9, 0, []byte{0x17, 0, 0, 0, 0, 1}))
		w.Write(flvTag(9, 0, []byte{0x17, 1, 0, 0, 0, 0}))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer origin.Close()
	s, proxy := fanOutProxy(t, hostOf(origin), nil)
	var bodies []io.ReadCloser
	for range 3 {
		resp, err := http.Get(proxy.URL + "/live/s.flv")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		bodies = append(bodies, resp.Body)
	}
	if n := requests.Load(); n != 1 {
		t.Fatalf("origin saw %d requests, want 1", n)
	}
	close(release)
	want := len(flvHeader) + 2*len(flvTag(9, 0, []byte{0x17, 0, 0, 0, 0, 1}))
	for i, b := range bodies {
		done := make(chan []byte, 1)
		go func() { got, _ := io.ReadAll(b); done <- got }()
		select {
		case got := <-done:
			if len(got) != want {
				t.Errorf("player %d got %d bytes, want %d", i, len(got), want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("player %d's response did not end with the origin's", i)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "no upstream", func() bool { return s.Stats().FanOut.Upstreams == 0 })
	resp, err := http.Get(proxy.URL + "/live/s.flv")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := requests.Load(); n != 2 {
		t.Errorf("origin saw %d requests, want 2", n)
	}
}

// The bytes each FLV player receives count toward its session, shared
// upstream or not, for the stream's egress bit rate.
func TestFLVPlayersAreMetered(t *testing.T) {
	origin := newFLVOrigin(t, 1000, 5*time.Millisecond)
	for _, fanOut := range []bool{true, false} {
		t.Run(fmt.Sprint("fanout=", fanOut), func(t *testing.T) {
			sess := &protocoltest.Sessions{}
			_, proxy := serveProxy(t, Config{Router: staticRouter(hostOf(origin.Server)), Sessions: sess, TokenSecret: []byte("k"),
				Logger: quietLogger, FanOut: newFanOut(t, fanOut)})
			ctx, cancel := context.WithCancel(context.Background())
			p := play(ctx, t, proxy.URL+"/live/m.flv")
			testkit.WaitFor(t, 10*time.Second, "50 tags and 50 kB counted", func() bool {
				var players []protocoltest.Session // not the shared upstream
				for _, ses := range sess.All() {
					if ses.Out != nil {
						players = append(players, ses)
					}
				}
				return p.tags.Load() >= 50 && len(players) == 1 && players[0].Out.Load() >= 50_000
			})
			cancel()
			<-p.done
		})
	}
}

// TestDrainPlayers: a node's drain waits for the FLV players whose
// connections the server took over, which http.Server.Shutdown does not.
func TestDrainPlayers(t *testing.T) {
	origin := newFLVOrigin(t, 100, 5*time.Millisecond)
	s, proxy := fanOutProxy(t, hostOf(origin.Server), nil)
	ctx, cancel := context.WithCancel(context.Background())
	p := play(ctx, t, proxy.URL+"/live/livestream.flv")
	testkit.WaitFor(t, 5*time.Second, "tags", func() bool { return p.tags.Load() > 5 })
	short, stop := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer stop()
	if err := s.DrainPlayers(short); err == nil {
		t.Fatal("drained with a player playing")
	}
	cancel() // the player leaves
	<-p.done
	long, stop2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop2()
	if err := s.DrainPlayers(long); err != nil {
		t.Fatalf("drain after the player left: %v", err)
	}
}

// A player on a taken-over connection is served by a goroutine of the
// server's own (the HTTP handler has returned): Close ends it and waits for
// it.
func TestCloseEndsHandedOffPlayers(t *testing.T) {
	testkit.CheckOwnGoroutines(t, "protocols/httpstream.(*Server)")
	origin := newFLVOrigin(t, 100, 5*time.Millisecond)
	s, proxy := fanOutProxy(t, hostOf(origin.Server), nil)
	p := play(context.Background(), t, proxy.URL+"/live/livestream.flv")
	testkit.WaitFor(t, 5*time.Second, "tags", func() bool { return p.tags.Load() > 5 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the player still plays after Close")
	}
}
