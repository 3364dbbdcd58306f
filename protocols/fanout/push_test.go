package fanout

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// markPlayer frames each tag after a header of its own: a 0xAA byte and
// the tag's length, from an arena it reuses for every batch.
type markPlayer struct {
	arena []byte
	wrote atomic.Int64
	ended chan error
}

func newMarkPlayer() *markPlayer { return &markPlayer{ended: make(chan error, 1)} }

func (m *markPlayer) Frame(dst, tags net.Buffers) net.Buffers {
	m.arena = m.arena[:0]
	if cap(m.arena) < 5*len(tags) {
		m.arena = make([]byte, 0, 5*len(tags))
	}
	for _, t := range tags {
		start := len(m.arena)
		m.arena = binary.BigEndian.AppendUint32(append(m.arena, 0xAA), uint32(len(t)))
		dst = append(dst, m.arena[start:len(m.arena):len(m.arena)], t)
	}
	return dst
}

func (m *markPlayer) Wrote(n int) { m.wrote.Add(int64(n)) }

func (m *markPlayer) End(err error) { m.ended <- err }

// waitEnd returns the error End was called with.
func (m *markPlayer) waitEnd(t *testing.T) error {
	t.Helper()
	select {
	case err := <-m.ended:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("End was not called within 10s")
		return nil
	}
}

// readMarked reads framed tags from r until it has want of them.
func readMarked(t *testing.T, r io.Reader, want int) [][]byte {
	t.Helper()
	var tags [][]byte
	for len(tags) < want {
		var h [5]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			t.Fatalf("after %d tags: %v", len(tags), err)
		}
		if h[0] != 0xAA {
			t.Fatalf("tag %d: header %x", len(tags), h)
		}
		b := make([]byte, binary.BigEndian.Uint32(h[1:]))
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatalf("tag %d: %v", len(tags), err)
		}
		tags = append(tags, b)
	}
	return tags
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// pushSetup returns a test upstream, a registry with cfg, a subscriber of
// it, both ends of a TCP connection for the subscriber's player (the
// node's side first) and the player, ready to Push.
func pushSetup(t *testing.T, cfg Config) (*upstream, *Registry, *Subscriber, net.Conn, net.Conn, *markPlayer) {
	t.Helper()
	u := &upstream{}
	r := newTestRegistry(t, cfg)
	sub := subscribe(t, r, "k", u.opener())
	srv, cli := tcpPair(t)
	return u, r, sub, srv, cli, newMarkPlayer()
}

// A pushed player gets every tag, framed by its Player, in order, and
// End(io.EOF) once the upstream ends.
func TestPushWritesTags(t *testing.T) {
	testkit.CheckGoroutines(t)
	u, r, sub, srv, cli, pl := pushSetup(t, Config{})
	if !r.Push(context.Background(), sub, srv, pl, PushOptions{Discard: true}) {
		t.Fatal("Push refused a TCP connection")
	}
	want := [][]byte{flvHeader, tMeta, tVSeq, tASeq, tKey, tAudio, tInter}
	u.write(t, want...)
	got := readMarked(t, cli, len(want))
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("tag %d = %x, want %x", i, got[i], want[i])
		}
	}
	u.end()
	if err := pl.waitEnd(t); err != io.EOF {
		t.Fatalf("End(%v), want io.EOF", err)
	}
	var n int64
	for _, b := range want {
		n += int64(len(b)) + 5
	}
	if w := pl.wrote.Load(); w != n {
		t.Errorf("Wrote counted %d bytes, want %d", w, n)
	}
	if st := r.Stats(); st.Subscribers != 0 {
		t.Errorf("%d subscribers after the end", st.Subscribers)
	}
}

// bigTags returns n audio tags of size bytes each, numbered in their body.
func bigTags(n, size int) [][]byte {
	tags := make([][]byte, n)
	for i := range tags {
		body := make([]byte, size)
		copy(body, aacRaw)
		binary.BigEndian.PutUint32(body[len(aacRaw):], uint32(i))
		tags[i] = mkTag(TagAudio, uint32(20*i), body)
	}
	return tags
}

// A player that stops reading is written to by a goroutine of its own
// until it reads again; nothing is lost or reordered, and the others
// are not held up.
func TestPushSlowPlayer(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	r := newTestRegistry(t, Config{QueueBytes: 64 << 20, BehindBytes: 128 << 20})
	slowSub := subscribe(t, r, "k", u.opener())
	fastSub := subscribe(t, r, "k", u.opener())
	slowSrv, slowCli := tcpPair(t)
	fastSrv, fastCli := tcpPair(t)
	slow, fast := newMarkPlayer(), newMarkPlayer()
	r.Push(context.Background(), slowSub, slowSrv, slow, PushOptions{})
	r.Push(context.Background(), fastSub, fastSrv, fast, PushOptions{})
	head := [][]byte{flvHeader, tMeta, tVSeq, tASeq, tKey}
	u.write(t, head...)
	readMarked(t, slowCli, len(head))
	readMarked(t, fastCli, len(head))

	// Far more than the sockets hold: the slow player's writes block.
	tags := bigTags(400, 32<<10)
	done := make(chan [][]byte, 1)
	go func() {
		done <- readMarked(t, fastCli, len(tags))
	}()
	u.write(t, tags...)
	select {
	case got := <-done:
		for i := range tags {
			if !bytes.Equal(got[i], tags[i]) {
				t.Fatalf("the fast player's tag %d differs", i)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fast player was held up by the slow one")
	}
	testkit.WaitFor(t, 10*time.Second, "the slow player's write waits for room", func() bool {
		return r.push.waiting.Load() == 1
	})
	got := readMarked(t, slowCli, len(tags))
	for i := range tags {
		if !bytes.Equal(got[i], tags[i]) {
			t.Fatalf("the slow player's tag %d differs", i)
		}
	}
	u.end()
	if err := slow.waitEnd(t); err != io.EOF {
		t.Errorf("slow End(%v), want io.EOF", err)
	}
	if err := fast.waitEnd(t); err != io.EOF {
		t.Errorf("fast End(%v), want io.EOF", err)
	}
}

// Cancelling the context ends a pushed player, even one whose write is
// waiting for room.
func TestPushCancel(t *testing.T) {
	testkit.CheckGoroutines(t)
	u, r, sub, srv, _, pl := pushSetup(t, Config{QueueBytes: 64 << 20, BehindBytes: 128 << 20})
	ctx, cancel := context.WithCancel(context.Background())
	r.Push(ctx, sub, srv, pl, PushOptions{})
	u.write(t, flvHeader, tMeta, tVSeq, tASeq, tKey)
	u.write(t, bigTags(200, 32<<10)...) // the client never reads
	testkit.WaitFor(t, 10*time.Second, "the player's socket is full", func() bool {
		return r.push.waiting.Load() == 1
	})
	cancel()
	if err := pl.waitEnd(t); err != context.Canceled {
		t.Fatalf("End(%v), want context.Canceled", err)
	}
}

// A player that closes its connection ends with an error, and the
// registry forgets it.
func TestPushPlayerCloses(t *testing.T) {
	testkit.CheckGoroutines(t)
	u, r, sub, srv, cli, pl := pushSetup(t, Config{})
	r.Push(context.Background(), sub, srv, pl, PushOptions{Discard: true, Idle: time.Second})
	u.write(t, flvHeader, tMeta, tVSeq, tASeq, tKey)
	readMarked(t, cli, 5)
	cli.Close()
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		if err := pl.waitEnd(t); err == nil || err == io.EOF {
			t.Errorf("End(%v) for a player that left", err)
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-ended:
			if st := r.Stats(); st.Subscribers != 0 {
				t.Errorf("%d subscribers after the player left", st.Subscribers)
			}
			return
		case <-time.After(20 * time.Millisecond):
			u.write(t, tAudio)
		}
		if i > 500 {
			t.Fatal("the player's end was not seen")
		}
	}
}

// Closing the registry ends its pushed players, waiting for them.
func TestPushRegistryClose(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	r := NewRegistry(Config{QueueBytes: 64 << 20, BehindBytes: 128 << 20})
	sub, err := r.Subscribe(context.Background(), "k", u.opener())
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := tcpPair(t)
	pl := newMarkPlayer()
	r.Push(context.Background(), sub, srv, pl, PushOptions{})
	u.write(t, flvHeader, tMeta, tVSeq, tASeq, tKey)
	wrote := make(chan struct{})
	go func() { // ends once the hub stops reading: the registry closed
		defer close(wrote)
		u.mu.Lock()
		pw := u.pw
		u.mu.Unlock()
		for _, b := range bigTags(200, 32<<10) {
			if _, err := pw.Write(b); err != nil {
				return
			}
		}
	}()
	defer func() { <-wrote }()
	testkit.WaitFor(t, 10*time.Second, "the player's socket is full", func() bool {
		return r.push.waiting.Load() == 1
	})
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	if err := pl.waitEnd(t); err == nil || err == io.EOF {
		t.Errorf("End(%v) at the registry's close", err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	srv2, _ := tcpPair(t)
	if r.Push(context.Background(), sub, srv2, newMarkPlayer(), PushOptions{}) {
		t.Error("Push after Close took the player")
	}
}

// A connection without a file descriptor (TLS) is not taken.
func TestPushNeedsDescriptor(t *testing.T) {
	u := &upstream{}
	r := newTestRegistry(t, Config{})
	sub := subscribe(t, r, "k", u.opener())
	srv, _ := tcpPair(t)
	if r.Push(context.Background(), sub, tls.Server(srv, &tls.Config{}), newMarkPlayer(), PushOptions{}) {
		t.Fatal("Push took a TLS connection")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if r.Push(context.Background(), sub, a, newMarkPlayer(), PushOptions{}) {
		t.Fatal("Push took a pipe")
	}
}

// A player that reads slowly but steadily is written to for as long as
// it takes: Idle bounds each wait for room, not the whole batch.
func TestPushIdleBoundsEachWait(t *testing.T) {
	testkit.CheckGoroutines(t)
	u, r, sub, srv, cli, pl := pushSetup(t, Config{QueueBytes: 64 << 20, BehindBytes: 128 << 20})
	// The kernel reports room once much of the send buffer is free: at
	// 5 MB/s that is a few hundred milliseconds, well within idle.
	const idle = time.Second
	r.Push(context.Background(), sub, srv, pl, PushOptions{Idle: idle})
	head := [][]byte{flvHeader, tMeta, tVSeq, tASeq, tKey}
	u.write(t, head...)
	readMarked(t, cli, len(head))
	tags := bigTags(400, 32<<10) // 12.8 MB: read at about 5 MB/s, past idle
	u.write(t, tags...)
	testkit.WaitFor(t, 10*time.Second, "the player's write waits for room", func() bool {
		return r.push.waiting.Load() == 1
	})
	ended := make(chan error, 1)
	go func() { // a play cut off fails the read below, not the test's timeout
		err := pl.waitEnd(t)
		if err != io.EOF {
			cli.Close()
		}
		ended <- err
	}()
	slow := &pacedReader{r: cli, chunk: 256 << 10, every: 50 * time.Millisecond}
	got := readMarked(t, slow, len(tags))
	for i := range tags {
		if !bytes.Equal(got[i], tags[i]) {
			t.Fatalf("tag %d differs", i)
		}
	}
	if took := time.Since(slow.start); took < 2*idle {
		t.Logf("the batch was read in %v, not past the idle timeout: the test proves less", took)
	}
	u.end()
	if err := <-ended; err != io.EOF {
		t.Fatalf("End(%v), want io.EOF", err)
	}
}

// pacedReader reads at most chunk bytes per every from r.
type pacedReader struct {
	r     io.Reader
	chunk int
	every time.Duration
	start time.Time
	left  int
	next  time.Time
}

func (p *pacedReader) Read(b []byte) (int, error) {
	now := time.Now()
	if p.start.IsZero() {
		p.start, p.next = now, now
	}
	if p.left == 0 {
		if d := p.next.Sub(now); d > 0 {
			time.Sleep(d) // pacing the reader is the point of the test
		}
		p.left, p.next = p.chunk, p.next.Add(p.every)
	}
	n, err := p.r.Read(b[:min(len(b), p.left)])
	p.left -= n
	return n, err
}

// Cancelling while the player's write waits, each time the wait goes
// round, ends the play at once even with a long idle timeout: the cancel's
// deadline is never overwritten by the wait's.
func TestPushCancelWhileReading(t *testing.T) {
	testkit.CheckGoroutines(t)
	for i := range 10 {
		u, r, sub, srv, cli, pl := pushSetup(t, Config{QueueBytes: 64 << 20, BehindBytes: 128 << 20})
		ctx, cancel := context.WithCancel(context.Background())
		r.Push(ctx, sub, srv, pl, PushOptions{Idle: time.Hour})
		u.write(t, flvHeader, tMeta, tVSeq, tASeq, tKey)
		u.write(t, bigTags(200, 32<<10)...)
		testkit.WaitFor(t, 10*time.Second, "the player's socket is full", func() bool {
			return r.push.waiting.Load() == 1
		})
		reading := make(chan struct{})
		go func() { // read in small steps, so the wait goes round
			defer close(reading)
			b := make([]byte, 4<<10)
			for {
				if _, err := cli.Read(b); err != nil {
					return
				}
			}
		}()
		time.Sleep(time.Duration(i) * time.Millisecond) // cancel at a different point each round
		cancel()
		if err := pl.waitEnd(t); err != context.Canceled {
			t.Fatalf("round %d: End(%v), want context.Canceled", i, err)
		}
		cli.Close()
		<-reading
	}
}

// A context that has ended already ends the play at once; Push is safe
// to call with it.
func TestPushCancelledContext(t *testing.T) {
	testkit.CheckGoroutines(t)
	u := &upstream{}
	r := newTestRegistry(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 {
		sub := subscribe(t, r, "k", u.opener())
		srv, _ := tcpPair(t)
		pl := newMarkPlayer()
		if !r.Push(ctx, sub, srv, pl, PushOptions{Discard: true}) {
			t.Fatal("Push refused a TCP connection")
		}
		if err := pl.waitEnd(t); err != context.Canceled {
			t.Fatalf("End(%v), want context.Canceled", err)
		}
	}
	testkit.WaitFor(t, 10*time.Second, "no subscriber is left", func() bool {
		return r.Stats().Subscribers == 0
	})
}

// A player that leaves while its stream is quiet is seen within a few
// seconds: nothing wakes it but the registry's sweep.
func TestPushPlayerLeavesQuietStream(t *testing.T) {
	testkit.CheckGoroutines(t)
	u, r, sub, srv, cli, pl := pushSetup(t, Config{})
	r.Push(context.Background(), sub, srv, pl, PushOptions{Discard: true})
	u.write(t, flvHeader, tMeta, tVSeq, tASeq, tKey)
	readMarked(t, cli, 5)
	cli.Close() // and the upstream writes nothing more
	if err := pl.waitEnd(t); err != ErrGone {
		t.Fatalf("End(%v), want ErrGone", err)
	}
	testkit.WaitFor(t, 10*time.Second, "the player's subscriber is closed", func() bool {
		return r.Stats().Subscribers == 0
	})
}

// The sweep's timer runs only while a player that reads its input is
// live: a registry whose players have left has no timer firing.
func TestPushSweepDisarms(t *testing.T) {
	testkit.CheckGoroutines(t)
	_, r, sub, srv, _, pl := pushSetup(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	r.Push(ctx, sub, srv, pl, PushOptions{Discard: true})
	armed := func() bool {
		r.push.mu.Lock()
		defer r.push.mu.Unlock()
		return r.push.armed
	}
	if !armed() {
		t.Fatal("the sweep is not armed with a Discard player live")
	}
	cancel()
	if err := pl.waitEnd(t); err != context.Canceled {
		t.Fatalf("End(%v), want context.Canceled", err)
	}
	testkit.WaitFor(t, 10*time.Second, "the sweep disarms", func() bool { return !armed() })
}
